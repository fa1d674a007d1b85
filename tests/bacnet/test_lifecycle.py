"""The router device over its life: announcements, settings, identities kept across restarts,
ReinitializeDevice, time synchronization, and a bad address."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import socket
import time

import pytest
from bacpypes3.apdu import (
    APDU,
    ErrorPDU,
    IAmRequest,
    ReinitializeDeviceRequest,
    TimeSynchronizationRequest,
    UTCTimeSynchronizationRequest,
)
from bacpypes3.basetypes import DateTime
from bacpypes3.ipv4.bvll import LPDU
from bacpypes3.npdu import NPCI, IAmRouterToNetwork
from bacpypes3.pdu import PDU
from bacpypes3.primitivedata import CharacterString, Date, ObjectIdentifier, Real, Time

from gateway.app import running, serve
from gateway.bacnet.face import BacnetBindError
from gateway.state import StateStore
from tests.bacnet.client import Client
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.support import eventually

ORIGINAL_BROADCAST = 0x0B
I_AM_ROUTER_TO_NETWORK = 0x01


def error_of(excinfo: pytest.ExceptionInfo[ErrorPDU]) -> tuple[str, str]:
    return str(excinfo.value.errorClass), str(excinfo.value.errorCode)


@contextlib.contextmanager
def broadcast_listener(port: int):
    """A socket that hears the BACnet/IP broadcasts on loopback at `port`, beside the gateway."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as bacpypes3 binds it
    listener.bind(("127.255.255.255", port))
    listener.setblocking(False)
    try:
        yield listener
    finally:
        listener.close()


def decode_broadcast(datagram: bytes) -> tuple[str, object] | None:
    """("router", networks) for an I-Am-Router-To-Network, ("i-am", device instance) for an
    I-Am, None for anything else; decoded by bacpypes3."""
    lpdu = LPDU.decode(PDU(datagram))
    if lpdu.bvlciFunction != ORIGINAL_BROADCAST:
        return None
    npdu = PDU(lpdu.pduData)
    npci = NPCI.decode(npdu)
    if npci.npduNetMessage == I_AM_ROUTER_TO_NETWORK:
        return "router", IAmRouterToNetwork.decode(npdu).iartnNetworkList
    if npci.npduNetMessage is None:
        apdu = APDU.decode(npdu)
        if apdu.apduService == IAmRequest.service_choice:
            return "i-am", IAmRequest.decode(apdu).iAmDeviceIdentifier[1]
    return None


async def test_router_and_devices_announce_themselves_at_start(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path)
    heard = []
    with broadcast_listener(config.bacnet.port) as listener:
        await serving(await start_gateway(config))
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while True:
                    heard.append(decode_broadcast(await loop.sock_recv(listener, 2048)))
    assert ("router", [50]) in heard
    assert {50000, 50001, 50002} <= {what for kind, what in filter(None, heard) if kind == "i-am"}


