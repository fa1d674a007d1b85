"""The bacpypes3 objects of a meter node: an Analog Input or Value per served point.

Values are pushed: the face calls `show()` when the node layer reports a change, and the object
takes Present_Value and Reliability from the node cache (bacpypes3's COV detection watches those
assignments). A remote write goes the other way: WriteProperty of an AV's Present_Value is
checked against the point map and written to the meter by the node service; the object shows
what the meter holds afterwards. Nothing else is writable but COV_Increment (a BMS tunes it when
it subscribes; it resets at restart, as on the BCPME).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.errors import ExecutionError
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObject
from bacpypes3.local.multistate import MultiStateValueObject
from bacpypes3.primitivedata import CharacterString, Null

from gateway.bacnet.errors import write_error
from gateway.bacnet.objects import ObjectSpec
from gateway.bacnet.stack import MultiStateCov, StandardPropertyList, StatusFlagsCov, owner
from gateway.bacnet.status import event_state, present_state
from gateway.errors import GatewayError
from gateway.logging import peer_events
from gateway.nodes.api import NodeAPI, NodeView

__all__ = [
    "GuardedWrites",
    "MeterInput",
    "MeterObject",
    "MeterReset",
    "MeterValue",
    "PointBinding",
    "meter_object",
    "real_value",
]


class GuardedWrites(StandardPropertyList):
    """The base of every object the gateway serves: only what `_write` accepts is writable remotely
    (bacpypes3 lets a client write anything), and nothing when the device refuses writes
    (`bacnet.read_only`); its Property_List is the standard's. A write of a property listed in
    `_saved_properties` is saved in the state file (`saves`)."""

    _saved_properties: frozenset[str] = frozenset()

    async def write_property(
        self, attr: Any, value: Any, index: int | None = None, priority: int | None = None
    ) -> None:
        app = owner(self)
        if app is not None and app.refuses_writes():
            raise ExecutionError("property", "writeAccessDenied")
        if index is not None:
            raise ExecutionError("property", "propertyIsNotAnArray")
        await self._write(PropertyIdentifier(attr).attr, value)

    def saves(self, name: str) -> bool:
        """Whether a write of that property is saved in the state file (and charged to its source's
        share: `shares.SavedWriteLimit`)."""
        return name in self._saved_properties

    async def _write(self, name: str, value: Any) -> None:
        raise ExecutionError("property", "writeAccessDenied")


def real_value(value: Any) -> float:
    """A written REAL as a finite float, or the BACnet error for what it is instead."""
    if isinstance(value, Null) or not isinstance(value, int | float):
        raise ExecutionError("property", "invalidDataType")
    if not math.isfinite(value):
        raise ExecutionError("property", "valueOutOfRange")
    return float(value)


@dataclass(frozen=True, slots=True)
class PointBinding:
    """Where an object's value lives: one point of one node, read from the cache, written via
    the node service; and the COV_Increments clients wrote to the node's objects, which outlive
    a rebuilt object."""

    nodes: NodeAPI
    node: NodeView
    spec: ObjectSpec
    cov_increments: dict[int, float]  # by register

    def state(self) -> tuple[float, str, str]:
        """Present_Value, Reliability and Event_State from the node cache."""
        cache = self.node.cache
        shown = present_state(cache.reading(self.spec.point), self.node.health.online)
        alarm = self.spec.alarm
        return shown.value, shown.reliability, event_state(alarm, cache.reading(alarm)) if alarm else "normal"

    def description(self) -> str:
        """The object's Description now: its register, and its circuit's name (`NodeAPI.circuit_names`)."""
        return self.spec.describe(self.nodes.circuit_names(self.node.address))

    async def reset(self, code: int) -> None:
        """Write a reset code to the point's register."""
        await self.nodes.write(self.node.address, self.spec.point.register, [code])

    async def write(self, value: float) -> None:
        """Write to the meter; a value its register cannot hold as it is is refused, never rounded."""
        point = self.spec.point
        scale = self.node.cache.scale_of(point)
        if scale is not None and not point.encodes_exactly(value, scale):
            raise ExecutionError("property", "valueOutOfRange")
        await self.nodes.write_value(self.node.address, point.register, value)


