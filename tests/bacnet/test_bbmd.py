"""The gateway as a BBMD, on loopback: the table from bdt.ini, Read-BDT, Read-FDT, Write-BDT
refused, foreign-device registrations bounded, SIGHUP reload. Forwarding between subnets is in
test_routed.py, in network namespaces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog
from bacpypes3.apdu import ErrorPDU
from bacpypes3.ipv4.bvll import Result
from bacpypes3.pdu import IPv4Address

from gateway.app import Gateway, running
from gateway.bacnet.bdt import BdtError
from gateway.bacnet.stack.bbmd import GRACE_PERIOD, REGISTER_FOREIGN_DEVICE_NAK, Bbmd
from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.bacnet.client import free_udp_port
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.support import eventually

WRITE_BDT_NAK = 0x0010
TWO_HOP = "255.255.255.255"
# Peers on loopback addresses where nobody listens: what the gateway forwards to them stays here.
# (Not on the gateway's port: bacpypes3 takes any 127.x on its own port for itself.)
PEER = "127.0.0.2"
OTHER_PEER = "127.0.0.3"
PEER_PORT = free_udp_port()


def bdt_text(port: int, *peers: str) -> str:
    return (
        "\n".join(
            ["// Bdt.ini", "//BBMD IP_Address , BBMD port , BBMD subnet Mask", f"127.0.0.1,{port},{TWO_HOP}", *peers]
        )
        + "\n"
    )


@pytest.fixture
async def bbmd_gateway(make_line, start_gateway, tmp_path: Path) -> AsyncIterator[tuple[Gateway, Path]]:
    """A gateway that is a BBMD with itself and one two-hop peer in its table, at most 2 foreign
    devices; yields the gateway and its bdt.ini."""
    port = free_udp_port()
    bdt = tmp_path / "bdt.ini"
    bdt.write_text(bdt_text(port, f"{PEER},{PEER_PORT},{TWO_HOP}"))
    config = bacnet_config(make_line(1), tmp_path, port=port, bbmd=True, bdt_file=str(bdt), max_foreign_devices=2)
    yield await serving(await start_gateway(config)), bdt


async def test_read_bdt_answers_the_table_of_the_file(bbmd_gateway, make_client) -> None:
    gateway, _ = bbmd_gateway
    port = gateway.config.bacnet.port
    client = make_client(gateway)
    assert await client.read_bdt() == [f"127.0.0.1:{port} mask {TWO_HOP}", f"{PEER}:{PEER_PORT} mask {TWO_HOP}"]


async def test_write_bdt_is_refused_with_the_standard_nak_and_changes_nothing(bbmd_gateway, make_client) -> None:
    gateway, _ = bbmd_gateway
    client = make_client(gateway)
    before = await client.read_bdt()
    with pytest.raises(Result) as refused:
        await client.bvll.write_broadcast_distribution_table(client.gateway, [IPv4Address("127.0.0.9/32:47808")])
    assert refused.value.bvlciResultCode == WRITE_BDT_NAK
    assert await client.read_bdt() == before


async def test_a_foreign_device_registers_and_read_fdt_shows_its_ttl_with_the_grace_period(
    bbmd_gateway, make_client
) -> None:
    gateway, _ = bbmd_gateway
    device = make_client(gateway, foreign_ttl=60)
    await eventually(lambda: device.link_layer.bbmdRegistrationStatus == 0, 10, "the registration")
    [entry] = await make_client(gateway).read_fdt()
    assert entry.fdAddress == IPv4Address(f"127.0.0.1:{device.port}")
    assert entry.fdTTL == 60
    assert 60 < entry.fdRemain <= 60 + GRACE_PERIOD


async def test_a_registered_foreign_devices_broadcast_who_is_finds_the_router_and_every_node(
    bbmd_gateway, make_client
) -> None:
    gateway, _ = bbmd_gateway
    device = make_client(gateway, foreign_ttl=60)
    await eventually(lambda: device.link_layer.bbmdRegistrationStatus == 0, 10, "the registration")
    found = await device.app.who_is(timeout=2)  # a global broadcast: Distribute-Broadcast-To-Network
    assert sorted(i_am.iAmDeviceIdentifier[1] for i_am in found) == [50000, 50001, 50002]


async def test_the_network_port_shows_bbmd_mode_and_the_live_tables(bbmd_gateway, make_client) -> None:
    gateway, _ = bbmd_gateway
    port = gateway.config.bacnet.port
    device = make_client(gateway, foreign_ttl=60)
    await eventually(lambda: device.link_layer.bbmdRegistrationStatus == 0, 10, "the registration")
    client = make_client(gateway)
    router = client.router
    assert str(await client.read(router, "network-port,1", "bacnet-ip-mode")) == "bbmd"
    bdt = await client.read(router, "network-port,1", "bbmd-broadcast-distribution-table")
    assert [(str(entry.bbmdAddress.address), bytes(entry.broadcastMask)) for entry in bdt] == [
        (f"127.0.0.1:{port}", b"\xff" * 4),
        (f"{PEER}:{PEER_PORT}", b"\xff" * 4),
    ]
    [fdt] = await client.read(router, "network-port,1", "bbmd-foreign-device-table")
    assert (bytes(fdt.bacnetIPAddress), fdt.timeToLive) == (IPv4Address(f"127.0.0.1:{device.port}").addrAddr, 60)
    with pytest.raises(ErrorPDU) as refused:
        await client.write(router, "network-port,1", "bbmd-accept-fd-registrations", False)
    assert str(refused.value.errorCode) == "write-access-denied"


async def test_registrations_beyond_the_table_size_are_refused_and_renewals_still_pass() -> None:
    bbmd = Bbmd(IPv4Address(f"127.0.0.1/8:{free_udp_port()}"), (), max_foreign_devices=2)
    try:
        first, second, third = (IPv4Address(f"127.0.0.1:{port}") for port in (50001, 50002, 50003))
        assert bbmd.register_foreign_device(first, 30) == 0
        assert bbmd.register_foreign_device(second, 30) == 0
        assert bbmd.register_foreign_device(third, 30) == REGISTER_FOREIGN_DEVICE_NAK
        assert bbmd.register_foreign_device(first, 300) == 0  # a renewal takes no new place
        assert [(entry.fdAddress, entry.fdTTL) for entry in bbmd.bbmdFDT] == [(first, 300), (second, 30)]
        # Read-FDT carries the time remaining in 16 bits; TTL + grace must not wrap around.
        assert bbmd.register_foreign_device(second, 65535) == 0
        assert bbmd.bbmdFDT[1].fdRemain == 65535
    finally:
        bbmd.close()


async def test_sighup_reload_takes_a_good_file_and_a_bad_one_keeps_the_table_in_use(bbmd_gateway, make_client) -> None:
    gateway, bdt = bbmd_gateway
    port = gateway.config.bacnet.port
    face = bacnet_face(gateway)
    client = make_client(gateway)
    bdt.write_text(bdt_text(port, f"{OTHER_PEER},{PEER_PORT},255.255.255.0"))
    with structlog.testing.capture_logs() as logs:
        face.reload()
    reloaded = [f"127.0.0.1:{port} mask {TWO_HOP}", f"{OTHER_PEER}:{PEER_PORT} mask 255.255.255.0"]
    assert await client.read_bdt() == reloaded
    assert any(entry["event"] == "bdt file reloaded" for entry in logs)

    bdt.write_text(bdt_text(port, f"{PEER},{PEER_PORT}") + "\n127.0.0.4,47808,255.255.0.255\n")
    with structlog.testing.capture_logs() as logs:
        face.reload()
    assert await client.read_bdt() == reloaded
    [error] = [entry for entry in logs if entry["log_level"] == "error"]
    assert error["event"] == "bdt file not reloaded: the table in use stays"
    assert "line 4:" in error["detail"] and "line 6:" in error["detail"] and str(bdt) in error["detail"]
    assert face.network is not None  # the virtual network was never dropped
    assert await client.find_router() == 50


async def test_a_bad_bdt_file_stops_the_face_naming_the_file_and_line(make_line, tmp_path: Path) -> None:
    port = free_udp_port()
    bdt = tmp_path / "bdt.ini"
    bdt.write_text(f"// this gateway is missing\n{PEER},{PEER_PORT},255.255.255.255,\n")
    config = bacnet_config(make_line(1), tmp_path, port=port, bbmd=True, bdt_file=str(bdt))
    with pytest.raises(BdtError) as failed:
        async with running(config):
            pytest.fail("the gateway started without its BACnet face")
    assert str(bdt) in str(failed.value)
    assert "line 2:" in str(failed.value) and f"no line for this gateway (127.0.0.1:{port}" in str(failed.value)


async def test_the_bbmd_table_size_is_a_setting_with_a_range() -> None:
    assert parse_config({}).bacnet.max_foreign_devices == 64
    for bad in (0, 1025, "64"):
        with pytest.raises(ConfigError, match="bacnet.max_foreign_devices"):
            parse_config({"bacnet": {"max_foreign_devices": bad}})
