"""The IP side's network number (`bacnet.ip_network`): configured and shown as such, or learned
from a router of the IP network and never claimed as configured. Read with @bacnet-js/client."""

from __future__ import annotations

import asyncio
import contextlib

from bacpypes3.ipv4.bvll import LPDU
from bacpypes3.npdu import NPCI
from bacpypes3.pdu import PDU

from tests.bacnet.conftest import bacnet_config, serving
from tests.bacnet.js_client import bacnet_js
from tests.bacnet.test_device_objects import read
from tests.bacnet.test_lifecycle import broadcast_listener

NETWORK_PORT, NETWORK_NUMBER, NETWORK_NUMBER_QUALITY = 56, 425, 426
LEARNED, CONFIGURED = 1, 3
WHAT_IS_NETWORK_NUMBER = 0x12


async def ip_side(port: int) -> tuple[int, int]:
    number, quality = await bacnet_js(
        port, read(None, NETWORK_PORT, 1, NETWORK_NUMBER), read(None, NETWORK_PORT, 1, NETWORK_NUMBER_QUALITY)
    )
    return number[0], quality[0]


async def test_a_configured_ip_network_is_shown_as_configured(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path, ip_network=7)))
    assert await ip_side(gateway.config.bacnet.port) == (7, CONFIGURED)


async def test_auto_falls_back_to_1_marked_learned_and_takes_what_a_router_announces(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    port = gateway.config.bacnet.port
    assert await ip_side(port) == (1, LEARNED)
    assert await bacnet_js(port, {"op": "networkNumberIs", "network": 9, "configured": True}) == ["sent"]
    for _ in range(20):
        if await ip_side(port) != (1, LEARNED):
            break
        await asyncio.sleep(0.1)
    assert await ip_side(port) == (9, LEARNED)  # learned, though the announcing router configured it


async def test_auto_asks_the_ip_network_its_number_at_start(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path)
    heard: list[int | None] = []
    with broadcast_listener(config.bacnet.port) as listener:
        await serving(await start_gateway(config))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                while WHAT_IS_NETWORK_NUMBER not in heard:
                    heard.append(network_message(await loop.sock_recv(listener, 2048)))
    assert WHAT_IS_NETWORK_NUMBER in heard


def network_message(datagram: bytes) -> int | None:
    """The network layer message type of a BACnet/IP datagram (None for an APDU); bacpypes3 decodes."""
    return NPCI.decode(PDU(LPDU.decode(PDU(datagram)).pduData)).npduNetMessage
