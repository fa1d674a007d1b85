"""The core checks again with a BACnet stack this project did not write and that shares no code
with bacpypes3: @bacnet-js/client (see js_client.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.pointmap import load
from tests.bacnet.js_client import bacnet_js

DEVICE, ANALOG_INPUT, ANALOG_VALUE = 8, 0, 2
OBJECT_NAME, PRESENT_VALUE, STATUS_FLAGS, UNITS = 77, 85, 111, 117
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
