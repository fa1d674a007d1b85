"""The network doctor, on hosts of network namespaces: another device with one of the gateway's
device IDs, or another router to its virtual network, is each logged once, shown on the router
device's Reliability (read with @bacnet-js/client), sent as an SNMP notification (received by
net-snmp's snmptrapd) and cleared when it goes away; `bcpm-gateway doctor` runs the same checks
once and prints them."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.snmp.placement import default_layout
from tests.bacnet.js_client import js_command
from tests.bacnet.netns import Process, Site, site_of
from tests.bacnet.test_routed import start_gateway
from tests.snmp.netsnmp import dotted, environment, tool

GW, OTHER_DEVICE, OTHER_ROUTER, DOCTOR = "10.231.1.1", "10.231.1.2", "10.231.1.3", "10.231.1.4"
BACNET = 47808
CLIENT_PORT = 47809  # the JS client beside the doctor's host
RELIABILITY, NO_FAULT_DETECTED, CONFIGURATION_ERROR = 103, 0, 10
SNMP, TRAPS = 16161, 16162  # on the gateway's host, a namespace of the test's own
NOTIFICATIONS = {n.name: dotted(n.oid) for n in default_layout().notifications}
NOTIFY_OBJECTS = {c.name: dotted(c.oid) for c in default_layout().notify_objects}


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with site_of(
        {
            name: f"{address}/24"
            for name, address in (("gw", GW), ("device", OTHER_DEVICE), ("rival", OTHER_ROUTER), ("doctor", DOCTOR))
        }
    ) as site:
        yield site


async def start_other(site: Site, kind: str, host: str, address: str, number: int) -> Process:
    other = await site.start(
        host, sys.executable, "-m", "tests.bacnet.other_party", kind, f"{address}/24:{BACNET}", str(number)
    )
    await other.wait_for(lambda: "ready" in other.stdout, 30, f"the other {kind}")
    return other


async def router_reliability(site: Site) -> int:
    argv, env = js_command(
        {
            "interface": DOCTOR,
            "server": f"{GW}:{BACNET}",
            "broadcastAddress": f"10.231.1.255:{BACNET}",
            "clientPort": CLIENT_PORT,
            "serverPort": BACNET,
            "steps": [
                {"op": "readProperty", "target": None, "objectType": 8, "instance": 50000, "property": RELIABILITY}
            ],
        }
    )
    [value] = json.loads(await site.run("doctor", *argv, env=env))
    return int(value[0])


async def trap_receiver(site: Site, folder: Path) -> Process:
    """snmptrapd on the gateway's host; one line a trap: "OID = TYPE: value" fields split by |."""
    folder.mkdir()
    (folder / "snmptrapd.conf").write_text("disableAuthorization yes\n")
    receiver = await site.start(
        "gw",
        tool("snmptrapd"),
        "-f",
        "-Lo",
        "-C",
        "-c",
        str(folder / "snmptrapd.conf"),
        "-n",
        "-On",
        "-F",
        "TRAP %V|%v\n",
        f"udp:{GW}:{TRAPS}",
        env=environment(folder),
    )
    await receiver.wait_for(lambda: any("NET-SNMP version" in line for line in receiver.stdout), 10, "snmptrapd")
    return receiver


def traps(receiver: Process, notification: str) -> list[dict[str, str]]:
    """The objects of each trap of that notification, by name."""
    found = []
    for line in receiver.stdout:
        fields = dict(field.split(" = ", 1) for field in line.removeprefix("TRAP ").split("|") if " = " in field)
        if fields.get(".1.3.6.1.6.3.1.1.4.1.0") == f"OID: {NOTIFICATIONS[notification]}":
            found.append(
                {name: fields.get(oid + ".0", "") for name, oid in NOTIFY_OBJECTS.items() if oid + ".0" in fields}
            )
    return found


@pytest.mark.parametrize(
    ("kind", "host", "address", "number", "event", "notification"),
    [
        ("device", "device", OTHER_DEVICE, 50001, "bacnet device id conflict", "bcpmDeviceIdConflict"),
        ("router", "rival", OTHER_ROUTER, 50, "bacnet network conflict", "bcpmNetworkNumberConflict"),
    ],
    ids=["a device ID in use elsewhere", "another router to the virtual network"],
)
async def test_a_conflict_is_logged_once_shown_on_the_router_notified_and_cleared(
    site, make_line, tmp_path, kind: str, host: str, address: str, number: int, event: str, notification: str
) -> None:
    receiver = await trap_receiver(site, tmp_path / "snmptrapd")
    gateway = await start_gateway(
        site,
        make_line(1),
        tmp_path,
        "doctor_interval = 1",
        snmp=f'address = "{GW}"\nport = {SNMP}\nnotify_hosts = ["{GW}:{TRAPS}"]',
    )
    assert await router_reliability(site) == NO_FAULT_DETECTED
    other = await start_other(site, kind, host, address, number)
    conflict = await gateway.logged(event, 30)
    assert (conflict["level"], conflict["number"], conflict["other"]) == ("error", number, address)
    assert await router_reliability(site) == CONFIGURATION_ERROR
    await other.stop()
    await gateway.logged(f"{event} cleared", 30)
    assert await router_reliability(site) == NO_FAULT_DETECTED
    assert [logged["event"] for logged in gateway.events()].count(event) == 1
    await receiver.wait_for(lambda: bool(traps(receiver, f"{notification}Cleared")), 10, "the cleared trap")
    expected = {"bcpmNotifyBacnetNumber": f"Gauge32: {number}", "bcpmNotifyBacnetOther": f'STRING: "{address}"'}
    assert traps(receiver, notification) == [expected]
    assert traps(receiver, f"{notification}Cleared") == [expected]


async def test_the_doctor_command_prints_what_it_finds(site, tmp_path: Path) -> None:
    config = tmp_path / "doctor.toml"
    config.write_text(
        f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n[bacnet]\naddress = "{DOCTOR}/24"\nport = {BACNET}\n'
    )
    doctor = [sys.executable, "-m", "gateway", "doctor", "--config", str(config)]
    assert (
        await site.run("doctor", *doctor)
    ).strip() == "no conflict: nobody else routes network 50 or has device IDs 50000"
    await start_other(site, "device", "device", OTHER_DEVICE, 50000)
    await start_other(site, "router", "rival", OTHER_ROUTER, 50)
    process = await site.start("doctor", *doctor)
    await process.process.wait()
    await process.stop()
    assert process.process.returncode == 1
    assert process.stdout == [
        f"conflict: device ID 50000 is also used by {OTHER_DEVICE}",
        f"conflict: network 50 is also used by {OTHER_ROUTER}",
    ]
