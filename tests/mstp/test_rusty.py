"""The gateway's MS/TP data link against an independent MS/TP stack: rusty-bacnet stations on a socat
pty pair or on a multidrop line (every octet one writes reaches all the others), exchanging
ReadProperty both ways; three masters; stations joining, leaving, or using the gateway's MAC; a
noisy line; the gateway's port unplugged and plugged in again."""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.mstp import MstpLink
from tests.mstp.stations import BAUD, NetworkLayer, gateway_link, read_property, read_value, rusty
from tests.support import eventually
from tests.upstream.serial_rig import SocatPair

GATEWAY = 3
MAX_MASTER = 10


@contextlib.asynccontextmanager
async def station(path: Path, mac: int, value: float, **options: Any) -> AsyncIterator[Any]:
    """A rusty-bacnet MS/TP station (device 1000 + mac) with analog input 1 = `value`; its requests are
    retried as a BACnet client's are (Number_Of_APDU_Retries 3), since the token may be lost meanwhile."""
    bacnet = rusty()
    options = {"apdu_timeout_ms": 2000, "apdu_retries": 3, **options}
    endpoint = bacnet.MstpEndpoint(
        1000 + mac, str(path), mstp_baud=BAUD, mstp_mac=mac, mstp_max_master=MAX_MASTER, **options
    )
    endpoint.add_analog_input(1, "ai1", present_value=value)
    async with endpoint:
        yield endpoint


async def rusty_reads_gateway(endpoint: Any) -> float:
    bacnet = rusty()
    client = await endpoint.client()
    value = await client.read_property(
        str(GATEWAY),
        bacnet.ObjectIdentifier(bacnet.ObjectType.ANALOG_INPUT, 1),
        bacnet.PropertyIdentifier.PRESENT_VALUE,
    )
    return value.value


async def gateway_reads(link: MstpLink, upper: NetworkLayer, mac: int, invoke: int) -> float:
    """A ReadProperty from the gateway's link to station `mac`, retried as a client's (3 retries)."""
    for _ in range(4):
        assert link.send(mac, read_property(invoke), expecting_reply=True)
        try:
            received = await asyncio.to_thread(upper.next, 3.0, lambda r: r.source == mac)
        except queue.Empty:
            continue
        assert read_value(received.npdu)[0] == invoke
        return read_value(received.npdu)[1]
    raise AssertionError(f"no answer from station {mac}")


@pytest.fixture
def links() -> Iterator[Any]:
    started: list[MstpLink] = []

    def make(path: Path, upper: NetworkLayer, **options: Any) -> MstpLink:
        started.append(gateway_link(str(path), GATEWAY, upper, max_master=MAX_MASTER, **options))
        return started[-1]

    yield make
    for link in started:
        link.stop()


async def test_the_gateway_alone_with_one_station_passes_the_token_and_readproperty_both_ways(
    tmp_path: Path, links
) -> None:
    cable = SocatPair(tmp_path / "ttyGateway", tmp_path / "ttyStation")
    cable.start()
    try:
        upper = NetworkLayer()
        link = links(cable.a, upper)
        async with station(cable.b, 1, 12.25) as endpoint:
            await eventually(lambda: link.counts.tokens_received > 20, what="the token passing")
            assert link.node.next_station == 1 and not link.node.sole_master
            assert await gateway_reads(link, upper, 1, invoke=1) == 12.25
            assert await rusty_reads_gateway(endpoint) == 42.5
        assert link.counts.invalid_frames == 0 and link.counts.replies_timed_out == 0
    finally:
        cable.stop()


async def test_three_masters_each_reach_the_others(multidrop, links) -> None:
    line, paths = multidrop(3, baudrate=BAUD)
    upper = NetworkLayer()
    link = links(paths[0], upper)
    async with station(paths[1], 1, 1.5) as first, station(paths[2], 7, 7.5) as second:
        await eventually(lambda: link.node.next_station == 7, what="the ring 1 -> 3 -> 7 -> 1")
        assert await gateway_reads(link, upper, 1, invoke=1) == 1.5
        assert await gateway_reads(link, upper, 7, invoke=2) == 7.5
        assert await rusty_reads_gateway(first) == 42.5
        assert await rusty_reads_gateway(second) == 42.5
    assert link.counts.mac_conflicts == 0


