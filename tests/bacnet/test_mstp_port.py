"""The router's third port, BACnet MS/TP, on the upstream serial port: a virtual RS-485 trunk
(`gateway.sim.multidrop`) with the gateway's data link at MAC 3 and rusty-bacnet stations (an
independent BACnet stack: a client, and a device of its own) beside it. From MS/TP, a Who-Is finds
the router and every meter; reads (a whole Object_List in segments of MS/TP's 480 octets), writes
(and a refused one), a subscription and its notifications work through the router; Max_Master is
written, saved and applied; an IP client and an MS/TP device reach each other through the router;
three masters share the trunk; the port unplugged leaves BACnet/IP served and comes back. The edges
the standard names are sent as raw frames by the data link's own test station: a request for an
unknown network, a broadcast storm, an answer that is not ready within the reply delay."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import rusty_bacnet as rb
from bacpypes3.apdu import (
    APDU,
    ReadPropertyRequest,
    SubscribeCOVRequest,
    UnconfirmedCOVNotificationRequest,
    WhoIsRequest,
    unconfirmed_request_types,
)
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.npdu import NPDU, RejectMessageToNetwork
from bacpypes3.pdu import PDU, Address, GlobalBroadcast, RemoteStation
from bacpypes3.primitivedata import ObjectIdentifier, Real

from gateway.app import Gateway
from gateway.config import UpstreamSettings
from gateway.logging import event_counts
from gateway.mstp import MstpLink, Received
from gateway.pointmap import load
from gateway.sim import SimulatedLine
from gateway.sim.faults import Fault
from gateway.state import StateStore
from tests.bacnet.client import CLIENT_INSTANCE, Client, free_udp_port
from tests.bacnet.conftest import bacnet_face, serving
from tests.bacnet.rusty_client import oid, prop
from tests.bacnet.test_pics import header, names, property_id, stated, table
from tests.mstp.stations import NetworkLayer, gateway_link
from tests.support import eventually, gateway_config

BAUD = 38400
GATEWAY = 3  # the gateway's MAC on the trunk
MSTP_NETWORK = 51
MAX_MASTER = 10
CT_SIZE = oid("analog-value", 8)  # channel 5's CT size, writable
CT_SIZE_5 = load().find("ct_size", group="setup", channel=5)
PROPERTY, VALUE_OUT_OF_RANGE = 2, 37  # error class and code
NO_ROUTE_TO_NETWORK = 1  # Reject-Message-To-Network reason


async def mstp_gateway(
    line: SimulatedLine, start_gateway: Callable[..., Any], tmp_path: Path, port: Path, **sections: Any
) -> Gateway:
    """A gateway serving BACnet/IP on loopback and MS/TP at MAC 3 on `port`."""
    upstream = {"mode": "mstp", "port": str(port), "mac": GATEWAY, "max_master": MAX_MASTER, "network": MSTP_NETWORK}
    bacnet = {"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port()}
    gateway = await start_gateway(gateway_config(line, tmp_path, bacnet=bacnet, upstream=upstream, **sections))
    await serving(gateway)
    link = mstp_link(gateway)
    await eventually(lambda: link.port_open, 10, "the MS/TP port open")
    return gateway


@pytest.fixture
def on_a_trunk(multidrop, make_line, start_gateway, tmp_path: Path) -> Callable[..., Any]:
    """`await on_a_trunk(stations, **sections)`: one board (nodes 1 and 2) behind a gateway whose
    MS/TP port is the first station of a trunk of `stations`; (gateway, line, trunk, paths)."""

    async def start(stations: int, **sections: Any) -> tuple[Gateway, SimulatedLine, Any, list[Path]]:
        line = make_line(1)
        trunk, paths = multidrop(stations, baudrate=BAUD)
        return await mstp_gateway(line, start_gateway, tmp_path, paths[0], **sections), line, trunk, paths

    return start


def mstp_link(gateway: Gateway) -> MstpLink:
    network = bacnet_face(gateway).network
    assert network is not None and network.mstp is not None
    return network.mstp.link


@contextlib.asynccontextmanager
async def mstp_client(path: Path, mac: int = 1) -> AsyncIterator[rb.BACnetClient]:
    """rusty-bacnet's client as a master on the trunk, having found the router and both meters."""
    async with rb.BACnetClient(
        transport="mstp", serial_port=str(path), mstp_mac=mac, mstp_max_master=MAX_MASTER, apdu_timeout_ms=3000
    ) as client:
        for _ in range(10):  # the ring forms first
            if len(await client.discover(timeout_ms=1500)) >= 3:
                break
        yield client