async def test_settings_and_identities_survive_reinitialize_device(make_line, make_client, tmp_path) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path, reinit_password="secret")
    server = asyncio.create_task(serve(lambda: config))
    try:
        client = make_client(config.bacnet.port)
        await client.find_router()
        node = client.node(2)
        await client.write(node, "device,50002", "object-name", CharacterString("PDU-A"))
        await client.write(node, "device,50002", "object-identifier", ObjectIdentifier("device,61234"))
        assert await client.read(node, "device,61234", "object-name") == "PDU-A"
        with pytest.raises(ErrorPDU) as taken:
            await client.write(client.node(1), "device,50001", "object-name", CharacterString("PDU-A"))
        assert error_of(taken) == ("property", "duplicate-name")
        with pytest.raises(ErrorPDU) as router_id:
            await client.write(client.router, "device,50000", "object-identifier", ObjectIdentifier("device,7"))
        assert error_of(router_id) == ("property", "write-access-denied")

        await client.write(client.router, "analog-value,1", "present-value", Real(60000.0))
        await client.write(client.router, "analog-value,2", "present-value", Real(77.0))
        with pytest.raises(ErrorPDU) as bad_network:
            await client.write(client.router, "analog-value,2", "present-value", Real(65535.0))
        assert error_of(bad_network) == ("property", "value-out-of-range")
        assert await client.read(client.router, "analog-value,2", "present-value") == 77
        assert await client.find_router() == 50  # saved, not applied until the restart
        state = StateStore(config.gateway.state_file).load()
        assert (state.device_id_offset, state.network) == (60000, 77)

        with pytest.raises(ErrorPDU) as wrong:
            await reinitialize(client, "warmstart", "guess")
        assert error_of(wrong) == ("security", "password-failure")
        with pytest.raises(ErrorPDU) as backup:
            await reinitialize(client, "start-backup", "secret")
        assert error_of(backup) == ("services", "service-request-denied")
        await reinitialize(client, "warmstart", "secret")

        await eventually_async(lambda: client.find_router(), 77, 30, "the router on network 77")
        assert await client.read(client.router, "device,60000", "object-name") == "BCPM_Gateway_60000"
        assert await client.read(client.node(1), "device,60001", "object-name") == "BCPM_1"
        assert await client.read(client.node(2), "device,61234", "object-name") == "PDU-A"
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def reinitialize(client: Client, state: str, password: str) -> None:
    await client.app.request(
        ReinitializeDeviceRequest(reinitializedStateOfDevice=state, password=password, destination=client.router)
    )


async def eventually_async(ask, expected, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await asyncio.wait_for(ask(), 5) == expected:
                return
        except (TimeoutError, ErrorPDU):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("utc", [False, True])
async def test_time_synchronization_sets_the_gateway_clock(bacnet_gateway, client, utc) -> None:
    told = DateTime(date=Date("2030-05-06"), time=Time("12:00:00"))
    kind = UTCTimeSynchronizationRequest if utc else TimeSynchronizationRequest
    await client.app.request(kind(time=told, destination=client.router))
    fields = (2030, 5, 6, 12, 0, 0, 0, 0, -1)
    expected = Date.now(calendar.timegm(fields) if utc else time.mktime(fields))
    await eventually_async(
        lambda: client.read(client.router, "device,50000", "local-date"), expected, 10, "local date 2030-05-06"
    )
    assert await client.read(client.node(1), "device,50001", "local-date") == expected  # one clock


async def test_time_synchronization_is_only_recorded_when_modbus_owns_the_clock(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    line = make_line(1)
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path, rtc_control="modbus")))
    client = make_client(gateway)
    await client.find_router()
    told = DateTime(date=Date("2030-05-06"), time=Time("12:00:00"))
    await client.app.request(TimeSynchronizationRequest(time=told, destination=client.router))
    clock = bacnet_face(gateway).network.router._clock
    await eventually(lambda: clock.synchronizations == 1, what="the synchronization recorded")
    assert await client.read(client.router, "device,50000", "local-date") == Date.now()


async def test_an_address_of_another_machine_stops_the_face_with_a_clear_error(make_line, tmp_path) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path, address="192.0.2.7/24")  # TEST-NET-1: never on this machine
    with pytest.raises(BacnetBindError, match="bacnet.address = 192.0.2.7/24"):
        async with running(config):
            pytest.fail("the gateway started without its BACnet face")


async def test_stopping_while_the_sockets_open_logs_no_error_and_leaves_no_socket(make_line, tmp_path, caplog) -> None:
    line = make_line(1)
    for _ in range(3):
        config = bacnet_config(line, tmp_path)
        async with running(config) as gateway:
            face = bacnet_face(gateway)
            # Stop as soon as the network exists: bacpypes3 is still opening the sockets.
            await eventually(lambda face=face: face.network is not None, 20, "the BACnet network", step=0)
        await asyncio.sleep(0.1)  # what would have failed in a callback has run by now
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", config.bacnet.port))  # nobody holds the port
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == []
