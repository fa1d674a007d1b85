"""Fair shares on BACnet/IP, over real sockets on loopback: confirmed requests per source,
unconfirmed requests such as Who-Is taken at a bounded rate, saved writes per source, the
foreign-device TTL cap and who may delete an FDT entry. Requests are sent as raw datagrams, as a
flooding host would."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from bacpypes3.apdu import ErrorPDU

from gateway.app import Gateway
from gateway.bacnet.shares import apdu_head
from gateway.bacnet.stack.bbmd import DELETE_FDT_ENTRY_NAK, Bbmd
from gateway.logging import event_counts
from tests.bacnet.client import free_udp_port
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.support import eventually

WHO_IS_GLOBAL = bytes.fromhex("810a000c0120ffff00ff1008")  # unicast to the router, every network
ROUTER_I_AM = bytes.fromhex("c40200c350")  # device,50000 in an I-Am


def read_property(instance: int, invoke_id: int) -> bytes:
    """ReadProperty(device,`instance`, Object_Name) to the router, unrouted."""
    apdu = bytes([0x00, 0x05, invoke_id, 0x0C, 0x0C]) + struct.pack(">I", (8 << 22) | instance) + b"\x19\x4d"
    npdu = b"\x01\x04" + apdu
    return b"\x81\x0a" + struct.pack(">H", 4 + len(npdu)) + npdu


class RawPeer(asyncio.DatagramProtocol):
    """A UDP socket on loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)

    async def bvlc_result(self) -> int:
        """The code of the next BVLC-Result (what else arrives meanwhile, such as forwarded
        broadcasts, is skipped)."""
        async with asyncio.timeout(5):
            while True:
                data = await self.received.get()
                if data[:4] == b"\x81\x00\x00\x06":
                    return int.from_bytes(data[4:6], "big")

    def drain(self) -> list[bytes]:
        got = []
        while not self.received.empty():
            got.append(self.received.get_nowait())
        return got


@pytest.fixture
async def raw_peer() -> AsyncIterator[Callable[..., Awaitable[RawPeer]]]:
    peers: list[RawPeer] = []

    async def make(host: str = "127.0.0.1", port: int = 0) -> RawPeer:
        _, peer = await asyncio.get_running_loop().create_datagram_endpoint(RawPeer, local_addr=(host, port))
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.transport.close()


def test_the_apdu_of_a_datagram_is_found_through_bvlc_and_npdu_headers() -> None:
    assert apdu_head(WHO_IS_GLOBAL) == (1, 8)
    assert apdu_head(read_property(50000, 7)) == (0, 12)
    routed = bytes.fromhex("810a0013012400320101ff0005070c0c00000001")  # to 50:1, hop count
    assert apdu_head(routed) == (0, 12)
    forwarded = bytes.fromhex("810400107f000001bac001001008")  # Forwarded-NPDU: 6 more header bytes
    assert apdu_head(forwarded) == (1, 8)
    assert apdu_head(bytes.fromhex("81050006003c")) is None  # Register-Foreign-Device: BVLL only
    assert apdu_head(bytes.fromhex("810a0007018001")) is None  # a network-layer message
    assert apdu_head(b"\x81\x0a\x00") is None  # too short to tell: bacpypes3 judges it


async def test_confirmed_requests_beyond_a_sources_rate_are_dropped_and_counted(
    make_line, start_gateway, tmp_path, raw_peer
) -> None:
    gateway = await serving(await start_gateway(bacnet_config(make_line(1), tmp_path, rate_limit=5)))
    port = gateway.config.bacnet.port
    flooder, other = await raw_peer(), await raw_peer("127.0.0.2")
    start = asyncio.get_running_loop().time()
    for invoke_id in range(40):
        flooder.transport.sendto(read_property(50000, invoke_id), ("127.0.0.1", port))
    other.transport.sendto(read_property(50000, 1), ("127.0.0.1", port))
    await eventually(lambda: not other.received.empty(), 10, "the other host's answer")
    await asyncio.sleep(0.3)
    elapsed = asyncio.get_running_loop().time() - start
    answered = len(flooder.drain())
    assert 5 <= answered <= 5 + 5 * elapsed + 1  # the burst, then the rate
    assert event_counts()["bacnet requests refused by bacnet.rate_limit"] >= 40 - answered
    await asyncio.sleep(0.5)  # the bucket refills
    flooder.transport.sendto(read_property(50000, 99), ("127.0.0.1", port))
    assert (await asyncio.wait_for(flooder.received.get(), 5))[6] == 0x30  # a ComplexACK again


async def test_who_is_is_answered_at_a_bounded_rate(make_line, start_gateway, tmp_path, raw_peer) -> None:
    gateway = await serving(await start_gateway(bacnet_config(make_line(1), tmp_path, unconfirmed_rate=3)))
    port = gateway.config.bacnet.port
    flooder = await raw_peer()
    start = asyncio.get_running_loop().time()
    for _ in range(50):
        flooder.transport.sendto(WHO_IS_GLOBAL, ("127.0.0.1", port))
    await asyncio.sleep(0.5)
    elapsed = asyncio.get_running_loop().time() - start
    answers = flooder.drain()
    by_router = sum(1 for answer in answers if ROUTER_I_AM in answer)
    assert 3 <= by_router <= 3 + 3 * elapsed + 1
    assert len(answers) == 3 * by_router  # the router and both nodes answer each one admitted
    assert event_counts()["bacnet unconfirmed requests dropped by bacnet.unconfirmed_rate"] >= 50 - by_router


