"""What guards the gateway's devices against their clients: DeviceCommunicationControl and
ReinitializeDevice need the configured password (and are refused without one), DCC silences a
device for a while, and `bacnet.read_only` refuses every write. Client side: @bacnet-js/client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.app import Gateway, serve
from gateway.bacnet.applications import RESTART_DELAY
from gateway.pointmap import load
from gateway.sim import SimulatedLine
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.bacnet.js_client import bacnet_js
from tests.bacnet.test_conformance import ANALOG_VALUE, PRESENT_VALUE, ask, confirmed, meter, wpm

SECURITY, PASSWORD_FAILURE = 4, 26
PROPERTY, WRITE_ACCESS_DENIED = 2, 40
ENABLE, DISABLE, DISABLE_INITIATION = 0, 1, 2
WARMSTART = 1
CT_SIZE_5 = load().find("ct_size", group="setup", channel=5)  # AV8


def read_name(instance: int) -> dict[str, Any]:
    """ReadProperty of a device's Object_Name, as raw bytes (the answer is looked at, not decoded)."""
    return {"service": 12, "hex": f"0c{(8 << 22 | instance):08x}194d"}


def dcc(state: int, password: str | None = None, minutes: int = 0) -> dict[str, Any]:
    return {"service": "deviceCommunicationControl", "enableDisable": state, "minutes": minutes, "password": password}


def reinitialize(password: str | None) -> dict[str, Any]:
    return {"service": "reinitializeDevice", "state": WARMSTART, "password": password}


async def until_answered(port: int, target: dict[str, Any] | None, request: dict[str, Any], tries: int = 40) -> str:
    """The kind of the first answer, asking again while none comes (the gateway starting)."""
    for _ in range(tries):
        answer = await ask(port, target, request, wait_ms=500)
        if answer["pdu"] != "none":
            return str(answer["pdu"])
    return "none"


@pytest.fixture
async def guarded_gateway(make_line, start_gateway, tmp_path) -> AsyncIterator[tuple[Gateway, SimulatedLine]]:
    line = make_line(1)
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path, reinit_password="secret")))
    yield gateway, line


