"""Reads of meter objects from encodings, and ReadPropertyMultiple with bounded work.

A BMS polls the same few properties of the same objects over and over, and they change at most
once a poll cycle. `MeterEncodings` answers, for the meter objects of a node (its Analog Inputs
and Values, and the resets' Multi-state Values), the properties BMS front-ends poll (`SERVED`, as
far as the object has them) from encodings made by bacpypes3's own encoders from the same state
the object shows (`PointBinding.state`); the object need not be built. What varies per analog
object (Present_Value, COV_Increment) is encoded again only when that state changes, and kept
for the `bacnet.max_encoded_objects` objects read most recently over the gateway
(`KeptEncodings`): a client that reads every object of every node leaves no more behind.
`read_access_result` and `read_property_body` assemble them into the body of an RPM or RP
answer, byte for byte what bacpypes3 would encode.

`BoundedReads` answers ReadPropertyMultiple on every device of the gateway: object by object,
from the encodings where the node serves them (`fast_reads`) and through bacpypes3 otherwise
(the same result elements its own handler builds), yielding to the event loop every
`SLICE_SECONDS`, and aborted as soon as the answer outgrows what the client accepts (its max
APDU times its max segments) instead of after evaluating every object (counted in `TOO_BIG`).
Objects that do not exist are answered unknown-object without building anything; an RPM that
names no existing object is an error, as in bacpypes3.
"""

from __future__ import annotations

import asyncio
import functools
import struct
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from bacpypes3.apdu import (
    AbortPDU,
    AbortReason,
    ComplexAckPDU,
    ConfirmedServiceChoice,
    ReadPropertyMultipleRequest,
    decode_max_apdu_length_accepted,
    decode_max_segments_accepted,
)
from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.errors import ObjectError
from bacpypes3.primitivedata import ClosingTag, ObjectIdentifier, OpeningTag, TagList

from gateway.bacnet.local_objects import READY, MeterInput, MeterReset, MeterValue, PointBinding, reset_reliability
from gateway.bacnet.objects import ObjectSpec
from gateway.bacnet.stack import COMPLEX_ACK_HEADER, SEGMENTED_COMPLEX_ACK_HEADER, StackApplication, status_flags
from gateway.bacnet.stack import read_access_result as full_read_access_result
from gateway.logging import DropReport
from gateway.nodes.api import NodeAPI, NodeView

__all__ = [
    "SERVED",
    "BoundedReads",
    "KeptEncodings",
    "MeterEncodings",
    "answer_budget",
    "read_access_result",
    "read_property_body",
]

#: What BMS front-ends poll: answered from encodings on meter objects.
SERVED = frozenset(
    PropertyIdentifier(name)
    for name in (
        "presentValue",
        "statusFlags",
        "reliability",
        "eventState",
        "outOfService",
        "units",
        "objectName",
        "description",
        "covIncrement",
    )
)
SLICE_SECONDS = 0.01  # the longest an RPM holds the event loop between two yields
UNSPECIFIED_SEGMENTS = 64
TOO_BIG = DropReport("bacnet answers beyond what the client accepts (aborted)")
RPM = ConfirmedServiceChoice.readPropertyMultiple
RESET = "multi-state-value"
_CLASSES: dict[str, Any] = {"analog-input": MeterInput, "analog-value": MeterValue, RESET: MeterReset}
#: The served properties each kind of meter object has (a reset has no Units nor COV_Increment).
_SERVES = {
    kind: SERVED - {PropertyIdentifier.units, PropertyIdentifier.covIncrement} if kind == RESET else SERVED
    for kind in _CLASSES
}


def _bytes(tags: Iterable[Any]) -> bytes:
    return bytes(TagList(list(tags)).encode().pduData)


def _context(number: int, value: Any) -> bytes:
    """A primitive value as context tag `number` (`value` a fresh one: a decoded value keeps the
    context tag it came with)."""
    return _bytes(tag.app_to_context(number) for tag in value.encode())


def _opening(number: int) -> bytes:
    return _bytes([OpeningTag(number)])


def _closing(number: int) -> bytes:
    return _bytes([ClosingTag(number)])


_RESULTS_OPEN, _RESULTS_CLOSE = _opening(1), _closing(1)  # ReadAccessResult.listOfResults
_VALUE_OPEN, _VALUE_CLOSE = _opening(4), _closing(4)  # ReadAccessResultElement.readResult.propertyValue
_RP_VALUE_OPEN, _RP_VALUE_CLOSE = _opening(3), _closing(3)  # ReadPropertyACK.propertyValue


@functools.cache
def _element_head(prop: PropertyIdentifier) -> bytes:
    return _context(2, PropertyIdentifier(prop)) + _VALUE_OPEN


@functools.cache
def _rp_head(prop: PropertyIdentifier) -> bytes:
    return _context(1, PropertyIdentifier(prop)) + _RP_VALUE_OPEN