@contextlib.asynccontextmanager
async def raw_station(path: Path, mac: int, **settings: Any) -> AsyncIterator[tuple[MstpLink, NetworkLayer]]:
    """The data link's own test station, sending NPDUs made here and keeping what it receives."""
    upper = NetworkLayer(answer=False)
    link = gateway_link(str(path), mac, upper, max_master=MAX_MASTER, **settings)
    try:
        await eventually(lambda: link.counts.tokens_received > 3, 20, "the raw station in the ring")
        yield link, upper
    finally:
        link.stop()


def confirmed(request: APDU, invoke: int, *, segmented_answer: bool = False) -> None:
    """A confirmed request's header: unsegmented, answers of up to 1476 octets (more than MS/TP
    carries), in any number of segments when `segmented_answer`."""
    request.apduInvokeID, request.apduSeg, request.apduMor, request.apduSA = invoke, False, False, segmented_answer
    request.apduMaxResp, request.apduMaxSegs = 5, 7 if segmented_answer else 0


def routed(apdu: APDU | bytes, destination: Address, *, expecting_reply: bool) -> bytes:
    """An NPDU for `destination` behind the router (DNET, DADR), of an APDU or its octets."""
    npdu = NPDU(apdu if isinstance(apdu, bytes) else bytes(apdu.encode().encode().pduData))
    npdu.pduExpectingReply, npdu.npduDADR, npdu.npduHopCount = expecting_reply, destination, 255
    return bytes(npdu.encode().pduData)


def decoded(received: Received) -> Any:
    """A network-layer message, or the APDU, of what arrived."""
    npdu = NPDU.decode(PDU(received.npdu))
    if npdu.npduNetMessage is not None:
        return npdu
    return APDU.decode(PDU(npdu.pduData))


def apdu_type(received: Received) -> int | None:
    """The APDU type of what arrived (0 confirmed request ... 7 abort); None for a network message."""
    npdu = NPDU.decode(PDU(received.npdu))
    return None if npdu.npduNetMessage is not None else npdu.pduData[0] >> 4


async def next_received(upper: NetworkLayer, check: Callable[[Received], bool], timeout: float = 10.0) -> Received:
    """The next NPDU that arrived and passes `check`."""
    try:
        return await asyncio.to_thread(upper.next, timeout, check)
    except queue.Empty:
        pytest.fail("nothing of the kind arrived")


async def test_from_mstp_a_who_is_finds_the_router_and_every_meter_and_reads_and_writes_go_through(on_a_trunk) -> None:
    gateway, line, _, paths = await on_a_trunk(2)
    line.panel(1).set_current(1, 12.5)
    async with mstp_client(paths[1]) as client:
        found = sorted(
            (device.object_identifier.instance, device.source_network, device.source_address, device.max_apdu_length)
            for device in await client.discovered_devices()
        )
        # the router's device is a station of the trunk; the meters are behind it on network 50
        assert found == [(50000, None, None, 480), (50001, 50, b"\x01", 480), (50002, 50, b"\x02", 480)]
        for _ in range(50):
            [result] = await client.read_property_multiple_from_device(
                50001, [(oid("analog-input", 1336), [(prop("present-value"), None), (prop("object-name"), None)])]
            )
            values = [item["value"].value for item in result["results"]]
            if values[0] == 12.5:
                break
            await asyncio.sleep(0.1)
        assert values == [12.5, "Current Ch 1"]
        single = await client.read_property_from_device(50001, oid("analog-input", 1336), prop("present-value"))
        assert single.value == 12.5

        await client.write_property_to_device(50002, CT_SIZE, prop("present-value"), rb.PropertyValue.real(175.0))
        with pytest.raises(rb.BacnetProtocolError) as refused:
            await client.write_property_to_device(50002, CT_SIZE, prop("present-value"), rb.PropertyValue.real(99999.0))
        assert (refused.value.error_class, refused.value.error_code) == (PROPERTY, VALUE_OUT_OF_RANGE)
        assert line.panel(2).read(CT_SIZE_5.register, 1) == [175]

        router = str(GATEWAY)  # its MAC on the trunk
        assert (await client.read_property(router, oid("device", 50000), prop("object-name"))).value == (
            "BCPM_Gateway_50000"
        )
        port = oid("network-port", 3)
        facts = {
            name: (await client.read_property(router, port, prop(name))).value
            for name in (
                "network-type",
                "mac-address",
                "max-master",
                "max-info-frames",
                "network-number",
                "apdu-length",
            )
        }
    assert facts == {
        "network-type": 2,  # mstp
        "mac-address": bytes([GATEWAY]),
        "max-master": MAX_MASTER,
        "max-info-frames": 10,
        "network-number": MSTP_NETWORK,
        "apdu-length": 480,
    }
    link = mstp_link(gateway)
    assert link.counts.invalid_frames == 0 and link.counts.mac_conflicts == 0


