"""The EDE point list and `bcpm-gateway export-ede` (gateway/bacnet/ede.py)."""

from __future__ import annotations

import csv
from datetime import date

from gateway.bacnet.ede import COLUMNS, ede_text
from gateway.bacnet.objects import object_specs
from gateway.bacnet.plan import device_plan
from gateway.cli import main
from gateway.config import parse_config
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import load
from gateway.state import DeviceOverride, State, StateStore

PM = load()
PROFILES = {
    1: NodeProfile(1, 0x4D150001, "A", 15172, 1023, 2001, 1),
    2: NodeProfile(2, 0x4D150001, "A", 15172, 1023, 2001, 1),
}


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(text.splitlines(), delimiter=";"))


def objects_of(text: str) -> list[dict[str, str]]:
    return [dict(zip(COLUMNS, row)) for row in rows(text)[8:]]


def test_header_is_the_big_eu_layout() -> None:
    plan = device_plan(parse_config({}).bacnet, State(), PM, PROFILES.values())
    head = rows(ede_text(plan, "Hall 2", today=date(2026, 11, 1)))[:8]
    assert head[0] == ["#Engineering-Data-Exchange - B.I.G.-EU"]
    assert head[1] == ["PROJECT_NAME", "Hall 2"]
    assert head[3] == ["TIMESTAMP_OF_LAST_CHANGE", "2026-11-01"]
    assert head[5] == ["VERSION_OF_LAYOUT", "2.3"]
    assert len(head[7]) == 16 and head[7][0] == "# keyname"


def test_one_row_per_device_and_object_with_numeric_codes() -> None:
    state = State(overrides={2: DeviceOverride(object_instance=61234, object_name="PDU;A")})
    plan = device_plan(parse_config({}).bacnet, state, PM, PROFILES.values())
    listed = objects_of(ede_text(plan, "x"))
    assert len(listed) == 1 + 2 + 2 * (1 + len(object_specs(PM, "A")))
    assert all(len(row) == 16 for row in listed)
    devices = [(row["device obj.-instance"], row["object-name"]) for row in listed if row["object-type"] == "8"]
    assert devices == [("50000", "BCPM_Gateway_50000"), ("50001", "BCPM_1"), ("61234", "PDU;A")]
    current = next(row for row in listed if row["device obj.-instance"] == "61234" and row["object-instance"] == "1347")
    assert (current["object-name"], current["object-type"], current["unit-code"]) == ("Current Ch 12", "0", "3")
    assert (current["settable"], current["supports COV"], current["vendor-specific-address"]) == (
        "N",
        "Y",
        "modbus 2:1347",
    )
    av1 = next(
        row
        for row in listed
        if row["device obj.-instance"] == "50001" and row["object-type"] == "2" and row["object-instance"] == "1"
    )
    assert (av1["object-name"], av1["settable"], av1["max-present-value"]) == ("CT Numbering Configuration", "Y", "3")
    assert len({row["keyname"] for row in listed}) == len(listed)


def test_export_ede_writes_the_list_of_the_saved_meters(tmp_path, capsys) -> None:
    state_file = tmp_path / "state.json"
    StateStore(state_file).save(State(profiles=PROFILES, device_id_offset=7000))
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstate_file = "{state_file}"\n[serial]\nport = "/dev/null"\n')
    out = tmp_path / "points.csv"
    assert main(["export-ede", "--config", str(config), "--output", str(out), "--project", "Hall 2"]) == 0
    listed = objects_of(out.read_text())
    assert [row["object-name"] for row in listed if row["object-type"] == "8"] == [
        "BCPM_Gateway_7000",
        "BCPM_1",
        "BCPM_2",
    ]
    assert main(["export-ede", "--config", str(config), "--project", "Hall 2"]) == 0
    assert capsys.readouterr().out == out.read_bytes().decode()


def test_export_ede_without_known_meters_says_what_to_do(tmp_path, capsys) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n[serial]\nport = "/dev/null"\n')
    assert main(["export-ede", "--config", str(config)]) == 2
    assert "run the gateway once in discovery mode" in capsys.readouterr().err


def test_a_named_circuit_is_in_the_description_of_each_of_its_objects() -> None:
    state = State().with_circuit_names(2, {12: "Rack C3; PDU B", 43: "Mains L1"})
    plan = device_plan(parse_config({}).bacnet, state, PM, PROFILES.values())
    listed = objects_of(ede_text(plan, "x"))
    described = {
        (row["device obj.-instance"], row["object-type"], row["object-instance"]): row["description"] for row in listed
    }
    assert described["50002", "0", "1347"] == "Rack C3; PDU B (register 1347)"  # its current
    assert described["50002", "2", "61"] == "Rack C3; PDU B (register 130)"  # its breaker size, AVn = register n + 69
    assert described["50002", "0", "265"] == "Mains L1 (register 265)"  # AUX current, phase 1
    assert described["50001", "0", "1347"] == "register 1347"  # node 1 has no names
    assert described["50002", "0", "256"] == "register 256"  # a total belongs to no circuit
