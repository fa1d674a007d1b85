"""A cached reading as Present_Value and Reliability (gateway/bacnet/status.py)."""

from __future__ import annotations

from gateway.bacnet.status import PresentState, present_state
from gateway.nodes.cache import Quality, Reading


def test_a_good_reading_is_its_value_without_fault() -> None:
    assert present_state(Reading(12.5, Quality.GOOD, 1.0), online=True) == PresentState(12.5, "no-fault-detected")
    assert present_state(Reading(7, Quality.GOOD, 1.0), online=True) == PresentState(7.0, "no-fault-detected")


def test_no_data_is_zero_and_no_sensor_never_nan() -> None:
    assert present_state(Reading(None, Quality.NO_DATA, 1.0), online=True) == PresentState(0.0, "no-sensor")


def test_an_offline_node_keeps_the_last_value_with_communication_failure() -> None:
    assert present_state(Reading(3.5, Quality.STALE, 1.0), online=False) == PresentState(3.5, "communication-failure")
    unknown = Reading(None, Quality.UNKNOWN, None)
    assert present_state(unknown, online=False) == PresentState(0.0, "communication-failure")
    assert present_state(Reading(3.5, Quality.STALE, 1.0), online=True).reliability == "communication-failure"


def test_a_value_not_read_yet_is_unreliable() -> None:
    assert present_state(Reading(None, Quality.UNKNOWN, None), online=True) == PresentState(0.0, "unreliable-other")
