"""Requests built once as bytes, for benchmarks that send many: BACnet/IP datagrams (BVLL, NPDU,
APDU), SNMP v2c messages (encoded by pysnmp/pyasn1) and Modbus TCP frames, and the checks that
tell an answer from something else. Nothing here opens a socket beyond 127.0.0.1.

    rpm = bvll(routed(50, 1) + read_property_multiple(7, [("analog-input", 1336)], [85, 111]))
    get = snmp_message("get", SYS_DESCR, "public", request_id=7)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "OBJECT_TYPES",
    "SYS_DESCR",
    "bvll",
    "invoke_id_of",
    "is_complex_ack",
    "modbus_read",
    "object_id",
    "read_property",
    "read_property_multiple",
    "routed",
    "snmp_message",
    "snmp_request_id",
    "unrouted",
]

OBJECT_TYPES = {"analog-input": 0, "analog-value": 2, "device": 8}
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
PRESENT_VALUE, STATUS_FLAGS, OBJECT_NAME = 85, 111, 77


# --- BACnet/IP ----------------------------------------------------------------------------------


def bvll(npdu: bytes, function: int = 0x0A) -> bytes:
    """A BACnet/IP datagram: Original-Unicast-NPDU (or `function`) around an NPDU."""
    return bytes([0x81, function]) + struct.pack(">H", 4 + len(npdu)) + npdu


def unrouted(apdu: bytes, expecting_reply: bool = True) -> bytes:
    return bytes([0x01, 0x04 if expecting_reply else 0x00]) + apdu


def routed(network: int, mac: int, apdu: bytes) -> bytes:
    """An NPDU to station `mac` of `network` (DNET, DLEN 1, DADR, hop count), expecting a reply."""
    return bytes([0x01, 0x24]) + struct.pack(">HBBB", network, 1, mac, 0xFF) + apdu


def object_id(object_type: str, instance: int) -> bytes:
    return struct.pack(">I", (OBJECT_TYPES[object_type] << 22) | instance)


def _context(tag: int, data: bytes) -> bytes:
    return bytes([(tag << 4) | 0x08 | len(data)]) + data


def _confirmed(invoke_id: int, service: int, body: bytes, segmented_response: bool = False) -> bytes:
    # max segments 64 and max APDU 1476 accepted when a segmented response is accepted
    return (
        bytes([0x02 if segmented_response else 0x00, 0x65 if segmented_response else 0x05, invoke_id & 0xFF, service])
        + body
    )


def read_property(invoke_id: int, object_type: str, instance: int, prop: int = PRESENT_VALUE) -> bytes:
    return _confirmed(invoke_id, 0x0C, _context(0, object_id(object_type, instance)) + _context(1, bytes([prop])))


def read_property_multiple(
    invoke_id: int, objects: Iterable[tuple[str, int]], props: Sequence[int], segmented_response: bool = False
) -> bytes:
    specs = b"".join(
        _context(0, object_id(kind, instance)) + b"\x1e" + b"".join(_context(0, bytes([p])) for p in props) + b"\x1f"
        for kind, instance in objects
    )
    return _confirmed(invoke_id, 0x0E, specs, segmented_response)


def invoke_id_of(datagram: bytes) -> tuple[int, int] | None:
    """(APDU type, invoke ID) of an answer to a confirmed request, past BVLL and NPDU headers."""
    try:
        control, at = datagram[5], 6
        for present in (0x20, 0x08):  # destination, then source specifier
            if control & present:
                at += 3 + datagram[at + 2]
        at += 1 if control & 0x20 else 0  # hop count
        kind = datagram[at] >> 4
        return kind, datagram[at + 1]
    except IndexError:
        return None


def is_complex_ack(datagram: bytes) -> bool:
    head = invoke_id_of(datagram)
    return head is not None and head[0] == 3


# --- SNMP ---------------------------------------------------------------------------------------


def snmp_message(
    kind: str, oid: tuple[int, ...], community: str, request_id: int, repetitions: int | None = None
) -> bytes:
    """An SNMP v2c GET, GETNEXT or GETBULK of one OID."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu: Any = {"get": v2c.GetRequestPDU, "getnext": v2c.GetNextRequestPDU, "getbulk": v2c.GetBulkRequestPDU}[kind]()
    api_pdu = v2c.apiBulkPDU if kind == "getbulk" else v2c.apiPDU
    api_pdu.set_defaults(pdu)
    api_pdu.set_request_id(pdu, request_id)
    if repetitions is not None:
        api_pdu.set_max_repetitions(pdu, repetitions)
    api_pdu.set_varbinds(pdu, [(oid, v2c.Null(""))])
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, community)
    v2c.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def snmp_request_id(datagram: bytes) -> int | None:
    """The request ID of a v2c response, or None if it is not one."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    try:
        message, _ = decoder.decode(datagram, asn1Spec=v2c.Message())
        pdu = v2c.apiMessage.get_pdu(message)
        if not pdu.isSameTypeWith(v2c.ResponsePDU()) or int(v2c.apiPDU.get_error_status(pdu)):
            return None
        return int(v2c.apiPDU.get_request_id(pdu))
    except Exception:  # anything that is not a good response
        return None


# --- Modbus TCP ---------------------------------------------------------------------------------


def modbus_read(transaction: int, unit: int, register: int, count: int) -> bytes:
    """FC03 of `count` registers from `register` (1-based, as the point map numbers them)."""
    return struct.pack(">HHHBBHH", transaction & 0xFFFF, 0, 6, unit, 3, register - 1, count)
