"""The BACnet/IP face over real UDP on loopback, with the simulated BCPM behind the pty."""

from __future__ import annotations

import asyncio
import math
import socket

import pytest
from bacpypes3.apdu import ErrorPDU
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import CharacterString, Null, ObjectIdentifier, Real, Unsigned

from gateway.bacnet.objects import object_specs
from gateway.logging import event_counts
from gateway.pointmap import load
from tests.bacnet.client import Client, reported
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.support import eventually

PM = load()
CURRENT_12 = PM.find("current", group="branch", channel=12)  # AI1347
CT_SIZE_5 = PM.find("ct_size", group="setup", channel=5)  # register 77 = AV8
CT_NUMBERING = PM.find("ct_numbering")  # register 6 = AV1
FAULT = [0, 1, 0, 0]
NORMAL = [0, 0, 0, 0]


def error_of(excinfo: pytest.ExceptionInfo[ErrorPDU]) -> tuple[str, str]:
    return str(excinfo.value.errorClass), str(excinfo.value.errorCode)


async def test_router_routes_to_the_virtual_network_and_every_node_answers_who_is(bacnet_gateway, client) -> None:
    assert client.network == 50
    router = await client.app.who_is(50000, 50000, address=client.router, timeout=1)
    nodes = await client.app.who_is(address=Address("50:*"), timeout=1)
    assert [i_am.iAmDeviceIdentifier[1] for i_am in router] == [50000]
    assert sorted(i_am.iAmDeviceIdentifier[1] for i_am in nodes) == [50001, 50002]
    assert {str(i_am.pduSource) for i_am in nodes} == {"50:1", "50:2"}


async def test_devices_tell_what_meter_they_are(bacnet_gateway, client) -> None:
    gateway, _ = bacnet_gateway
    profile = gateway.nodes.nodes[2].profile
    node = client.node(2)
    assert await client.read(node, "device,50002", "object-name") == "BCPM_2"
    assert await client.read(node, "device,50002", "vendor-identifier") == 133
    assert await client.read(node, "device,50002", "vendor-name") == "Veris Industries"
    assert await client.read(node, "device,50002", "model-name") == "BCPM model A (device ID 15172)"
    firmware = f"RS {profile.firmware_rs} OS {profile.firmware_os}"
    assert await client.read(node, "device,50002", "firmware-revision") == firmware
    assert await client.read(node, "device,50002", "serial-number") == f"0x{profile.serial:08X}"
    # The wildcard instance means "this device".
    assert await client.read(node, "device,4194303", "object-identifier") == ObjectIdentifier("device,50002")
    objects = await client.read(node, "device,50002", "object-list")
    assert len(objects) == 2 + len(object_specs(PM, "A"))  # the device, its network port, the points


async def test_read_property_and_rpm_give_the_meters_values(bacnet_gateway, client) -> None:
    gateway, line = bacnet_gateway
    line.panel(2).set_current(12, 17.5)
    line.panel(2).write(CT_SIZE_5.register, [150])
    node = client.node(2)
    await eventually(lambda: gateway.nodes.nodes[2].cache.reading(CT_SIZE_5).value == 150, what="CT size polled")
    for _ in range(100):
        if await client.read(node, "analog-input,1347", "present-value") == 17.5:
            break
        await asyncio.sleep(0.1)
    assert await client.read(node, "analog-input,1347", "present-value") == 17.5
    assert await client.read(node, "analog-input,1347", "object-name") == "Current Ch 12"
    assert str(await client.read(node, "analog-input,1347", "units")) == "amperes"
    assert await client.read(node, "analog-input,1347", "cov-increment") > 0
    assert await client.read(node, "analog-value,8", "object-name") == "Branch CT Size Ch 5"

    results = await client.app.read_property_multiple(
        node,
        [
            ObjectIdentifier("analog-input,1347"),
            ["present-value", "reliability", "out-of-service"],
            ObjectIdentifier("analog-value,8"),
            ["present-value", "status-flags"],
            ObjectIdentifier("analog-value,1"),
            ["present-value"],
        ],
    )
    values = {(str(objid), str(prop)): value for objid, prop, _, value in results}
    assert values[("analog-input,1347", "present-value")] == 17.5
    assert str(values[("analog-input,1347", "reliability")]) == "no-fault-detected"
    assert values[("analog-input,1347", "out-of-service")] == 0
    assert values[("analog-value,8", "present-value")] == 150
    assert list(values[("analog-value,8", "status-flags")]) == NORMAL
    meter = line.panel(2).read(CT_NUMBERING.register, 1)[0]
    assert values[("analog-value,1", "present-value")] == meter


