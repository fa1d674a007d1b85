"""The fast path: GET, GETNEXT and GETBULK answered from pre-encoded varbinds, without pysnmp.

pysnmp's message pipeline costs ~0.6 ms per request and ~70 µs per varbind (stack notes, "SNMP
agent: measured speed"): it builds pyasn1 objects for every varbind and BER-encodes them again for
every answer. Here the request is read by a strict reader (gateway.snmp.ber), each served OID's
varbind is encoded once per value change (`OidIndex.varbind`), and the answer is their
concatenation in a response envelope, with the same lookups (`OidIndex`) and the same GETBULK
limits (`BulkLimits`) as pysnmp's path.

SNMPv1 and v2c: only requests with the read or write community are answered here (both read the
whole tree); a request in this shape (or an SNMPv1 GET or GETNEXT) with any other community is
counted as pysnmp counts it (snmpInBadCommunityNames), reported once a minute, and dropped; with
snmp.v2c false, every v1 and v2c message is dropped and counted in snmpInBadVersions.
SNMPv3: the USM (gateway.snmp.usm) checks every request first, reports what it refuses, and hands
over the plaintext of the others; those in the default context in this shape are answered at
their security level, a request for another context gets a snmpUnknownContexts Report.
Anything else (SET, SNMPv1 with a community, an odd encoding, an answer that would not fit one
datagram) returns None and goes to pysnmp unchanged, which keeps SET and notifications.
tests/snmp/test_fast.py shows the answers byte-identical to pysnmp's (for v3: the same to net-snmp).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from pyasn1.codec.ber import encoder
from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import rfc1905

from gateway.logging import DropReport, peer_events
from gateway.snmp import ber
from gateway.snmp.controller import BulkLimits, CacheController
from gateway.snmp.engine import max_message_size
from gateway.snmp.index import Oid, OidIndex
from gateway.snmp.readers import UNKNOWN_CONTEXTS, FastCounts, engine_counter
from gateway.snmp.usm import Opened, Usm

V1, V2C, V3 = 0, 1, 3
GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
_KINDS = {V1: (GET, GETNEXT), V2C: (GET, GETNEXT, GETBULK)}
_VERSION = ber.tlv(ber.INTEGER, bytes((V2C,)))
_NO_ERROR = ber.tlv(ber.INTEGER, b"\x00") * 2  # error-status, error-index
_NULL = ber.tlv(ber.NULL, b"")
UNKNOWN_CONTEXT = peer_events("snmpv3 requests for an unknown context")
_END_OF_VIEW = encoder.encode(rfc1905.endOfMibView)
# By identity: pyasn1 finds the two equal (both NULL).
_EXCEPTIONS = {id(exception): encoder.encode(exception) for exception in (rfc1905.noSuchObject, rfc1905.noSuchInstance)}


@dataclass(frozen=True, slots=True)
class Pdu:
    kind: int  # GET, GETNEXT or GETBULK
    request_id: bytes  # its content, repeated in the response
    first: int  # error-status, or non-repeaters
    second: int  # error-index, or max-repetitions
    names: list[bytes]  # the BER content of each varbind's OID
    oids: list[Oid]  # the same, decoded


@dataclass(frozen=True, slots=True)
class Request:
    """An SNMPv1 or v2c request."""

    version: int
    community: bytes
    pdu: Pdu


def version_of(data: bytes) -> int | None:
    """The version of a message (0: SNMPv1, 1: v2c, 3: v3), None if it does not start as one."""
    try:
        start, _ = ber.header(data, 0, ber.SEQUENCE)
        return ber.unsigned(data, start)[0]
    except (ber.Unusual, IndexError):
        return None


def read_request(data: bytes) -> Request:
    """A v2c GET, GETNEXT or GETBULK message (or v1 GET or GETNEXT) with NULL values; `ber.Unusual` for
    anything else."""
    try:
        start, end = ber.header(data, 0, ber.SEQUENCE)
        version, at = ber.unsigned(data, start)
        community_start, at = ber.header(data, at, ber.OCTET_STRING)
        community = data[community_start:at]
        if end != len(data) or data[at] not in _KINDS.get(version, ()):
            raise ber.Unusual
    except IndexError:
        raise ber.Unusual from None
    return Request(version, community, read_pdu(data, at))


def read_context(scoped: bytes) -> tuple[bytes, bytes, int]:
    """(contextEngineID, contextName, where the PDU starts) of a plaintext ScopedPDU."""
    try:
        start, end = ber.header(scoped, 0, ber.SEQUENCE)
        engine_start, at = ber.header(scoped, start, ber.OCTET_STRING)
        name_start, pdu_at = ber.header(scoped, at, ber.OCTET_STRING)
        if end != len(scoped) or pdu_at >= end:
            raise ber.Unusual
    except IndexError:
        raise ber.Unusual from None
    return scoped[engine_start:at], scoped[name_start:pdu_at], pdu_at


def read_pdu(data: bytes, at: int) -> Pdu:
    """The PDU at ``at``, which ends the message; `ber.Unusual` unless its values are NULL."""
    try:
        kind = data[at]
        pdu_start, end = ber.header(data, at, kind)
        request_id, at = ber.request_id(data, pdu_start)
        first, at = ber.unsigned(data, at)
        second, at = ber.unsigned(data, at)
        at, list_end = ber.header(data, at, ber.SEQUENCE)
        if end != len(data) or list_end != end:
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
    return Pdu(kind, request_id, first, second, names, [ber.oid(name) for name in names])


class FastResponder:
    def __init__(
        self,
        engine: SnmpEngine,
        controller: CacheController,
        communities: Iterable[str] | None,
        usm: Usm,
        limits: BulkLimits,
        counts: FastCounts,
    ) -> None:
        self._controller = controller  # its index is swapped when a meter is found later
        self.limits = limits
        # None: SNMPv1 and v2c are off (snmp.v2c)
        self.communities = None if communities is None else frozenset(c.encode() for c in communities)
        self.usm = usm
        self.counts = counts
        self.bad_communities = DropReport("snmp requests with an unknown community")
        self.bad_versions = DropReport("snmp v1 and v2c requests while snmp.v2c is false")
        self._unknown_contexts = engine_counter(
            engine, "__SNMP-TARGET-MIB", "snmpUnknownContexts", lambda: counts.unknown_contexts
        )
        self.max_message = max_message_size(engine)

    @property
    def index(self) -> OidIndex:
        return self._controller.index

    def answer(self, data: bytes, source: str) -> bytes | None:
        """The response to send (b"": none, the request is dropped), or None: pysnmp's to answer."""
        version = version_of(data)
        if version == V3:
            return self._answer_v3(data, source)
        if self.communities is None and version in (V1, V2C):
            self.counts.in_packets += 1
            self.counts.bad_versions += 1  # RFC 3412 7.2.2
            self.bad_versions.drop(source, f"version {version}")
            return b""
        return self._answer_v2c(data, source)

    def _answer_v2c(self, data: bytes, source: str) -> bytes | None:
        try:
            request = read_request(data)
        except ber.Unusual:
            return None
        counts = self.counts
        counts.in_packets += 1  # on arrival, as pysnmp counts: a GET of snmpInPkts includes itself
        if self.communities is None or request.community not in self.communities:
            counts.bad_community_names += 1
            self.bad_communities.drop(source, "unknown community")
            return b""
        varbinds = self._varbinds(request.pdu, len(data)) if request.version == V2C else []
        if varbinds:
            response = ber.tlv(
                ber.SEQUENCE,
                _VERSION + ber.tlv(ber.OCTET_STRING, request.community) + _response(request.pdu, varbinds),
            )
            if len(response) <= self.max_message:
                return response
        counts.in_packets -= 1  # pysnmp answers (SNMPv1 refused, genErr, tooBig) and counts it itself
        return None

    def _answer_v3(self, data: bytes, source: str) -> bytes | None:
        """A request the USM opens, answered at its security level; a Report for one it refuses."""
        opened = self.usm.open(data, source)
        if opened is None:
            return None
        self.counts.in_packets += 1
        if not isinstance(opened, Opened):
            return opened
        try:
            context_engine_id, context_name, pdu_at = read_context(opened.scoped)
        except ber.Unusual:
            context_engine_id, context_name, pdu_at = b"", b"", 0
        if context_engine_id == self.usm.engine_id and context_name:  # the agent serves "" alone
            self.counts.unknown_contexts += 1
            UNKNOWN_CONTEXT.count(source, repr(context_name)[1:])
            return self.usm.report(opened, UNKNOWN_CONTEXTS + (0,), self._unknown_contexts())
        pdu = None
        if context_engine_id == self.usm.engine_id and opened.scoped[pdu_at] in _KINDS[V2C]:
            with contextlib.suppress(ber.Unusual):
                pdu = read_pdu(opened.scoped, pdu_at)
        if pdu is not None:
            varbinds = self._varbinds(pdu, len(data))
            if varbinds:
                response = self.usm.seal(opened, _response(pdu, varbinds))
                if len(response) <= min(self.max_message, opened.message.max_size):
                    return response
        self.counts.in_packets -= 1  # pysnmp answers (SET, tooBig, ...) and counts it itself
        return None

    def _varbinds(self, pdu: Pdu, size: int) -> list[bytes]:
        if pdu.kind == GET:
            return [self._get(name, oid) for name, oid in zip(pdu.names, pdu.oids)]
        if pdu.kind == GETNEXT:
            return [self._next(name, oid) for name, oid in zip(pdu.names, pdu.oids)]
        return self._bulk(pdu, size)

    def _get(self, name: bytes, oid: Oid) -> bytes:
        index = self.index
        at = index.position(oid)
        if at is not None and (plain := index.read(at)) is not None:
            return index.varbind(at, plain)
        return ber.tlv(ber.SEQUENCE, ber.tlv(ber.OID, name) + _EXCEPTIONS[id(index.get(oid))])

    def _next(self, name: bytes, oid: Oid) -> bytes:
        index = self.index
        served = index.next_served(index.position_after(oid))
        if served is None:
            return ber.tlv(ber.SEQUENCE, ber.tlv(ber.OID, name) + _END_OF_VIEW)
        return index.varbind(*served)

    def _bulk(self, pdu: Pdu, size: int) -> list[bytes]:
        index, limits = self.index, self.limits
        names, oids = pdu.names, pdu.oids
        non_repeaters, repetitions = limits.plan(pdu.first, pdu.second, len(names))
        varbinds = [self._next(name, oid) for name, oid in zip(names[:non_repeaters], oids)]
        repeaters = names[non_repeaters:]
        last: list[int | None] = [None] * len(repeaters)  # each column's latest position served
        for column, served in index.bulk([index.position_after(oid) for oid in oids[non_repeaters:]], repetitions):
            if served is None:  # endOfMibView, named as the column's latest name
                latest = last[column]
                name = ber.tlv(ber.OID, repeaters[column]) if latest is None else index.name_ber(latest)
                varbinds.append(ber.tlv(ber.SEQUENCE, name + _END_OF_VIEW))
            else:
                varbinds.append(index.varbind(*served))
                last[column] = served[0]
        varbinds = varbinds[: limits.max_varbinds]
        return varbinds[: limits.fitting(map(len, varbinds), size)]


def _response(pdu: Pdu, varbinds: list[bytes]) -> bytes:
    """The Response PDU to ``pdu`` with these varbinds."""
    return ber.tlv(
        RESPONSE, ber.tlv(ber.INTEGER, pdu.request_id) + _NO_ERROR + ber.tlv(ber.SEQUENCE, b"".join(varbinds))
    )
