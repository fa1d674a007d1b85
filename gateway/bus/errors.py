"""Typed failures of a bus transaction.

Every request submitted to the bus ends with the reply PDU or one of these, so a caller decides
by type, not by message text:

    try:
        reply = await bus.transact(3, pdu, Priority.POLL)
    except NoResponse:
        ...  # count towards taking the node offline
    except ExceptionReply as err:
        if err.code == 0x02: ...  # the meter rejects this register range
"""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.modbus import EXCEPTION_NAMES


class BusError(GatewayError):
    """A bus transaction did not produce a normal reply."""


class NoResponse(BusError):
    """No complete reply frame arrived before the deadline."""


class CorruptReply(BusError):
    """What arrived is not a valid reply: CRC failure, garbage, wrong unit or function code."""


class ExceptionReply(BusError):
    """The slave answered with a Modbus exception; `code` is the exception code."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"exception {code:02X} {EXCEPTION_NAMES.get(code, 'unknown')}")


class BusClosed(BusError):
    """The bus is not serving: stopped, never started, or its port failed or cannot be opened."""


class BusOverloaded(BusError):
    """The request queue is full; the request was refused without touching the line."""
