"""Two of pysnmp's command responders, replaced: GETBULK in one controller call, and SET answered
only once the meter has taken the writes.

pysnmp's GETBULK responder calls the controller once per repetition and keeps repeating past the
end of the view; ours asks `CacheController.read_bulk` for the whole response (stack notes,
"One-call GETBULK"). pysnmp's controllers are synchronous, so a SET cannot await the bus inside
one: ours checks the varbinds synchronously (errors answered at once), then awaits the writes on
the event loop and answers with their outcome. pysnmp releases a request's state right after
``handle_management_operation``; `release_state_information` keeps it for a deferred answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import structlog
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import cmdrsp
from pysnmp.entity.rfc3413.context import SnmpContext
from pysnmp.proto.api import v2c
from pysnmp.smi import error as smi_error

from gateway.bus import BusClosed, BusOverloaded, ExceptionReply
from gateway.errors import GatewayError
from gateway.nodes.service import NotWritable, OutOfRange, UnknownTarget, WriteRefused
from gateway.snmp.controller import CacheController, VarBind, Write

log = structlog.get_logger(__name__)

#: Varbinds in one GETBULK response: about 4-6 KB of UDP, below what managers accept and where
#: fragments start to get lost. Also what caps a hostile max-repetitions.
MAX_BULK_VARBINDS = 128


def _context(responder: cmdrsp.CommandResponderBase, engine: SnmpEngine) -> dict[str, Any]:
    return {"snmpEngine": engine, "acFun": responder.verify_access, "cbCtx": responder.cbCtx}


class BulkResponder(cmdrsp.BulkCommandResponder):
    max_varbinds = MAX_BULK_VARBINDS

    def handle_management_operation(self, engine: SnmpEngine, state: int, context_name: bytes, pdu: Any) -> None:
        var_binds = v2c.apiPDU.get_varbinds(pdu)
        non_repeaters = min(max(int(v2c.apiBulkPDU.get_non_repeaters(pdu)), 0), len(var_binds))
        max_repetitions = max(int(v2c.apiBulkPDU.get_max_repetitions(pdu)), 0)
        repeaters = len(var_binds) - non_repeaters
        if repeaters:
            max_repetitions = min(max_repetitions, self.max_varbinds // repeaters)
        controller: CacheController = self.snmpContext.get_mib_instrum(context_name)
        response = controller.read_bulk(non_repeaters, max_repetitions, var_binds, _context(self, engine))
        if not response:
            raise smi_error.GenError()
        self.send_varbinds(engine, state, 0, 0, response)


class DeferredSetResponder(cmdrsp.SetCommandResponder):
    def __init__(self, engine: SnmpEngine, context: SnmpContext, write: Callable[[Write], Awaitable[None]],
                 spawn: Callable[[Coroutine[Any, Any, None]], object]) -> None:
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

    async def _commit(self, engine: SnmpEngine, state: int, var_binds: Sequence[VarBind],
                      writes: Sequence[Write]) -> None:
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
                log.info("snmp set refused", address=write.address, register=write.register, value=write.raw,
                         status=status, error=str(error))
                return status, write.index + 1
            except Exception:  # a bug: the request still gets an answer and the agent keeps serving
                log.exception("snmp set failed", address=write.address, register=write.register)
                return "genErr", write.index + 1
        return 0, 0


def _status(error: GatewayError) -> str:
    match error:  # Modbus exception 03: illegal data value, 02: illegal data address
        case OutOfRange() | ExceptionReply(code=0x03):
            return "wrongValue"
        case NotWritable() | ExceptionReply(code=0x02):
            return "notWritable"
        case UnknownTarget():
            return "noCreation"
        case WriteRefused():
            return "inconsistentValue"
        case BusClosed() | BusOverloaded():
            return "resourceUnavailable"
        case _:
            return "commitFailed"  # no reply, a corrupt one, or the meter failed
