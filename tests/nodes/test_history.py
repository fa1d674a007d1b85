"""The currents' history for the trends (gateway/nodes/history.py): what a sample keeps, how long, in how
much memory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gateway.nodes.cache import Quality
from gateway.nodes.history import History, current_registers
from gateway.pointmap import CIRCUITS, load
from tests.support import StillCache

PM = load()
REGISTERS = dict(zip(CIRCUITS, current_registers(PM)))
T0 = 1_800_000_000.0


@dataclass
class Node:
    address: int
    cache: StillCache = field(default_factory=StillCache)

    def amps(self, channel: int, value: float | None, quality: Quality = Quality.GOOD) -> None:
        self.cache.values[REGISTERS[channel]] = (value, quality)


def test_the_current_of_every_ct_channel_is_sampled_and_given_back_oldest_first() -> None:
    assert REGISTERS[1] == 1336 and REGISTERS[42] == 1377 and REGISTERS[43] == 265 and REGISTERS[46] == 268
    history = History(1, PM)
    node = Node(1)
    for minute in range(3):
        node.amps(7, 10.0 + minute)
        node.amps(43, 200.0 + minute)
        history.sample({1: node}, T0 + 60 * minute)
    times, series = history.series(1, [7, 43, 8], T0 + 120)
    assert times == [T0, T0 + 60, T0 + 120]
    assert series == {7: [10.0, 11.0, 12.0], 43: [200.0, 201.0, 202.0], 8: [None, None, None]}
    assert history.series(2, [7], T0) == ([], {})  # never sampled


def test_only_a_good_value_is_kept_anything_else_is_a_gap() -> None:
    history = History(1, PM)
    node = Node(1)
    for minute, quality in enumerate((Quality.GOOD, Quality.STALE, Quality.NO_DATA, Quality.UNKNOWN, Quality.GOOD)):
        node.amps(1, 5.0, quality)
        history.sample({1: node}, T0 + 60 * minute)
    assert history.series(1, [1], T0 + 240)[1][1] == [5.0, None, None, None, 5.0]


def test_the_ring_keeps_the_last_hours_and_drops_the_oldest() -> None:
    history = History(1, PM)  # 60 slots
    node = Node(1)
    for minute in range(75):
        node.amps(1, float(minute))
        history.sample({1: node}, T0 + 60 * minute)
    times, series = history.series(1, [1], T0 + 60 * 74)
    assert len(times) == 60 and times[0] == T0 + 60 * 15 and times[-1] == T0 + 60 * 74
    assert series[1] == [float(minute) for minute in range(15, 75)]


def test_a_value_is_kept_exactly_at_the_meters_resolution_and_garbage_stays_in_range() -> None:
    history = History(1, PM)
    node = Node(1)
    node.amps(1, 12.3)
    node.amps(2, 3276.7)  # the largest a 16-bit register holds at 0.1 A
    node.amps(3, 1e30)  # no meter reads that: clamped
    node.amps(4, -0.5)
    node.amps(5, 7.0)
    history.sample({1: node}, T0)
    node.amps(5, 7.25)  # a finer resolution later: the samples before stay as they were
    history.sample({1: node}, T0 + 60)
    _, series = history.series(1, [1, 2, 3, 4, 5], T0 + 60)
    assert series[1] == [12.3, 12.3] and series[2] == [3276.7, 3276.7] and series[4] == [-0.5, -0.5]
    assert series[3] == [2.0**62, 2.0**62] and series[5] == [7.0, 7.25]
    assert all(isinstance(value, float) for values in series.values() for value in values)


def test_the_memory_is_taken_whole_at_a_nodes_first_sample_and_a_node_gone_gives_it_back() -> None:
    history = History(24, PM)
    times_bytes = 1440 * 8
    assert history.nbytes == times_bytes
    history.sample({1: Node(1), 2: Node(2)}, T0)
    assert history.nbytes == times_bytes + 2 * 46 * 1440  # a byte a sample: 66,240 bytes a node for 24 hours
    history.sample({2: Node(2)}, T0 + 60)  # node 1 forgotten
    assert history.nbytes == times_bytes + 46 * 1440
    assert history.series(1, [1], T0 + 60) == ([], {})


def test_a_channel_takes_two_bytes_a_sample_once_it_draws_more_than_a_byte_holds() -> None:
    history = History(24, PM)
    node = Node(1)
    node.amps(7, 25.4)  # 254 tenths: a byte
    history.sample({1: node}, T0)
    assert history.nbytes == 1440 * 8 + 46 * 1440
    node.amps(7, 25.5)
    node.amps(43, 180.0)  # 180 A: a byte at 1 A; 180.5 A: 1805 tenths, two bytes
    history.sample({1: node}, T0 + 60)
    node.amps(43, 180.5)
    history.sample({1: node}, T0 + 120)
    assert history.nbytes == 1440 * 8 + 46 * 1440 + 2 * 1440
    _, series = history.series(1, [7, 43, 8], T0 + 120)
    assert series == {7: [25.4, 25.5, 25.5], 43: [None, 180.0, 180.5], 8: [None, None, None]}


def test_rows_give_every_channel_of_a_sample_for_the_csv() -> None:
    history = History(1, PM)
    node = Node(1)
    node.amps(46, 3.5)
    history.sample({1: node}, T0)
    history.sample({1: node}, T0 + 60)
    rows = list(history.rows(1, T0 + 60))
    assert [at for at, _ in rows] == [T0, T0 + 60]
    values = rows[0][1]
    assert len(values) == 46 and values[45] == 3.5 and all(math.isnan(v) for v in values[:45])
    assert list(history.rows(2, T0)) == []


def test_samples_dated_outside_the_hours_kept_are_left_out_after_the_clock_steps() -> None:
    history = History(1, PM)
    node = Node(1)
    node.amps(1, 1.0)
    history.sample({1: node}, 86400.0)  # booted without a clock: 1970
    node.amps(1, 2.0)
    history.sample({1: node}, T0)  # NTP set it
    history.sample({1: node}, T0 - 120)  # and stepped it back two minutes
    times, series = history.series(1, [1], T0 + 60)
    assert times == [T0 - 120, T0] and series[1] == [2.0, 2.0]
    assert [at for at, _ in history.rows(1, T0 + 60)] == times
