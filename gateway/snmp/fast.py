"""The fast path: v2c GET, GETNEXT and GETBULK answered from pre-encoded varbinds, without pysnmp.

pysnmp's message pipeline costs ~0.6 ms per request and ~70 µs per varbind (stack notes, "SNMP
agent: measured speed"): it builds pyasn1 objects for every varbind and BER-encodes them again for
every answer. Here the request is read by a strict reader (gateway.snmp.ber), each served OID's
varbind is encoded once per value change (`OidIndex.varbind`), and the answer is their
concatenation in a response envelope, with the same lookups (`OidIndex`) and the same GETBULK
limits (`BulkLimits`) as pysnmp's path.

Only requests with the read or write community are answered here (both read the whole tree); a
request in this shape (or an SNMPv1 GET or GETNEXT) with any other community is counted as pysnmp
counts it (snmpInBadCommunityNames), reported once a minute, and dropped. Anything else (SET,
SNMPv1 with a community, an odd encoding, an answer that would not fit one datagram) returns None
and goes to pysnmp unchanged, which keeps security, SET and notifications.
tests/snmp/test_fast.py shows the answers byte-identical to pysnmp's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyasn1.codec.ber import encoder
from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import rfc1905

from gateway.logging import DropReport
from gateway.snmp import ber
from gateway.snmp.controller import BulkLimits, CacheController
from gateway.snmp.index import Oid, OidIndex
from gateway.snmp.readers import FastCounts

V1, V2C = 0, 1
GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
_KINDS = {V1: (GET, GETNEXT), V2C: (GET, GETNEXT, GETBULK)}
_VERSION = ber.tlv(ber.INTEGER, bytes((V2C,)))
_NO_ERROR = ber.tlv(ber.INTEGER, b"\x00") * 2  # error-status, error-index
_NULL = ber.tlv(ber.NULL, b"")
_END_OF_VIEW = encoder.encode(rfc1905.endOfMibView)
# By identity: pyasn1 finds the two equal (both NULL).
_EXCEPTIONS = {id(exception): encoder.encode(exception) for exception in (rfc1905.noSuchObject, rfc1905.noSuchInstance)}


@dataclass(frozen=True, slots=True)
class Request:
    version: int
    community: bytes
    kind: int  # GET, GETNEXT or GETBULK
    request_id: bytes  # its content, repeated in the response
    first: int  # error-status, or non-repeaters
    second: int  # error-index, or max-repetitions
    names: list[bytes]  # the BER content of each varbind's OID
    oids: list[Oid]  # the same, decoded


def read_request(data: bytes) -> Request:
    """A v2c GET, GETNEXT or GETBULK message (or v1 GET or GETNEXT) with NULL values; `ber.Unusual` for
    anything else."""
    try:
        start, end = ber.header(data, 0, ber.SEQUENCE)
        version, at = ber.unsigned(data, start)
        community_start, at = ber.header(data, at, ber.OCTET_STRING)
        community = data[community_start:at]
        kind = data[at]
        if end != len(data) or kind not in _KINDS.get(version, ()):
            raise ber.Unusual
        pdu_start, pdu_end = ber.header(data, at, kind)
        request_id, at = ber.request_id(data, pdu_start)
        first, at = ber.unsigned(data, at)
        second, at = ber.unsigned(data, at)
        at, list_end = ber.header(data, at, ber.SEQUENCE)
        if pdu_end != end or list_end != end:
            raise ber.Unusual
        names = []
        while at < end:
            bind_start, bind_end = ber.header(data, at, ber.SEQUENCE)
            name_start, name_end = ber.header(data, bind_start, ber.OID)
            if bind_end > end or data[name_end:bind_end] != _NULL:
                raise ber.Unusual
            names.append(data[name_start:name_end])
            at = bind_end
    except IndexError:
        raise ber.Unusual from None
    if not names:
        raise ber.Unusual
    return Request(version, community, kind, request_id, first, second, names, [ber.oid(name) for name in names])


class FastResponder:
    def __init__(
        self,
        engine: SnmpEngine,
        controller: CacheController,
        communities: Iterable[str],
        limits: BulkLimits,
        counts: FastCounts,
    ) -> None:
        self._controller = controller  # its index is swapped when a meter is found later
        self.limits = limits
        self.communities = frozenset(community.encode() for community in communities)
        self.counts = counts
        self.bad_communities = DropReport("snmp requests with an unknown community")
        (max_size,) = engine.get_mib_builder().import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineMaxMessageSize")
        self.max_message = int(max_size.syntax)

    @property
    def index(self) -> OidIndex:
        return self._controller.index

    def answer(self, data: bytes, source: str) -> bytes | None:
        """The response to send (b"": none, the request is dropped), or None: pysnmp's to answer."""
        try:
            request = read_request(data)
        except ber.Unusual:
            return None
        counts = self.counts
        counts.in_packets += 1  # on arrival, as pysnmp counts: a GET of snmpInPkts includes itself
        if request.community not in self.communities:
            counts.bad_community_names += 1
            self.bad_communities.drop(source, "unknown community")
            return b""
        varbinds = self._varbinds(request, len(data)) if request.version == V2C else []
        if varbinds:
            pdu = ber.tlv(ber.INTEGER, request.request_id) + _NO_ERROR + ber.tlv(ber.SEQUENCE, b"".join(varbinds))
            response = ber.tlv(
                ber.SEQUENCE, _VERSION + ber.tlv(ber.OCTET_STRING, request.community) + ber.tlv(RESPONSE, pdu)
            )
            if len(response) <= self.max_message:
                return response
        counts.in_packets -= 1  # pysnmp answers (SNMPv1 refused, genErr, tooBig) and counts it itself
        return None

    def _varbinds(self, request: Request, size: int) -> list[bytes]:
        if request.kind == GET:
            return [self._get(name, oid) for name, oid in zip(request.names, request.oids)]
        if request.kind == GETNEXT:
            return [self._next(name, oid) for name, oid in zip(request.names, request.oids)]
        return self._bulk(request, size)

    def _get(self, name: bytes, oid: Oid) -> bytes:
        index = self.index
        at = index.position(oid)
        if at is not None and index.read(at) is not None:
            return index.varbind(at)
        return ber.tlv(ber.SEQUENCE, ber.tlv(ber.OID, name) + _EXCEPTIONS[id(index.get(oid))])

    def _next(self, name: bytes, oid: Oid) -> bytes:
        index = self.index
        at = index.next_served(index.position_after(oid))
        if at is None:
            return ber.tlv(ber.SEQUENCE, ber.tlv(ber.OID, name) + _END_OF_VIEW)
        return index.varbind(at)

    def _bulk(self, request: Request, size: int) -> list[bytes]:
        index, limits = self.index, self.limits
        names, oids = request.names, request.oids
        non_repeaters, repetitions = limits.plan(request.first, request.second, len(names))
        varbinds = [self._next(name, oid) for name, oid in zip(names[:non_repeaters], oids)]
        repeaters = names[non_repeaters:]
        last: list[int | None] = [None] * len(repeaters)  # each column's latest position served
        for column, at in index.bulk([index.position_after(oid) for oid in oids[non_repeaters:]], repetitions):
            if at is None:  # endOfMibView, named as the column's latest name
                latest = last[column]
                name = ber.tlv(ber.OID, repeaters[column]) if latest is None else index.name_ber(latest)
                varbinds.append(ber.tlv(ber.SEQUENCE, name + _END_OF_VIEW))
            else:
                varbinds.append(index.varbind(at))
                last[column] = at
        varbinds = varbinds[: limits.max_varbinds]
        return varbinds[: limits.fitting(map(len, varbinds), size)]
