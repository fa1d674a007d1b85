"""BBMD and foreign devices across an IP router, in network namespaces made for each test:

    subnet 10.231.1.0/24                    router                 subnet 10.231.2.0/24
    gw   10.231.1.1  (the gateway)    .1.254 | .2.254     peer 10.231.2.1   (a bacpypes3 BBMD)
    near 10.231.1.10 (a client)                           far  10.231.2.10  (the clients)

The gateway runs as `bcpm-gateway run` in the gw namespace against the simulated BCPM on a pty
(one board: nodes 1 and 2); the clients are bacpypes3 (remote_client.py) and @bacnet-js/client
(js/client.js) processes. Broadcasts do not cross the router: only the BBMDs carry them.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.bacnet.js_client import js_command
from tests.bacnet.netns import Process, Site, site_of
from tests.bacnet.peer import PEER_INSTANCE
from tests.support import TEST_BAUDRATE

GW, NEAR, PEER, FAR = "10.231.1.1", "10.231.1.10", "10.231.2.1", "10.231.2.10"
BACNET = 47808
FOREIGN_PORT = 47809  # a foreign device on the far subnet, beside the clients on 47808
NEAR_INSTANCE = 3999101
FOREIGN_INSTANCE = 3999102
GATEWAY_DEVICES = [[50000, GW], [50001, "50:1"], [50002, "50:2"]]
TWO_HOP = "255.255.255.255"
WRITE_BDT_NAK = 0x0010


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with site_of(
        {name: f"{address}/24" for name, address in (("gw", GW), ("near", NEAR), ("peer", PEER), ("far", FAR))}
    ) as site:
        yield site


def bdt(*lines: str) -> str:
    return "// test table\n//BBMD IP_Address , BBMD port , BBMD subnet Mask\n" + "\n".join(lines) + "\n"


async def start_peer(site: Site, *table: str) -> Process:
    """The bacpypes3 BBMD on the far subnet, with `table` ("ip/mask:port" each)."""
    peer = await site.start("peer", sys.executable, "-m", "tests.bacnet.peer", f"{PEER}/24:{BACNET}", *table)
    await peer.wait_for(lambda: "ready" in peer.stdout, 30, "peer BBMD")
    return peer


async def start_gateway(site: Site, line: Any, tmp_path: Path, bacnet: str, snmp: str = "enabled = false") -> Process:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n'
        f'[serial]\nport = "{line.path}"\nbaudrate = {TEST_BAUDRATE}\nscan = "1-4"\n'
        "timeout = 0.05\nprobe_timeout = 0.02\n"
        f'[bacnet]\naddress = "{GW}/24"\nport = {BACNET}\n{bacnet}\n'
        f'[snmp]\n{snmp}\n[modbus_tcp]\nenabled = false\n[log]\nformat = "json"\n'
    )
    gateway = await site.start("gw", sys.executable, "-m", "gateway", "run", "--config", str(config))
    await gateway.logged("bacnet ready", 60)
    return gateway


@pytest.fixture
async def bbmd_pair(site: Site, make_line, tmp_path: Path) -> AsyncIterator[tuple[Process, Path]]:
    """The gateway a BBMD with the far peer in its table (two-hop), and the peer with it."""
    table = tmp_path / "bdt.ini"
    table.write_text(bdt(f"{GW},{BACNET},{TWO_HOP}", f"{PEER},{BACNET},{TWO_HOP}"))
    await start_peer(site, f"{PEER}/32:{BACNET}", f"{GW}/32:{BACNET}")
    gateway = await start_gateway(site, make_line(1), tmp_path, f'bbmd = true\nbdt_file = "{table}"')
    yield gateway, table


def remote_client(host: str, steps: list[dict[str, Any]], port: int, options: dict[str, Any]) -> list[str]:
    address = {"gw": GW, "near": NEAR, "far": FAR}[host]
    program = {"address": f"{address}/24:{port}", "steps": steps, **options}
    return [sys.executable, "-m", "tests.bacnet.remote_client", json.dumps(program)]


async def bacpypes(site: Site, host: str, *steps: dict[str, Any], port: int = BACNET, **options: Any) -> list[Any]:
    """The bacpypes3 client on `host`: one result per step."""
    return json.loads(await site.run(host, *remote_client(host, list(steps), port, options)))


async def listening(site: Site, host: str, instance: int, until: str, port: int = BACNET, **options: Any) -> Process:
    """A bacpypes3 client on `host` that notes the Who-Is it hears (and answers it) for 8 s, or
    until it has answered one from `until`."""
    client = await site.start(
        host,
        *remote_client(host, [{"op": "listen", "seconds": 8, "until": until}], port, {"instance": instance, **options}),
    )
    await client.wait_for(lambda: "ready" in client.stderr, 30, "listening client")
    return client


async def heard_by(client: Process) -> list[str]:
    """The sources of the Who-Is a `listening` client heard."""
    await client.wait_for(lambda: client.process.returncode is not None, 30, "end of listening")
    [heard] = json.loads("\n".join(client.stdout))
    return heard


async def bacnet_js(site: Site, *steps: dict[str, Any], port: int = BACNET) -> list[Any]:
    """@bacnet-js/client on the far subnet."""
    argv, env = js_command(
        {
            "interface": FAR,
            "clientPort": port,
            "broadcastAddress": f"10.231.2.255:{BACNET}",
            "server": f"{GW}:{BACNET}",
            "steps": list(steps),
        }
    )
    return json.loads(await site.run("far", *argv, env=env))


def table_of(path: Path) -> list[str]:
    """What Read-BDT should answer for a bdt.ini: its lines as "ip:port mask m"."""
    lines = [line.split(",") for line in path.read_text().splitlines() if line and not line.startswith("//")]
    return [f"{ip}:{port} mask {mask}" for ip, port, mask in lines]


def js_devices(found: list[dict[str, Any]]) -> list[tuple[int, int | None, list[int] | None]]:
    return sorted((device["deviceId"], device["net"], device["adr"]) for device in found)


async def test_a_who_is_on_the_far_subnet_crosses_the_bbmd_pair_and_the_router_and_every_node_answer(
    site: Site, bbmd_pair
) -> None:
    near = await listening(site, "near", NEAR_INSTANCE, until=FAR)
    [found] = await bacpypes(site, "far", {"op": "whoIs", "seconds": 3})
    assert sorted(found) == [*GATEWAY_DEVICES, [PEER_INSTANCE, PEER], [NEAR_INSTANCE, NEAR]]
    # The gateway also re-broadcast the Who-Is its peer forwarded on its own subnet.
    assert FAR in await heard_by(near)


async def test_the_independent_client_on_the_far_subnet_finds_every_device_through_the_bbmd_pair(
    site: Site, bbmd_pair
) -> None:
    [found] = await bacnet_js(site, {"op": "whoIs", "waitMs": 3000})
    assert js_devices(found) == [(50000, None, None), (50001, 50, [1]), (50002, 50, [2]), (PEER_INSTANCE, None, None)]


@pytest.mark.parametrize("mask", [TWO_HOP, "255.255.255.0"])
async def test_a_broadcast_on_the_gateways_subnet_is_forwarded_to_the_peer_two_hop_or_directed(
    site: Site, make_line, tmp_path: Path, mask: str
) -> None:
    table = tmp_path / "bdt.ini"
    table.write_text(bdt(f"{GW},{BACNET},{TWO_HOP}", f"{PEER},{BACNET},{mask}"))
    if mask != TWO_HOP:
        site.forward_directed_broadcasts()  # the gateway sends to 10.231.2.255 through the router
    await start_peer(site, f"{PEER}/32:{BACNET}", f"{GW}/32:{BACNET}")
    await start_gateway(site, make_line(1), tmp_path, f'bbmd = true\nbdt_file = "{table}"')
    [found] = await bacpypes(site, "near", {"op": "whoIs", "seconds": 3})
    assert [PEER_INSTANCE, PEER] in found


async def test_read_bdt_answers_the_files_table_and_write_bdt_is_refused(site: Site, bbmd_pair) -> None:
    _, table = bbmd_pair
    expected = table_of(table)
    assert expected == [f"{GW}:{BACNET} mask {TWO_HOP}", f"{PEER}:{BACNET} mask {TWO_HOP}"]
    gateway = f"{GW}:{BACNET}"
    read, refused, read_again = await bacpypes(
        site,
        "far",
        {"op": "readBDT", "bbmd": gateway},
        {"op": "writeBDT", "bbmd": gateway},
        {"op": "readBDT", "bbmd": gateway},
    )
    assert (read, refused, read_again) == (expected, {"nak": WRITE_BDT_NAK}, expected)
    read, refused = await bacnet_js(site, {"op": "readBDT", "bbmd": gateway}, {"op": "writeBDT", "bbmd": gateway})
    assert (read, refused) == (expected, {"result": WRITE_BDT_NAK})


async def test_a_foreign_device_on_the_far_subnet_registers_shows_in_read_fdt_and_finds_every_device(
    site: Site, bbmd_pair
) -> None:
    gateway = f"{GW}:{BACNET}"
    near = await listening(site, "near", NEAR_INSTANCE, until=f"{FAR}:{FOREIGN_PORT}")
    table, found = await bacpypes(
        site,
        "far",
        {"op": "readFDT", "bbmd": gateway},
        {"op": "whoIs", "seconds": 3},
        port=FOREIGN_PORT,
        foreign={"bbmd": gateway, "ttl": 60},
    )
    [(address, ttl, remaining)] = table
    assert (address, ttl) == (f"{FAR}:{FOREIGN_PORT}", 60) and 60 < remaining <= 90
    # Its Distribute-Broadcast-To-Network reached the gateway, the gateway's subnet and the peer.
    assert sorted(found) == [*GATEWAY_DEVICES, [PEER_INSTANCE, PEER], [NEAR_INSTANCE, NEAR]]
    assert f"{FAR}:{FOREIGN_PORT}" in await heard_by(near)


async def test_broadcasts_on_the_gateways_subnet_reach_its_foreign_devices(site: Site, bbmd_pair) -> None:
    gateway = f"{GW}:{BACNET}"
    device = await listening(
        site, "far", FOREIGN_INSTANCE, until=NEAR, port=FOREIGN_PORT, foreign={"bbmd": gateway, "ttl": 60}
    )
    [found] = await bacpypes(site, "near", {"op": "whoIs", "seconds": 3})
    assert [FOREIGN_INSTANCE, f"{FAR}:{FOREIGN_PORT}"] in found
    assert NEAR in await heard_by(device)


async def test_the_independent_client_registers_as_a_foreign_device_and_its_who_is_goes_through(
    site: Site, bbmd_pair
) -> None:
    gateway = f"{GW}:{BACNET}"
    registered, found = await bacnet_js(
        site,
        {"op": "registerForeignDevice", "bbmd": gateway, "ttl": 60},
        {"op": "whoIsThroughBBMD", "bbmd": gateway, "waitMs": 3000},
        port=FOREIGN_PORT,
    )
    assert registered == "ok"
    # The library sends a local Who-Is (no global DNET) this way: the router and the peer answer;
    # the meters behind the router answer only a global one.
    assert js_devices(found) == [(50000, None, None), (PEER_INSTANCE, None, None)]
    [table] = await bacpypes(site, "far", {"op": "readFDT", "bbmd": gateway})
    assert [address for address, _, _ in table] == [f"{FAR}:{FOREIGN_PORT}"]


async def test_sighup_rereads_bdt_ini_and_a_bad_file_keeps_the_table_in_use(site: Site, bbmd_pair) -> None:
    gateway, table = bbmd_pair
    read = {"op": "readBDT", "bbmd": f"{GW}:{BACNET}"}
    table.write_text(bdt(f"{GW},{BACNET},{TWO_HOP}", f"{PEER},{BACNET},{TWO_HOP}", f"10.231.2.99,{BACNET},{TWO_HOP}"))
    gateway.process.send_signal(signal.SIGHUP)
    await gateway.logged("bdt file reloaded")
    new_table = table_of(table)
    assert await bacpypes(site, "far", read) == [new_table]

    good = table.read_text()
    table.write_text(good + "10.231.2.98;47808;255.255.255.255\n")
    gateway.process.send_signal(signal.SIGHUP)
    refused = await gateway.logged("bdt file not reloaded: the table in use stays")
    assert "line 6: '10.231.2.98;47808;255.255.255.255'" in refused["detail"]
    assert refused["table"] == new_table
    # Same table, and the router and its meters still answer: nothing was rebuilt.
    stays, found = await bacpypes(site, "far", read, {"op": "whoIs", "seconds": 3})
    assert stays == new_table
    assert sorted(found) == [*GATEWAY_DEVICES, [PEER_INSTANCE, PEER]]
    assert gateway.process.returncode is None


async def test_the_gateway_as_a_foreign_device_of_the_far_bbmd(site: Site, make_line, tmp_path: Path) -> None:
    await start_peer(site, f"{PEER}/32:{BACNET}")
    gateway = await start_gateway(site, make_line(1), tmp_path, f'foreign_bbmd = "{PEER}:{BACNET}"\nforeign_ttl = 60')
    registered = await gateway.logged("foreign device registered")
    assert (registered["bbmd"], registered["ttl"], registered["state"]) == (f"{PEER}:{BACNET}", 60, "registered")
    table, found = await bacpypes(
        site, "far", {"op": "readFDT", "bbmd": f"{PEER}:{BACNET}"}, {"op": "whoIs", "seconds": 3}
    )
    assert [(address, ttl) for address, ttl, _ in table] == [(f"{GW}:{BACNET}", 60)]
    assert sorted(found) == [*GATEWAY_DEVICES, [PEER_INSTANCE, PEER]]
