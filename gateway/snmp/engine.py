"""The SNMP engine's identity and clock (RFC 3411, RFC 3414): snmpEngineID, snmpEngineBoots and
snmpEngineTime, as both the fast path and pysnmp use them.

    this = next_start(state.snmp_engine, settings.engine_id)  # saved in the state file first
    clock = EngineClock(this.boots)
    engine = snmp_engine(this.id, clock)

The engine ID is snmp.engine_id, or the one made at the first start and kept in the state file.
snmpEngineBoots rises at every start and is saved before the agent answers: a message captured
before a restart falls outside the time window after it, and a manager that cached the engine's
(boots, time) across the restart is behind, takes the notInTimeWindow Report and carries on.
snmpEngineTime counts seconds on the monotonic clock, so a step of the wall clock (the board's
clock set at boot) does not move it, as pysnmp's own would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import rfc1902

from gateway.state import SavedEngine

MAX_BOOTS = 2**31 - 1  # where snmpEngineBoots latches (RFC 3414 2.2.2): a new engine ID is needed
MAX_TIME = 2**31 - 1
ENTERPRISE = 3833  # the enterprise number the agent's tree lies under


def new_engine_id() -> bytes:
    """An engine ID in RFC 3411's format: the enterprise with the high bit set, format 5 (octets
    assigned by the engine), then 8 random octets."""
    return (0x80000000 | ENTERPRISE).to_bytes(4, "big") + b"\x05" + os.urandom(8)


def next_start(saved: SavedEngine | None, configured: bytes | None) -> SavedEngine:
    """The engine ID and boots of this start: the boots one more than the last start's with the
    same ID, 1 with a new one."""
    engine_id = configured or (saved.id if saved is not None else new_engine_id())
    if saved is None or saved.id != engine_id:
        return SavedEngine(engine_id, 1)
    return SavedEngine(engine_id, min(saved.boots + 1, MAX_BOOTS))


class EngineClock:
    """snmpEngineBoots of this start, and snmpEngineTime: whole seconds since it."""

    def __init__(self, boots: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.boots = boots
        self._clock = clock
        self._started = clock()

    def time(self) -> int:
        return min(int(self._clock() - self._started), MAX_TIME)


def snmp_engine(engine_id: bytes, clock: EngineClock) -> SnmpEngine:
    """A pysnmp engine with this identity and clock.

    The ID is set in the engine's MIB rather than passed to `SnmpEngine`, which would also keep a
    boots count of its own in a temporary folder; it is set before anything reads it (contexts and
    users take it when they are made)."""
    engine = SnmpEngine()
    builder = engine.get_mib_builder()
    identity, boots, seconds = builder.import_symbols(
        "__SNMP-FRAMEWORK-MIB", "snmpEngineID", "snmpEngineBoots", "snmpEngineTime"
    )
    identity.syntax = identity.syntax.clone(engine_id)
    engine.snmpEngineID = identity.syntax
    boots.syntax = boots.syntax.clone(clock.boots)
    seconds.syntax = _engine_time(clock)
    return engine


def max_message_size(engine: SnmpEngine) -> int:
    """snmpEngineMaxMessageSize: the largest message the engine sends (pysnmp drops a larger
    response); 65507 by default, the largest UDP payload."""
    (max_size,) = engine.get_mib_builder().import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineMaxMessageSize")
    return int(max_size.syntax)


def _engine_time(clock: EngineClock) -> Any:
    """pysnmp's snmpEngineTime value: its USM takes the time from ``clone()`` with no value."""

    class EngineTime(rfc1902.Integer32):  # type: ignore[misc]
        def clone(self, *args: Any, **kwargs: Any) -> Any:
            if args or kwargs:
                return super().clone(*args, **kwargs)
            return rfc1902.Integer32(clock.time())

    return EngineTime(0)
