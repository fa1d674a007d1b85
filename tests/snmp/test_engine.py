"""The SNMP engine's identity and clock: boots rise at every start, time follows the monotonic clock."""

from __future__ import annotations

from gateway.snmp.engine import MAX_BOOTS, EngineClock, next_start, snmp_engine
from gateway.state import SavedEngine

CONFIGURED = bytes.fromhex("80000ef9050102030405060708")


def test_the_first_start_makes_an_engine_id_in_rfc_3411_format_and_boots_once() -> None:
    first = next_start(None, None)
    assert first.boots == 1 and len(first.id) == 13
    assert first.id[:5] == bytes.fromhex("80000ef905")  # enterprise 3833, format 5 (octets)
    assert next_start(None, None).id != first.id  # made, not fixed


def test_every_later_start_with_the_same_id_boots_once_more_and_latches_at_the_maximum() -> None:
    saved = SavedEngine(CONFIGURED, 41)
    assert next_start(saved, None) == SavedEngine(CONFIGURED, 42)
    assert next_start(saved, CONFIGURED) == SavedEngine(CONFIGURED, 42)
    assert next_start(SavedEngine(CONFIGURED, MAX_BOOTS), None).boots == MAX_BOOTS  # RFC 3414 2.2.2


def test_a_newly_configured_engine_id_starts_counting_boots_again() -> None:
    assert next_start(SavedEngine(bytes.fromhex("8000000001"), 41), CONFIGURED) == SavedEngine(CONFIGURED, 1)


def test_pysnmp_takes_the_engine_id_boots_and_time_of_the_clock() -> None:
    now = [1000.0]
    clock = EngineClock(12, clock=lambda: now[0])
    engine = snmp_engine(CONFIGURED, clock)
    identity, boots, seconds = engine.get_mib_builder().import_symbols(
        "__SNMP-FRAMEWORK-MIB", "snmpEngineID", "snmpEngineBoots", "snmpEngineTime"
    )
    now[0] += 75.6  # a wall-clock step would not move it; this clock is the monotonic one
    assert (bytes(identity.syntax), int(boots.syntax), int(seconds.syntax.clone())) == (CONFIGURED, 12, 75)
    assert bytes(engine.snmpEngineID) == CONFIGURED
