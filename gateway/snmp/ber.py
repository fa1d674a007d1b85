"""The little BER the fast path needs: reading the one request shape it serves, framing its answer.

pyasn1 takes ~190 µs to decode a one-varbind request against pysnmp's message spec, more than
net-snmp's snmpd needs for a whole round trip; this reader takes a few µs. It is strict: anything
it does not read exactly as pyasn1 would (indefinite or over-long lengths, non-minimal integers,
non-canonical OIDs, trailing bytes) raises `Unusual`, and the request goes to pysnmp unchanged.
Values and OIDs are still encoded by pyasn1 (once per value change: gateway.snmp.index); here only
tags and lengths are written around them.
"""

from __future__ import annotations

Oid = tuple[int, ...]

INTEGER, OCTET_STRING, NULL, OID, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30


class Unusual(Exception):
    """Not the plain shape the fast path reads: pysnmp decides."""


def header(data: bytes, at: int, tag: int) -> tuple[int, int]:
    """(start, end) of the content of the element at ``at``, which must have ``tag``."""
    if data[at] != tag:
        raise Unusual
    length = data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        # Long form only where the short one cannot say it, and below 16 MB: as pyasn1 writes it.
        if not 1 <= count <= 3 or data[at] == 0:
            raise Unusual
        length = int.from_bytes(data[at : at + count], "big")
        if length < 0x80:
            raise Unusual
        at += count
    end = at + length
    if end > len(data):
        raise Unusual
    return at, end


def unsigned(data: bytes, at: int) -> tuple[int, int]:
    """(value, end) of a minimal INTEGER of 0 to 2^31 - 1."""
    start, end = header(data, at, INTEGER)
    content = data[start:end]
    if (
        not 1 <= len(content) <= 4
        or content[0] & 0x80
        or (len(content) > 1 and content[0] == 0 and not content[1] & 0x80)
    ):
        raise Unusual
    return int.from_bytes(content, "big"), end


def request_id(data: bytes, at: int) -> tuple[bytes, int]:
    """(content, end) of a minimal Integer32, kept encoded: the response repeats it."""
    start, end = header(data, at, INTEGER)
    content = data[start:end]
    if not 1 <= len(content) <= 4 or (len(content) > 1 and (content[0], content[1] & 0x80) in ((0, 0), (0xFF, 0x80))):
        raise Unusual
    return content, end


def oid(content: bytes) -> Oid:
    """The OID of canonical BER content (as pyasn1 decodes it)."""
    arcs: list[int] = []
    value = 0
    for byte in content:
        if byte == 0x80 and value == 0:  # a sub-identifier padded with a leading zero group
            raise Unusual
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or content[-1] & 0x80:
        raise Unusual
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return head + tuple(arcs[1:])


def length(size: int) -> bytes:
    """A BER length, in the shortest form (as pyasn1 writes it)."""
    if size < 0x80:
        return bytes((size,))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content
