"""Reads answered from encodings are byte for byte what the full stack answers.

Each request goes over UDP three times with the same invoke ID: answered by the fast path, by
the gateway's own ReadPropertyMultiple handler (`reads.BoundedReads`) with `fast_reads` off, and
by bacpypes3's stock handler. The objects read hold still values (the simulated meter changes
nothing by itself but energies). The fast path's counters show which path answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio
from bacpypes3.apdu import APCISequence
from bacpypes3.service.object import ReadWritePropertyMultipleServices

from gateway.app import Gateway, running
from gateway.bacnet.applications import DeviceApplication
from gateway.bacnet.network import BacnetNetwork
from gateway.pointmap import load
from gateway.sim import SimulatedLine
from tests.bacnet.client import Client
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.bacnet.raw import COMPLEX_ACK, RawClient, apdu_offset, read_property, read_property_multiple, routed
from tests.support import discovered, eventually, simulated_line

NODE = 1
CLIENT = ("127.0.0.1", 47999)  # where the requests handed to the fast path itself come from
DISTRIBUTE_BROADCAST_TO_NETWORK = 0x09
CURRENT = load().find("current", group="branch", channel=1)
SERVED = (
    "present-value",
    "status-flags",
    "reliability",
    "event-state",
    "out-of-service",
    "units",
    "object-name",
    "description",
    "cov-increment",
)
#: One of each kind: a current (its channel's alarm is its Event_State), a power (no alarm), a
#: setting (writable AV), an alarm status AV, and a power factor.
OBJECTS = ("analog-input,1336", "analog-input,1630", "analog-value,1", "analog-value,109", "analog-input,262")


#: The tests of the still gateway share it (they read, and put fast reads back on): one event loop.
SHARED = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def still_gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """A gateway that has read every register; the simulated meter holds its values still (no
    object below shows an energy, which grows with time)."""
    with simulated_line(1) as line:
        config = bacnet_config(line, tmp_path_factory.mktemp("still"))
        async with running(replace(config, serial=replace(config.serial, slow_every=1))) as gateway:
            await serving(await discovered(gateway))
            await eventually(
                lambda: gateway.nodes.poller.cycles >= 2 and _network(gateway).fast_path.installed,
                20,
                "full poll cycles",
            )
            yield gateway


def _network(gateway: Gateway) -> BacnetNetwork:
    network = bacnet_face(gateway).network
    assert network is not None
    return network


async def _three_ways(
    gateway: Gateway, request: APCISequence, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[bytes, bytes, bytes, str]:
    """The answers of the fast path, the gateway's handler and bacpypes3's, and which path took
    the first ("fast" or "full")."""
    network = _network(gateway)
    datagram = routed(gateway.config.bacnet.network, NODE, request, invoke=7, **options)

    async def ask() -> bytes:  # a client of its own each time: a segmented answer is not acknowledged
        async with RawClient(gateway.config.bacnet.port) as client:
            return await client.ask(datagram)

    before = network.fast_path.answered.copy()
    fast = await ask()
    path = "fast" if network.fast_path.answered["fast"] > before["fast"] else "full"
    network.set_fast_reads(False)
    try:
        own = await ask()
        with monkeypatch.context() as patch:
            patch.setattr(
                DeviceApplication,
                "do_ReadPropertyMultipleRequest",
                ReadWritePropertyMultipleServices.do_ReadPropertyMultipleRequest,
            )
            stock = await ask()
    finally:
        network.set_fast_reads(True)
    # each answer is counted by the path that gave it
    assert network.fast_path.answered - before == Counter(fast=path == "fast", full=3 - (path == "fast"))
    return fast, own, stock, path


@SHARED
@pytest.mark.parametrize("objid", OBJECTS)
async def test_every_served_property_is_the_full_stacks_bytes(
    still_gateway: Gateway, objid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for prop in SERVED:
        fast, own, stock, path = await _three_ways(still_gateway, read_property(objid, prop), monkeypatch)
        assert path == "fast", prop
        assert fast[apdu_offset(fast)] == COMPLEX_ACK, prop
        assert fast == own == stock, prop
    fast, own, stock, path = await _three_ways(still_gateway, read_property_multiple([(objid, SERVED)]), monkeypatch)
    assert path == "fast"
    assert fast == own == stock


@SHARED
async def test_a_bms_poll_of_forty_objects(still_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = [(f"analog-input,{register}", ("present-value", "status-flags")) for register in range(1336, 1376)]
    fast, own, stock, path = await _three_ways(still_gateway, read_property_multiple(objects), monkeypatch)
    assert path == "fast"
    assert fast == own == stock


@SHARED
async def test_an_answer_up_to_the_clients_max_apdu_is_a_fast_one(
    still_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = [("analog-input,1336", ("present-value", "status-flags"))] * 55
    fast, own, stock, path = await _three_ways(still_gateway, read_property_multiple(objects), monkeypatch)
    assert 1024 < len(fast) - apdu_offset(fast) <= 1476  # above the next smaller max APDU
    assert path == "fast"
    assert fast == own == stock


@SHARED
async def test_a_request_for_another_network_is_left_to_the_router(still_gateway: Gateway) -> None:
    fast_path = _network(still_gateway).fast_path
    other = still_gateway.config.bacnet.network + 1
    datagram = routed(other, NODE, read_property("analog-input,1336", "present-value"))
    assert fast_path.reply(datagram, CLIENT) is None  # not a node of this gateway, whatever its MAC


@SHARED
async def test_a_request_over_the_limits_in_a_broadcast_to_a_network_is_dropped(still_gateway: Gateway) -> None:
    fast_path = _network(still_gateway).fast_path
    objects = [(f"analog-input,{register}", ("present-value", "status-flags")) for register in range(1336, 1536)]
    datagram = bytearray(routed(still_gateway.config.bacnet.network, NODE, read_property_multiple(objects)))
    assert len(datagram) - apdu_offset(datagram) > 1476  # an unsegmented request above any max APDU
    datagram[1] = DISTRIBUTE_BROADCAST_TO_NETWORK
    refused = fast_path.limits.refused["bufferOverflow"]
    assert fast_path.reply(bytes(datagram), CLIENT) == b""
    assert fast_path.limits.refused["bufferOverflow"] == refused + 1


@SHARED
async def test_a_read_the_fast_path_fails_on_is_answered_by_the_full_stack(
    still_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = _network(still_gateway)

    def broken() -> None:
        raise RuntimeError("encodings lost")

    monkeypatch.setattr(network.applications[NODE], "read_encodings", broken)
    failed = network.fast_path.failed.dropped
    datagram = routed(still_gateway.config.bacnet.network, NODE, read_property("analog-input,1336", "present-value"))
    async with RawClient(still_gateway.config.bacnet.port) as client:
        answer = await client.ask(datagram)
    assert answer[apdu_offset(answer)] == COMPLEX_ACK
    assert network.fast_path.failed.dropped == failed + 1


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(read_property("analog-input,99999", "present-value"), id="rp-unknown-object"),
        pytest.param(read_property("analog-input,1336", "priority-array"), id="rp-unknown-property"),
        pytest.param(read_property("analog-input,1336", "present-value", 1), id="rp-array-index"),
        pytest.param(read_property("analog-input,1336", "property-list"), id="rp-other-property"),
        pytest.param(
            read_property_multiple([("multi-state-value,1", ["present-value", "status-flags"])]), id="rpm-reset-msv"
        ),
        pytest.param(
            read_property_multiple(
                [("analog-input,99999", ["present-value"]), ("analog-input,1336", ["present-value"])]
            ),
            id="rpm-unknown-object",
        ),
        pytest.param(read_property_multiple([("analog-input,99999", ["present-value"])]), id="rpm-only-unknown"),
        pytest.param(
            read_property_multiple([("analog-input,1336", ["present-value", "priority-array"])]),
            id="rpm-unknown-property",
        ),
        pytest.param(read_property_multiple([("analog-input,1336", [("status-flags", 1)])]), id="rpm-array-index"),
        pytest.param(
            read_property_multiple(
                [("analog-input,1336", ["all"]), ("analog-value,1", ["required"]), ("analog-value,109", ["optional"])]
            ),
            id="rpm-all-required-optional",
        ),
        pytest.param(read_property_multiple([("device,4194303", ["object-name"])]), id="rpm-wildcard-device"),
        pytest.param(
            read_property_multiple(
                [("device,50001", ["object-name", "system-status"]), ("analog-input,1336", ["present-value"])]
            ),
            id="rpm-device-object",
        ),
    ],
)
@SHARED
async def test_what_the_fast_path_does_not_serve_goes_to_the_full_stack(
    still_gateway: Gateway, request_: APCISequence, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, own, stock, path = await _three_ways(still_gateway, request_, monkeypatch)
    assert path == "full"
    assert fast == own == stock


@SHARED
async def test_an_answer_that_needs_segments_goes_to_the_full_stack(
    still_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = [(f"analog-input,{register}", SERVED) for register in range(1336, 1346)]
    fast, own, stock, path = await _three_ways(
        still_gateway,
        read_property_multiple(objects),
        monkeypatch,
        max_apdu=480,
        max_segments=16,
        segmented_accepted=True,
    )
    assert path == "full"
    assert fast == own == stock


@SHARED
async def test_a_device_silenced_by_device_communication_control_answers_no_read(still_gateway: Gateway) -> None:
    network = _network(still_gateway)
    datagram = routed(still_gateway.config.bacnet.network, NODE, read_property("analog-input,1336", "present-value"))
    answered = network.fast_path.answered["fast"]
    async with RawClient(still_gateway.config.bacnet.port) as client:
        network.applications[NODE].asap.dccEnableDisable = "disable"
        try:
            await client.send(datagram)
            with pytest.raises(TimeoutError):
                await client.receive(timeout=1.0)
        finally:
            network.applications[NODE].asap.dccEnableDisable = "enable"
        answer = await client.ask(datagram)
    assert answer[apdu_offset(answer)] == COMPLEX_ACK
    assert network.fast_path.answered["fast"] == answered + 1


async def test_a_written_cov_increment_and_a_new_value_show_on_the_fast_path(
    bacnet_gateway: tuple[Gateway, SimulatedLine], client: Client
) -> None:
    gateway, line = bacnet_gateway
    network = _network(gateway)
    node = client.node(NODE)
    assert await client.read(node, "analog-input,1336", "cov-increment") == 1.0
    await client.write(node, "analog-input,1336", "cov-increment", 0.25)
    assert await client.read(node, "analog-input,1336", "cov-increment") == 0.25
    line.panel(NODE).set_current(1, 33.0)
    await eventually(lambda: gateway.nodes.nodes[NODE].cache.reading(CURRENT).value == 33.0, 20, "the current polled")
    assert await client.read(node, "analog-input,1336", "present-value") == 33.0
    assert network.fast_path.answered["fast"] >= 3


@SHARED
async def test_a_circuits_name_is_in_the_description_of_its_objects_on_every_path_at_once(
    still_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = still_gateway.nodes
    try:
        for name in ("Rack A1 PDU", "Rack B7 PDU"):  # the second: built objects show a rename too
            await nodes.name_circuits(NODE, {1: name})
            for objid in ("analog-input,1336", "analog-value,4", "analog-value,109"):  # current, CT size, alarm
                request = read_property_multiple([(objid, ("object-name", "description"))])
                fast, own, stock, path = await _three_ways(still_gateway, request, monkeypatch)
                assert path == "fast"
                assert fast == own == stock, objid
                assert f"{name} (register ".encode() in fast
        fast, *_ = await _three_ways(still_gateway, read_property("analog-input,1337", "description"), monkeypatch)
        assert b"Rack" not in fast and b"register 1337" in fast  # channel 2 has no name
    finally:
        await nodes.name_circuits(NODE, {1: None})
