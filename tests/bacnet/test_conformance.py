"""The edges of ASHRAE 135 a client sees, checked with @bacnet-js/client (a stack that shares no
code with bacpypes3) over real sockets: WritePropertyMultiple answers, Reject and Abort, writes
refused rather than bent."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.pointmap import load
from tests.bacnet.conftest import bacnet_config, serving
from tests.bacnet.js_client import bacnet_js

ANALOG_INPUT, ANALOG_VALUE, DEVICE = 0, 2, 8
OBJECT_NAME, PRESENT_VALUE = 77, 85
WRITE_PROPERTY_MULTIPLE = 16
PROPERTY, OBJECT = 2, 1  # error classes
UNKNOWN_OBJECT, WRITE_ACCESS_DENIED, VALUE_OUT_OF_RANGE = 31, 40, 37
INVALID_TAG, MISSING_REQUIRED_PARAMETER, UNRECOGNIZED_SERVICE = 4, 5, 9  # reject reasons
SEGMENTATION_NOT_SUPPORTED, APDU_TOO_LONG = 4, 11  # abort reasons
POINTS = load()
CT_SIZE_5 = POINTS.find("ct_size", group="setup", channel=5)  # AV8
CT_SIZE_6 = POINTS.find("ct_size", group="setup", channel=6)  # AV9


def meter(address: int) -> dict[str, Any]:
    return {"net": 50, "adr": [address]}


def wpm(*objects: tuple[int, int, list[tuple[int, float]]]) -> dict[str, Any]:
    return {
        "service": "writePropertyMultiple",
        "objects": [
            {
                "objectType": kind,
                "instance": instance,
                "properties": [{"property": prop, "real": value} for prop, value in properties],
            }
            for kind, instance, properties in objects
        ],
    }


def confirmed(target: dict[str, Any] | None, request: dict[str, Any], wait_ms: int = 3000) -> dict[str, Any]:
    """The client's step that sends `request` to `target` and gives the answer, if any came in `wait_ms`."""
    return {"op": "confirmed", "target": target, "request": request, "waitMs": wait_ms}


async def ask(port: int, target: dict[str, Any] | None, request: dict[str, Any], wait_ms: int = 3000) -> dict[str, Any]:
    [result] = await bacnet_js(port, confirmed(target, request, wait_ms))
    return result