@functools.cache
def _object_head(objid: ObjectIdentifier) -> bytes:
    return _context(0, ObjectIdentifier(objid))


def _encoded(object_type: str, prop: PropertyIdentifier, value: Any) -> bytes:
    """A property value as bacpypes3 encodes it in a read answer: cast to the property's datatype
    the way the object casts an assignment, application-tagged."""
    datatype = _CLASSES[object_type].get_property_type(prop)
    return _bytes(datatype(datatype.cast(value)).encode())


@functools.cache
def _constant(object_type: str, prop: PropertyIdentifier, value: Any) -> bytes:
    return _encoded(object_type, prop, value)


#: What an analog meter object's kept encodings were made from: Present_Value and COV_Increment.
_ENCODED_FROM = struct.Struct("<dd")


class KeptEncodings:
    """The encodings of Present_Value and COV_Increment of analog meter objects, kept over the
    whole gateway for the `capacity` objects read most recently (the least recently read dropped
    first). An object's is one bytes object under one number (`key`): the values they encode
    (`_ENCODED_FROM`), the length of the first encoding, then both: 177 bytes an object with its
    share of the table, where a record of what it showed and two encodings under a pair took 364."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[int, bytes] = OrderedDict()

    @staticmethod
    def key(node: int, objid: tuple[Any, int]) -> int:
        """The number an object of a node is kept under: the node, then BACnet's object identifier."""
        object_type, instance = objid
        return node << 32 | int(object_type) << 22 | instance

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: int) -> bytes | None:
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
        return kept

    def put(self, key: int, kept: bytes) -> None:
        self._kept[key] = kept
        self._kept.move_to_end(key)
        if len(self._kept) > self.capacity:
            self._kept.popitem(last=False)


class MeterEncodings:
    """The `SERVED` properties of one node's meter objects: what varies per analog object
    (Present_Value, COV_Increment) encoded once per change and kept in `kept`, the encodings
    common to many objects (Reliability, Event_State, Status_Flags among them) shared."""

    def __init__(
        self,
        nodes: NodeAPI,
        node: NodeView,
        specs: dict[ObjectIdentifier, ObjectSpec],
        cov_increments: dict[int, float],
        kept: KeptEncodings,
    ) -> None:
        self._nodes, self._node, self._specs, self._cov_increments = nodes, node, specs, cov_increments
        self._kept = kept

    def serves(self, objid: ObjectIdentifier, properties: Iterable[tuple[PropertyIdentifier, int | None]]) -> bool:
        """Whether these are served properties of a meter object (that it has)."""
        spec = self._specs.get(objid)
        served = _SERVES.get(spec.object_type) if spec is not None else None
        return served is not None and all(prop in served and index is None for prop, index in properties)

    def value(self, objid: ObjectIdentifier, prop: PropertyIdentifier) -> bytes:
        """The application-tagged encoding of a served property of a meter object."""
        spec = self._specs[objid]
        kind = spec.object_type
        if prop == PropertyIdentifier.objectName:
            return _constant(kind, prop, spec.name)
        if prop == PropertyIdentifier.description:  # kept encoded unless a user named the circuit
            text = spec.describe(self._nodes.circuit_names(self._node.address))
            return _constant(kind, prop, text) if text == spec.description else _encoded(kind, prop, text)
        if prop == PropertyIdentifier.units:
            return _constant(kind, prop, spec.units)
        if prop == PropertyIdentifier.outOfService:
            return _constant(kind, prop, False)
        if kind == RESET:
            return _reset_value(prop, reset_reliability(self._node.health.online))
        value, reliability, event = PointBinding(self._nodes, self._node, spec, self._cov_increments).state()
        if prop == PropertyIdentifier.presentValue:
            return self._varying(objid, spec, value)[0]
        if prop == PropertyIdentifier.covIncrement:
            return self._varying(objid, spec, value)[1]
        if prop == PropertyIdentifier.reliability:
            return _constant(kind, prop, reliability)
        if prop == PropertyIdentifier.eventState:
            return _constant(kind, prop, event)
        return _status_flags(kind, reliability, event)

    def _varying(self, objid: ObjectIdentifier, spec: ObjectSpec, value: float) -> tuple[bytes, bytes]:
        """The encodings of Present_Value and COV_Increment of an analog object showing `value`."""
        increment = self._cov_increments.get(spec.point.register, spec.cov_increment)
        encoded_from = _ENCODED_FROM.pack(value, increment)
        key = KeptEncodings.key(self._node.address, objid)
        kept = self._kept.get(key)
        if kept is None or not kept.startswith(encoded_from):
            present_value = _encoded(spec.object_type, PropertyIdentifier.presentValue, value)
            cov_increment = _encoded(spec.object_type, PropertyIdentifier.covIncrement, increment)
            kept = b"".join((encoded_from, bytes((len(present_value),)), present_value, cov_increment))
            self._kept.put(key, kept)
        split = _ENCODED_FROM.size + 1 + kept[_ENCODED_FROM.size]
        return kept[_ENCODED_FROM.size + 1 : split], kept[split:]


