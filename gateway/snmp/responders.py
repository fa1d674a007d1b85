"""Two of pysnmp's command responders, replaced: GETBULK in one controller call, and SET answered
only once the meter has taken the writes.

pysnmp's GETBULK responder calls the controller once per repetition and keeps repeating past the
end of the view; ours asks `CacheController.read_bulk` for the whole response within
`BulkLimits`, cut short where the message would outgrow the engine's maximum message size (one UDP
datagram) or the request's size times snmp.bulk_amplification: RFC 3416 4.2.3 wants an oversized
GETBULK response trimmed, never tooBig, and pysnmp would silently drop it. Most GETBULKs are
answered by the fast path (gateway.snmp.fast) with the same limits; this one serves what it
leaves to pysnmp.

pysnmp's controllers are synchronous, so a SET cannot await the bus inside one: ours checks the
varbinds synchronously (errors answered at once), then awaits the writes on the event loop and
answers with their outcome. pysnmp releases a request's state right after
``handle_management_operation``; `release_state_information` keeps it for a deferred answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog
from pyasn1.codec.ber import encoder
from pyasn1.type import univ
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import cmdrsp
from pysnmp.entity.rfc3413.context import SnmpContext
from pysnmp.proto.api import v2c
from pysnmp.smi import error as smi_error

from gateway.errors import GatewayError
from gateway.nodes.errors import LineUnavailable, MeterRefused, NotWritable, OutOfRange, UnknownTarget, WriteRefused
from gateway.snmp.controller import BulkLimits, CacheController, VarBind, Write
from gateway.snmp.engine import max_message_size

log = structlog.get_logger(__name__)

#: Bytes of a v2c response besides its varbinds: message, version, a community of up to 32
#: characters, PDU header, request-id, error status and index, varbind list header (61 at most).
_ENVELOPE = 64


def _context(responder: cmdrsp.CommandResponderBase, engine: SnmpEngine) -> dict[str, Any]:
    return {"snmpEngine": engine, "acFun": responder.verify_access, "cbCtx": responder.cbCtx}


class BulkResponder(cmdrsp.BulkCommandResponder):
    def __init__(self, engine: SnmpEngine, context: SnmpContext, limits: BulkLimits) -> None:
        super().__init__(engine, context)
        self.limits = limits

    def handle_management_operation(self, engine: SnmpEngine, state: int, context_name: bytes, pdu: Any) -> None:
        var_binds = v2c.apiPDU.get_varbinds(pdu)
        non_repeaters, repetitions = self.limits.plan(
            int(v2c.apiBulkPDU.get_non_repeaters(pdu)), int(v2c.apiBulkPDU.get_max_repetitions(pdu)), len(var_binds)
        )
        controller: CacheController = self.snmpContext.get_mib_instrum(context_name)
        response = controller.read_bulk(non_repeaters, repetitions, var_binds, _context(self, engine))
        request = engine.observer.get_execution_context("rfc3412.receiveMessage:request")
        response = _leading_fit(response[: self.limits.max_varbinds], self.limits, len(request["wholeMsg"]))
        if not response:
            raise smi_error.GenError()
        self.send_varbinds(engine, state, 0, 0, response)


def max_varbind_bytes(engine: SnmpEngine) -> int:
    """What the varbinds of a response may take to fit the largest message the engine sends."""
    return max_message_size(engine) - _ENVELOPE


def _leading_fit(var_binds: list[VarBind], limits: BulkLimits, request_size: int) -> list[VarBind]:
    """The leading varbinds the response takes (`BulkLimits.fitting`). Encoded for their sizes only
    when a cheap bound says they might not all fit: a usual response is a small part of a datagram."""
    if sum(_size_bound(name, value) for name, value in var_binds) <= limits.budget(request_size):
        return var_binds
    return var_binds[: limits.fitting((_encoded_size(name, value) for name, value in var_binds), request_size)]


def _encoded_size(name: Any, value: Any) -> int:
    content = len(encoder.encode(name)) + len(encoder.encode(value))
    return content + _sequence_header(content)


def _size_bound(name: Any, value: Any) -> int:
    """At least the BER size of a varbind: 5 octets per sub-identifier at most, a value's content at
    most its length (strings, OIDs) or 9 octets (Counter64, the widest number), 4 per header."""
    if isinstance(value, univ.OctetString):
        content = len(value)
    elif isinstance(value, univ.ObjectIdentifier):
        content = 5 * len(value)
    else:
        content = 9
    return 5 * len(name) + content + 12


def _sequence_header(length: int) -> int:
    """Bytes of a BER SEQUENCE tag and length for `length` bytes of content (below 64 KB)."""
    return 2 if length < 0x80 else 3 if length < 0x100 else 4


class DeferredSetResponder(cmdrsp.SetCommandResponder):
    def __init__(
        self,
        engine: SnmpEngine,
        context: SnmpContext,
        write: Callable[[Write], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        super().__init__(engine, context)
        self._write = write
        self._spawn = spawn
        self._deferred: set[int] = set()

    def handle_management_operation(self, engine: SnmpEngine, state: int, context_name: bytes, pdu: Any) -> None:
        var_binds = v2c.apiPDU.get_varbinds(pdu)
        controller: CacheController = self.snmpContext.get_mib_instrum(context_name)
        writes = controller.plan_writes(var_binds, _context(self, engine))  # raises what to answer now
        self._deferred.add(state)
        self._spawn(self._commit(engine, state, var_binds, writes))

    def release_state_information(self, state: int) -> None:
        if state not in self._deferred:
            super().release_state_information(state)

    async def _commit(
        self, engine: SnmpEngine, state: int, var_binds: Sequence[VarBind], writes: Sequence[Write]
    ) -> None:
        try:
            status, index = await self._apply(writes)
            self.send_varbinds(engine, state, status, index, var_binds)
        finally:
            self._deferred.discard(state)
            self.release_state_information(state)

    async def _apply(self, writes: Sequence[Write]) -> tuple[str | int, int]:
        """(error status, error index) of the SET: 0, 0 when every write reached the meter."""
        for done, write in enumerate(writes):
            try:
                await self._write(write)
            except GatewayError as error:
                status = "undoFailed" if done else _status(error)  # earlier writes cannot be taken back
                log.info(
                    "snmp set refused",
                    address=write.address,
                    register=write.register,
                    value=write.raw,
                    status=status,
                    error=str(error),
                )
                return status, write.index + 1
            except Exception:  # a bug: the request still gets an answer and the agent keeps serving
                log.exception("snmp set failed", address=write.address, register=write.register)
                return "genErr", write.index + 1
        return 0, 0


def _status(error: GatewayError) -> str:
    match error:  # Modbus exception 03: illegal data value, 02: illegal data address
        case OutOfRange() | MeterRefused(code=0x03):
            return "wrongValue"
        case NotWritable() | MeterRefused(code=0x02):
            return "notWritable"
        case UnknownTarget():
            return "noCreation"
        case WriteRefused():
            return "inconsistentValue"
        case LineUnavailable():
            return "resourceUnavailable"
        case _:
            return "commitFailed"  # no reply, a corrupt one, or the meter failed