async def test_without_a_configured_password_dcc_and_reinitialize_are_refused(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    port = gateway.config.bacnet.port
    refused = {"pdu": "error", "nested": False, "errorClass": SECURITY, "errorCode": PASSWORD_FAILURE}
    for target, request, service in (
        (None, reinitialize(None), 20),
        (None, reinitialize("anything"), 20),
        (None, dcc(DISABLE), 17),
        (meter(1), dcc(DISABLE, "anything"), 17),
    ):
        assert await ask(port, target, request) == {**refused, "service": service}
    assert (await ask(port, meter(1), read_name(50001)))["pdu"] == "complexAck"  # still talking


async def test_dcc_disable_silences_one_device_until_enabled_again(guarded_gateway) -> None:
    gateway, _ = guarded_gateway
    # One client process for the whole exchange, each step after the last one's answer.
    guessed, disabled, silent, other, found, enabled, talking = await bacnet_js(
        gateway.config.bacnet.port,
        confirmed(meter(1), dcc(DISABLE, "guess")),
        confirmed(meter(1), dcc(DISABLE, "secret", minutes=5)),
        confirmed(meter(1), read_name(50001), wait_ms=1500),
        confirmed(meter(2), read_name(50002)),
        {"op": "whoIs", "waitMs": 1500},
        confirmed(meter(1), dcc(ENABLE, "secret")),
        confirmed(meter(1), read_name(50001)),
    )
    assert guessed == {
        "pdu": "error",
        "service": 17,
        "nested": False,
        "errorClass": SECURITY,
        "errorCode": PASSWORD_FAILURE,
    }
    assert disabled == {"pdu": "simpleAck", "service": 17}
    assert silent == {"pdu": "none"}
    assert other["pdu"] == "complexAck"  # the others go on
    assert sorted(device["deviceId"] for device in found) == [50000, 50002]
    assert enabled == {"pdu": "simpleAck", "service": 17}
    assert talking["pdu"] == "complexAck"


async def test_a_disabled_router_still_routes_to_the_meters(guarded_gateway) -> None:
    gateway, _ = guarded_gateway
    port = gateway.config.bacnet.port
    assert await ask(port, None, dcc(DISABLE, "secret")) == {"pdu": "simpleAck", "service": 17}
    assert await ask(port, None, read_name(50000), wait_ms=1500) == {"pdu": "none"}
    assert (await ask(port, meter(2), read_name(50002)))["pdu"] == "complexAck"


async def test_dcc_ends_when_its_minutes_run_out(guarded_gateway) -> None:
    gateway, _ = guarded_gateway
    assert await ask(gateway.config.bacnet.port, meter(1), dcc(DISABLE, "secret", minutes=2)) == {
        "pdu": "simpleAck",
        "service": 17,
    }
    app = bacnet_face(gateway).network.applications[1]
    remaining = app._dcc_end.when() - asyncio.get_running_loop().time()
    assert 100 < remaining <= 120  # communication comes back at the end of the two minutes
    app._dcc_end._run()  # as the loop will then
    assert (await ask(gateway.config.bacnet.port, meter(1), read_name(50001)))["pdu"] == "complexAck"


async def test_dcc_ends_on_a_restart(make_line, tmp_path) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path, reinit_password="secret")
    port = config.bacnet.port
    server = asyncio.create_task(serve(lambda: config))
    try:
        assert await until_answered(port, meter(1), dcc(DISABLE, "secret")) == "simpleAck"  # once serving
        assert await ask(port, meter(1), read_name(50001), wait_ms=1000) == {"pdu": "none"}
        assert await ask(port, None, reinitialize("secret")) == {"pdu": "simpleAck", "service": 20}
        await asyncio.sleep(RESTART_DELAY)
        assert await until_answered(port, meter(1), read_name(50001)) == "complexAck"
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def test_with_initiation_disabled_a_device_answers_but_sends_no_cov_notification(
    guarded_gateway, make_client
) -> None:
    gateway, line = guarded_gateway
    port = gateway.config.bacnet.port
    client = make_client(gateway)
    await client.find_router()
    await client.subscribe(client.node(1), "analog-input,1336", confirmed=False)
    await client.notification()  # the first one, on subscribing
    assert await ask(port, meter(1), dcc(DISABLE_INITIATION, "secret")) == {"pdu": "simpleAck", "service": 17}
    while not client.app.notifications.empty():  # sent before the DCC
        client.app.notifications.get_nowait()
    line.panel(1).set_current(1, 30.0)
    assert (await ask(port, meter(1), read_name(50001)))["pdu"] == "complexAck"
    with pytest.raises(TimeoutError):
        await client.notification_where(lambda values: values["present-value"] == 30.0, timeout=2.0)
    assert await ask(port, meter(1), dcc(ENABLE, "secret")) == {"pdu": "simpleAck", "service": 17}
    line.panel(1).set_current(1, 10.0)
    assert await client.notification_where(lambda values: values["present-value"] == 10.0)


async def test_read_only_refuses_every_write_and_leaves_the_meter_alone(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path, read_only=True)))
    port = gateway.config.bacnet.port
    before = line.panel(1).read(CT_SIZE_5.register, 1)
    [written] = await bacnet_js(
        port,
        {
            "op": "writeProperty",
            "target": meter(1),
            "objectType": ANALOG_VALUE,
            "instance": 8,
            "property": PRESENT_VALUE,
            "real": 150.0,
        },
    )
    assert "BacnetError" in written["error"] and f"Code:{WRITE_ACCESS_DENIED}" in written["error"]
    answer = await ask(port, meter(1), wpm((ANALOG_VALUE, 8, [(PRESENT_VALUE, 150.0)])))
    assert (answer["pdu"], answer["errorCode"]) == ("error", WRITE_ACCESS_DENIED)
    assert line.panel(1).read(CT_SIZE_5.register, 1) == before
