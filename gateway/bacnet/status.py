"""What a cached reading looks like on a BACnet object: Present_Value and Reliability.

    present_state(Reading(12.5, Quality.GOOD, t), online=True)
    # PresentState(value=12.5, reliability='no-fault-detected')

Status_Flags follow from Reliability (FAULT is set whenever it is not no-fault-detected) and
Event_State (IN_ALARM whenever it is not normal), and Out_Of_Service is never set: the gateway
does not let a client override a meter's value. Event_State comes from the meter's own alarm
status bits: high-limit or low-limit while the channel (or voltage pair) is in alarm.

- GOOD: the value, no-fault-detected.
- NO_DATA (the meter answers 0x8000 / NaN: a channel without a CT, a quantity the model lacks):
  0.0 and no-sensor. Not NaN: many BMS trend and sum points, and one NaN spoils them all.
- STALE, or any point of a node that is offline: the last value the meter gave and
  communication-failure.
- UNKNOWN (not read yet since start): 0.0 and unreliable-other.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.nodes.cache import Quality, Reading
from gateway.pointmap import ALARM_BITS, Point

__all__ = ["PresentState", "event_state", "present_state"]

NO_VALUE = 0.0


@dataclass(frozen=True, slots=True)
class PresentState:
    value: float
    reliability: str  # a BACnet Reliability name


def present_state(reading: Reading, online: bool) -> PresentState:
    value = float(reading.value) if isinstance(reading.value, int | float) else NO_VALUE
    if not online or reading.quality is Quality.STALE:
        return PresentState(value, "communication-failure")
    if reading.quality is Quality.NO_DATA:
        return PresentState(NO_VALUE, "no-sensor")
    if reading.quality is Quality.UNKNOWN:
        return PresentState(NO_VALUE, "unreliable-other")
    return PresentState(value, "no-fault-detected")


def event_state(status: Point, reading: Reading) -> str:
    """A BACnet Event_State from an alarm status bitmap: what the meter last said, kept while stale."""
    high, low = ALARM_BITS[status.key]
    bits = reading.value if isinstance(reading.value, int) else 0
    if bits & high:
        return "high-limit"
    if bits & low:
        return "low-limit"
    return "normal"
