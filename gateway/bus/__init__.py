"""The RS-485 bus: the one owner of the serial line, speaking Modbus RTU as master.

It knows nothing about meters, only transactions: a unit address and a request PDU go in, the
reply PDU (function code and data) or a typed `BusError` comes out. Requests queue by
`Priority` (writes, then pass-through, then polling, then discovery; polls keep a share of the
line however busy pass-through is, see `POLL_SHARE`, and discovery a tenth of it however busy
polling is, see `DISCOVERY_SHARE`) and go on the line one at a time with RTU
timing: t3.5 of silence before each frame, stale input flushed, replies matched to their request.

    bus = Bus(LineSettings("/dev/ttyUSB0", baudrate=19200, parity="E"))   # over an RtuTransport
    # on the bus's own thread:   asyncio.run(bus.serve())   (reopens a failed port with back-off)
    reply = await bus.transact(1, bytes.fromhex("0300000002"), Priority.POLL)
"""

from gateway.bus.errors import (
    BusClosed,
    BusError,
    BusOverloaded,
    CorruptReply,
    ExceptionReply,
    NoResponse,
)
from gateway.bus.line import LineSettings, expected_reply_length
from gateway.bus.memory import MemoryPort
from gateway.bus.rtu import RtuTransport
from gateway.bus.scheduler import DISCOVERY_SHARE, POLL_SHARE, Bus, BusStats, Priority
from gateway.bus.transport import OnLost, OpenTransport, Transport

__all__ = [
    "DISCOVERY_SHARE",
    "POLL_SHARE",
    "Bus",
    "BusClosed",
    "BusError",
    "BusOverloaded",
    "BusStats",
    "CorruptReply",
    "ExceptionReply",
    "LineSettings",
    "MemoryPort",
    "NoResponse",
    "OnLost",
    "OpenTransport",
    "Priority",
    "RtuTransport",
    "Transport",
    "expected_reply_length",
]
