"""The node layer's surface to the faces: node errors instead of bus errors, statistics, the identity store."""

from __future__ import annotations

import pytest

from gateway.app import running
from gateway.bus import BusClosed, BusOverloaded, CorruptReply, ExceptionReply, NoResponse
from gateway.nodes.errors import LineUnavailable, MeterRefused, NodeUnavailable, OutOfRange, UnknownTarget
from gateway.nodes.events import CircuitsNamed, RegistersRead
from gateway.nodes.profile import NodeProfile
from gateway.nodes.service import node_error
from gateway.state import DeviceOverride, IdentityStore, StateStore
from tests.support import eventually, gateway_config

READ_INPUT_1000 = bytes.fromhex("0403e70001")  # FC04, register 1000 (address 999), one register


@pytest.mark.parametrize(
    ("bus_error", "expected"),
    [
        (NoResponse("silent"), NodeUnavailable),
        (CorruptReply("bad CRC"), NodeUnavailable),
        (BusClosed("port gone"), LineUnavailable),
        (BusOverloaded("queue full"), LineUnavailable),
        (ExceptionReply(0x02), MeterRefused),
    ],
)
def test_a_bus_error_becomes_the_node_error_a_face_handles(bus_error, expected) -> None:
    error = node_error(bus_error)
    assert type(error) is expected and str(error) == str(bus_error)


def test_a_meter_refusal_keeps_its_modbus_exception_code() -> None:
    assert node_error(ExceptionReply(0x03)).code == 0x03


async def test_requests_that_fail_raise_node_errors_never_bus_errors(make_line, tmp_path) -> None:
    line = make_line(1)
    async with running(gateway_config(line, tmp_path)) as gateway:
        nodes = gateway.nodes
        await nodes.wait_ready()
        assert len(await nodes.passthrough(1, READ_INPUT_1000)) == 4  # FC, byte count, one register
        with pytest.raises(NodeUnavailable, match="no meter node answered at address 7"):
            await nodes.passthrough(7, READ_INPUT_1000)
        with pytest.raises(MeterRefused) as refused:
            await nodes.passthrough(1, bytes.fromhex("0403e7"))  # cut short
        assert refused.value.code == 0x03
        with pytest.raises(MeterRefused) as refused:
            await nodes.passthrough(1, bytes.fromhex("0603e70001"))  # FC06 to a measurement: read-only
        assert refused.value.code == 0x02
        with pytest.raises(UnknownTarget):
            await nodes.write(7, 2001, [1])
        await eventually(lambda: nodes.statistics().last_cycle is not None, what="a poll cycle")
        statistics = nodes.statistics()
        assert statistics.poll_interval == gateway.config.serial.poll_interval
        assert statistics.line.replies >= statistics.last_cycle.transactions > 0
        line.stop()  # the adapter unplugged: the gateway stays up, every node offline
        await eventually(lambda: not nodes.nodes[1].health.online, what="node 1 offline")
        with pytest.raises(NodeUnavailable, match="line unavailable"):
            await nodes.passthrough(1, READ_INPUT_1000)


async def test_every_block_read_is_an_event_once_the_cache_holds_it(make_line, tmp_path) -> None:
    async with running(gateway_config(make_line(1), tmp_path)) as gateway:
        reads = gateway.hub.subscribe(RegistersRead)  # before the first poll: the cache holds nothing yet
        while (read := await reads.get()).address != 1:
            pass
        held = gateway.nodes.nodes[1].cache.block(range(read.start, read.start + read.count))
        assert held is not None and len(held[0]) == read.count


def test_the_identity_store_saves_each_change_before_it_is_seen(tmp_path) -> None:
    store = StateStore(tmp_path / "state.json")
    identities = IdentityStore(store)
    profiles = [NodeProfile(address, 0x4D150001, "A", 15172, 1023, 2001, 1) for address in (2, 1)]
    identities.save_profiles(profiles)
    identities.update(lambda state: state.with_override(2, DeviceOverride(object_name="PDU-B")))
    assert [p.address for p in identities.saved_profiles()] == [1, 2]
    assert store.load() == identities.state
    assert IdentityStore(store).state.overrides[2].object_name == "PDU-B"


async def test_circuit_names_are_checked_saved_and_told_to_the_faces(make_line, tmp_path) -> None:
    async with running(gateway_config(make_line(1), tmp_path)) as gateway:
        nodes = gateway.nodes
        await nodes.wait_ready()
        named = gateway.hub.subscribe(CircuitsNamed)
        await nodes.name_circuits(2, {7: "Rack A12 PDU A", 43: "Mains L1"})
        assert (await named.get()).address == 2
        assert nodes.circuit_names(2) == {7: "Rack A12 PDU A", 43: "Mains L1"}
        assert StateStore(tmp_path / "state.json").load().circuit_names[2] == {7: "Rack A12 PDU A", 43: "Mains L1"}
        for address, names, refused in (
            (9, {1: "x"}, UnknownTarget),  # no such node
            (2, {47: "x"}, UnknownTarget),  # no such channel
            (2, {1: "ok", 2: "x" * 41}, OutOfRange),  # one bad name: none is saved
            (2, {1: "Ünïcode"}, OutOfRange),
        ):
            with pytest.raises(refused):
                await nodes.name_circuits(address, names)
        assert nodes.circuit_names(2) == {7: "Rack A12 PDU A", 43: "Mains L1"}
        await nodes.name_circuits(2, {7: "Rack A12 PDU A"})  # no name changed: no event
        await nodes.name_circuits(1, {1: "Rack B1"})
        assert (await named.get()).address == 1
        await nodes.name_circuits(2, {7: None, 43: ""})
        assert nodes.circuit_names(2) == {}
