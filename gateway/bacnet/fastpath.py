"""The fast path: every datagram the router takes in passes here (after the fair shares) before bacpypes3.

    fast_path = FastPath(network=50, applications={1: app1, 2: app2}, limits=limits, fast_reads=True)
    fast_path.install(socket)   # the router's BACnet/IP socket (`stack.IpSocket`), once open

First the request limits (`limits.py`): a confirmed request beyond them is answered Abort (or
dropped) here and never reaches bacpypes3. Then the fast read path: a ReadProperty or
ReadPropertyMultiple sent straight to a node (Original-Unicast-NPDU routed to the virtual network,
not segmented) whose every object is a meter object of that node and every property one of
`reads.SERVED`, without array index, is answered here from the node's encodings
(`reads.MeterEncodings`) when the answer fits the client's max APDU unsegmented: the same bytes
the full stack would send, without decoding, routing, the transaction state machine or building
the object. The request body is decoded by bacpypes3 once per distinct body (at most
`MAX_PLANS` kept): a BMS polls the same requests over and over. Anything else (another service,
an unknown object or property, an array index, a device that DeviceCommunicationControl silenced,
an answer that needs segments, a body bacpypes3 cannot decode) goes to bacpypes3 unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Protocol

from bacpypes3.apdu import AbortPDU, APCISequence, ConfirmedRequestPDU, ConfirmedServiceChoice
from bacpypes3.apdu import decode_max_apdu_length_accepted as max_apdu_of
from bacpypes3.basetypes import PropertyIdentifier, ReadAccessSpecification
from bacpypes3.primitivedata import ObjectIdentifier

from gateway.bacnet.limits import RequestLimits, Verdict
from gateway.bacnet.reads import SERVED, MeterEncodings, read_access_result, read_property_body
from gateway.bacnet.stack import COMPLEX_ACK_HEADER, IpSocket
from gateway.logging import DropReport

__all__ = ["MAX_PLANS", "FastPath"]

MAX_PLANS = 256  # distinct request bodies kept decoded
BVLL_TYPE, BVLL_ORIGINAL_UNICAST = 0x81, 0x0A
#: Where the NPDU starts in the BVLL messages that carry one: Original-Unicast, Original-Broadcast,
#: Distribute-Broadcast-To-Network, and Forwarded-NPDU (after the original source's address).
_NPDU_AT = {BVLL_ORIGINAL_UNICAST: 4, 0x0B: 4, 0x09: 4, 0x04: 10}
NPDU_VERSION = 1
CONFIRMED_REQUEST, COMPLEX_ACK = 0x00, 0x30
READ_PROPERTY = ConfirmedServiceChoice.readProperty
READ_PROPERTY_MULTIPLE = ConfirmedServiceChoice.readPropertyMultiple
MAX_APDU_CODES = 6  # 50 .. 1476 bytes; other codes are invalid

Properties = tuple[tuple[PropertyIdentifier, int | None], ...]
Plan = tuple[tuple[tuple[int, int], Properties], ...]  # (object type, instance), its properties


class NodeReads(Protocol):
    """What the fast path needs of a node's application (`NodeApplication`)."""

    def read_encodings(self) -> MeterEncodings: ...

    def answers_requests(self) -> bool: ...


class FastPath:
    """The request limits and the fast reads in front of bacpypes3, with their counters."""

    def __init__(
        self, network: int, applications: Mapping[int, NodeReads], limits: RequestLimits, fast_reads: bool
    ) -> None:
        self._network = network
        self._applications = applications  # node MAC (Modbus address) -> its application
        self.limits = limits
        self.fast_reads = fast_reads
        self.answered: Counter[str] = Counter()  # "fast", "full" (passed to bacpypes3)
        self.failed = DropReport("bacnet fast reads that failed (answered by the full stack)")
        self.installed = False  # until the BACnet/IP socket is open
        self._plans: dict[tuple[int, bytes], Plan | None] = {}

    def install(self, socket: IpSocket) -> None:
        """Look at every datagram the socket takes in (after the fair shares, `shares.py`) before
        the rest of bacpypes3 does; answers go out of its unicast socket, as bacpypes3's do."""
        socket.take_in_with(self.reply)
        self.installed = True

    def reply(self, data: bytes, source: tuple[str, int], unicast: bool = True) -> bytes | None:
        """The answer to send (b"" to drop the datagram), or None for bacpypes3 to handle it. Only
        an Original-Unicast-NPDU to this socket gets an answer here; a request over the limits in
        any other BVLL message (broadcast, forwarded) is dropped."""
        envelope = _envelope(data)
        if envelope is None:
            return None
        direct, destination, offset = envelope
        direct = direct and unicast
        apdu = memoryview(data)[offset:]
        if len(apdu) < 4 or apdu[0] >> 4 != CONFIRMED_REQUEST >> 4:
            return None
        verdict = self.limits.confirmed(apdu, source, destination)
        if verdict == Verdict.DROP:
            return b""
        if verdict != Verdict.PASS:
            if not direct or not self._answers_for(destination):
                return b""
            return _reply(destination, bytes(AbortPDU(True, apdu[2], str(verdict)).encode().pduData))
        try:
            answer = self._fast(destination, apdu) if self.fast_reads and direct else None
        except Exception as error:  # a gap in the fast path must never cost the answer
            self.failed.drop(f"{source[0]}:{source[1]}", repr(error))
            answer = None
        if answer is None:
            self.answered["full"] += 1
            return None
        self.answered["fast"] += 1
        return _reply(destination, answer)

    def _answers_for(self, destination: tuple[int, bytes] | None) -> bool:
        """Whether the gateway answers for that destination: the router, or one of its nodes."""
        return destination is None or self._node(destination) is not None

    def _node(self, destination: tuple[int, bytes] | None) -> NodeReads | None:
        if destination is None or destination[0] != self._network or len(destination[1]) != 1:
            return None
        return self._applications.get(destination[1][0])

    def _fast(self, destination: tuple[int, bytes] | None, apdu: memoryview) -> bytes | None:
        flags, limits, invoke, service = apdu[0] & 0x0F, apdu[1], apdu[2], apdu[3]
        if (
            flags & ~0x02
            or limits & 0x0F >= MAX_APDU_CODES  # only "segmented answer accepted"
            or service not in (READ_PROPERTY, READ_PROPERTY_MULTIPLE)
        ):
            return None
        app = self._node(destination)
        if app is None or not app.answers_requests():
            return None
        encodings = app.read_encodings()
        plan = self._plan(service, bytes(apdu[4:]))
        if plan is None or not all(encodings.serves(objid, properties) for objid, properties in plan):
            return None
        if service == READ_PROPERTY:
            ((objid, ((prop, _),)),) = plan
            body = read_property_body(encodings, objid, prop)
        else:
            body = b"".join(read_access_result(encodings, objid, properties) for objid, properties in plan)
        if COMPLEX_ACK_HEADER + len(body) > max_apdu_of(limits & 0x0F):
            return None  # the full stack segments it, or aborts
        return bytes((COMPLEX_ACK, invoke, service)) + body

    def _plan(self, service: int, body: bytes) -> Plan | None:
        key = (service, body)
        if key in self._plans:
            return self._plans[key]
        plan = _decoded(service, body)
        if len(self._plans) >= MAX_PLANS:
            del self._plans[next(iter(self._plans))]
        self._plans[key] = plan
        return plan


