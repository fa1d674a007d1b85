"""The device objects tell the truth, read with @bacnet-js/client: the services each device
executes, the standard's Property_List, the live COV subscriptions, the time zone of a device that
takes UTC time, an I-Am when a device's ID changes, and a Database_Revision that goes up and stays up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bacpypes3.primitivedata import ObjectIdentifier

from gateway.app import running
from tests.bacnet.client import free_udp_port
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.bacnet.js_client import bacnet_js
from tests.bacnet.test_conformance import meter
from tests.bacnet.test_lifecycle import broadcast_listener, decode_broadcast
from tests.support import eventually, gateway_config

ANALOG_INPUT, ANALOG_VALUE, DEVICE, NETWORK_PORT = 0, 2, 8, 56
PROTOCOL_SERVICES_SUPPORTED, PROPERTY_LIST, ACTIVE_COV_SUBSCRIPTIONS = 97, 371, 152
UTC_OFFSET, DAYLIGHT_SAVINGS_STATUS, DATABASE_REVISION, OBJECT_NAME = 119, 24, 155, 77
NEVER_LISTED = {75, 77, 79, 371}  # Object_Identifier, Object_Name, Object_Type, Property_List
# BACnet service choices (confirmed, then unconfirmed at 26 + choice: the bit positions of
# Protocol_Services_Supported).
NODE_SERVICES = {
    5: "SubscribeCOV",
    12: "ReadProperty",
    14: "ReadPropertyMultiple",
    15: "WriteProperty",
    16: "WritePropertyMultiple",
    17: "DeviceCommunicationControl",
    26: "I-Am",
    27: "I-Have",
    33: "Who-Has",
    34: "Who-Is",
}
ROUTER_SERVICES = {**NODE_SERVICES, 20: "ReinitializeDevice", 32: "TimeSynchronization", 36: "UTCTimeSynchronization"}


def bits(octets: list[int]) -> set[int]:
    """The bits set in a BIT STRING as @bacnet-js/client gives it (bit n = octet n // 8, bit n % 8)."""
    return {n for n in range(8 * len(octets)) if octets[n // 8] >> (n % 8) & 1}


def read(target: dict[str, Any] | None, object_type: int, instance: int, prop: int) -> dict[str, Any]:
    return {"op": "readProperty", "target": target, "objectType": object_type, "instance": instance, "property": prop}


async def test_protocol_services_supported_lists_exactly_what_each_device_executes(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    router, node = await bacnet_js(
        gateway.config.bacnet.port,
        read(None, DEVICE, 50000, PROTOCOL_SERVICES_SUPPORTED),
        read(meter(1), DEVICE, 50001, PROTOCOL_SERVICES_SUPPORTED),
    )
    assert bits(router[0]) == set(ROUTER_SERVICES)
    assert bits(node[0]) == set(NODE_SERVICES)


async def test_property_list_leaves_out_what_every_object_has(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    lists = await bacnet_js(
        gateway.config.bacnet.port,
        read(None, DEVICE, 50000, PROPERTY_LIST),
        read(None, ANALOG_VALUE, 1, PROPERTY_LIST),
        read(None, NETWORK_PORT, 1, PROPERTY_LIST),
        read(meter(1), DEVICE, 50001, PROPERTY_LIST),
        read(meter(1), ANALOG_INPUT, 1336, PROPERTY_LIST),
        read(meter(1), ANALOG_VALUE, 8, PROPERTY_LIST),
    )
    for listed in lists:
        assert isinstance(listed, list) and listed, listed
        assert not NEVER_LISTED & set(listed)
    assert 85 in lists[4]  # Present_Value


async def test_active_cov_subscriptions_lists_the_live_ones(bacnet_gateway, client) -> None:
    gateway, _ = bacnet_gateway
    await client.subscribe(client.node(1), "analog-input,1336", process=7, confirmed=False, lifetime=300)
    [subscriptions, none] = await bacnet_js(
        gateway.config.bacnet.port,
        read(meter(1), DEVICE, 50001, ACTIVE_COV_SUBSCRIPTIONS),
        read(meter(2), DEVICE, 50002, ACTIVE_COV_SUBSCRIPTIONS),
    )
    [subscription] = subscriptions
    assert subscription["subscriptionProcessId"] == 7
    assert subscription["monitoredObjectId"] == {"type": ANALOG_INPUT, "instance": 1336}
    assert subscription["recipient"]["address"] == [127, 0, 0, 1, client.port >> 8, client.port & 0xFF]
    assert 0 < subscription["timeRemaining"] <= 300
    assert none == []


async def test_a_device_that_takes_utc_time_has_utc_offset_and_daylight_saving(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    offset, dst = await bacnet_js(
        gateway.config.bacnet.port,
        read(None, DEVICE, 50000, UTC_OFFSET),
        read(None, DEVICE, 50000, DAYLIGHT_SAVINGS_STATUS),
    )
    assert offset == [time.timezone // 60]
    assert dst == [time.localtime().tm_isdst > 0]


async def test_a_device_whose_id_changed_announces_itself(bacnet_gateway, client) -> None:
    gateway, _ = bacnet_gateway
    heard = []
    with broadcast_listener(gateway.config.bacnet.port) as listener:
        await client.write(client.node(2), "device,50002", "object-identifier", ObjectIdentifier("device,61000"))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while ("i-am", 61000) not in heard:
                    heard.append(decode_broadcast(await loop.sock_recv(listener, 2048)))
    assert ("i-am", 61000) in heard


async def test_the_bacnet_ip_port_has_what_clause_12_requires(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    ip_port, virtual_port = await bacnet_js(
        gateway.config.bacnet.port,
        read(None, NETWORK_PORT, 1, PROPERTY_LIST),
        read(meter(1), NETWORK_PORT, 1, PROPERTY_LIST),
    )
    apdu_length, link_speed, bacnet_ip_mode, ip_address, udp_port, subnet_mask = 399, 420, 408, 400, 412, 411
    default_gateway, dns_server, network_number, quality = 401, 406, 425, 426
    assert {
        apdu_length,
        link_speed,
        bacnet_ip_mode,
        ip_address,
        udp_port,
        subnet_mask,
        default_gateway,
        dns_server,
        network_number,
        quality,
    } <= set(ip_port)
    assert {apdu_length, network_number, quality} <= set(virtual_port)


def revisions(*devices: tuple[dict[str, Any] | None, int]) -> list[dict[str, Any]]:
    return [read(target, DEVICE, instance, DATABASE_REVISION) for target, instance in devices]


EVERY_DEVICE = ((None, 50000), (meter(1), 50001), (meter(2), 50002))


async def test_database_revision_goes_up_with_a_new_name_or_a_circuit_named_and_stays_up_after_a_restart(
    make_line, tmp_path
) -> None:
    config = bacnet_config(make_line(1), tmp_path)
    port = config.bacnet.port
    async with running(config) as gateway:
        await serving(gateway)
        before = await bacnet_js(port, *revisions(*EVERY_DEVICE))
        written, *after = await bacnet_js(
            port,
            {
                "op": "writeProperty",
                "target": meter(2),
                "objectType": DEVICE,
                "instance": 50002,
                "property": OBJECT_NAME,
                "text": "PDU-B",
            },
            *revisions(*EVERY_DEVICE),
        )
        assert written == "ok"
        [[same_name]] = await bacnet_js(port, read(meter(2), DEVICE, 50002, OBJECT_NAME))
        assert same_name == "PDU-B"
        await gateway.nodes.name_circuits(2, {7: "Rack A12 PDU A"})  # the Description of its objects
        await eventually(
            lambda: gateway.identities.state.database_revision == before[0][0] + 2, 10, "the revision of the name"
        )
        named = await bacnet_js(port, *revisions(*EVERY_DEVICE))
    async with running(config) as gateway:
        await serving(gateway)
        restarted = await bacnet_js(port, *revisions(*EVERY_DEVICE))

    assert len({revision for [revision] in before}) == 1  # one database: the gateway's
    assert [revision for [revision] in after] == [before[0][0] + 1] * 3
    assert [revision for [revision] in named] == [before[0][0] + 2] * 3
    assert restarted == named


async def test_database_revision_goes_up_with_the_nodes_a_first_start_finds_and_not_at_a_restart(
    make_line, tmp_path
) -> None:
    config = bacnet_config(make_line(1), tmp_path)
    revisions_seen = []
    for _ in range(2):
        async with running(config) as gateway:
            await serving(gateway)
            revisions_seen.append(await bacnet_js(config.bacnet.port, *revisions(*EVERY_DEVICE)))

    first, restarted = revisions_seen
    assert first == restarted == [[1]] * 3  # the nodes the first scan found; none new at the restart


async def test_database_revision_goes_up_when_a_node_is_found_later(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1, 3)
    line.vanish(3)
    line.vanish(4)
    config = gateway_config(
        line,
        tmp_path,
        serial={"rescan_interval": 1},
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port()},
    )
    gateway = await serving(await start_gateway(config))
    [[before]] = await bacnet_js(config.bacnet.port, *revisions((meter(1), 50001)))
    line.restore(3)
    line.restore(4)
    face = bacnet_face(gateway)
    await eventually(
        lambda: face.network is not None and sorted(face.network.applications) == [1, 2, 3, 4],
        20,
        "the rescan finding board 3, and BACnet serving it",
    )

    after = await bacnet_js(config.bacnet.port, *revisions((None, 50000), (meter(1), 50001), (meter(3), 50003)))

    assert [revision for [revision] in after] == [before + 2] * 3  # the rescan finds nodes 3 and 4 one by one
