"""The objects of a node, generated from the point map (gateway/bacnet/objects.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.bacnet.objects import DEVICE_PROPERTY_KEYS, av_instances, object_specs
from gateway.pointmap import RESET_KEYS, Encoding, PollClass, load

PM = load()
MODELS = ("A", "B", "C")


def spec_at(model: str, register: int):
    return next(spec for spec in object_specs(PM, model) if spec.point.register == register)


def test_av_numbers_follow_the_bcpme_public_numbering() -> None:
    avs = av_instances(PM)
    by_number = {number: register for register, number in avs.items()}
    assert (by_number[1], by_number[2], by_number[3]) == (6, 71, 72)
    for number in range(2, 109):  # through the threshold block
        assert by_number[number] == number + 69
    assert (by_number[86], by_number[96], by_number[100]) == (155, 165, 169)
    assert by_number[164] == 62017


@pytest.mark.parametrize("model", MODELS)
def test_an_av_keeps_its_number_on_every_model_that_has_it(model) -> None:
    for spec in object_specs(PM, model):
        if spec.object_type == "analog-value":
            assert spec.instance == av_instances(PM)[spec.point.register]
    assert spec_at(model, 62017).instance == 164


def test_an_ai_is_numbered_by_its_register() -> None:
    for spec in object_specs(PM, "A"):
        if spec.object_type == "analog-input":
            assert spec.instance == spec.point.register
    assert spec_at("A", 1347).name == "Current Ch 12"


@pytest.mark.parametrize("model", MODELS)
def test_every_polled_point_and_every_reset_of_the_model_is_exactly_one_object(model) -> None:
    specs = object_specs(PM, model)
    served = {spec.point.register for spec in specs}
    for point in PM.for_model(model):
        expected = (
            point.poll is not PollClass.NONE
            and point.encoding is not Encoding.STRING
            and point.register not in PM.scale_registers
            and point.key not in DEVICE_PROPERTY_KEYS
            or point.key in RESET_KEYS
        )
        assert (point.register in served) == expected, point
    assert len(served) == len(specs)
    assert all(spec.point.writable == (spec.object_type != "analog-input") for spec in specs)


def test_resets_are_multi_state_values_numbered_in_register_order() -> None:
    resets = [spec for spec in object_specs(PM, "A") if spec.object_type == "multi-state-value"]
    assert [(spec.instance, spec.point.register) for spec in resets[:3]] == [(1, 294), (2, 295), (3, 1126)]
    assert resets[-1].point.register == 7055
    assert resets[2].states == ("Ready", "Clear energy", "Clear maxima")


@pytest.mark.parametrize("model", MODELS)
def test_identifiers_and_names_are_unique_in_a_device(model) -> None:
    specs = object_specs(PM, model)
    assert len({(spec.object_type, spec.instance) for spec in specs}) == len(specs)
    assert not [name for name, count in Counter(spec.name for spec in specs).items() if count > 1]


def test_names_say_what_and_which_channel() -> None:
    assert spec_at("A", 73).name == "Branch CT Size Ch 1"
    assert spec_at("A", 4126).name == "Power Total 2-Phase Meter 1"
    assert spec_at("A", 7084).name == "Power Total 3-Phase Meter 1"
    assert spec_at("A", 248).name == "Voltage A-N"


@pytest.mark.parametrize("model", MODELS)
def test_units_and_a_cov_increment_that_is_never_zero(model) -> None:
    for spec in object_specs(PM, model):
        assert spec.cov_increment > 0, spec
    assert (spec_at("A", 1347).units, spec_at("A", 1347).cov_increment) == ("amperes", 1.0)
    assert spec_at("A", 1168).units == "kilowattHours"
    assert (spec_at("A", 1294).units, spec_at("A", 1294).cov_increment) == ("noUnits", 0.01)  # power factor


def test_model_c_has_no_voltage_objects() -> None:
    registers = {spec.point.register for spec in object_specs(PM, "C")}
    assert 236 not in registers and 246 not in registers
    assert 1347 in registers


def test_writable_points_carry_their_engineering_limits() -> None:
    threshold = spec_at("A", 171)  # 0-1000 with exponent -1
    assert (threshold.min_value, threshold.max_value) == (0.0, 100.0)
    numbering = spec_at("A", 6)
    assert (numbering.min_value, numbering.max_value) == (0.0, 3.0)
    overvoltage = spec_at("A", 238)  # scaled by a register: no fixed limits
    assert (overvoltage.min_value, overvoltage.max_value) == (None, None)
