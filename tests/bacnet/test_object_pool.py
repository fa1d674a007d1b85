"""Meter objects built on first use, at most `bacnet.max_built_objects` of them kept over the
gateway (gateway/bacnet/pool.py): what a client sees must not depend on which are built."""

from __future__ import annotations

import pytest
from bacpypes3.apdu import ErrorPDU
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import CharacterString, ObjectIdentifier

from gateway.bacnet.objects import object_specs
from gateway.pointmap import load
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.support import eventually

PM = load()
CAPACITY = 8
CURRENTS = [f"analog-input,{1336 + channel}" for channel in range(12)]  # channels 1-12


async def _gateway(make_line, start_gateway, make_client, tmp_path, fast_reads=False):
    """Without fast reads by default: a read of Present_Value then builds the object, as any other read."""
    line = make_line(1)
    gateway = await serving(
        await start_gateway(bacnet_config(line, tmp_path, max_built_objects=CAPACITY, fast_reads=fast_reads))
    )
    client = make_client(gateway)
    await client.find_router()
    return gateway, line, client, bacnet_face(gateway).network


async def test_objects_are_built_when_named_and_the_least_recently_used_dropped(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    gateway, line, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    node = client.node(2)
    for channel in range(1, 13):
        line.panel(2).set_current(channel, float(channel))
    objects = await client.read(node, "device,50002", "object-list")
    assert len(objects) == 2 + len(object_specs(PM, "A"))
    assert objects[2] == ObjectIdentifier("analog-value,1")  # AVs then AIs, as the plan orders them
    assert len(network.pool) == 0  # listing builds nothing, and neither do the value changes polled meanwhile
    await eventually(
        lambda: gateway.nodes.nodes[2].cache.reading(PM.find("current", group="branch", channel=12)).value == 12.0,
        20,
        "the currents polled",
    )
    for channel, objid in enumerate(CURRENTS, start=1):
        assert await client.read(node, objid, "present-value") == channel
        assert await client.read(node, objid, "object-name") == f"Current Ch {channel}"
    built = network.applications[2].objectIdentifier
    assert len(network.pool) == CAPACITY and len(built) == 2 + CAPACITY
    await client.read(node, CURRENTS[4], "present-value")  # the oldest built, used again
    await client.read(node, "analog-input,1630", "present-value")  # one more: the next oldest goes
    assert ObjectIdentifier(CURRENTS[4]) in built and ObjectIdentifier(CURRENTS[5]) not in built

    line.panel(2).set_current(1, 42.0)  # channel 1's object was dropped: rebuilt from the cache
    await eventually(
        lambda: gateway.nodes.nodes[2].cache.reading(PM.find("current", group="branch", channel=1)).value == 42.0,
        20,
        "the new current polled",
    )
    assert await client.read(node, CURRENTS[0], "present-value") == 42.0
    assert len(network.pool) == CAPACITY


async def test_the_face_takes_the_value_changes_of_its_built_objects_only(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    """The node events of values no built object shows are left out before they reach the loop."""
    _, line, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    node, app = client.node(2), network.applications[2]
    assert network.pool.shown == {}
    for objid in CURRENTS[: CAPACITY + 2]:  # the first two are dropped again
        await client.read(node, objid, "present-value")
    built = [objid for objid in app.objectIdentifier if objid in app._index.by_id]
    assert len(built) == CAPACITY and ObjectIdentifier(CURRENTS[0]) not in built
    assert network.pool.shown == {shown: 1 for objid in built for shown in app.shown_by(objid)}
    last = app.objectIdentifier[ObjectIdentifier(CURRENTS[CAPACITY + 1])]
    line.panel(2).set_current(CAPACITY + 2, 33.0)
    await eventually(lambda: last.presentValue == 33.0, 20, "the built object shown the new current")


async def test_fast_reads_build_nothing(make_line, start_gateway, make_client, tmp_path) -> None:
    gateway, line, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path, fast_reads=True)
    node = client.node(2)
    line.panel(2).set_current(3, 7.0)
    await eventually(
        lambda: gateway.nodes.nodes[2].cache.reading(PM.find("current", group="branch", channel=3)).value == 7.0,
        20,
        "the current polled",
    )
    for objid in CURRENTS:
        await client.read(node, objid, "present-value")
        await client.read(node, objid, "status-flags")
    assert await client.read(node, CURRENTS[2], "present-value") == 7.0
    assert len(network.pool) == 0 and network.fast_path.answered["fast"] >= 2 * len(CURRENTS)
    await client.read(node, CURRENTS[0], "property-list")  # not a fast read: built
    assert len(network.pool) == 1


async def test_a_subscribed_object_stays_built_and_notifies(make_line, start_gateway, make_client, tmp_path) -> None:
    _, line, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    node = client.node(2)
    await client.subscribe(node, CURRENTS[11], confirmed=True, lifetime=120)
    for objid in CURRENTS[:11] * 2:
        await client.read(node, objid, "present-value")
    line.panel(2).set_current(12, 30.0)
    changed = await client.notification_where(lambda values: values["present-value"] == 30.0, timeout=20)
    assert changed["present-value"] == 30.0
    assert len(network.pool) == CAPACITY


async def test_subscriptions_beyond_the_cap_all_notify(make_line, start_gateway, make_client, tmp_path) -> None:
    _, line, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    node = client.node(2)
    watched = CURRENTS[: CAPACITY + 2]  # more subscribed objects than may be built: they stay, on top
    for process, objid in enumerate(watched):
        await client.subscribe(node, objid, process=process, confirmed=False, lifetime=120)
    assert len(network.pool) == len(watched)
    line.panel(2).set_current(CAPACITY + 2, 55.0)  # the last one subscribed
    changed = await client.notification_where(lambda values: values["present-value"] == 55.0, timeout=20)
    assert changed["present-value"] == 55.0


async def test_cancelling_a_subscription_that_does_not_exist_builds_nothing(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    _, _, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    for objid in CURRENTS:  # what a BMS does for its old subscriptions after a restart
        await client.subscribe(client.node(2), objid, confirmed=None, lifetime=None)  # acknowledged
    assert len(network.pool) == 0


async def test_a_device_cannot_take_the_name_of_one_of_its_objects(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    _, _, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    node = client.node(2)
    for taken in ("Current Ch 3", "Virtual network"):  # an object not built, and the network port
        with pytest.raises(ErrorPDU) as refused:
            await client.write(node, "device,50002", "object-name", taken)
        assert str(refused.value.errorCode) == "duplicate-name"
    assert await client.read(node, "analog-input,1338", "object-name") == "Current Ch 3"
    await client.write(node, "device,50002", "object-name", "BCPM_2")  # its own name is fine


async def test_a_written_cov_increment_outlives_a_rebuild(make_line, start_gateway, make_client, tmp_path) -> None:
    _, _, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    node = client.node(1)
    await client.write(node, CURRENTS[0], "cov-increment", 5.0)
    for objid in CURRENTS[1:]:
        await client.read(node, objid, "cov-increment")
    assert ObjectIdentifier(CURRENTS[0]) not in network.applications[1].objectIdentifier  # dropped
    assert await client.read(node, CURRENTS[0], "cov-increment") == 5.0


async def test_who_has_names_an_object_that_is_not_built(make_line, start_gateway, make_client, tmp_path) -> None:
    _, _, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    found = await client.app.who_has(object_name=CharacterString("Current Ch 3"), address=Address("50:*"), timeout=1)
    assert sorted(str(i_have.deviceIdentifier) for i_have in found) == ["device,50001", "device,50002"]
    assert len(network.pool) == 2  # the one named, on each node