async def test_max_master_written_on_the_router_from_mstp_is_saved_and_applied(on_a_trunk) -> None:
    gateway, line, _, paths = await on_a_trunk(2)
    link = mstp_link(gateway)
    router, device, port = str(GATEWAY), oid("device", 50000), oid("network-port", 3)
    async with mstp_client(paths[1]) as client:
        await client.write_property(router, device, prop("max-master"), rb.PropertyValue.unsigned(20))
        with pytest.raises(rb.BacnetProtocolError) as refused:
            await client.write_property(router, port, prop("max-master"), rb.PropertyValue.unsigned(GATEWAY - 1))
        shown = [(await client.read_property(router, each, prop("max-master"))).value for each in (device, port)]
    assert (refused.value.error_class, refused.value.error_code) == (PROPERTY, VALUE_OUT_OF_RANGE)
    assert shown == [20, 20]
    await eventually(lambda: link.node.max_master == 20, 5, "Max_Master applied to the data link")
    assert json.loads(gateway.config.gateway.state_file.read_text())["mstp"] == {"max_master": 20}
    assert StateStore(gateway.config.gateway.state_file).load().mstp_max_master == 20


async def test_a_subscription_from_mstp_to_a_meter_is_notified_through_the_router(on_a_trunk) -> None:
    gateway, line, _, paths = await on_a_trunk(2)
    meter = RemoteStation(50, 1)
    async with raw_station(paths[1], 1) as (link, upper):
        request = SubscribeCOVRequest(
            subscriberProcessIdentifier=9,
            monitoredObjectIdentifier=ObjectIdentifier("analog-input,1336"),
            issueConfirmedNotifications=False,
            lifetime=300,
        )
        confirmed(request, 5)
        link.send(GATEWAY, routed(request, meter, expecting_reply=True), expecting_reply=True)
        ack = decoded(await next_received(upper, lambda r: apdu_type(r) == 2))  # SimpleACK
        assert ack.apduInvokeID == 5
        line.panel(1).set_current(1, 33.0)
        for _ in range(20):
            arrived = decoded(await next_received(upper, lambda r: True))
            if isinstance(arrived, APDU) and arrived.apduType == 1:
                notification = unconfirmed_request_types[arrived.apduService].decode(arrived)
                if isinstance(notification, UnconfirmedCOVNotificationRequest):
                    values = {str(each.propertyIdentifier): each for each in notification.listOfValues}
                    if values["present-value"].value.cast_out(Real) == 33.0:
                        break
        else:
            pytest.fail("no notification of the new value")
    assert notification.initiatingDeviceIdentifier == ObjectIdentifier("device,50001")


async def test_an_ip_client_and_an_mstp_device_reach_each_other_through_the_router_with_three_masters(
    on_a_trunk, make_client: Callable[..., Client]
) -> None:
    gateway, line, _, paths = await on_a_trunk(3)
    link = mstp_link(gateway)
    device = rb.MstpEndpoint(
        1001, str(paths[1]), mstp_baud=BAUD, mstp_mac=1, mstp_max_master=MAX_MASTER, apdu_timeout_ms=2000
    )
    device.add_analog_input(1, "ai1", present_value=5.5)
    async with device:
        ip = make_client(gateway)
        await ip.find_router()
        value = await ip.read(Address(f"{MSTP_NETWORK}:1"), "analog-input,1", "present-value")
        assert value == 5.5
        async with mstp_client(paths[2], mac=7) as client:
            await eventually(lambda: link.node.next_station in (1, 7), 20, "a ring of three")
            # the IP client tells the MS/TP station who it is (its broadcasts stay on its own port here)
            ip.app.i_am(address=Address(f"{MSTP_NETWORK}:7"))
            for _ in range(50):
                if await client.get_device(CLIENT_INSTANCE) is not None:
                    break
                await asyncio.sleep(0.1)
            # the IP client's own device, on the IP network, from the MS/TP trunk
            name = await client.read_property_from_device(
                CLIENT_INSTANCE, oid("device", CLIENT_INSTANCE), prop("object-name")
            )
            assert name.value
            meter = await client.read_property_from_device(50001, oid("device", 50001), prop("object-name"))
            assert meter.value == "BCPM_1"
    assert link.counts.mac_conflicts == 0


async def test_the_port_unplugged_leaves_bacnet_ip_served_and_mstp_comes_back(
    on_a_trunk, make_client: Callable[..., Client]
) -> None:
    gateway, line, drop, paths = await on_a_trunk(2)
    link = mstp_link(gateway)
    ip = make_client(gateway)
    await ip.find_router()
    drop.unplug(0)
    await eventually(lambda: not link.port_open, 10, "the port lost")
    assert await ip.read(ip.node(1), "device,50001", "object-name") == "BCPM_1"
    assert bacnet_face(gateway).upstream_counts()["port_open"] == 0
    drop.plug(0)
    await eventually(lambda: link.port_open, 40, "the port open again")
    async with mstp_client(paths[1]) as client:
        meter = await client.read_property_from_device(50002, oid("device", 50002), prop("object-name"))
    assert meter.value == "BCPM_2"