class PointObject(GuardedWrites):
    """An object that shows one point of a node. Its Description is read when asked (a user may
    name the point's circuit meanwhile)."""

    _binding: PointBinding

    @property
    def description(self) -> CharacterString:
        return CharacterString(self._binding.description())  # as an assignment would cast it

    def bind(self, binding: PointBinding) -> None:
        self._binding = binding


class MeterObject(StatusFlagsCov, PointObject):
    """What the AI and AV of a meter point share (a COV notification also when Reliability or
    Event_State changes)."""

    def show(self) -> None:
        """Take Present_Value, Reliability and Event_State from the node cache (COV follows)."""
        self.presentValue, self.reliability, self.eventState = self._binding.state()

    async def _write(self, name: str, value: Any) -> None:
        if name == "covIncrement":
            increment = real_value(value)
            if increment <= 0:
                raise ExecutionError("property", "valueOutOfRange")
            self.covIncrement = self._binding.cov_increments[self._binding.spec.point.register] = increment
        else:
            await super()._write(name, value)


class MeterInput(MeterObject, AnalogInputObject):
    pass


class MeterValue(MeterObject, AnalogValueObject):
    async def _write(self, name: str, value: Any) -> None:
        if name != "presentValue":
            await super()._write(name, value)
            return
        wanted = real_value(value)
        try:
            await self._binding.write(wanted)
        except GatewayError as error:
            # any host may try as often as it likes: counted, and logged once a minute
            peer_events("bacnet writes refused", "info").count(str(self.objectIdentifier), f"value={wanted}: {error}")
            raise write_error(error) from None
        # The node service read the register back into the cache; show it now rather than when
        # its event arrives, so a read right after the write sees it.
        self.show()


class MeterReset(MultiStateCov, PointObject, MultiStateValueObject):
    """A reset register: it reads state 1 ("Ready"); writing state n writes the n-1th reset code."""

    def show(self) -> None:
        self.reliability = "no-fault-detected" if self._binding.node.health.online else "communication-failure"

    async def _write(self, name: str, value: Any) -> None:
        if name != "presentValue":
            await super()._write(name, value)
            return
        if isinstance(value, Null) or not isinstance(value, int):
            raise ExecutionError("property", "invalidDataType")
        codes = self._binding.spec.codes
        if not 1 <= value <= len(codes) + 1:
            raise ExecutionError("property", "valueOutOfRange")
        if value == 1:
            return  # "Ready": nothing to do
        try:
            await self._binding.reset(codes[value - 2])
        except GatewayError as error:
            peer_events("bacnet writes refused", "info").count(
                str(self.objectIdentifier), f"reset code {codes[value - 2]}: {error}"
            )
            raise write_error(error) from None
        # any host may ask as often as it likes: counted, and logged once a minute
        state = self._binding.spec.states[value - 1]
        peer_events("bacnet meter resets", "info").count(str(self.objectIdentifier), state)


def meter_object(binding: PointBinding) -> MeterInput | MeterValue | MeterReset:
    spec = binding.spec
    if spec.object_type == "multi-state-value":
        reset = MeterReset(
            objectIdentifier=(spec.object_type, spec.instance),
            objectName=spec.name,
            presentValue=1,
            numberOfStates=len(spec.states),
            stateText=list(spec.states),
            eventState="normal",
            outOfService=False,
            reliability="no-fault-detected",
        )
        reset.bind(binding)
        reset.show()
        return reset
    limits = {"minPresValue": spec.min_value, "maxPresValue": spec.max_value} if spec.writable else {}
    cls = MeterValue if spec.writable else MeterInput
    value, reliability, event = binding.state()
    obj = cls(
        objectIdentifier=(spec.object_type, spec.instance),
        objectName=spec.name,
        presentValue=value,
        reliability=reliability,
        eventState=event,
        outOfService=False,
        units=spec.units,
        # Without a COV_Increment bacpypes3 raises on the first Present_Value change.
        covIncrement=binding.cov_increments.get(spec.point.register, spec.cov_increment),
        **{key: limit for key, limit in limits.items() if limit is not None},
    )
    obj.bind(binding)
    return obj
