"""The network numbers of the router's ports (`bacnet.ip_network`, `bacnet.network`): what the
Network Port objects say (read with @bacnet-js/client) and what the router answers to
What-Is-Network-Number (the bytes on the wire) agree. A configured number is claimed as
configured; "auto" claims nothing until a router of the IP network tells the number, which is then
learned (or learned-configured) and answered as learned (ASHRAE 135 6.4.19, 6.4.20, 12.56)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from bacpypes3.ipv4.bvll import LPDU
from bacpypes3.npdu import NPCI
from bacpypes3.pdu import PDU

from tests.bacnet.conftest import bacnet_config, serving
from tests.bacnet.js_client import bacnet_js
from tests.bacnet.test_conformance import meter
from tests.bacnet.test_device_objects import read
from tests.bacnet.test_lifecycle import broadcast_listener

NETWORK_PORT, NETWORK_NUMBER, NETWORK_NUMBER_QUALITY, LINK_SPEED = 56, 425, 426, 420
UNKNOWN, LEARNED, LEARNED_CONFIGURED, CONFIGURED = 0, 1, 2, 3  # BACnetNetworkNumberQuality
FLAG_LEARNED, FLAG_CONFIGURED = 0, 1  # the flag of Network-Number-Is
WHAT_IS_NETWORK_NUMBER = bytes.fromhex("810b0007018012")  # Original-Broadcast-NPDU, a network message
IP_PORT, VIRTUAL_PORT = 1, 2  # the router's ports; a node's one port is 1
WHAT_IS_NETWORK_NUMBER_TYPE, NETWORK_NUMBER_IS = 0x12, 0x13  # network layer message types


def network_number_is(network: int, flag: int) -> bytes:
    """A Network-Number-Is as a router broadcasts it on BACnet/IP."""
    return bytes.fromhex("810b000a018013") + network.to_bytes(2) + bytes([flag])


async def port_numbering(port: int, target: dict | None = None, instance: int = IP_PORT) -> tuple[int, int]:
    number, quality = await bacnet_js(
        port,
        read(target, NETWORK_PORT, instance, NETWORK_NUMBER),
        read(target, NETWORK_PORT, instance, NETWORK_NUMBER_QUALITY),
    )
    return number[0], quality[0]


async def answers_to_what_is_network_number(port: int) -> list[bytes]:
    """The Network-Number-Is the gateway broadcasts within a second of a What-Is-Network-Number."""
    heard = []
    with (
        broadcast_listener(port) as listener,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as asker,
    ):
        asker.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        asker.bind(("127.0.0.1", 0))
        asker.sendto(WHAT_IS_NETWORK_NUMBER, ("127.255.255.255", port))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                while True:
                    datagram = await loop.sock_recv(listener, 2048)
                    if network_message(datagram) == NETWORK_NUMBER_IS:
                        heard.append(datagram)
    return heard


async def announce(port: int, network: int, configured: bool) -> None:
    """A router of the IP network announces its number (as @bacnet-js/client encodes it)."""
    assert await bacnet_js(port, {"op": "networkNumberIs", "network": network, "configured": configured}) == ["sent"]


async def test_a_configured_ip_network_is_shown_and_answered_as_configured(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path, ip_network=7)))
    port = gateway.config.bacnet.port
    assert await port_numbering(port) == (7, CONFIGURED)
    assert await answers_to_what_is_network_number(port) == [network_number_is(7, FLAG_CONFIGURED)]
    await announce(port, 9, configured=True)  # a router that disagrees does not change it
    assert await port_numbering(port) == (7, CONFIGURED)


async def test_auto_claims_no_number_until_a_router_tells_it(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway  # the shipped ip_network = "auto"
    port = gateway.config.bacnet.port
    assert await port_numbering(port) == (0, UNKNOWN)
    assert await answers_to_what_is_network_number(port) == []  # silent: it does not know
    await announce(port, 9, configured=True)
    await _until_numbered(port, (9, LEARNED_CONFIGURED))
    assert await answers_to_what_is_network_number(port) == [network_number_is(9, FLAG_LEARNED)]
    assert await port_numbering(port) == (9, LEARNED_CONFIGURED)  # its own answer teaches it nothing


async def test_auto_takes_a_learned_number_as_learned(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    port = gateway.config.bacnet.port
    await announce(port, 1, configured=False)  # the very number the router routes with meanwhile
    await _until_numbered(port, (1, LEARNED))
    assert await answers_to_what_is_network_number(port) == [network_number_is(1, FLAG_LEARNED)]


async def test_the_virtual_network_ports_have_its_number_and_a_link_speed(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    port, network = gateway.config.bacnet.port, gateway.config.bacnet.network
    assert await port_numbering(port, None, VIRTUAL_PORT) == (network, CONFIGURED)
    assert await port_numbering(port, meter(1), 1) == (network, CONFIGURED)
    speeds = await bacnet_js(
        port,
        *(
            read(target, NETWORK_PORT, instance, LINK_SPEED)
            for target, instance in ((None, 1), (None, 2), (meter(1), 1))
        ),
    )
    assert speeds == [[0], [0], [0]]  # unknown: loopback here, and a virtual network has none


async def test_auto_asks_the_ip_network_its_number_at_start(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path)
    heard: list[int | None] = []
    with broadcast_listener(config.bacnet.port) as listener:
        await serving(await start_gateway(config))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                while WHAT_IS_NETWORK_NUMBER_TYPE not in heard:
                    heard.append(network_message(await loop.sock_recv(listener, 2048)))
    assert WHAT_IS_NETWORK_NUMBER_TYPE in heard


def network_message(datagram: bytes) -> int | None:
    """The network layer message type of a BACnet/IP datagram (None for an APDU); bacpypes3 decodes."""
    return NPCI.decode(PDU(LPDU.decode(PDU(datagram)).pduData)).npduNetMessage


async def _until_numbered(port: int, numbering: tuple[int, int]) -> None:
    for _ in range(20):
        if await port_numbering(port) == numbering:
            return
        await asyncio.sleep(0.1)
    assert await port_numbering(port) == numbering
