"""The serial line's settings: as configured, or searched for (``serial.baudrate = "auto"``).

`LineFinder` is the search: it opens the port at each candidate of `line_candidates` until a meter
answers, and keeps what it found for every later open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from gateway.bus import (
    BusClosed,
    CorruptReply,
    ExceptionReply,
    LineSettings,
    NoResponse,
    OnLost,
    OpenTransport,
    Transport,
)
from gateway.bus.line import PARITIES
from gateway.config import Config
from gateway.nodes.discovery import IDENTITY
from gateway.nodes.modbus import read_registers
from gateway.serialport import driver_keys

AUTO_LINES = tuple((rate, parity) for rate in (19200, 9600, 38400) for parity in PARITIES)
"""The line settings (rate, parity) tried to find the meters: the rates a BCPM's DIP switches offer,
the usual first."""


def line_candidates(base: LineSettings, first: tuple[int, str] | None = None) -> list[LineSettings]:
    """`base` at each rate and parity of AUTO_LINES, in order, `first` (the last found) before them."""
    tried = ([first] if first else []) + [line for line in AUTO_LINES if line != first]
    return [replace(base, baudrate=rate, parity=parity) for rate, parity in tried]


class LineFinder:
    """An `OpenTransport` that opens the port at the line settings the meters answer at.

    At the first open, each of `line_candidates` (`first` before the others) is opened in turn and
    `addresses` are probed one by one until something answers: that transport is kept and `found`
    hears its settings. Settings the port refuses are skipped. When the port refuses them all (a
    port that is missing) or nothing answers at any, the open fails with BusClosed and the bus
    tries again later, with back-off. Once found, the settings are kept for every later open.
    """

    def __init__(
        self,
        open_transport: OpenTransport,
        addresses: Sequence[int],
        timeout: float,
        found: Callable[[LineSettings], None],
        first: tuple[int, str] | None = None,
    ) -> None:
        self._open_transport = open_transport
        self._addresses = addresses
        self._timeout = timeout
        self._found = found
        self._first = first
        self._line: LineSettings | None = None

    async def __call__(self, settings: LineSettings, on_lost: OnLost) -> Transport:
        if self._line is not None:
            return await self._open_transport(self._line, on_lost)
        candidates = line_candidates(settings, self._first)
        refused: list[BusClosed] = []
        for line in candidates:
            try:
                transport = await self._open_transport(line, on_lost)
            except BusClosed as error:
                refused.append(error)
                continue
            try:
                answered = await _anything_answers(transport, self._addresses, self._timeout)
            except BaseException:
                await transport.close()
                raise
            if answered:
                self._line = line
                self._found(line)
                return transport
            await transport.close()
        if len(refused) == len(candidates):
            raise refused[0]
        tried = ", ".join(f"{line.baudrate} 8{line.parity}{line.stopbits}" for line in candidates)
        raise BusClosed(f"no meter answers on {settings.port} at {tried}")


async def _anything_answers(transport: Transport, addresses: Iterable[int], timeout: float) -> bool:
    """Whether any of `addresses` answers the identity read with a frame that checks (a reply or
    an exception): a wrong rate or parity gives silence or garbage."""
    probe = read_registers(IDENTITY.start, IDENTITY.count)
    for address in addresses:
        try:
            await transport.transact(address, probe, timeout)
        except (NoResponse, CorruptReply):
            continue
        except ExceptionReply:
            pass  # a meter refusing is a meter that heard
        return True
    return False


def line_settings(config: Config, found: tuple[int, str] | None = None) -> LineSettings:
    """The configured line; with ``baudrate = "auto"``, at the settings `found` last (or the first tried)."""
    serial = config.serial
    baudrate, parity = (serial.baudrate, serial.parity) if isinstance(serial.baudrate, int) else found or AUTO_LINES[0]
    return LineSettings(
        port=serial.port,
        baudrate=baudrate,
        parity=parity,
        stopbits=serial.stopbits,
        timeout=serial.timeout,
        max_queue=serial.max_queue,
        **driver_keys(serial),
    )
