"""What a written engineering value becomes in the meter's registers."""

from __future__ import annotations

from gateway.pointmap import load

POINTS = load()


def test_a_whole_number_point_holds_whole_numbers_only() -> None:
    ct_size = POINTS.find("ct_size", group="setup", channel=5)
    assert ct_size.encodes_exactly(175.0)
    assert not ct_size.encodes_exactly(2.7)


def test_a_point_in_tenths_holds_tenths_only() -> None:
    threshold = POINTS.find("threshold_high", group="setup")  # 0.1 %, fixed exponent -1
    assert threshold.encodes_exactly(60.5)
    assert threshold.encodes_exactly(0.3)  # 0.3 / 0.1 is 2.9999999999999996 in floats
    assert not threshold.encodes_exactly(60.55)
