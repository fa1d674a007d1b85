"""The BACnet objects of a meter node, generated from the point map: a pure function, no I/O.

    specs = object_specs(load(), "A")
    spec = next(s for s in specs if s.point.register == 1347)
    (spec.object_type, spec.instance, spec.name, spec.units)
    # ('analog-input', 1347, 'Current Ch 12', 'amperes')

Which points become objects: every point the node's model has that the poller reads (poll class
fast or slow), except the scale registers (their exponent is already applied to the values) and
the identity registers the device object shows itself (serial number, firmware, device ID).
Strings never become objects. Write-only points (resets) are not polled, so they have none.

The numbering, fixed so that a BMS database survives firmware and gateway upgrades:

- **Analog Value** (writable points: setup and alarm status). The writable polled points of the
  whole map, in register order, are numbered from 1. This is the BCPME's public numbering:
  AV1 = register 6, AV2 = 71, AV3 = 72, AVn = register n + 69 up to the threshold block
  (AV4-AV49 CT sizes 73-118, AV50-AV95 breaker sizes 119-164, AV96-AV108 alarm delays,
  timers and thresholds 165-177), then AV109-AV154 alarm status 178-223, AV155-AV159 voltage
  alarm setup 236-240, AV160-AV162 voltage alarm status 241-243, AV163 power-up count 531,
  AV164 = register 62017 (advanced features), AV165-AV210 voltage phase assignment
  62116-62161. The numbers are taken over all models, so an AV keeps its number on every model;
  a model without the register simply has no such object.
- **Analog Input** (read-only measurements, counters and status): instance = the register
  number, e.g. AI1336 = "Current Ch 1", AI1630 = "Apparent Power Ch 1", AI254 = "AUX Energy
  3-Phase" (a 32-bit value takes its first register's number). The vendor's Modbus map is then
  the index of the AIs.

- **Multi-state Value** (the meter's reset registers, write-only: 294 AUX, 295 global, and one
  per branch circuit and logical meter, 1126-1167, 4063-4083, 7042-7055), numbered over the whole
  map in register order: MSV1 = 294, MSV2 = 295, MSV3 = 1126 ... State 1 is "Ready" (what it
  reads); writing another state writes that reset's code (the point map's `ResetCode`) to the meter.

Present values are engineering values: the meter's scale registers applied. Units follow the
point map; COV_Increment is per quantity (`COV_INCREMENTS`) and never 0. Each alarm status AV and
the current AI of its channel carry the meter's alarm as Event_State (so Status_Flags IN_ALARM,
and a COV notification when it changes).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.pointmap import ALARM_BITS, RESET_KEYS, Encoding, Point, PointMap, PollClass, ResetCode

__all__ = [
    "COV_INCREMENTS",
    "DEVICE_PROPERTY_KEYS",
    "ObjectSpec",
    "av_instances",
    "msv_instances",
    "object_specs",
]

#: Point-map units -> BACnet EngineeringUnits.
UNITS = {
    "A": "amperes",
    "kW": "kilowatts",
    "kWh": "kilowattHours",
    "kVA": "kilovoltAmperes",
    "V": "volts",
    "Hz": "hertz",
    "%": "percent",
    "s": "seconds",
    "": "noUnits",
}
#: Default COV_Increment per unit: about 1 % of a typical branch reading, and 1 for settings.
COV_INCREMENTS = {
    "A": 1.0,
    "kW": 0.1,
    "kVA": 0.1,
    "kWh": 1.0,
    "V": 1.0,
    "Hz": 0.1,
    "%": 1.0,
    "s": 1.0,
}
#: A unitless scaled point is a power factor (exponent -3); unscaled ones are counts and codes.
POWER_FACTOR_COV_INCREMENT = 0.01
COUNT_COV_INCREMENT = 1.0
READY = "Ready"  # state 1 of a reset object: what it always reads
#: Shown as properties of the device object instead of objects.
DEVICE_PROPERTY_KEYS = frozenset({"serial_number", "firmware_rs", "firmware_os", "device_id"})
#: The logical-meter groups reuse "Meter n" labels; their object names say which kind.
_METER_KIND = {"meter2": "2-Phase Meter", "meter3": "3-Phase Meter"}


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """What one BACnet object of a node is: its identity, units and the point it serves."""

    object_type: str  # "analog-input", "analog-value" or "multi-state-value"
    instance: int
    name: str
    units: str  # a BACnet EngineeringUnits name
    cov_increment: float
    point: Point
    min_value: float | None = None  # Min_Pres_Value / Max_Pres_Value of a writable point,
    max_value: float | None = None  # when its scale is fixed
    alarm: Point | None = None  # the alarm status whose bits set this object's Event_State
    codes: tuple[ResetCode, ...] = ()  # of a reset object: the code each state after the first writes

    @property
    def writable(self) -> bool:
        return self.object_type in ("analog-value", "multi-state-value")

    @property
    def states(self) -> tuple[str, ...]:
        """The State_Text of a reset object."""
        return (READY, *(code.action for code in self.codes))

    @property
    def description(self) -> str:
        return f"register {self.point.register}"

    def describe(self, names: Mapping[int, str]) -> str:
        """Description with the name a user gave the object's circuit (names by CT channel), if any."""
        name = names.get(self.point.circuit) if self.point.circuit else None
        return self.description if name is None else f"{name} ({self.description})"