async def test_a_station_joining_is_found_and_one_leaving_is_passed_over(multidrop, links) -> None:
    line, paths = multidrop(3, baudrate=BAUD)
    upper = NetworkLayer()
    link = links(paths[0], upper)
    async with station(paths[1], 1, 1.5):
        await eventually(lambda: link.node.next_station == 1, what="the ring of two")
        async with station(paths[2], 5, 5.5) as joined:
            await eventually(lambda: link.node.next_station == 5, 20, what="the new station found by Poll-For-Master")
            assert await gateway_reads(link, upper, 5, invoke=1) == 5.5
            assert await rusty_reads_gateway(joined) == 42.5
        await eventually(lambda: link.node.next_station == 1, 20, what="the station that left passed over")
        assert await gateway_reads(link, upper, 1, invoke=2) == 1.5


async def test_a_second_station_with_the_gateways_mac_is_logged_once_and_the_gateway_keeps_working(
    multidrop, links
) -> None:
    line, paths = multidrop(3, baudrate=BAUD)
    upper = NetworkLayer()
    with structlog.testing.capture_logs() as logs:
        link = links(paths[0], upper)
        async with station(paths[1], 1, 1.5) as other:
            await eventually(lambda: link.node.next_station == 1, what="the ring of two")
            async with station(paths[2], GATEWAY, 9.5):
                await eventually(lambda: link.counts.mac_conflicts > 3, 20, what="frames of the impostor")
                await asyncio.sleep(2)
            assert await gateway_reads(link, upper, 1, invoke=1) == 1.5
            assert await rusty_reads_gateway(other) == 42.5
    conflicts = [entry for entry in logs if entry["event"] == "mstp mac conflict"]
    assert len(conflicts) == 1 and conflicts[0]["mac"] == GATEWAY and conflicts[0]["log_level"] == "warning"


async def test_noise_and_a_two_percent_crc_error_line_cost_retries_not_the_link(multidrop, links) -> None:
    line, paths = multidrop(2, baudrate=BAUD, corrupt=0.02, seed=7)
    upper = NetworkLayer()
    link = links(paths[0], upper)
    async with station(paths[1], 1, 1.5, apdu_timeout_ms=1000) as endpoint:
        await eventually(lambda: link.node.next_station == 1, what="the ring of two")
        for round_ in range(10):
            line.noise(bytes([0x55, 0xFF, 0x00]) + bytes(range(round_ * 7, round_ * 7 + 20)))
            assert await rusty_reads_gateway(endpoint) == 42.5
        await eventually(lambda: line.stats.corrupted > 0, what="corrupted frames")
    assert link.counts.invalid_frames > 0 and link.counts.npdus_received >= 10  # a retried request counts again


async def test_the_port_unplugged_is_logged_once_and_the_link_comes_back(multidrop, links) -> None:
    line, paths = multidrop(2, baudrate=BAUD)
    upper = NetworkLayer()
    with structlog.testing.capture_logs() as logs:
        link = links(paths[0], upper)
        async with station(paths[1], 1, 1.5) as endpoint:
            await eventually(lambda: link.node.next_station == 1, what="the ring of two")
            line.unplug(0)
            await eventually(lambda: not link.port_open, what="the port lost")
            assert not link.send(1, read_property(1), expecting_reply=True)  # dropped while the port is down
            await asyncio.sleep(3.5)
            line.plug(0)
            await eventually(lambda: link.port_open, 40, what="the port open again")
            await eventually(lambda: link.node.next_station == 1, what="the ring again")
            assert await rusty_reads_gateway(endpoint) == 42.5
            assert await gateway_reads(link, upper, 1, invoke=2) == 1.5
    events = [entry["event"] for entry in logs]
    assert events.count("mstp port lost") == 1 and events.count("mstp port unavailable") == 0
    assert events.count("mstp port open") == 2


async def test_a_transceiver_that_hears_itself_with_echo_on(multidrop, links) -> None:
    line, paths = multidrop(2, baudrate=BAUD, echo={0})
    upper = NetworkLayer()
    link = links(paths[0], upper, echo=True)
    async with station(paths[1], 1, 1.5) as endpoint:
        await eventually(lambda: link.counts.tokens_received > 20, what="the token passing")
        assert await gateway_reads(link, upper, 1, invoke=1) == 1.5
        assert await rusty_reads_gateway(endpoint) == 42.5
    # Its own frames are not taken for another station's. (A token retried while the other station's
    # late answer is on its way collides with it, which this line carries one after the other: then
    # the echo comes after a foreign frame, as no real transceiver hears it, and counts as invalid.)
    assert link.counts.mac_conflicts < link.counts.frames_sent / 10  # without the echo dropped: all of them