@pytest.mark.parametrize("which", ["all", "required", "optional"])
async def test_rpm_all_required_and_optional(bacnet_gateway, client, which) -> None:
    results = await client.app.read_property_multiple(client.node(1), [ObjectIdentifier("analog-input,1336"), [which]])
    names = {str(prop) for _, prop, _, _ in results}
    errors = [value for _, _, _, value in results if isinstance(value, ErrorPDU)]
    assert not errors
    if which == "optional":
        assert "present-value" not in names and {"description", "reliability"} <= names
    else:
        assert {"present-value", "status-flags", "units", "object-name"} <= names


async def test_write_to_an_av_reaches_the_meter_register(bacnet_gateway, client) -> None:
    _, line = bacnet_gateway
    await client.write(client.node(1), "analog-value,8", "present-value", Real(225.0))
    assert line.panel(1).read(CT_SIZE_5.register, 1) == [225]
    assert await client.read(client.node(1), "analog-value,8", "present-value") == 225


async def test_invalid_writes_get_a_bacnet_error_and_leave_the_meter_alone(bacnet_gateway, client) -> None:
    _, line = bacnet_gateway
    node = client.node(1)
    before = line.panel(1).read(CT_NUMBERING.register, 1)
    with pytest.raises(ErrorPDU) as refused:
        await client.write(node, "analog-value,1", "present-value", Real(9.0))  # accepts 0-3
    assert error_of(refused) == ("property", "value-out-of-range")
    with pytest.raises(ErrorPDU) as not_a_number:
        await client.write(node, "analog-value,1", "present-value", Real(math.nan))
    assert error_of(not_a_number) == ("property", "value-out-of-range")
    with pytest.raises(ErrorPDU) as relinquish:
        await client.write(node, "analog-value,1", "present-value", Null(()), priority=8)
    assert error_of(relinquish) == ("property", "invalid-data-type")
    with pytest.raises(ErrorPDU) as measured:
        await client.write(node, "analog-input,1336", "present-value", Real(1.0))
    assert error_of(measured) == ("property", "write-access-denied")
    with pytest.raises(ErrorPDU) as units:
        await client.write(node, "analog-value,1", "object-name", CharacterString("mine"))
    assert error_of(units) == ("property", "write-access-denied")
    with pytest.raises(ErrorPDU) as wrong_type:
        await client.write_raw(node, "analog-value,1", "present-value", CharacterString("two"))
    assert error_of(wrong_type) == ("property", "invalid-data-type")
    with pytest.raises(ErrorPDU) as no_such_property:
        await client.write_raw(node, "analog-value,1", "high-limit", Real(1.0))
    assert error_of(no_such_property) == ("property", "unknown-property")
    assert line.panel(1).read(CT_NUMBERING.register, 1) == before
    assert await client.read(node, "analog-value,1", "present-value") == before[0]


async def test_cov_increment_is_writable_and_never_zero(bacnet_gateway, client) -> None:
    node = client.node(1)
    await client.write(node, "analog-input,1336", "cov-increment", Real(2.5))
    assert await client.read(node, "analog-input,1336", "cov-increment") == 2.5
    with pytest.raises(ErrorPDU) as zero:
        await client.write(node, "analog-input,1336", "cov-increment", Real(0.0))
    assert error_of(zero) == ("property", "value-out-of-range")


