"""The meter's reset registers as Multi-state Values, read and written with @bacnet-js/client:
they read "Ready", and writing a state resets the meter, which every face then shows."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.bacnet.js_client import bacnet_js
from tests.bacnet.test_conformance import PRESENT_VALUE, VALUE_OUT_OF_RANGE, meter

ANALOG_INPUT, MULTI_STATE_VALUE = 0, 19
NUMBER_OF_STATES, STATE_TEXT, OBJECT_NAME = 74, 110, 77
RESET_CH_1, MAX_CURRENT_CH_1 = 3, 1588  # MSV3 = register 1126, AI1588 = Max Current Ch 1
READY, CLEAR_MAXIMA = 1, 3


def read(instance: int, prop: int, object_type: int = MULTI_STATE_VALUE) -> dict[str, Any]:
    return {"op": "readProperty", "target": meter(1), "objectType": object_type, "instance": instance, "property": prop}


def write(state: int) -> dict[str, Any]:
    return {
        "op": "writeProperty",
        "target": meter(1),
        "objectType": MULTI_STATE_VALUE,
        "instance": RESET_CH_1,
        "property": PRESENT_VALUE,
        "unsigned": state,
    }


async def max_current_becomes(port: int, amps: float) -> float:
    value = None
    for _ in range(50):
        [[value]] = await bacnet_js(port, read(MAX_CURRENT_CH_1, PRESENT_VALUE, ANALOG_INPUT))
        if value == amps:
            break
        await asyncio.sleep(0.2)
    return float(value)


async def test_a_reset_object_reads_ready_and_names_its_states(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    name, value, count, texts, global_texts = await bacnet_js(
        gateway.config.bacnet.port,
        read(RESET_CH_1, OBJECT_NAME),
        read(RESET_CH_1, PRESENT_VALUE),
        read(RESET_CH_1, NUMBER_OF_STATES),
        read(RESET_CH_1, STATE_TEXT),
        read(2, STATE_TEXT),
    )
    assert (name, value, count) == (["Reset Ch 1"], [READY], [3])
    assert texts == ["Ready", "Clear energy", "Clear maxima"]
    assert "Clear latched alarms" in global_texts  # MSV2 = register 295, the global reset


async def test_writing_a_reset_state_resets_the_meter(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    port = gateway.config.bacnet.port
    line.panel(1).set_current(1, 30.0)
    assert await max_current_becomes(port, 30.0) == 30.0
    line.panel(1).set_current(1, 5.0)
    assert await bacnet_js(port, write(READY), read(RESET_CH_1, PRESENT_VALUE)) == ["ok", [READY]]  # nothing done
    assert await max_current_becomes(port, 30.0) == 30.0
    assert await bacnet_js(port, write(CLEAR_MAXIMA), read(RESET_CH_1, PRESENT_VALUE)) == ["ok", [READY]]
    assert await max_current_becomes(port, 5.0) == 5.0


async def test_a_state_the_reset_does_not_have_is_out_of_range(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    [refused] = await bacnet_js(gateway.config.bacnet.port, write(4))
    assert "BacnetError" in refused["error"] and f"Code:{VALUE_OUT_OF_RANGE}" in refused["error"]


async def test_a_reset_object_can_be_subscribed(bacnet_gateway, client) -> None:
    await client.subscribe(client.node(1), f"multi-state-value,{RESET_CH_1}", confirmed=False)
    notified = await client.notification()
    assert str(notified.monitoredObjectIdentifier) == f"multi-state-value,{RESET_CH_1}"
