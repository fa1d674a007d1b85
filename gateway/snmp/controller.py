"""The MIB controller pysnmp calls for GET, GETNEXT and GETBULK, and that checks SETs.

It answers from an `OidIndex` (the node cache), never from the bus. pysnmp calls it
synchronously, so a SET is only checked here (`plan_writes`): the writes themselves are awaited by
the SET responder before it answers (gateway.snmp.responders).

Access control: pysnmp's VACM is only consulted when a controller calls ``acFun``. Every OID we
serve is under `READ_VIEW`, which each principal's read view includes or excludes as a whole, so
the read decision is made once per principal and kept. Writes ask ``acFun`` for every varbind and
are also refused to any principal not in ``writers`` (pysnmp's VACM lets a principal with an
empty write view write).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pysnmp.proto import rfc1902, rfc1905
from pysnmp.smi import error as smi_error
from pysnmp.smi.instrum import AbstractMibInstrumController

from gateway.snmp.index import OidIndex
from gateway.snmp.readers import SYNTAX

READ_VIEW = (1, 3, 6, 1)  # everything served lies under it
NO_VIEW = (0, 0)  # a view entry that matches nothing: an empty view would allow everything (VACM bug)

VarBind = tuple[Any, Any]
Writer = tuple[int, str]  # security model (2: community, 3: USM user), security name
_Principal = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Write:
    """A checked SET varbind: the register value to write to a node."""

    index: int  # of the varbind in the request
    address: int
    register: int
    raw: int


@dataclass(frozen=True, slots=True)
class BulkLimits:
    """What one GETBULK response may hold, on either path (pysnmp's responder, the fast path).

    At most ``max_varbinds`` varbinds (snmp.max_response_varbinds), the non-repeaters included.
    Their BER takes at most ``max_bytes`` (what fits one datagram beside the message envelope) and
    at most ``amplification`` times the request's size (snmp.bulk_amplification), but the first
    varbind is always answered: a request whose source is forged then sends its victim about
    ``amplification`` times its own bytes, never the 60-odd times a full response would be.
    """

    max_varbinds: int
    amplification: int
    max_bytes: int

    def plan(self, non_repeaters: int, max_repetitions: int, count: int) -> tuple[int, int]:
        """(non-repeaters, repetitions) to answer for a request with ``count`` varbinds."""
        non_repeaters = min(max(non_repeaters, 0), count)
        repetitions = max(max_repetitions, 0)
        repeaters = count - non_repeaters
        if repeaters:
            repetitions = min(repetitions, max(self.max_varbinds - non_repeaters, 0) // repeaters)
        return non_repeaters, repetitions

    def budget(self, request_size: int) -> int:
        """Bytes the varbinds of the response to a request of ``request_size`` bytes may take."""
        return min(self.max_bytes, self.amplification * request_size)

    def fitting(self, sizes: Iterable[int], request_size: int) -> int:
        """How many of the leading varbinds, of these BER sizes, the response takes (at least one)."""
        budget, used, count = self.budget(request_size), 0, 0
        for size in sizes:
            used += size
            if used > budget and count:
                break
            count += 1
        return count


class CacheController(AbstractMibInstrumController):
    def __init__(self, index: OidIndex, writers: frozenset[Writer]) -> None:
        self.index = index
        self.writers = writers  # (security model, security name) of those that may SET
        self._may_read: dict[_Principal, bool] = {}

    # --- reads ---

    def read_variables(self, *var_binds: VarBind, **context: Any) -> list[VarBind]:
        if not self._readable(context):
            return [(name, rfc1905.noSuchObject) for name, _ in var_binds]
        index = self.index
        return [(name, index.get(tuple(name))) for name, _ in var_binds]

    def read_next_variables(self, *var_binds: VarBind, **context: Any) -> list[VarBind]:
        return [self._next(name, context) for name, _ in var_binds]

    def read_bulk(
        self, non_repeaters: int, repetitions: int, var_binds: Sequence[VarBind], context: dict[str, Any]
    ) -> list[VarBind]:
        """A whole GETBULK response (`OidIndex.bulk`), ``repetitions`` already capped."""
        result = [self._next(name, context) for name, _ in var_binds[:non_repeaters]]
        repeaters = var_binds[non_repeaters:]
        if not repeaters or not self._readable(context):
            return result + [(name, rfc1905.endOfMibView) for name, _ in repeaters]
        index = self.index
        names = [name for name, _ in repeaters]
        for column, served in index.bulk([index.position_after(tuple(name)) for name in names], repetitions):
            if served is None:
                result.append((names[column], rfc1905.endOfMibView))
            else:
                names[column] = index.name(served[0])
                result.append((names[column], index.value(*served)))
        return result

    def _next(self, name: Any, context: dict[str, Any]) -> VarBind:
        if self._readable(context):
            served = self.index.next_served(self.index.position_after(tuple(name)))
            if served is not None:
                return self.index.name(served[0]), self.index.value(*served)
        return name, rfc1905.endOfMibView

    def _readable(self, context: dict[str, Any]) -> bool:
        principal = _principal(context)
        allowed = self._may_read.get(principal)
        if allowed is None:
            # acFun raises for a principal without access at all (SNMPv1: no v1 group), and that
            # error needs a varbind index; True means "not in view".
            denied = context["acFun"]("read", (rfc1902.ObjectName(READ_VIEW), None), idx=0, **context)
            allowed = self._may_read[principal] = not denied
        return allowed

    # --- SET ---

    def plan_writes(self, var_binds: Sequence[VarBind], context: dict[str, Any]) -> list[Write]:
        """Check every varbind of a SET (all before any is written); raise the SMI error of the first
        that cannot be written."""
        model, name = _principal(context)[:2]
        writer = (int(model), str(name)) in self.writers
        return [self._plan(at, name, value, writer, context) for at, (name, value) in enumerate(var_binds)]

    def _plan(self, at: int, name: Any, value: Any, writer: bool, context: dict[str, Any]) -> Write:
        if not writer or context["acFun"]("write", (name, value), idx=at, **context):
            raise smi_error.NoAccessError(name=name, idx=at)
        entry = self.index.entry(tuple(name))
        if entry is None:
            raise smi_error.NoCreationError(name=name, idx=at)
        if entry.targets is None:
            raise smi_error.NotWritableError(name=name, idx=at)
        target = entry.targets(entry.suffix)
        if value.tagSet != SYNTAX[target.column.smi].tagSet:
            raise smi_error.WrongTypeError(name=name, idx=at)
        node, point = target.node, target.point
        exponent = node.cache.scale_of(point)
        if exponent is None or not node.health.online:
            raise smi_error.ResourceUnavailableError(name=name, idx=at)  # scale not read yet, or node lost
        raw = target.column.raw_for(int(value), exponent)
        if raw is None or not point.accepts(raw):
            raise smi_error.WrongValueError(name=name, idx=at)
        return Write(at, node.address, point.register, raw)


def _principal(context: dict[str, Any]) -> _Principal:
    request = context["snmpEngine"].observer.get_execution_context("rfc3412.receiveMessage:request")
    return (request["securityModel"], request["securityName"], request["securityLevel"], request["contextName"])
