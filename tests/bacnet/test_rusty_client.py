"""The core checks and the conformance points of the second pass again with rusty-bacnet, a BACnet
stack written in Rust that shares no code with bacpypes3 or @bacnet-js/client (see
rusty_client.py): it discovers through the router, reads (a node's whole Object_List, in
segments), writes, subscribes, is rejected as the standard says, and keeps its notifications
across a ReinitializeDevice."""

from __future__ import annotations

import asyncio

import pytest
import rusty_bacnet as rb

from gateway.app import serve
from gateway.pointmap import load
from tests.bacnet.conftest import bacnet_config, bacnet_face
from tests.bacnet.rusty_client import oid, prop, rusty_client

CT_SIZE_5 = load().find("ct_size", group="setup", channel=5)  # AV8
UNRECOGNIZED_SERVICE = 9  # reject reason
PROPERTY, VALUE_OUT_OF_RANGE = 2, 37  # error class and code


async def test_it_discovers_the_router_and_every_node_through_it(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    async with rusty_client(gateway.config.bacnet.port) as client:
        found = await client.discovered_devices()
    assert sorted(
        (device.object_identifier.instance, device.source_network, device.source_address, device.max_apdu_length)
        for device in found
    ) == [(50000, None, None, 1476), (50001, 50, b"\x01", 1476), (50002, 50, b"\x02", 1476)]


async def test_it_reads_a_whole_object_list_in_segments_and_the_meters_values(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    network = bacnet_face(gateway).network
    assert network is not None
    line.panel(1).set_current(1, 12.5)
    async with rusty_client(gateway.config.bacnet.port) as client:
        objects = await client.read_property_from_device(50001, oid("device", 50001), prop("object-list"))
        assert len(objects.value) == len(network.applications[1].object_identifiers())  # some 9.5 KB
        for _ in range(50):
            [result] = await client.read_property_multiple_from_device(
                50001,
                [(oid("analog-input", 1336), [(prop("present-value"), None), (prop("object-name"), None)])],
            )
            values = [item["value"].value for item in result["results"]]
            if values[0] == 12.5:
                break
            await asyncio.sleep(0.1)
        router_name = await client.read_property(
            f"127.0.0.1:{gateway.config.bacnet.port}", oid("device", 50000), prop("object-name")
        )
    assert values == [12.5, "Current Ch 1"]
    assert router_name.value == "BCPM_Gateway_50000"


async def test_it_writes_through_the_router_to_the_meter_and_a_bad_write_is_refused(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    ct_size = oid("analog-value", 8)
    async with rusty_client(gateway.config.bacnet.port) as client:
        await client.write_property_to_device(50002, ct_size, prop("present-value"), rb.PropertyValue.real(175.0))
        with pytest.raises(rb.BacnetProtocolError) as refused:
            await client.write_property_to_device(50002, ct_size, prop("present-value"), rb.PropertyValue.real(99999.0))
        read_back = await client.read_property_from_device(50002, ct_size, prop("present-value"))
    assert (refused.value.error_class, refused.value.error_code) == (PROPERTY, VALUE_OUT_OF_RANGE)
    assert read_back.value == 175.0
    assert line.panel(2).read(CT_SIZE_5.register, 1) == [175]


async def test_services_of_later_revisions_are_rejected_as_unrecognized(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    router = f"127.0.0.1:{gateway.config.bacnet.port}"
    async with rusty_client(gateway.config.bacnet.port) as client:
        with pytest.raises(rb.BacnetRejectError) as notification:
            await client.confirmed_audit_notification(router, bytes.fromhex("0901"))  # service 32
        with pytest.raises(rb.BacnetRejectError) as query:
            await client.audit_log_query(router, bytes.fromhex("0901"))  # service 33
    assert notification.value.reason == query.value.reason == UNRECOGNIZED_SERVICE


async def test_its_subscription_notifies_changes_and_is_kept_across_reinitialize_device(make_line, tmp_path) -> None:
    # rusty-bacnet's Python API names a COV subscription's device by its IP address only: it
    # subscribes to the router's own AV2 (virtual network number, written and saved, in effect
    # after the restart).
    line = make_line(1)
    config = bacnet_config(line, tmp_path, reinit_password="secret")
    router, network_number = f"127.0.0.1:{config.bacnet.port}", oid("analog-value", 2)
    server = asyncio.create_task(serve(lambda: config))
    try:
        async with rusty_client(config.bacnet.port) as client:
            notifications = await client.cov_notifications()
            await client.subscribe_cov(router, 7, network_number, True, 600)
            assert await notified_value(notifications) == 50.0
            await client.write_property(router, network_number, prop("present-value"), rb.PropertyValue.real(60.0))
            assert await notified_value(notifications) == 60.0

            await client.reinitialize_device(router, rb.ReinitializedState.WARMSTART, "secret")

            restored = await asyncio.wait_for(anext(notifications), 30)  # the gateway back, subscription kept
            assert [item["value"].value for item in restored.values][0] == 60.0
            assert restored.subscriber_process_identifier == 7 and 500 < restored.time_remaining <= 600
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def notified_value(notifications: rb.CovNotificationIterator) -> float:
    """The Present_Value of the next COV notification."""
    notification = await asyncio.wait_for(anext(notifications), 10)
    return float(notification.values[0]["value"].value)
