"""The seam under the bus: a transport carries one transaction at a time to the slaves and back.

`Bus` owns the queue and the order; a transport owns the medium. `RtuTransport` is the serial line;
`MemoryTransport` (gateway.bus.memory) hands requests straight to slaves in memory, such as the
simulated panels of `gateway.sim.MemoryLine` (with or without wire time), so everything above
the bus can be tested without a pty, as httpx tests with a mock transport.

    bus = Bus(settings, open_transport=RtuTransport.open)                        # the default
    bus = Bus(settings, open_transport=MemoryPort(MemoryLine(boards)))     # simulated panels, no port
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.bus.errors import BusClosed
from gateway.bus.line import LineSettings


class Transport(Protocol):
    """An open medium to the slaves; one transaction at a time (the bus guarantees that)."""

    failure: BusClosed | None  # set once the medium has failed or closed
    stale_bytes: int  # bytes received that belonged to no request

    async def transact(self, unit: int, pdu: bytes, timeout: float) -> bytes:
        """The reply PDU to `pdu`; raises NoResponse, CorruptReply, ExceptionReply or BusClosed.

        `timeout` is the slave's allowance beyond the wire time; unit 0 broadcasts and gives b"".
        """
        ...

    async def close(self) -> None: ...


OnLost = Callable[[BusClosed], None]
OpenTransport = Callable[[LineSettings, OnLost], Awaitable[Transport]]
"""Opens a transport on the running loop; raises BusClosed when the medium cannot be opened.

The callback hears when an open transport fails or closes.
"""
