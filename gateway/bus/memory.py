"""A transport without a serial port: the bus hands each request to slaves in memory (`Slaves`).

With `gateway.sim.MemoryLine` as the slaves, everything above the bus runs against simulated
meters at memory speed (or at wire speed, `emulate_wire=True`), as httpx tests with a mock
transport:

    port = MemoryPort(MemoryLine([Board(1)]))
    bus = Bus(LineSettings("memory"), open_transport=port)
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.bus.errors import BusClosed, ExceptionReply, NoResponse
from gateway.bus.line import LineSettings, expected_reply_length
from gateway.bus.transport import OnLost
from gateway.modbus import BROADCAST, EXCEPTION_BIT, MAX_FRAME

_FRAMING = 3  # unit byte and CRC around a PDU


class Slaves(Protocol):
    """What a memory transport talks to."""

    plugged: bool  # False: the adapter is gone (the open transport fails, opening it fails)

    def hears(self, baudrate: int, parity: str) -> bool:
        """Whether the slaves understand a master at these line settings (if not, they stay silent)."""
        ...

    def answer(self, unit: int, pdu: bytes) -> bytes | None:
        """The reply PDU (an exception reply too), or None when nothing answers."""
        ...


class MemoryPort:
    """The `OpenTransport` of some slaves; counts how often the bus opened it."""

    def __init__(self, slaves: Slaves, *, emulate_wire: bool = False, turnaround: float = 0.0) -> None:
        self.slaves = slaves
        self.emulate_wire = emulate_wire
        self.turnaround = turnaround
        self.opened = 0

    async def __call__(self, settings: LineSettings, on_lost: OnLost) -> MemoryTransport:
        if not self.slaves.plugged:
            raise BusClosed(f"cannot open {settings.port}: No such file or directory")
        self.opened += 1
        if self.emulate_wire:  # as RtuTransport, which waits for a quiet line after opening
            await asyncio.sleep(settings.quiet_after_open)
        return MemoryTransport(self, settings, on_lost)


class MemoryTransport:
    """One opening of `MemoryPort`: the `Transport` the bus uses."""

    def __init__(self, port: MemoryPort, settings: LineSettings, on_lost: OnLost) -> None:
        self.port = port
        self.settings = settings
        self.failure: BusClosed | None = None
        self.stale_bytes = 0
        self._on_lost = on_lost

    async def transact(self, unit: int, pdu: bytes, timeout: float) -> bytes:
        self._check_plugged()
        timed = self.port.emulate_wire
        wire = self.settings.wire_time if timed else (lambda _: 0.0)
        sent = wire(len(pdu) + _FRAMING)
        if unit == BROADCAST:
            await asyncio.sleep(sent)
            return b""
        heard = self.port.slaves.hears(self.settings.baudrate, self.settings.parity)
        reply = self.port.slaves.answer(unit, pdu) if heard else None
        if reply is None:  # without wire time, silence costs no time either
            await asyncio.sleep(sent + timeout * timed + wire(expected_reply_length(pdu) or MAX_FRAME))
            raise NoResponse(f"no reply from unit {unit}")
        await asyncio.sleep(sent + self.port.turnaround + wire(len(reply) + _FRAMING))
        self._check_plugged()  # unplugged meanwhile
        if reply[0] & EXCEPTION_BIT:
            raise ExceptionReply(reply[1])
        return reply

    def _check_plugged(self) -> None:
        if self.failure is None and not self.port.slaves.plugged:
            self.failure = BusClosed(f"port {self.settings.port} failed: device unplugged")
            self._on_lost(self.failure)
        if self.failure is not None:
            raise self.failure

    async def close(self) -> None:
        if self.failure is None:
            self.failure = BusClosed(f"port {self.settings.port} closed")