def _reset_value(prop: PropertyIdentifier, reliability: str) -> bytes:
    """A served property of a reset's Multi-state Value: it reads "Ready", its Reliability is its
    node's (`MeterReset`)."""
    if prop == PropertyIdentifier.presentValue:
        return _constant(RESET, prop, READY)
    if prop == PropertyIdentifier.reliability:
        return _constant(RESET, prop, reliability)
    if prop == PropertyIdentifier.eventState:
        return _constant(RESET, prop, "normal")
    return _status_flags(RESET, reliability, "normal")


@functools.cache
def _status_flags(object_type: str, reliability: str, event: str) -> bytes:
    return _bytes(status_flags(_CLASSES[object_type], reliability, event).encode())


def read_access_result(
    encodings: MeterEncodings, objid: ObjectIdentifier, properties: Sequence[tuple[PropertyIdentifier, int | None]]
) -> bytes:
    """One ReadAccessResult of an RPM answer, from encodings (`encodings.serves` them)."""
    parts = [_object_head(objid), _RESULTS_OPEN]
    for prop, _ in properties:
        parts += (_element_head(prop), encodings.value(objid, prop), _VALUE_CLOSE)
    parts.append(_RESULTS_CLOSE)
    return b"".join(parts)


def read_property_body(encodings: MeterEncodings, objid: ObjectIdentifier, prop: PropertyIdentifier) -> bytes:
    """The body of a ReadProperty answer, from encodings."""
    return b"".join((_object_head(objid), _rp_head(prop), encodings.value(objid, prop), _RP_VALUE_CLOSE))


def answer_budget(max_apdu_code: int, max_segments_code: int, segmented_accepted: bool) -> int:
    """The largest answer body (bytes) a client takes: what its max APDU leaves after the header,
    unsegmented or in as many segments as it accepts (`UNSPECIFIED_SEGMENTS` when it does not say
    or says more than 64), as `fixes.SegmentsWithinMaxApdu` cuts it."""
    max_apdu = decode_max_apdu_length_accepted(max_apdu_code)
    whole = max_apdu - COMPLEX_ACK_HEADER
    if not segmented_accepted:
        return whole
    segments = decode_max_segments_accepted(max_segments_code) or UNSPECIFIED_SEGMENTS
    return max(whole, (max_apdu - SEGMENTED_COMPLEX_ACK_HEADER) * segments)


class BoundedReads(StackApplication):
    """ReadPropertyMultiple in slices, from encodings where there are, aborted once too big."""

    fast_reads = True  # the network's `bacnet.fast_reads`

    def read_encodings(self) -> MeterEncodings | None:
        """The encodings of this device's meter objects (a node's), if any."""
        return None

    def has_object(self, objid: ObjectIdentifier) -> bool:
        """Whether the device has this object, built or not (nothing is built to find out)."""
        return self.get_object_id(objid) is not None

    async def do_ReadPropertyMultipleRequest(self, apdu: ReadPropertyMultipleRequest) -> None:
        specs = apdu.listOfReadAccessSpecs
        if not any(self.has_object(spec.objectIdentifier) for spec in specs):
            raise ObjectError("unknown-object")
        budget = answer_budget(apdu.apduMaxResp, apdu.apduMaxSegs, apdu.apduSA)
        encodings = self.read_encodings() if self.fast_reads else None
        parts: list[bytes] = []
        size = 0
        sliced_at = time.perf_counter()
        for spec in specs:
            objid = spec.objectIdentifier
            properties = [(ref.propertyIdentifier, ref.propertyArrayIndex) for ref in spec.listOfPropertyReferences]
            if encodings is not None and encodings.serves(objid, properties):
                part = read_access_result(encodings, objid, properties)
            else:
                obj = self.get_object_id(objid) if self.has_object(objid) else None
                part = await full_read_access_result(obj, objid, properties)
            size += len(part)
            if size > budget:  # as the transaction state machine would abort it, sent by the server
                TOO_BIG.drop(str(apdu.pduSource), f"answer beyond {budget} bytes")
                reason = AbortReason.apduTooLong if apdu.apduSA else AbortReason.segmentationNotSupported
                await self.response(AbortPDU(True, apdu.apduInvokeID, reason, context=apdu))
                return
            parts.append(part)
            if time.perf_counter() - sliced_at > SLICE_SECONDS:
                await asyncio.sleep(0)
                sliced_at = time.perf_counter()
        ack = ComplexAckPDU(RPM, apdu.apduInvokeID, context=apdu)
        ack.put_data(b"".join(parts))
        await self.response(ack)
