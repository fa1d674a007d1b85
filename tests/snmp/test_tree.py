"""The OID tree is generated from the point map: every point has one place or a stated reason."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.pointmap import load
from gateway.snmp.placement import build_layout, exclusion
from gateway.snmp.tree import (
    ADVANCED_FEATURES_OID,
    BASE,
    Branch,
    MaxAccess,
    Smi,
    descriptor_ok,
)

PM = load()
LAYOUT = build_layout(PM)
CURRENT_12 = PM.find("current", group="branch", channel=12)


def test_every_point_has_exactly_one_column_or_a_reason_to_be_left_out() -> None:
    for point in PM.points:
        if exclusion(point) is None:
            column = LAYOUT.column_of(point)
            assert point in column.points.values()
        else:
            assert point in LAYOUT.excluded
    placed = [p for t in LAYOUT.tables for c in t.columns for p in c.points.values()]
    assert len(placed) == len(set(placed)) == len(PM.points) - len(LAYOUT.excluded)


def test_only_scale_registers_unpolled_points_and_profile_identity_are_left_out() -> None:
    reasons = Counter(LAYOUT.excluded.values())
    assert set(LAYOUT.excluded.values()) == {
        "scale register: every value is served already scaled, in fixed units",
        "string block that is not polled (read on demand only)",
        "not polled (reserved or placeholder), so the cache never holds it",
        "served from the discovery profile by bcpmNodeTable",
    }
    assert reasons["served from the discovery profile by bcpmNodeTable"] == 4  # serial, firmware x2, device ID
    assert not any(p.writable and p.encoding.value != "string" for p in LAYOUT.excluded)


def test_the_six_guide_branches_come_first_in_the_guides_order() -> None:
    assert [b.name for b in Branch][:6] == [
        "CONFIGURATION",
        "ALARMS",
        "VOLTAGE_INPUTS",
        "AUX_INPUTS",
        "BRANCH_INPUTS",
        "FLEX_CIRCUITS",
    ]
    assert Branch.BRANCH_INPUTS.oid == (1, 3, 6, 1, 4, 1, 3833, 1, 30, 1, 5)
    for table in LAYOUT.tables:
        assert table.oid[:-1] == table.branch.oid


def test_the_documented_oid_is_advanced_features_of_the_lowest_panel() -> None:
    assert ADVANCED_FEATURES_OID + (0,) == (1, 3, 6, 1, 4, 1, 3833, 1, 30, 1, 1, 6, 3, 4, 0)
    column = LAYOUT.advanced_features
    assert column.points[None].register == 62017 and column.writable
    served = {i.oid: i.address for i in LAYOUT.instances({5: "A", 3: "B", 4: "B"})}
    assert served[ADVANCED_FEATURES_OID + (0,)] == 3


def test_tables_are_indexed_by_panel_then_channel_pair_or_meter() -> None:
    indexes = {t.name: [(i.name, i.syntax_range) for i in t.indexes] for t in LAYOUT.tables}
    assert indexes["bcpmBranchTable"] == [("bcpmBranchPanel", "(1..247)"), ("bcpmBranchChannel", "(1..42)")]
    assert indexes["bcpmChanAlarmTable"][1] == ("bcpmChanAlarmChannel", "(1..46)")
    assert indexes["bcpmVoltAlarmTable"][1] == ("bcpmVoltAlarmPair", "(1..3)")
    assert indexes["bcpmMeter2Table"][1] == ("bcpmMeter2Meter", "(1..21)")
    assert indexes["bcpmMeter3Table"][1] == ("bcpmMeter3Meter", "(1..14)")
    assert indexes["bcpmNodeTable"] == [("bcpmNodePanel", "(1..247)")]
    assert all(i.access is MaxAccess.NOT_ACCESSIBLE for t in LAYOUT.tables for i in t.indexes)


def test_instance_oids_are_column_panel_row() -> None:
    column = LAYOUT.column_of(CURRENT_12)
    assert column.oid == BASE + (1, 5, 1, 1, 7)
    oids = {i.oid for i in LAYOUT.instances({2: "C"})}
    assert column.oid + (2, 12) in oids


@pytest.mark.parametrize(
    ("key", "group", "value", "served", "units"),
    [
        ("current", "branch", 17.5, 17500, "mA"),
        ("kw", "branch", 1.234, 1234, "W"),
        ("kva", "branch", 0.5, 500, "VA"),
        ("kwh", "branch", 1234.5, 1234500, "Wh"),
        ("pf", "branch", 0.95, 950, "0.001"),
        ("frequency", "voltage", 59.98, 5998, "0.01 Hz"),
        ("volts_ln_avg", "voltage", 120.3, 1203, "0.1 V"),
        ("threshold_high", "setup", 60.0, 600, "0.1 %"),
        ("ct_size", "setup", 100, 100, "A"),
    ],
)
def test_values_are_integers_in_fixed_units_without_loss(key, group, value, served, units) -> None:
    point = next(p for p in PM.points if p.key == key and p.group == group)
    column = LAYOUT.column_of(point)
    assert (column.to_snmp(value), column.units) == (served, units)


def test_energy_is_a_64_bit_counter_and_signed_quantities_are_integer32() -> None:
    assert LAYOUT.column_of(PM.find("kwh", group="branch", channel=1)).smi is Smi.COUNTER64
    assert LAYOUT.column_of(CURRENT_12).smi is Smi.INTEGER32
    assert LAYOUT.column_of(PM.find("alarm_status", group="alarms", channel=1)).smi is Smi.UNSIGNED32


def test_a_value_that_does_not_fit_its_syntax_or_is_missing_is_absent() -> None:
    column = LAYOUT.column_of(CURRENT_12)
    assert column.to_snmp(None) is None
    assert column.to_snmp(3e6) is None  # 3e9 mA is beyond Integer32


def test_set_values_become_register_values_at_the_meters_scale_or_are_refused() -> None:
    threshold = LAYOUT.column_of(PM.find("overvoltage_threshold"))  # 0.1 V, scaled by register 244
    assert threshold.raw_for(2640, -1) == 2640
    assert threshold.raw_for(2640, 0) == 264
    assert threshold.raw_for(2645, 0) is None  # the meter has no tenths at scale 0
    assert threshold.raw_for(264, -2) == 2640


def test_writable_columns_are_exactly_the_writable_points() -> None:
    writable = {p for t in LAYOUT.tables for c in t.columns if c.writable for p in c.points.values()}
    assert writable == {p for p in PM.points if p.writable and exclusion(p) is None}
    assert all(c.smi is Smi.UNSIGNED32 for t in LAYOUT.tables for c in t.columns if c.writable)


def test_descriptors_are_valid_unique_and_at_most_32_characters() -> None:
    names = [c.name for t in LAYOUT.tables for c in (*t.indexes, *t.columns)]
    names += [t.name for t in LAYOUT.tables] + [n.name for n in LAYOUT.notifications]
    names += [c.name for c in LAYOUT.notify_objects] + [LAYOUT.advanced_features.name]
    assert len(names) == len(set(names))
    assert [n for n in names if not descriptor_ok(n) or len(n) > 32] == []


def test_models_decide_which_instances_a_node_has() -> None:
    def count(model: str) -> int:
        return sum(1 for _ in LAYOUT.instances({1: model}))

    assert count("A") > count("B") > count("C")
    voltage = LAYOUT.column_of(PM.find("frequency")).oid
    assert not any(i.oid[: len(voltage)] == voltage for i in LAYOUT.instances({1: "C"}))


def test_every_oid_is_unique_and_under_the_base() -> None:
    instances = list(LAYOUT.instances({1: "A", 2: "A", 3: "B"}))
    assert len({i.oid for i in instances}) == len(instances)
    assert all(i.oid[: len(BASE)] == BASE for i in instances)
