"""The core checks again with a BACnet stack this project did not write and that shares no code
with bacpypes3: @bacnet-js/client (see js_client.py). Who-Is, reads, writes, a COV subscription
and its notifications, the fast read path for every object kind, and a request limit."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.pointmap import load
from tests.bacnet.conftest import bacnet_face
from tests.bacnet.js_client import bacnet_js
from tests.support import eventually

DEVICE, ANALOG_INPUT, ANALOG_VALUE = 8, 0, 2
ALL, OBJECT_NAME, PRESENT_VALUE, STATUS_FLAGS, UNITS = 8, 77, 85, 111, 117
MAX_APDU_480, SEGMENTATION_NOT_SUPPORTED = 3, 4
AMPERES = 3
CT_SIZE_5 = load().find("ct_size", group="setup", channel=5)  # AV8


def meter(address: int) -> dict[str, Any]:
    return {"net": 50, "adr": [address]}


async def test_a_global_who_is_finds_the_router_and_every_node(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    [found] = await bacnet_js(gateway.config.bacnet.port, {"op": "whoIs", "waitMs": 1500})
    assert sorted((device["deviceId"], device["net"], device["adr"]) for device in found) == [
        (50000, None, None),
        (50001, 50, [1]),
        (50002, 50, [2]),
    ]


async def test_read_property_through_the_router_gives_the_meters_values(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    line.panel(2).set_current(12, 21.5)
    port = gateway.config.bacnet.port
    for _ in range(50):
        [value] = await bacnet_js(
            port,
            {
                "op": "readProperty",
                "target": meter(2),
                "objectType": ANALOG_INPUT,
                "instance": 1347,
                "property": PRESENT_VALUE,
            },
        )
        if value == [21.5]:
            break
        await asyncio.sleep(0.2)
    assert value == [21.5]
    router_name, node_name = await bacnet_js(
        port,
        {"op": "readProperty", "target": None, "objectType": DEVICE, "instance": 50000, "property": OBJECT_NAME},
        {"op": "readProperty", "target": meter(1), "objectType": DEVICE, "instance": 50001, "property": OBJECT_NAME},
    )
    assert (router_name, node_name) == (["BCPM_Gateway_50000"], ["BCPM_1"])


async def test_read_property_multiple_through_the_router(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    ct_size = line.panel(1).read(CT_SIZE_5.register, 1)[0]
    [objects] = await bacnet_js(
        gateway.config.bacnet.port,
        {
            "op": "readPropertyMultiple",
            "target": meter(1),
            "objects": [
                {"objectType": ANALOG_INPUT, "instance": 1336, "properties": [OBJECT_NAME, UNITS, STATUS_FLAGS]},
                {"objectType": ANALOG_VALUE, "instance": 8, "properties": [OBJECT_NAME, PRESENT_VALUE]},
            ],
        },
    )
    assert isinstance(objects, list), objects
    current, ct = objects
    assert (current["objectType"], current["instance"]) == (ANALOG_INPUT, 1336)
    assert current["values"][str(OBJECT_NAME)] == ["Current Ch 1"]
    assert current["values"][str(UNITS)] == [AMPERES]
    assert ct["values"][str(OBJECT_NAME)] == ["Branch CT Size Ch 5"]
    assert ct["values"][str(PRESENT_VALUE)] == [ct_size]


async def test_write_property_through_the_router_reaches_the_meter_and_a_bad_one_is_refused(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    written, refused, read_back = await bacnet_js(
        gateway.config.bacnet.port,
        {
            "op": "writeProperty",
            "target": meter(2),
            "objectType": ANALOG_VALUE,
            "instance": 8,
            "property": PRESENT_VALUE,
            "real": 175.0,
        },
        {
            "op": "writeProperty",
            "target": meter(2),
            "objectType": ANALOG_VALUE,
            "instance": 8,
            "property": PRESENT_VALUE,
            "real": 99999.0,
        },
        {
            "op": "readProperty",
            "target": meter(2),
            "objectType": ANALOG_VALUE,
            "instance": 8,
            "property": PRESENT_VALUE,
        },
    )
    assert written == "ok"
    assert "BacnetError" in refused["error"] and "Code:37" in refused["error"]  # value-out-of-range
    assert read_back == [175.0]
    assert line.panel(2).read(CT_SIZE_5.register, 1) == [175]


async def test_a_cov_subscription_notifies_at_once_and_on_a_change(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    application = bacnet_face(gateway).network.applications[1]
    current = load().find("current", group="branch", channel=1)

    async def change_once_subscribed() -> None:
        await eventually(lambda: len(application.cov_subscriptions()) == 1, 20, "the subscription")
        line.panel(1).set_current(1, 12.5)

    changing = asyncio.create_task(change_once_subscribed())
    [notifications] = await bacnet_js(
        gateway.config.bacnet.port,
        {
            "op": "subscribeCov",
            "target": meter(1),
            "objectType": ANALOG_INPUT,
            "instance": current.register,
            "processId": 7,
            "lifetime": 120,
            "waitMs": 5000,
        },
    )
    await changing
    assert isinstance(notifications, list) and notifications, notifications
    first, *later = notifications
    assert (first["device"], first["objectType"], first["instance"]) == (50001, ANALOG_INPUT, current.register)
    assert 0 < first["timeRemaining"] <= 120
    assert set(first["values"]) == {str(PRESENT_VALUE), str(STATUS_FLAGS)}
    assert first["values"][str(PRESENT_VALUE)] == [0.0]
    assert [n["values"][str(PRESENT_VALUE)] for n in later][-1:] == [[12.5]]  # the change, notified


#: One object of each kind the fast path serves (as in test_fastpath): a current, a power, a
#: setting, an alarm status, a power factor; and every property it serves.
FAST_OBJECTS = ((ANALOG_INPUT, 1336), (ANALOG_INPUT, 1630), (ANALOG_VALUE, 1), (ANALOG_VALUE, 109), (ANALOG_INPUT, 262))
FAST_PROPERTIES = (PRESENT_VALUE, STATUS_FLAGS, 103, 36, 81, UNITS, OBJECT_NAME, 28, 22)  # ..., reliability, ...


async def test_the_fast_path_answers_every_object_kind_as_the_full_stack_does(bacnet_gateway) -> None:
    """Decoded by a stack that is not bacpypes3: the fast path's answers to a ReadPropertyMultiple
    of every object kind and a ReadProperty of each give the values the full stack's do."""
    gateway, _ = bacnet_gateway
    network = bacnet_face(gateway).network
    await eventually(lambda: gateway.nodes.poller.cycles >= 2 and network.fast_path.installed, 20, "full poll cycles")
    steps = [
        {
            "op": "readPropertyMultiple",
            "target": meter(1),
            "objects": [
                {"objectType": kind, "instance": instance, "properties": list(FAST_PROPERTIES)}
                for kind, instance in FAST_OBJECTS
            ],
        },
        *(
            {"op": "readProperty", "target": meter(1), "objectType": kind, "instance": instance, "property": prop}
            for kind, instance in FAST_OBJECTS
            for prop in FAST_PROPERTIES
        ),
    ]
    before = network.fast_path.answered["fast"]
    fast = await bacnet_js(gateway.config.bacnet.port, *steps)
    assert network.fast_path.answered["fast"] - before == len(steps)  # every answer from the fast path
    network.set_fast_reads(False)
    try:
        full = await bacnet_js(gateway.config.bacnet.port, *steps)
    finally:
        network.set_fast_reads(True)
    assert not any(isinstance(answer, dict) and "error" in answer for answer in fast), fast
    assert fast == full
    assert [(o["objectType"], o["instance"], len(o["values"])) for o in fast[0]] == [
        (kind, instance, len(FAST_PROPERTIES)) for kind, instance in FAST_OBJECTS
    ]


async def test_an_answer_beyond_the_clients_max_apdu_without_segments_is_aborted(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    all_of_100_avs = [{"objectType": ANALOG_VALUE, "instance": n, "properties": [ALL]} for n in range(1, 101)]
    [answer] = await bacnet_js(
        gateway.config.bacnet.port,
        {
            "op": "confirmed",
            "target": meter(1),
            "request": {
                "service": "readPropertyMultiple",
                "objects": all_of_100_avs,
                "maxApdu": MAX_APDU_480,
                "maxSegments": 0,
            },
        },
    )
    assert answer == {"pdu": "abort", "reason": SEGMENTATION_NOT_SUPPORTED, "server": True}