@pytest.mark.parametrize("confirmed", [True, False])
@pytest.mark.parametrize("lifetime", [60, None])
async def test_cov_reports_a_current_change_beyond_the_increment(bacnet_gateway, client, confirmed, lifetime) -> None:
    _, line = bacnet_gateway
    line.panel(2).set_current(12, 10.0)
    node = client.node(2)
    await client.subscribe(node, "analog-input,1347", confirmed=confirmed, lifetime=lifetime)
    first = reported(await client.notification())  # every subscription starts with one
    assert set(first) == {"present-value", "status-flags"}
    await client.notification_where(lambda values: values["present-value"] == 10.0)
    line.panel(2).set_current(12, 11.5)  # 57.5 % of the 20 A breaker: still under the 60 % alarm
    changed = await client.notification_where(lambda values: values["present-value"] != 10.0)
    assert changed == {"present-value": 11.5, "status-flags": NORMAL}
    if lifetime is None:  # indefinite: the notification says 0 s remaining
        assert (await _next_notification_after_change(client, line)).timeRemaining == 0


async def _next_notification_after_change(client: Client, line) -> object:
    line.panel(2).set_current(12, 30.0)
    while True:
        notification = await client.notification()
        if reported(notification)["present-value"] == 30.0:
            return notification


async def test_cov_subscription_is_cancelled_on_request(bacnet_gateway, client) -> None:
    gateway, _ = bacnet_gateway
    application = bacnet_face(gateway).network.applications[2]
    await client.subscribe(client.node(2), "analog-input,1347", process=5)
    assert len(application.cov_subscriptions()) == 1
    await client.subscribe(client.node(2), "analog-input,1347", process=5, confirmed=None, lifetime=None)
    assert len(application.cov_subscriptions()) == 0


async def test_cov_subscriptions_are_bounded_per_client_address_and_in_total(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path, max_cov_per_client=3, max_cov_subscriptions=5)
    gateway = await serving(await start_gateway(config))
    # two ports of one IP address are one subscriber; another address is another
    first, second = make_client(gateway), make_client(gateway, instance=4000002)
    other = make_client(gateway, instance=4000003, host="127.0.0.2")
    for client in (first, second, other):
        await client.find_router()
    for process in range(2):  # to two devices: the caps count over the whole gateway
        await first.subscribe(first.node(1 + process), "analog-input,1336", process=process, confirmed=False)
    await second.subscribe(second.node(1), "analog-input,1336", process=0, confirmed=False)
    with pytest.raises(ErrorPDU) as per_client:
        await second.subscribe(second.node(1), "analog-input,1336", process=1, confirmed=False)
    assert error_of(per_client) == ("resources", "no-space-to-add-list-element")
    await first.subscribe(first.node(1), "analog-input,1336", process=0, confirmed=False)  # a renewal still works
    for process in range(2):
        await other.subscribe(other.node(2), "analog-input,1337", process=process, confirmed=False)
    with pytest.raises(ErrorPDU) as total:
        await other.subscribe(other.node(2), "analog-input,1337", process=2, confirmed=False)
    assert error_of(total) == ("resources", "no-space-to-add-list-element")
    assert event_counts()["bacnet cov subscriptions refused: a cap is full"] >= 2


async def test_indefinite_cov_subscriptions_have_a_cap_of_their_own(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    line = make_line(1)
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path, max_cov_indefinite=2)))
    client = make_client(gateway)
    await client.find_router()
    node = client.node(1)
    await client.subscribe(node, "analog-input,1336", process=0, confirmed=False, lifetime=None)  # no Lifetime
    await client.subscribe(node, "analog-input,1336", process=1, confirmed=False, lifetime=0)  # Lifetime 0
    with pytest.raises(ErrorPDU) as refused:
        await client.subscribe(node, "analog-input,1337", process=2, confirmed=False, lifetime=0)
    assert error_of(refused) == ("resources", "no-space-to-add-list-element")
    await client.subscribe(node, "analog-input,1337", process=2, confirmed=False, lifetime=60)  # timed: room
    with pytest.raises(ErrorPDU):  # nor may a timed one become indefinite
        await client.subscribe(node, "analog-input,1337", process=2, confirmed=False, lifetime=0)
    await client.subscribe(node, "analog-input,1336", process=0, confirmed=False, lifetime=0)  # renewed as it was