async def test_write_property_multiple_applies_every_write_and_acknowledges(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    answer = await ask(
        gateway.config.bacnet.port,
        meter(1),
        wpm((ANALOG_VALUE, 8, [(PRESENT_VALUE, 150.0)]), (ANALOG_VALUE, 9, [(PRESENT_VALUE, 175.0)])),
    )
    assert answer == {"pdu": "simpleAck", "service": WRITE_PROPERTY_MULTIPLE}
    assert line.panel(1).read(CT_SIZE_5.register, 2) == [150, 175]


async def test_write_property_multiple_stops_at_the_first_refused_write_and_names_it(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    before = line.panel(1).read(CT_SIZE_6.register, 1)
    answer = await ask(
        gateway.config.bacnet.port,
        meter(1),
        wpm(
            (ANALOG_VALUE, 8, [(PRESENT_VALUE, 125.0)]),
            (ANALOG_VALUE, 9, [(PRESENT_VALUE, 99999.0)]),  # out of range: refused, and nothing after it
            (ANALOG_VALUE, 10, [(PRESENT_VALUE, 200.0)]),
        ),
    )
    assert answer == {
        "pdu": "error",
        "service": WRITE_PROPERTY_MULTIPLE,
        "nested": True,
        "errorClass": PROPERTY,
        "errorCode": VALUE_OUT_OF_RANGE,
        "firstFailed": {"objectType": ANALOG_VALUE, "instance": 9, "property": PRESENT_VALUE},
    }
    assert line.panel(1).read(CT_SIZE_5.register, 1) == [125]  # applied, in order
    assert line.panel(1).read(CT_SIZE_6.register, 1) == before


async def test_write_property_multiple_to_a_read_only_input_is_refused_with_its_place(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    answer = await ask(gateway.config.bacnet.port, meter(1), wpm((ANALOG_INPUT, 1336, [(PRESENT_VALUE, 1.0)])))
    assert (answer["pdu"], answer["nested"], answer["errorCode"], answer["firstFailed"]) == (
        "error",
        True,
        WRITE_ACCESS_DENIED,
        {"objectType": ANALOG_INPUT, "instance": 1336, "property": PRESENT_VALUE},
    )


async def test_write_property_multiple_to_an_unknown_object_gets_the_wpm_error_structure(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    answer = await ask(gateway.config.bacnet.port, meter(1), wpm((ANALOG_VALUE, 9999, [(PRESENT_VALUE, 1.0)])))
    assert (answer["pdu"], answer["nested"], answer["errorClass"], answer["errorCode"]) == (
        "error",
        True,
        OBJECT,
        UNKNOWN_OBJECT,
    )
    assert answer["firstFailed"]["instance"] == 9999


async def test_every_service_the_devices_do_not_execute_is_rejected_as_unrecognized_whatever_its_body(
    bacnet_gateway,
) -> None:
    gateway, _ = bacnet_gateway
    # GetAlarmSummary, ReadRange, GetEventInformation, the services of later revisions
    # (SubscribeCOVPropertyMultiple ... AuthRequest), and choices no revision defines.
    services = [3, 26, 29, 30, 31, 32, 33, 34, 35, 99, 255]
    bodies = ["", "0901", "0c00000001"]  # none, an unsigned, an object identifier
    steps = [
        confirmed(target, {"service": service, "hex": body})
        for target in (None, meter(2))
        for service in services
        for body in bodies
    ]
    answers = await bacnet_js(gateway.config.bacnet.port, *steps)
    assert answers == [{"pdu": "reject", "reason": UNRECOGNIZED_SERVICE}] * len(steps)


@pytest.mark.parametrize("password", ["", "secret"])
async def test_device_communication_control_without_enable_disable_is_rejected_before_any_password_check(
    make_line, start_gateway, tmp_path, password
) -> None:
    line = make_line(1)
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path, reinit_password=password)))
    dcc = 17
    requests = [
        {"service": dcc, "hex": ""},
        {"service": dcc, "hex": "2d0700736563726574"},  # the password "secret" alone
        {"service": dcc, "hex": "0905" + "2d0700736563726574"},  # five minutes and the password
    ]
    steps = [confirmed(target, request) for target in (None, meter(1)) for request in requests]
    answers = await bacnet_js(gateway.config.bacnet.port, *steps)
    assert answers == [{"pdu": "reject", "reason": MISSING_REQUIRED_PARAMETER}] * len(steps)


async def test_a_request_that_does_not_decode_is_rejected(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    port = gateway.config.bacnet.port
    read_property = 12
    missing_property = {"service": read_property, "hex": "0c00000001"}  # object, no property identifier
    bad_tag = {"service": read_property, "hex": "1c00000001"}  # the object under tag 1
    truncated = {"service": read_property, "hex": "0c0000"}
    for target in (None, meter(1)):
        assert await ask(port, target, missing_property) == {"pdu": "reject", "reason": MISSING_REQUIRED_PARAMETER}
        assert (await ask(port, target, bad_tag))["pdu"] == "reject"
        assert (await ask(port, target, truncated))["pdu"] == "reject"


async def test_an_answer_too_long_for_what_the_client_accepts_is_aborted(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    port = gateway.config.bacnet.port
    object_list = {"service": 12, "hex": "0c0200c351194c"}  # device 50001's Object_List: some 9 KB
    unsegmented = {**object_list, "maxSegments": 0, "maxApdu": 3}  # 480 octets, no segments
    two_segments = {**object_list, "maxSegments": 16, "maxApdu": 3}
    assert await ask(port, meter(1), unsegmented) == {
        "pdu": "abort",
        "reason": SEGMENTATION_NOT_SUPPORTED,
        "server": True,
    }
    assert await ask(port, meter(1), two_segments) == {"pdu": "abort", "reason": APDU_TOO_LONG, "server": True}


async def test_a_message_for_a_network_nobody_routes_to_gets_reject_message_to_network(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    read_name = {"service": 12, "hex": "0c0200c351194d"}
    answer = await ask(gateway.config.bacnet.port, {"net": 77, "adr": [1]}, read_name, wait_ms=6000)
    assert answer == {"pdu": "rejectMessageToNetwork", "reason": 1, "network": 77}  # 1: no router to it found


async def test_a_fraction_written_to_a_whole_number_point_is_refused_not_truncated(bacnet_gateway) -> None:
    gateway, line = bacnet_gateway
    before = line.panel(1).read(CT_SIZE_5.register, 1)
    [refused] = await bacnet_js(
        gateway.config.bacnet.port,
        {
            "op": "writeProperty",
            "target": meter(1),
            "objectType": ANALOG_VALUE,
            "instance": 8,
            "property": PRESENT_VALUE,
            "real": 2.7,
        },
    )
    assert "BacnetError" in refused["error"] and f"Code:{VALUE_OUT_OF_RANGE}" in refused["error"]
    assert line.panel(1).read(CT_SIZE_5.register, 1) == before


async def test_an_empty_or_over_long_device_name_is_out_of_range(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    write_name = {
        "op": "writeProperty",
        "target": meter(1),
        "objectType": DEVICE,
        "instance": 50001,
        "property": OBJECT_NAME,
    }
    empty, too_long, kept = await bacnet_js(
        gateway.config.bacnet.port,
        {**write_name, "text": ""},
        {**write_name, "text": "x" * 65},
        {"op": "readProperty", "target": meter(1), "objectType": DEVICE, "instance": 50001, "property": OBJECT_NAME},
    )
    for refused in (empty, too_long):
        assert "BacnetError" in refused["error"] and f"Code:{VALUE_OUT_OF_RANGE}" in refused["error"], refused
    assert kept == ["BCPM_1"]