async def test_saved_writes_beyond_a_sources_share_get_busy(make_line, start_gateway, tmp_path, make_client) -> None:
    gateway = await serving(await start_gateway(bacnet_config(make_line(1), tmp_path, max_saved_writes=2)))
    client, other = make_client(gateway), make_client(gateway, instance=4000002, host="127.0.0.2")
    for each in (client, other):
        await each.find_router()
    node = client.node(1)
    await client.write(node, "device,50001", "object-name", "PDU_A")
    await client.write(node, "device,50001", "object-name", "PDU_B")
    with pytest.raises(ErrorPDU) as busy:
        await client.write(node, "device,50001", "object-name", "PDU_C")
    assert (str(busy.value.errorClass), str(busy.value.errorCode)) == ("device", "busy")
    await client.write(node, "analog-value,1", "present-value", 1.0)  # other writes are not charged
    await other.write(other.node(1), "device,50001", "object-name", "PDU_D")  # another host has its share
    saved = json.loads(Path(gateway.config.gateway.state_file).read_text())
    assert saved["overrides"]["1"]["object_name"] == "PDU_D"
    assert str(await client.read(node, "device,50001", "object-name")) == "PDU_D"


async def test_foreign_device_ttl_is_capped_and_only_the_entry_or_a_peer_may_delete_it(
    make_line, start_gateway, tmp_path, raw_peer
) -> None:
    port, peer_port = free_udp_port(), free_udp_port()
    bdt = tmp_path / "bdt.ini"
    bdt.write_text(f"127.0.0.1,{port},255.255.255.255\n127.0.0.2,{peer_port},255.255.255.255\n")
    config = bacnet_config(make_line(1), tmp_path, port=port, bbmd=True, bdt_file=str(bdt), max_foreign_ttl=120)
    gateway = await serving(await start_gateway(config))
    gateway_at = ("127.0.0.1", port)
    device, stranger, peer = await raw_peer(), await raw_peer("127.0.0.3"), await raw_peer("127.0.0.2", peer_port)
    device_port = device.transport.get_extra_info("sockname")[1]
    device.transport.sendto(bytes.fromhex("81050006ffff"), gateway_at)  # Register-Foreign-Device, TTL 65535
    assert await device.bvlc_result() == 0
    fdt = bbmd_of(gateway).bbmdFDT
    assert [entry.fdTTL for entry in fdt] == [120]

    delete = bytes.fromhex("8108000a7f000001") + struct.pack(">H", device_port)
    stranger.transport.sendto(delete, gateway_at)
    assert await stranger.bvlc_result() == DELETE_FDT_ENTRY_NAK
    assert len(fdt) == 1
    assert event_counts()["bacnet delete-fdt-entry refused: not from the entry or a bdt peer"] >= 1
    peer.transport.sendto(delete, gateway_at)  # a BDT peer may
    assert await peer.bvlc_result() == 0
    assert len(fdt) == 0
    device.transport.sendto(bytes.fromhex("81050006003c"), gateway_at)
    assert await device.bvlc_result() == 0
    device.transport.sendto(delete, gateway_at)  # and the entry itself
    assert await device.bvlc_result() == 0
    assert len(fdt) == 0


def bbmd_of(gateway: Gateway) -> Bbmd:
    network = bacnet_face(gateway).network
    assert network is not None and network.bbmd is not None
    return network.bbmd


async def test_bvll_requests_count_in_the_sources_share(make_line, start_gateway, tmp_path, raw_peer) -> None:
    gateway = await serving(await start_gateway(bacnet_config(make_line(1), tmp_path, rate_limit=5)))
    flooder = await raw_peer()
    start = asyncio.get_running_loop().time()
    for _ in range(30):
        flooder.transport.sendto(bytes.fromhex("81020004"), ("127.0.0.1", gateway.config.bacnet.port))  # Read-BDT
    await asyncio.sleep(0.5)
    elapsed = asyncio.get_running_loop().time() - start
    assert 5 <= len(flooder.drain()) <= 5 + 5 * elapsed + 1


async def test_a_flood_read_in_one_batch_is_judged_datagram_by_datagram(
    make_line, start_gateway, tmp_path, raw_peer, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await serving(await start_gateway(bacnet_config(make_line(1), tmp_path, rate_limit=2)))
    port = gateway.config.bacnet.port
    flooder = await raw_peer()
    before = event_counts().get("bacnet requests refused by bacnet.rate_limit", 0)
    # All queued before the gateway reads any: the third is refused, and what follows it is read
    # at once: a Who-Is taken between two copies of the refused request, which stay refused.
    for datagram in (
        read_property(50000, 1),
        read_property(50000, 2),
        read_property(50000, 3),
        WHO_IS_GLOBAL,
        read_property(50000, 3),
        read_property(50000, 3),
    ):
        flooder.transport.sendto(datagram, ("127.0.0.1", port))
    await eventually(lambda: flooder.received.qsize() >= 5, 10, "two answers and three I-Ams")
    await asyncio.sleep(0.2)
    answers = flooder.drain()
    assert sorted(answer[7] for answer in answers if answer[6] == 0x30) == [1, 2]  # ComplexACKs, by invoke ID
    assert sum(1 for answer in answers if ROUTER_I_AM in answer) == 1
    assert event_counts()["bacnet requests refused by bacnet.rate_limit"] - before == 3
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
