"""The node service against the simulated BCPM over a pty: discovery, polling, health, writes."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gateway.app import running
from gateway.nodes import scanning
from gateway.nodes.cache import Quality
from gateway.nodes.errors import NotWritable, OutOfRange
from gateway.nodes.events import AlarmChanged, NodeOffline, NodeOnline
from gateway.nodes.service import GIL_SWITCH_INTERVAL
from gateway.pointmap import load
from gateway.sim import Faults
from gateway.state import StateStore
from tests.support import eventually, gateway_config

PM = load()
CURRENT = {ch: PM.find("current", group="branch", channel=ch) for ch in range(1, 43)}
CT_SIZE_5 = PM.find("ct_size", group="setup", channel=5)


def reading(gateway, address, point):
    return gateway.nodes.nodes[address].cache.reading(point)


async def test_discovery_finds_exactly_the_simulated_addresses_on_a_bus_with_gaps(
    make_line, start_gateway, tmp_path
) -> None:
    line = make_line(1, 5)
    gateway = await start_gateway(gateway_config(line, tmp_path))
    assert sorted(gateway.nodes.nodes) == [1, 2, 5, 6]
    profiles = StateStore(tmp_path / "state.json").load().profiles
    assert sorted(profiles) == [1, 2, 5, 6]
    assert {a: p.primary_address for a, p in profiles.items()} == {1: 1, 2: 1, 5: 5, 6: 5}
    assert profiles[5].serial == profiles[6].serial != profiles[1].serial


async def test_polled_values_equal_the_simulators(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    line.panel(2).set_current(12, 17.5)
    gateway = await start_gateway(gateway_config(line, tmp_path))
    await eventually(lambda: reading(gateway, 2, CURRENT[12]).value == 17.5, what="channel 12 current")
    # Every polled point equals what the meter holds, decoded with the meter's scale registers.
    await eventually(lambda: gateway.nodes.poller.cycles >= 3, what="three poll cycles")
    panel = line.panel(1)
    cache = gateway.nodes.nodes[1].cache
    for point in PM.for_model("A"):
        if point.register in gateway.nodes.nodes[1].plan.needed and point.key not in ("kwh", "kwh_total"):
            got = cache.reading(point)
            assert got.quality in (Quality.GOOD, Quality.NO_DATA), point
            scale = cache.scale_of(point)
            expected = point.decode(panel.read(point.register, point.count), scale)
            if point.poll.value == "slow" or point.key in ("kw_demand", "current_demand"):
                continue  # slow points and demand move between the read and now
            assert got.value == pytest.approx(expected, abs=1e-9), point


async def test_vanished_node_goes_offline_and_returns_while_the_others_keep_polling(
    make_line, start_gateway, tmp_path
) -> None:
    line = make_line(1)
    gateway = await start_gateway(gateway_config(line, tmp_path))
    await eventually(lambda: reading(gateway, 2, CURRENT[1]).quality is Quality.GOOD, what="node 2 polled")
    events = gateway.hub.subscribe(NodeOffline, NodeOnline)
    line.vanish(2)
    offline = await events.get()
    assert offline == NodeOffline(2, offline.reason)
    assert reading(gateway, 2, CURRENT[1]).quality is Quality.STALE
    # Node 1 keeps its pace while node 2 is gone.
    before = reading(gateway, 1, CURRENT[1]).timestamp
    cycles = gateway.nodes.poller.cycles
    await eventually(lambda: gateway.nodes.poller.cycles >= cycles + 5, what="five cycles while node 2 is offline")
    assert reading(gateway, 1, CURRENT[1]).timestamp > before
    assert reading(gateway, 1, CURRENT[1]).quality is Quality.GOOD
    line.restore(2)
    assert await events.get() == NodeOnline(2)
    await eventually(lambda: reading(gateway, 2, CURRENT[1]).quality is Quality.GOOD, what="node 2 values fresh again")


async def test_crc_errors_garbage_and_exception_replies_are_survived(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    line.panel(1).set_current(3, 4.2)
    gateway = await start_gateway(gateway_config(line, tmp_path, serial={"offline_after": 5, "retries": 2}))
    line.faults = Faults(crc_error=0.1, exception=0.05)
    for _ in range(5):
        line.send_garbage(20)
    cycles = gateway.nodes.poller.cycles
    await eventually(lambda: gateway.nodes.poller.cycles >= cycles + 20, what="twenty cycles under faults")
    line.faults = Faults()
    line.panel(1).set_current(3, 6.4)
    await eventually(lambda: reading(gateway, 1, CURRENT[3]).value == 6.4, what="new value after the faults")
    assert gateway.nodes.bus.stats.corrupt > 0 and gateway.nodes.bus.stats.exceptions > 0
    assert all(node.health.online for node in gateway.nodes.nodes.values())


async def test_write_outside_the_range_is_refused_and_the_meter_is_untouched(
    make_line, start_gateway, tmp_path
) -> None:
    line = make_line(1)
    gateway = await start_gateway(gateway_config(line, tmp_path))
    with pytest.raises(OutOfRange, match="0-32767"):
        await gateway.nodes.write(1, CT_SIZE_5.register, [40000])
    with pytest.raises(NotWritable):
        await gateway.nodes.write(1, CURRENT[1].register, [5])
    assert line.panel(1).read(CT_SIZE_5.register, 1) == [100]


async def test_accepted_write_reaches_the_register_and_the_cache(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    gateway = await start_gateway(gateway_config(line, tmp_path))
    await gateway.nodes.write(2, CT_SIZE_5.register, [200])
    assert line.panel(2).read(CT_SIZE_5.register, 1) == [200]
    assert reading(gateway, 2, CT_SIZE_5).value == 200  # the cache follows the meter at once
    await gateway.nodes.write_value(2, PM.find("threshold_high", group="setup").register, 55.5)
    assert line.panel(2).read(172, 1) == [555]


async def test_alarm_transition_becomes_an_event(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    panel = line.panel(1)
    gateway = await start_gateway(gateway_config(line, tmp_path))
    status_7 = PM.find("alarm_status", group="alarms", channel=7)
    await eventually(lambda: reading(gateway, 1, status_7).quality is Quality.GOOD, what="alarm status polled")
    alarms = gateway.hub.subscribe(AlarmChanged)
    panel.set_current(7, 19.0)  # 95 % of the 20 A breaker: over the 60 % non-latching high threshold

    async def high_alarm_on_channel_7() -> AlarmChanged:
        while True:
            event = await alarms.get()
            if (event.address, event.point.key, event.point.channel) == (1, "alarm_status", 7) and event.raised:
                return event

    event = await asyncio.wait_for(high_alarm_on_channel_7(), 10)
    assert event.raised == 0x0100  # bit 8: high, non-latching


async def test_locked_mode_starts_from_saved_profiles_without_a_scan(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1)
    async with running(gateway_config(line, tmp_path)) as first:  # discovery saves the profiles
        await eventually(first.nodes.ready.is_set, what="discovery")
    saved = StateStore(tmp_path / "state.json").load().profiles
    assert sorted(saved) == [1, 2]
    unserved = line.stats.unserved
    gateway = await start_gateway(gateway_config(line, tmp_path, gateway={"operating_mode": "locked"}))
    assert sorted(gateway.nodes.nodes) == [1, 2]
    assert line.stats.unserved == unserved  # no address outside the saved ones was asked


async def test_an_empty_bus_is_scanned_again_until_a_meter_answers(
    make_line, start_gateway, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(scanning, "FIRST_SCAN_RETRY_START", 0.5)  # the same back-off from 0.5 s, not 5 s
    line = make_line(1)
    line.vanish(1)
    line.vanish(2)
    # A patient probe: a simulator slowed by a loaded machine must not miss the scan after the restore.
    async with running(gateway_config(line, tmp_path, serial={"probe_timeout": 0.1})) as gateway:
        await eventually(lambda: line.stats.unserved + line.stats.vanished >= 20, what="a first, empty scan")
        assert not gateway.nodes.ready.is_set()
        line.restore(1)
        line.restore(2)
        await eventually(gateway.nodes.ready.is_set, timeout=20, what="the second scan")
        assert sorted(gateway.nodes.nodes) == [1, 2]


async def test_the_bus_thread_waits_at_most_a_tenth_of_a_millisecond_for_the_interpreter(
    make_line, start_gateway, tmp_path
) -> None:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # Python's default
    try:
        await start_gateway(gateway_config(make_line(1), tmp_path))
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL) == 0.0001
    finally:
        sys.setswitchinterval(previous)
