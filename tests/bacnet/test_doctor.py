"""The network doctor, on hosts of network namespaces: another device with one of the gateway's
device IDs, or another router to its virtual network, is logged once, shown on the router device
(read with @bacnet-js/client) and cleared when it goes away; `bcpm-gateway doctor` runs the same
checks once and prints them."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bacnet.js_client import js_command
from tests.bacnet.netns import Process, Site, site_of
from tests.bacnet.test_routed import start_gateway

GW, OTHER_DEVICE, OTHER_ROUTER, DOCTOR = "10.231.1.1", "10.231.1.2", "10.231.1.3", "10.231.1.4"
BACNET = 47808
CLIENT_PORT = 47809  # the JS client beside the doctor's host
RELIABILITY, NO_FAULT_DETECTED, CONFIGURATION_ERROR = 103, 0, 10


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with site_of({name: f"{address}/24" for name, address in
                        (("gw", GW), ("device", OTHER_DEVICE), ("rival", OTHER_ROUTER), ("doctor", DOCTOR))}) as site:
        yield site


async def start_other(site: Site, kind: str, host: str, address: str, number: int) -> Process:
    other = await site.start(host, sys.executable, "-m", "tests.bacnet.other_party", kind, f"{address}/24:{BACNET}",
                             str(number))
    await other.wait_for(lambda: "ready" in other.stdout, 30, f"the other {kind}")
    return other


async def router_reliability(site: Site) -> int:
    argv, env = js_command({"interface": DOCTOR, "server": f"{GW}:{BACNET}",
                            "broadcastAddress": f"10.231.1.255:{BACNET}", "clientPort": CLIENT_PORT,
                            "serverPort": BACNET,
                            "steps": [{"op": "readProperty", "target": None, "objectType": 8, "instance": 50000,
                                       "property": RELIABILITY}]})
    [value] = json.loads(await site.run("doctor", *argv, env=env))
    return int(value[0])


async def test_a_device_id_in_use_elsewhere_is_logged_once_shown_and_cleared(site, make_line, tmp_path) -> None:
    gateway = await start_gateway(site, make_line(1), tmp_path, "doctor_interval = 1")
    assert await router_reliability(site) == NO_FAULT_DETECTED
    other = await start_other(site, "device", "device", OTHER_DEVICE, 50001)
    conflict = await gateway.logged("bacnet.device_id_conflict", 30)
    assert (conflict["level"], conflict["number"], conflict["other"]) == ("error", 50001, OTHER_DEVICE)
    assert await router_reliability(site) == CONFIGURATION_ERROR
    await other.stop()
    await gateway.logged("bacnet.device_id_conflict cleared", 30)
    assert await router_reliability(site) == NO_FAULT_DETECTED
    assert [event["event"] for event in gateway.events()].count("bacnet.device_id_conflict") == 1


async def test_another_router_to_the_virtual_network_is_a_network_conflict(site, make_line, tmp_path) -> None:
    gateway = await start_gateway(site, make_line(1), tmp_path, "doctor_interval = 1")
    await start_other(site, "router", "rival", OTHER_ROUTER, 50)
    conflict = await gateway.logged("bacnet.network_conflict", 30)
    assert (conflict["number"], conflict["other"]) == (50, OTHER_ROUTER)


async def test_the_doctor_command_prints_what_it_finds(site, tmp_path: Path) -> None:
    config = tmp_path / "doctor.toml"
    config.write_text(f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n'
                      f'[bacnet]\naddress = "{DOCTOR}/24"\nport = {BACNET}\n')
    doctor = [sys.executable, "-m", "gateway", "doctor", "--config", str(config)]
    assert (await site.run("doctor", *doctor)).strip() == \
        "no conflict: nobody else routes network 50 or has device IDs 50000"
    await start_other(site, "device", "device", OTHER_DEVICE, 50000)
    await start_other(site, "router", "rival", OTHER_ROUTER, 50)
    process = await site.start("doctor", *doctor)
    await process.process.wait()
    await process.stop()
    assert process.process.returncode == 1
    assert process.stdout == [f"conflict: device ID 50000 is also used by {OTHER_DEVICE}",
                              f"conflict: network 50 is also used by {OTHER_ROUTER}"]
