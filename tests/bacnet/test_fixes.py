"""Each workaround for bacpypes3 0.0.110 (gateway/bacnet/stack/fixes.py and friends): the stock
behaviour is still broken, and the gateway's is right.

When a `test_stock_*` here fails after a bacpypes3 upgrade, upstream fixed that bug: drop the
workaround (and the test)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import bacpypes3.app
import bacpypes3.appservice
import pytest
from bacpypes3.apdu import (
    APCISequence,
    ComplexAckPDU,
    ConfirmedRequestPDU,
    DeviceCommunicationControlRequest,
    ErrorPDU,
    WritePropertyRequest,
)
from bacpypes3.app import Application
from bacpypes3.appservice import AWAIT_RESPONSE, SEGMENTED_RESPONSE, ServerSSM
from bacpypes3.errors import ExecutionError, InvalidTag
from bacpypes3.local.analog import AnalogInputObject
from bacpypes3.local.cov import COVIncrementCriteria
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.multistate import MultiStateValueObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.netservice import NetworkServiceElement
from bacpypes3.pdu import PDU, Address
from bacpypes3.primitivedata import CharacterString, ObjectIdentifier
from bacpypes3.service.device import DeviceCommunicationControlServices
from bacpypes3.vlan import VirtualNetwork

from gateway.bacnet.applications import DeviceApplication, RouterApplication
from gateway.bacnet.clock import Clock
from gateway.bacnet.devices import GatewayDevice
from gateway.bacnet.stack.fixes import (
    FAILED_DATAGRAMS,
    DccOnUndecodedPdu,
    FirstSegmentRetry,
    NetworkNumberFlags,
    RejectUndecodable,
    RejectUnreachableNetwork,
    SegmentsWithinMaxApdu,
    StandardPropertyList,
    StatusFlagsCovCriteria,
)
from tests.bacnet.client import Client, free_udp_port
from tests.bacnet.js_client import bacnet_js
from tests.bacnet.other_party import router as stock_router
from tests.bacnet.test_ip_network import answers_to_what_is_network_number, network_number_is
from tests.bacnet.test_lifecycle import broadcast_listener, decode_broadcast

WILDCARD = ObjectIdentifier("device,4194303")


def analog_input(**properties: object) -> AnalogInputObject:
    return AnalogInputObject(
        objectIdentifier=("analog-input", 1),
        objectName="Current Ch 1",
        presentValue=1.0,
        units="amperes",
        eventState="normal",
        outOfService=False,
        reliability="no-fault-detected",
        **properties,
    )


def device(cls: type = DeviceObject, instance: int = 9001) -> DeviceObject:
    made = cls(objectIdentifier=("device", instance), objectName=f"device {instance}", vendorIdentifier=999)
    made._clock = Clock(follows_bacnet=False)
    return made


@contextlib.asynccontextmanager
async def stock_server(*objects: object):
    """A plain bacpypes3 device on loopback."""
    port = free_udp_port()
    app = Application.from_object_list(
        [
            device(),
            NetworkPortObject(f"127.0.0.1/8:{port}", objectIdentifier=("network-port", 1), objectName="IP"),
            *objects,
        ]
    )
    try:
        yield port
    finally:
        app.close()


async def test_stock_subscribe_cov_without_lifetime_fails() -> None:
    async with stock_server(analog_input(covIncrement=1.0)) as port:
        client = Client(port)
        try:
            with pytest.raises(ErrorPDU) as failed:
                await client.subscribe(client.router, "analog-input,1", confirmed=True, lifetime=None)
            assert str(failed.value.errorCode) == "operational-problem"
        finally:
            client.close()
    # The gateway's: tests/bacnet/test_face.py::test_cov_reports_a_current_change_beyond_the_increment


async def test_stock_cancel_of_a_subscription_that_does_not_exist_leaves_an_empty_detection() -> None:
    port = free_udp_port()
    stock = Application.from_object_list(
        [
            device(),
            NetworkPortObject(f"127.0.0.1/8:{port}", objectIdentifier=("network-port", 1), objectName="IP"),
            analog_input(covIncrement=1.0),
        ]
    )
    client = Client(port)
    try:
        await client.subscribe(client.router, "analog-input,1", confirmed=None, lifetime=None)  # acknowledged
        detection = stock._cov_detections[ObjectIdentifier("analog-input,1")]
        assert detection.cov_subscriptions == []  # kept for good: nothing removes an empty one
    finally:
        client.close()
        stock.close()
    # The gateway's: tests/bacnet/test_object_pool.py::test_cancelling_a_subscription_that_does_not_exist_builds_nothing


async def test_stock_analog_object_without_cov_increment_raises_on_a_value_change() -> None:
    stock = analog_input()
    COVIncrementCriteria(stock)  # what a subscription attaches
    with pytest.raises(TypeError):
        stock.presentValue = 2.0
    # The gateway gives every object one: tests/bacnet/test_objects.py


async def test_stock_cov_detection_misses_a_reliability_change() -> None:
    stock, ours = analog_input(covIncrement=1.0), analog_input(covIncrement=1.0)
    stock_detection, our_detection = COVIncrementCriteria(stock), StatusFlagsCovCriteria(ours)
    stock.reliability = ours.reliability = "communication-failure"
    assert stock_detection._execute_handle is None  # nothing scheduled: no notification
    assert our_detection._execute_handle is not None


def test_stock_cov_confirmation_raises_for_a_subscriber_that_went_away() -> None:
    gone: asyncio.Future[None] = asyncio.Future(loop=asyncio.new_event_loop())
    gone.set_exception(ConnectionError("no response"))
    with pytest.raises(ConnectionError):
        Application.cov_confirmation(Application(), None, gone)
    # The gateway's: tests/bacnet/test_face.py::test_a_confirmed_subscriber_that_went_away_is_dropped


async def test_stock_retry_of_an_unacknowledged_first_segment_fails() -> None:
    app = Application.from_object_list([device()])
    for cls, fails in ((ServerSSM, True), (FirstSegmentRetry, False)):
        ssm = cls(app.asap, Address("127.0.0.1:47809"))
        ssm.state, ssm.segmentRetryCount, ssm.initialSequenceNumber = SEGMENTED_RESPONSE, 0, 0
        ssm.segmentCount, ssm.segmentSize, ssm.invokeID = 2, 50, 1
        ssm.set_segmentation_context(ComplexAckPDU(14, 1))
        ssm.segmentAPDU.put_data(bytes(100))
        sent: list[Any] = []

        async def send(apdu: Any, sent: list[Any] = sent) -> None:
            sent.append(apdu)

        app.asap.request = send  # type: ignore[method-assign]
        try:
            if fails:
                with pytest.raises(AssertionError):
                    await ssm.segmented_response_timeout()
            else:
                await ssm.segmented_response_timeout()
                assert [segment.apduSeq for segment in sent] == [0]  # the first segment again
        finally:
            ssm.stop_timer()
    # The gateway's over the wire: tests/bacnet/test_limits.py::test_an_unacknowledged_first_segment_is_sent_again


async def test_stock_segments_carry_the_whole_max_apdu_of_data_with_the_header_on_top() -> None:
    app = Application.from_object_list([device()])
    app.asap.segmentationSupported = "segmented-both"
    longest = {}
    for cls in (ServerSSM, SegmentsWithinMaxApdu):
        ssm = cls(app.asap, Address("127.0.0.1:47809"))
        ssm.state, ssm.invokeID, ssm.maxApduLengthAccepted, ssm.maxSegmentsAccepted = AWAIT_RESPONSE, 1, 206, None
        ssm.segmented_response_accepted, ssm.device_info = True, None
        sent: list[Any] = []

        async def send(apdu: Any, sent: list[Any] = sent) -> None:
            sent.append(apdu)

        app.asap.request = send  # type: ignore[method-assign]
        answer = ComplexAckPDU(12, 1)
        answer.put_data(bytes(1000))
        try:
            await ssm.confirmation(answer)
        finally:
            ssm.stop_timer()
        longest[cls] = len(sent[0].encode().pduData)  # the first segment, as it goes on the wire
    assert longest == {ServerSSM: 206 + 5, SegmentsWithinMaxApdu: 206}
    # The gateway's over the wire: tests/bacnet/test_segments.py


async def test_stock_wildcard_device_instance_is_unknown() -> None:
    stock = Application.from_object_list([device()])
    ours = DeviceApplication.from_object_list([device(GatewayDevice, 9002)])
    assert stock.get_object_id(WILDCARD) is None
    assert ours.get_object_id(WILDCARD) is ours.device_object


async def test_stock_services_supported_misses_who_is() -> None:
    stock = Application.from_object_list([device()])
    ours = DeviceApplication.from_object_list([device(GatewayDevice, 9003)])
    assert stock.get_services_supported()["who-is"] == 0
    supported = ours.get_services_supported()
    assert supported["who-is"] == supported["who-has"] == supported["read-property-multiple"] == 1
    assert supported["subscribe-cov"] == supported["write-property"] == 1
    assert stock.get_services_supported()["read-range"] == 1  # listed, and fails on every object
    assert supported["read-range"] == 0


async def test_stock_property_list_lists_what_every_object_has() -> None:
    class Ours(StandardPropertyList, AnalogInputObject):
        pass

    assert {"objectIdentifier", "objectName", "propertyList"} <= {prop.attr for prop in analog_input().propertyList}
    ours = Ours(objectIdentifier=("analog-input", 2), objectName="x", presentValue=1.0, units="amperes")
    assert not {"objectIdentifier", "objectName", "objectType", "propertyList"} & {p.attr for p in ours.propertyList}
    # The gateway's: tests/bacnet/test_device_objects.py::test_property_list_leaves_out_what_every_object_has


async def test_stock_object_types_supported_is_empty() -> None:
    stock = Application.from_object_list([device(), analog_input(covIncrement=1.0)])
    ours = DeviceApplication.from_object_list([device(GatewayDevice, 9004), analog_input(covIncrement=1.0)])
    assert not any(stock.device_object.protocolObjectTypesSupported)
    supported = ours.device_object.protocolObjectTypesSupported
    assert supported["analog-input"] == supported["device"] == 1
    assert supported["analog-value"] == 0


async def test_stock_write_of_the_wrong_datatype_is_rejected_instead_of_an_error() -> None:
    request = WritePropertyRequest(
        objectIdentifier=ObjectIdentifier("analog-input,1"),
        propertyIdentifier="covIncrement",
        propertyValue=CharacterString("x"),
    )
    request = WritePropertyRequest.decode(request.encode())  # as it comes off the wire
    stock = Application.from_object_list([device(), analog_input(covIncrement=1.0)])
    ours = DeviceApplication.from_object_list([device(GatewayDevice, 9005), analog_input(covIncrement=1.0)])
    with pytest.raises(InvalidTag):
        await stock.do_WritePropertyRequest(request)
    with pytest.raises(ExecutionError) as refused:
        await ours.do_WritePropertyRequest(request)
    assert refused.value.errorCode == "invalidDataType"


async def test_stock_write_property_multiple_with_a_refused_write_gets_no_answer() -> None:
    async with stock_server(analog_input(covIncrement=1.0)) as port:
        request = {
            "service": "writePropertyMultiple",
            "objects": [{"objectType": 0, "instance": 1, "properties": [{"property": 9999, "real": 2.0}]}],
        }  # no such property
        [answer] = await bacnet_js(port, {"op": "confirmed", "target": None, "request": request, "waitMs": 1500})
    assert answer == {"pdu": "none"}
    # The gateway's: tests/bacnet/test_conformance.py::
    #   test_write_property_multiple_to_a_read_only_input_is_refused_with_its_place


async def test_stock_confirmed_request_that_does_not_decode_gets_no_answer(monkeypatch) -> None:
    monkeypatch.setattr(bacpypes3.appservice, "ServerSSM", RejectUndecodable.__mro__[1])  # as bacpypes3 has it
    async with stock_server() as port:
        no_property = {"service": 12, "hex": "0c00000001"}  # ReadProperty without its property identifier
        [answer] = await bacnet_js(port, {"op": "confirmed", "target": None, "request": no_property, "waitMs": 1500})
    assert answer == {"pdu": "none"}
    # The gateway's: tests/bacnet/test_conformance.py::test_a_request_that_does_not_decode_is_rejected


@contextlib.contextmanager
def a_stock_router(ip_network: int) -> Iterator[int]:
    """A plain bacpypes3 router on loopback to network 50 (a virtual network of its own); its port."""
    port = free_udp_port()
    network_name = f"stock-router-{port}"
    VirtualNetwork(network_name)
    try:
        router = stock_router(f"127.0.0.1/8:{port}", 50, network_name, ip_network=ip_network)
        try:
            yield port
        finally:
            router.close()
    finally:
        VirtualNetwork._networks.pop(network_name)


async def test_stock_router_drops_a_message_for_a_network_it_cannot_reach(monkeypatch) -> None:
    monkeypatch.setattr(bacpypes3.app, "NetworkServiceAccessPoint", RejectUnreachableNetwork.__mro__[1])
    with a_stock_router(ip_network=1) as port:
        read_name = {"service": 12, "hex": "0c02002329194d"}
        [answer] = await bacnet_js(
            port, {"op": "confirmed", "target": {"net": 77, "adr": [1]}, "request": read_name, "waitMs": 4000}
        )
    assert answer == {"pdu": "none"}
    # The gateway's: tests/bacnet/test_conformance.py::
    #   test_a_message_for_a_network_nobody_routes_to_gets_reject_message_to_network


async def test_stock_network_number_is_carries_the_number_quality_as_its_flag(monkeypatch) -> None:
    monkeypatch.setattr(bacpypes3.app, "NetworkServiceElement", NetworkNumberFlags.__mro__[1])
    with a_stock_router(ip_network=7) as port:
        heard: list[bytes] = []
        for _ in range(5):  # until its socket is open
            heard = heard or await answers_to_what_is_network_number(port)
    assert heard == [network_number_is(7, 3)]  # the quality "configured" (3), where the flag says 1
    # The gateway's: tests/bacnet/test_ip_network.py::test_a_configured_ip_network_is_shown_and_answered_as_configured


async def test_stock_access_point_fails_on_every_pdu_while_communication_is_disabled(monkeypatch) -> None:
    monkeypatch.setattr(bacpypes3.app, "ApplicationServiceAccessPoint", DccOnUndecodedPdu.__mro__[1])
    port = free_udp_port()
    stock = Application.from_object_list(
        [device(), NetworkPortObject(f"127.0.0.1/8:{port}", objectIdentifier=("network-port", 1), objectName="IP")]
    )
    try:
        stock.asap.dccEnableDisable = "disable"
        with pytest.raises(AttributeError, match="apduType"):
            await stock.asap.confirmation(PDU(bytes.fromhex("10080c0200232919")))  # any PDU, here a Who-Is
    finally:
        stock.close()
    # The gateway's: tests/bacnet/test_protection.py::test_dcc_disable_silences_one_device_until_enabled_again


def test_stock_device_communication_control_decodes_without_its_required_enable_disable() -> None:
    password_only = ConfirmedRequestPDU(DeviceCommunicationControlRequest.service_choice, 1)
    password_only.put_data(bytes.fromhex("2d0700736563726574"))
    request = APCISequence.decode(password_only)
    assert request.enableDisable is None and request.password == "secret"
    # The gateway's: tests/bacnet/test_conformance.py::
    #   test_device_communication_control_without_enable_disable_is_rejected_before_any_password_check


def test_stock_device_communication_control_handler_fails() -> None:
    with pytest.raises(AttributeError, match="smap"):
        DeviceCommunicationControlServices().enable_communications()
    # The gateway's own: gateway/bacnet/stack/control.py CommunicationControl


async def test_stock_multi_state_value_cannot_be_subscribed() -> None:
    stock = MultiStateValueObject(
        objectIdentifier=("multi-state-value", 1),
        objectName="reset",
        presentValue=1,
        numberOfStates=2,
        stateText=["Ready", "Reset"],
        outOfService=False,
        eventState="normal",
    )
    async with stock_server(stock) as port:
        client = Client(port)
        try:
            with pytest.raises(ErrorPDU) as failed:
                await client.subscribe(client.router, "multi-state-value,1", confirmed=False)
            assert str(failed.value.errorCode) == "operational-problem"
        finally:
            client.close()
    # The gateway's: tests/bacnet/test_resets.py::test_a_reset_object_can_be_subscribed


def test_stock_application_ignores_time_sync_and_rejects_reinitialize() -> None:
    for service in ("TimeSynchronizationRequest", "UTCTimeSynchronizationRequest", "ReinitializeDeviceRequest"):
        assert not hasattr(Application, f"do_{service}")
        assert hasattr(RouterApplication, f"do_{service}")


async def test_stock_router_does_not_announce_itself() -> None:
    port = free_udp_port()
    with broadcast_listener(port) as listener:
        VirtualNetwork("stock-router-test")
        try:
            router = stock_router(f"127.0.0.1/8:{port}", 50, "stock-router-test", ip_network=1)
            loop = asyncio.get_running_loop()
            heard = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    while True:
                        heard.append(decode_broadcast(await loop.sock_recv(listener, 2048)))
            router.close()
        finally:
            VirtualNetwork._networks.pop("stock-router-test")
    assert not [entry for entry in heard if entry and entry[0] == "router"]
    assert not asyncio.iscoroutinefunction(NetworkServiceElement.startup)  # so it cannot await it
    # The gateway's: tests/bacnet/test_lifecycle.py::test_router_and_devices_announce_themselves_at_start


async def test_datagrams_the_stack_fails_on_are_counted_not_logged_one_by_one(bacnet_gateway, client, caplog) -> None:
    gateway, _ = bacnet_gateway
    caplog.set_level("WARNING")
    counted = FAILED_DATAGRAMS.report.dropped
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(50):
            sock.sendto(b"\x81\x0a\x00\xff\x01", ("127.0.0.1", gateway.config.bacnet.port))  # BVLL length lies
    await client.read(Address(f"127.0.0.1:{gateway.config.bacnet.port}"), "device,50000", "object-name")
    assert [r for r in caplog.records if r.name.startswith("bacpypes3") and r.levelname == "ERROR"] == []
    assert FAILED_DATAGRAMS.report.dropped - counted == 50
