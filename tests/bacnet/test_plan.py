"""Device IDs and names of the router and the nodes (gateway/bacnet/plan.py)."""

from __future__ import annotations

from gateway.bacnet.plan import ROUTER_SETTINGS, device_plan, ip_network
from gateway.config import parse_config
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import load
from gateway.state import DeviceOverride, State

PM = load()
PROFILES = [NodeProfile(address, 0x4D150001, "A", 15172, 1023, 2001, 1) for address in (1, 2)]


def plan(state: State = State(), **bacnet: object):
    return device_plan(parse_config({"bacnet": bacnet}).bacnet, state, PM, PROFILES)


def test_defaults_follow_the_bcpme() -> None:
    devices = plan()
    assert (devices.router.instance, devices.router.network, devices.router.name) == (50000, 50, "BCPM_Gateway_50000")
    assert [(n.instance, n.name) for n in devices.nodes] == [(50001, "BCPM_1"), (50002, "BCPM_2")]
    assert devices.nodes[1].model_name == "BCPM model A (device ID 15172)"
    assert devices.nodes[1].firmware_revision == "RS 1023 OS 2001"
    assert devices.nodes[1].serial_number == "0x4D150001"


def test_the_configuration_sets_offset_and_network() -> None:
    devices = plan(device_id_offset=7000, network=12)
    assert (devices.router.instance, devices.router.network) == (7000, 12)
    assert [n.instance for n in devices.nodes] == [7001, 7002]


def test_av1_and_av2_written_over_bacnet_win_over_the_configuration() -> None:
    devices = plan(State(device_id_offset=60000, network=77), device_id_offset=7000, network=12)
    assert (devices.router.instance, devices.router.network) == (60000, 77)
    assert [devices.router.setting(s) for s in ROUTER_SETTINGS] == [60000, 77]


def test_a_written_identity_survives_any_offset() -> None:
    state = State(overrides={2: DeviceOverride(object_instance=123, object_name="PDU-A")}, device_id_offset=60000)
    devices = plan(state, device_id_offset=7000)
    assert [(n.instance, n.name) for n in devices.nodes] == [(60001, "BCPM_1"), (123, "PDU-A")]
    renamed_only = plan(State(overrides={1: DeviceOverride(object_name="East")}))
    assert [(n.instance, n.name) for n in renamed_only.nodes] == [(50001, "East"), (50002, "BCPM_2")]


def test_the_ip_side_never_takes_the_virtual_network_number() -> None:
    assert ip_network(50) == 1
    assert ip_network(1) == 2