def object_specs(pointmap: PointMap, model: str) -> tuple[ObjectSpec, ...]:
    """The objects of a node of `model` ("A", "B" or "C"), AVs then AIs, each by instance."""
    return _specs(pointmap, model)


@functools.cache
def _specs(pointmap: PointMap, model: str) -> tuple[ObjectSpec, ...]:
    avs, msvs = av_instances(pointmap), msv_instances(pointmap)
    points = pointmap.for_model(model)
    specs = [_spec(pointmap, point, avs) for point in points if _served(pointmap, point)]
    specs += [_reset_spec(point, msvs[point.register]) for point in points if point.register in msvs]
    return tuple(sorted(specs, key=lambda s: (_TYPE_ORDER[s.object_type], s.instance)))


_TYPE_ORDER = {"analog-value": 0, "multi-state-value": 1, "analog-input": 2}


@functools.cache
def av_instances(pointmap: PointMap) -> dict[int, int]:
    """Register -> AV instance: the writable served points of every model, in register order."""
    writable = [p for p in pointmap.points if p.writable and _served(pointmap, p)]
    return {point.register: number for number, point in enumerate(writable, start=1)}


@functools.cache
def msv_instances(pointmap: PointMap) -> dict[int, int]:
    """Register -> Multi-state Value instance: the reset registers of every model, in register order."""
    resets = [p for p in pointmap.points if p.key in RESET_KEYS and p.writable]
    return {point.register: number for number, point in enumerate(resets, start=1)}


def _reset_spec(point: Point, instance: int) -> ObjectSpec:
    return ObjectSpec(
        "multi-state-value", instance, _name(point), "noUnits", COUNT_COV_INCREMENT, point, codes=point.resets
    )


def _served(pointmap: PointMap, point: Point) -> bool:
    return (
        point.poll is not PollClass.NONE
        and point.readable
        and point.encoding is not Encoding.STRING
        and point.register not in pointmap.scale_registers
        and point.key not in DEVICE_PROPERTY_KEYS
    )


def _spec(pointmap: PointMap, point: Point, avs: dict[int, int]) -> ObjectSpec:
    common: dict[str, Any] = {
        "name": _name(point),
        "units": UNITS[point.units],
        "cov_increment": _cov_increment(point),
        "alarm": _alarm(pointmap, point),
    }
    if point.register in avs:
        low, high = _limits(point)
        return ObjectSpec("analog-value", avs[point.register], point=point, min_value=low, max_value=high, **common)
    return ObjectSpec("analog-input", point.register, point=point, **common)


def _alarm(pointmap: PointMap, point: Point) -> Point | None:
    """An alarm status shows on itself and on the current of its channel (branch or AUX phase)."""
    if point.key in ALARM_BITS:
        return point
    if point.key == "current" and point.group in ("branch", "aux"):
        return pointmap.find("alarm_status", group="alarms", channel=point.channel)
    return None


def _name(point: Point) -> str:
    kind = _METER_KIND.get(point.group)
    return f"{point.name} {kind} {point.channel}" if kind else point.label


def _cov_increment(point: Point) -> float:
    if point.units:
        return COV_INCREMENTS[point.units]
    return POWER_FACTOR_COV_INCREMENT if point.scaled else COUNT_COV_INCREMENT


def _limits(point: Point) -> tuple[float | None, float | None]:
    """The engineering range a write may take, if the point's scale does not vary."""
    if not point.valid or point.scale_register is not None:
        return None, None
    exponent = point.exponent or 0
    low = min(lo for lo, _ in point.valid) * 10.0**exponent
    high = max(hi for _, hi in point.valid) * 10.0**exponent
    return low, high