async def test_a_vanished_node_shows_fault_and_comm_failure_then_recovers(bacnet_gateway, client) -> None:
    gateway, line = bacnet_gateway
    line.panel(2).set_current(12, 10.0)  # an idle channel (0 A) is in the meter's low alarm
    node = client.node(2)
    await client.subscribe(node, "analog-input,1347", confirmed=True, lifetime=120)
    await client.notification_where(lambda values: values["status-flags"] == NORMAL)
    await eventually(lambda: gateway.nodes.nodes[2].cache.reading(CURRENT_12).value == 10.0, 20, "the current polled")
    assert await client.read(node, "analog-input,1347", "present-value") == 10.0  # its encoding kept
    line.vanish(2)
    lost = await client.notification_where(lambda values: values["status-flags"] == FAULT, timeout=20)
    assert lost["status-flags"] == FAULT
    assert str(await client.read(node, "analog-input,1347", "reliability")) == "communication-failure"
    assert await client.read(node, "analog-input,1347", "status-flags") == FAULT  # the value's is kept
    assert await client.read(node, "analog-input,1347", "present-value") == 10.0
    assert await client.read(node, "analog-input,1347", "out-of-service") == 0
    assert str(await client.read(node, "device,50002", "system-status")) == "non-operational"
    line.restore(2)
    await client.notification_where(lambda values: values["status-flags"] == NORMAL, timeout=30)
    assert str(await client.read(node, "analog-input,1347", "reliability")) == "no-fault-detected"
    assert str(await client.read(node, "device,50002", "system-status")) == "operational"


async def test_a_confirmed_subscriber_that_went_away_is_dropped(bacnet_gateway, make_client) -> None:
    gateway, line = bacnet_gateway
    application = bacnet_face(gateway).network.applications[2]
    gone = make_client(gateway, instance=4000001)
    await gone.find_router()
    await gone.subscribe(gone.node(2), "analog-input,1347", confirmed=True, lifetime=0)
    await gone.notification()
    gone.close()
    for amps in range(20, 80, 3):
        line.panel(2).set_current(12, float(amps))
        await asyncio.sleep(0.5)
        if len(application.cov_subscriptions()) == 0:
            break
    await eventually(lambda: len(application.cov_subscriptions()) == 0, 60, "the dead subscription to be cancelled")


async def test_who_has_finds_an_object_by_name_on_every_node(bacnet_gateway, client) -> None:
    found = await client.app.who_has(object_name=CharacterString("Current Ch 12"), address=Address("50:*"), timeout=1)
    assert sorted(i_have.deviceIdentifier[1] for i_have in found) == [50001, 50002]
    assert {str(i_have.objectIdentifier) for i_have in found} == {"analog-input,1347"}


async def test_garbage_from_the_network_never_stops_the_face(bacnet_gateway, client) -> None:
    gateway, _ = bacnet_gateway
    target = ("127.0.0.1", gateway.config.bacnet.port)
    junk = [
        b"",
        b"\x81",
        b"\x81\x0a\x00\x04",
        b"\x81\x0a\xff\xff\x01",
        b"\x81\x0a\x00\x08\x01\x00\x30\x01",
        b"\x81\x0a\x00\x0c\x01\x20\xff\xff\x00\xff\x10\x08",  # global Who-Is, truncated NPDU
        b"\x81\x0a\x00\x09\x01\x04\x02\x75\x01",  # confirmed request cut short
        b"\x81\x0a\x00\x11\x01\x04\x00\x05\x01\x0c\x0c\x02\x00\xc3\x53\x19\x55\x3e",  # bad tags
        bytes(range(256)) * 4,
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in junk:
            sender.sendto(datagram, target)
    await asyncio.sleep(0.5)
    task_alive = not any(task.done() for task in asyncio.all_tasks() if task.get_name() == "BacnetFace")
    assert task_alive
    assert await client.read(client.node(1), "device,50001", "object-name") == "BCPM_1"
    with pytest.raises(ErrorPDU) as wrong_type:
        await client.write_raw(client.node(1), "analog-value,8", "present-value", Unsigned(5))
    assert error_of(wrong_type) == ("property", "invalid-data-type")
