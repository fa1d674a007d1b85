"""The USM front without sockets: key localization against RFC 3414's test vector, and what it does
with messages built here by pysnmp's own message types (the net-snmp tests are in test_v3.py)."""

from __future__ import annotations

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v2c
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from gateway.config import SnmpUser
from gateway.snmp.engine import EngineClock
from gateway.snmp.readers import USM_STATS, FastCounts
from gateway.snmp.usm import UNKNOWN_ENGINE_IDS, Usm, UsmUser, localized_keys, read_message

ENGINE_ID = bytes.fromhex("80000ef9050102030405060708")
MAPLESYRUP = SnmpUser(name="nms", auth="sha1", priv=None, auth_passphrase="maplesyrup", level="authNoPriv")


def test_a_passphrase_is_localized_as_rfc_3414_a_3_2_says() -> None:
    auth_key, priv_key = localized_keys(MAPLESYRUP, bytes(11) + b"\x02")
    assert auth_key.hex() == "6695febc9288e36282235fc7151f128497b38f3f" and priv_key is None


def message(engine_id: bytes, user: bytes, flags: int, boots: int = 0, time: int = 0) -> bytes:
    """A plaintext GET of sysDescr.0 with these security parameters, encoded by pysnmp."""
    pdu = v2c.GetRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, 4242)
    v2c.apiPDU.set_varbinds(pdu, [((1, 3, 6, 1, 2, 1, 1, 1, 0), v2c.null)])
    parameters = UsmSecurityParameters()
    for position, value in enumerate((engine_id, boots, time, user, b"", b"")):
        parameters.setComponentByPosition(position, value)
    whole = SNMPv3Message()
    whole.setComponentByPosition(0, 3)
    header = whole.setComponentByPosition(1).getComponentByPosition(1)
    for position, value in enumerate((77, 65507, bytes((flags,)), 3)):
        header.setComponentByPosition(position, value)
    whole.setComponentByPosition(2, encoder.encode(parameters))
    scoped = (
        whole.setComponentByPosition(3).getComponentByPosition(3).setComponentByPosition(0).getComponentByPosition(0)
    )
    scoped.setComponentByPosition(0, engine_id)
    scoped.setComponentByPosition(1, b"")
    scoped.setComponentByPosition(2).getComponentByPosition(2).setComponentByType(pdu.tagSet, pdu)
    return encoder.encode(whole)


def front(counts: FastCounts | None = None) -> Usm:
    user = UsmUser.of(MAPLESYRUP, ENGINE_ID)
    counts = counts or FastCounts()
    return Usm(ENGINE_ID, EngineClock(7, clock=lambda: 100.0), [user], counts, lambda number: counts.usm[number], 65507)


def test_discovery_gets_a_report_of_the_engine_id_boots_and_time_unauthenticated() -> None:
    counts = FastCounts()
    report = front(counts).open(message(b"", b"", 0x04), "127.0.0.1")
    assert isinstance(report, bytes) and report
    decoded, rest = decoder.decode(report, asn1Spec=SNMPv3Message())
    parameters, _ = decoder.decode(bytes(decoded[2]), asn1Spec=UsmSecurityParameters())
    assert rest == b"" and bytes(decoded[1][2]) == b"\x00"  # noAuthNoPriv, not reportable
    assert (bytes(parameters[0]), int(parameters[1]), int(parameters[2])) == (ENGINE_ID, 7, 0)
    pdu = decoded[3].getComponent()[2].getComponent()
    assert int(v2c.apiPDU.get_request_id(pdu)) == 4242  # the request's
    [(name, value)] = v2c.apiPDU.get_varbinds(pdu)
    assert tuple(name) == USM_STATS + (UNKNOWN_ENGINE_IDS, 0) and value == 1
    assert value.tagSet == rfc1902.Counter32.tagSet
    assert counts.usm[UNKNOWN_ENGINE_IDS] == 1


def test_privacy_without_authentication_is_dropped_and_counted_as_an_invalid_message() -> None:
    counts = FastCounts()
    assert front(counts).open(message(ENGINE_ID, b"nms", 0x06), "127.0.0.1") == b""
    assert counts.invalid_msgs == 1


def test_messages_about_another_engine_that_ask_for_no_report_are_pysnmps() -> None:
    """The responses and reports to the agent's own informs come from the receiver's engine."""
    assert front().open(message(bytes.fromhex("8000000001"), b"nms", 0x01), "127.0.0.1") is None


def test_a_request_asking_for_no_report_is_counted_and_dropped() -> None:
    counts = FastCounts()
    assert front(counts).open(message(ENGINE_ID, b"nobody", 0x01), "127.0.0.1") == b""
    assert counts.usm[3] == 1  # usmStatsUnknownUserNames


def test_what_the_strict_reader_does_not_read_is_pysnmps() -> None:
    plain = message(b"", b"", 0x04)
    long_form = b"\x30\x81" + bytes((plain[1],)) + plain[2:]  # the same, its length in the long form
    assert read_message(plain).msg_id == 77
    assert front().open(long_form, "127.0.0.1") is None
    assert front().open(plain + b"\x00", "127.0.0.1") is None
