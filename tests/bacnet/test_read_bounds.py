"""A client that reads every object of every node leaves a bounded amount behind: the fast reads
keep the encodings of at most `bacnet.max_encoded_objects` objects over the gateway (the least
recently read dropped first, encoded again when read), build no object and make the node cache
keep no reading object (gateway/bacnet/reads.py)."""

from __future__ import annotations

import sys

from bacpypes3.primitivedata import ObjectIdentifier

from gateway.bacnet.objects import object_specs
from gateway.bacnet.reads import KeptEncodings
from gateway.pointmap import load
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.support import eventually

PM = load()
CAPACITY = 8
OBJECTS_PER_RPM = 40  # as a BMS polls
CURRENTS = [f"analog-input,{1336 + channel}" for channel in range(12)]  # channels 1-12


def _current(channel: int):
    return PM.find("current", group="branch", channel=channel)


async def _gateway(make_line, start_gateway, make_client, tmp_path, **bacnet):
    line = make_line(1)  # two nodes
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path, **bacnet)))
    client = make_client(gateway)
    await client.find_router()
    return gateway, line, client, bacnet_face(gateway).network


def _kept(network) -> KeptEncodings:
    return network.applications[1].read_encodings()._kept


def _made_readings(gateway, address: int) -> int:
    """The reading objects a node's cache keeps for the faces that asked for them."""
    return len(gateway.nodes.nodes[address].cache._readings.made)


async def test_reading_more_objects_than_the_bound_keeps_the_bound(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    gateway, line, client, network = await _gateway(
        make_line, start_gateway, make_client, tmp_path, max_encoded_objects=CAPACITY
    )
    for channel in range(1, 13):
        line.panel(1).set_current(channel, float(channel))
    await eventually(
        lambda: gateway.nodes.nodes[1].cache.reading(_current(12)).value == 12.0, 20, "the currents polled"
    )
    kept = _kept(network)
    assert kept is network.applications[2].read_encodings()._kept  # one bound over the gateway
    fast = network.fast_path.answered["fast"]
    for address in (1, 2):
        for objid in CURRENTS:
            await client.read(client.node(address), objid, "present-value")
            assert len(kept) <= CAPACITY
    assert len(kept) == CAPACITY and network.fast_path.answered["fast"] == fast + 2 * len(CURRENTS)
    assert list(kept._kept) == [KeptEncodings.key(2, ObjectIdentifier(objid)) for objid in CURRENTS[-CAPACITY:]]

    line.panel(1).set_current(1, 42.0)  # channel 1's encodings were dropped: encoded again, fresh
    await eventually(
        lambda: gateway.nodes.nodes[1].cache.reading(_current(1)).value == 42.0, 20, "the new current polled"
    )
    assert await client.read(client.node(1), CURRENTS[0], "present-value") == 42.0
    assert len(kept) == CAPACITY and next(reversed(kept._kept)) == KeptEncodings.key(1, ObjectIdentifier(CURRENTS[0]))
    assert len(network.pool) == 0


async def test_a_sweep_of_every_object_keeps_the_bound_builds_nothing_and_makes_no_readings(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    """Present_Value and Status_Flags of every object of both nodes, as a BMS that reads everything."""
    bound = 1000  # below the analog objects of one node (1,828)
    gateway, _, client, network = await _gateway(
        make_line, start_gateway, make_client, tmp_path, max_encoded_objects=bound
    )
    await eventually(lambda: gateway.nodes.poller.cycles >= 1, 30, "a full poll cycle")
    specs = object_specs(PM, "A")
    assert {spec.object_type for spec in specs} == {"analog-input", "analog-value", "multi-state-value"}
    fast = network.fast_path.answered["fast"]
    requests = 0
    for address in (1, 2):
        for start in range(0, len(specs), OBJECTS_PER_RPM):
            request = []
            for spec in specs[start : start + OBJECTS_PER_RPM]:
                request += [ObjectIdentifier((spec.object_type, spec.instance)), ["present-value", "status-flags"]]
            answer = await client.app.read_property_multiple(client.node(address), request)
            assert len(answer) == len(request)  # two properties of each object
            requests += 1
    assert network.fast_path.answered["fast"] == fast + requests  # the resets' MSVs too
    kept = _kept(network)
    assert len(kept) == bound
    # each object's under one number, in one bytes object: its values and its two encodings
    assert sum(sys.getsizeof(key) + sys.getsizeof(value) for key, value in kept._kept.items()) <= 100 * bound
    assert len(network.pool) == 0
    assert _made_readings(gateway, 1) == _made_readings(gateway, 2) == 0


async def test_the_shipped_bound_covers_every_analog_object_of_a_node(
    make_line, start_gateway, make_client, tmp_path
) -> None:
    """With the shipped `max_encoded_objects`, a BMS polling all of a node's analog objects finds
    them kept: each poll re-encodes only what changed."""
    gateway, _, client, network = await _gateway(make_line, start_gateway, make_client, tmp_path)
    analog = [spec for spec in object_specs(PM, "A") if spec.object_type.startswith("analog")]
    assert len(analog) <= gateway.config.bacnet.max_encoded_objects
    for start in range(0, len(analog), OBJECTS_PER_RPM):
        request = []
        for spec in analog[start : start + OBJECTS_PER_RPM]:
            request += [ObjectIdentifier((spec.object_type, spec.instance)), ["present-value"]]
        await client.app.read_property_multiple(client.node(1), request)
    assert len(_kept(network)) == len(analog)