def _decoded(service: int, body: bytes) -> Plan | None:
    """What a ReadProperty or ReadPropertyMultiple asks for, decoded by bacpypes3."""
    pdu = ConfirmedRequestPDU(service, 0)
    pdu.put_data(body)
    try:
        request = APCISequence.decode(pdu)
    except Exception:  # noqa: BLE001 - any body bacpypes3 cannot decode goes to the full stack
        return None
    if service == READ_PROPERTY:
        return (
            (_object(request.objectIdentifier), ((_property(request.propertyIdentifier), request.propertyArrayIndex),)),
        )
    lists: dict[Properties, Properties] = {}  # one of each list of properties the request names

    def named(spec: ReadAccessSpecification) -> Properties:
        properties = tuple(
            (_property(ref.propertyIdentifier), ref.propertyArrayIndex) for ref in spec.listOfPropertyReferences
        )
        return lists.setdefault(properties, properties)

    return tuple((_object(spec.objectIdentifier), named(spec)) for spec in request.listOfReadAccessSpecs)


# A plan is kept while its request is polled: it holds plain numbers where it can (equal to, and
# hashed as, bacpypes3's identifiers; a tenth of their size), the served properties' own
# identifiers rather than the objects bacpypes3 decoded, and each list of properties once (an RPM
# names the same few for every object).
_SERVED = {prop: prop for prop in SERVED}


def _object(objid: ObjectIdentifier) -> tuple[int, int]:
    object_type, instance = objid
    return int(object_type), int(instance)


def _property(prop: PropertyIdentifier) -> PropertyIdentifier:
    return _SERVED.get(prop, prop)


def _envelope(data: bytes) -> tuple[bool, tuple[int, bytes] | None, int] | None:
    """Of a BVLL message carrying an NPDU straight from its client (no source network): whether it
    is an Original-Unicast-NPDU, its network destination (None: this device) and where its APDU
    starts; None for anything else."""
    npdu = _NPDU_AT.get(data[1]) if len(data) >= 4 and data[0] == BVLL_TYPE else None
    if npdu is None or int.from_bytes(data[2:4]) != len(data) or len(data) < npdu + 2:
        return None
    version, control = data[npdu], data[npdu + 1]
    if version != NPDU_VERSION or control & 0xDB:  # a network message, a source network, a priority
        return None
    direct = data[1] == BVLL_ORIGINAL_UNICAST
    if not control & 0x20:
        return direct, None, npdu + 2
    length = data[npdu + 4] if len(data) > npdu + 4 else None
    if length is None or len(data) < npdu + 6 + length:
        return None
    address = bytes(data[npdu + 5 : npdu + 5 + length])
    return direct, (int.from_bytes(data[npdu + 2 : npdu + 4]), address), npdu + 6 + length  # after the hop count


def _reply(destination: tuple[int, bytes] | None, apdu: bytes) -> bytes:
    """A BVLL/NPDU around an answer from `destination` (a node: source network and address)."""
    npdu = (
        b"\x01\x00"
        if destination is None
        else (b"\x01\x08" + destination[0].to_bytes(2) + bytes((len(destination[1]),)) + destination[1])
    )
    return bytes((BVLL_TYPE, BVLL_ORIGINAL_UNICAST)) + (4 + len(npdu) + len(apdu)).to_bytes(2) + npdu + apdu