async def test_edges_from_mstp_unknown_network_broadcast_storm_and_a_postponed_answer(
    on_a_trunk,
) -> None:
    # a meter's write answered late: the gateway's answer is not ready within the reply delay
    gateway, line, _, paths = await on_a_trunk(2, serial={"timeout": 0.6})
    link = mstp_link(gateway)
    async with raw_station(paths[1], 1, max_info_frames=100) as (station, upper):
        request = ReadPropertyRequest(objectIdentifier=ObjectIdentifier("device,1"), propertyIdentifier="object-name")
        confirmed(request, 1)
        station.send(GATEWAY, routed(request, RemoteStation(99, 1), expecting_reply=True), expecting_reply=True)
        reject = decoded(await next_received(upper, lambda r: NPDU.decode(PDU(r.npdu)).npduNetMessage == 0x03))
        reject = RejectMessageToNetwork.decode(reject)
        assert (reject.rmtnRejectionReason, reject.rmtnDNET) == (NO_ROUTE_TO_NETWORK, 99)

        dropped = "bacnet unconfirmed requests dropped by bacnet.unconfirmed_rate"
        before = event_counts().get(dropped, 0)
        who_is = routed(WhoIsRequest(), GlobalBroadcast(), expecting_reply=False)
        for _ in range(250):  # five seconds of bacnet.unconfirmed_rate, sent in about two
            assert station.send(255, who_is)
        await eventually(lambda: event_counts().get(dropped, 0) - before > 50, 20, "the storm dropped, counted")
        assert station.counts.queue_dropped == 0

    postponed = link.counts.replies_postponed
    for _ in range(40):  # node 2 answers slowly for a while: polls, the write and its read-back
        line.script.add(Fault(delay=0.25), address=2)
    async with mstp_client(paths[1]) as client:  # the same trunk position, after the storm
        await client.write_property_to_device(50002, CT_SIZE, prop("present-value"), rb.PropertyValue.real(150.0))
        assert (await client.read_property_from_device(50002, CT_SIZE, prop("present-value"))).value == 150.0
    assert link.counts.replies_postponed > postponed  # Reply Postponed, then the answer in its token


async def test_a_segmented_object_list_read_from_mstp_comes_in_apdus_of_at_most_480_octets(on_a_trunk) -> None:
    gateway, line, _, paths = await on_a_trunk(2)
    async with raw_station(paths[1], 1) as (station, upper):
        request = ReadPropertyRequest(
            objectIdentifier=ObjectIdentifier("device,50001"), propertyIdentifier="object-list"
        )
        confirmed(request, 7, segmented_answer=True)
        station.send(GATEWAY, routed(request, RemoteStation(50, 1), expecting_reply=True), expecting_reply=True)
        received = await next_received(upper, lambda r: apdu_type(r) == 3)  # a ComplexACK
    first = bytes(NPDU.decode(PDU(received.npdu)).pduData)
    assert first[0] & 0x0C == 0x0C and first[2] == 0  # the first segment, more follow
    assert len(first) == 480  # as large as the port allows, no larger


async def test_the_pics_states_the_mstp_port_as_the_router_reports_it(
    multidrop, make_line, start_gateway, tmp_path: Path
) -> None:
    line = make_line(1)
    _, paths = multidrop(2, baudrate=BAUD)
    shipped = UpstreamSettings()  # the shipped [upstream] but for the mode and the port
    upstream = {"mode": "mstp", "port": str(paths[0])}
    bacnet = {"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port()}
    gateway = await start_gateway(gateway_config(line, tmp_path, bacnet=bacnet, upstream=upstream))
    await serving(gateway)
    router = str(shipped.mac)
    objects = {
        "Network Port (router, MS/TP)": oid("network-port", 3),
        "Device (router, with the MS/TP port)": oid("device", 50000),
    }
    rows = {row[0]: names(row[1]) for row in table("MS/TP port")}
    assert rows.keys() == objects.keys()
    async with rb.BACnetClient(transport="mstp", serial_port=str(paths[1]), mstp_mac=1) as client:
        for label, objid in objects.items():
            reported = await client.read_property(router, objid, prop("property-list"))
            assert sorted(reported.value) == sorted(property_id(name) for name in rows[label]), label
        assert header("MS/TP port values")[1:] == ["Router, MS/TP"]
        for name, cell in table("MS/TP port values"):
            pid = rb.PropertyIdentifier.from_raw(property_id(name))
            value = await client.read_property(router, objects["Network Port (router, MS/TP)"], pid)
            assert value.value == stated(NetworkPortObject, name, cell), name
