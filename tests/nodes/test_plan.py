"""The poll plan: fewest wire seconds, no read over 125 registers or across unreadable registers."""

from __future__ import annotations

import itertools
import random

import pytest

from gateway.bus import LineSettings
from gateway.nodes.plan import MAX_READ, LineCost, Read, plan_reads, poll_plan
from gateway.nodes.registry import line_cost
from gateway.pointmap import PollClass, load

COST_19200 = line_cost(LineSettings("unused", baudrate=19200))
COST_115200 = line_cost(LineSettings("unused", baudrate=115200))


def _brute_force(needed: list[int], readable: list[range], cost: LineCost) -> float:
    """Cheapest cover by trying every way to cut the sorted registers into consecutive groups."""
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(needed) - 1):
        groups, current = [], [needed[0]]
        for register, cut in zip(needed[1:], cuts):
            if cut:
                groups.append(current)
                current = []
            current.append(register)
        groups.append(current)
        ok = all(g[-1] - g[0] < MAX_READ and any(g[0] in r and g[-1] in r for r in readable) for g in groups)
        if ok:
            best = min(best, sum(cost.read_cost(g[-1] - g[0] + 1) for g in groups))
    return best


def test_plan_is_as_cheap_as_trying_every_grouping() -> None:
    rng = random.Random(7)
    readable = [range(1, 200), range(300, 320)]
    for _ in range(30):
        needed = sorted(rng.sample([r for run in readable for r in run], 10))
        reads = plan_reads(needed, readable, COST_19200)
        best = _brute_force(needed, readable, COST_19200)
        assert sum(COST_19200.read_cost(r.count) for r in reads) == pytest.approx(best)


def test_small_gaps_are_bridged_and_large_gaps_split() -> None:
    readable = [range(1, 1000)]
    assert plan_reads([10, 14], readable, COST_19200) == (Read(10, 5),)
    assert plan_reads([10, 100], readable, COST_19200) == (Read(10, 1), Read(100, 1))


def test_a_read_never_spans_registers_the_meter_rejects() -> None:
    assert plan_reads([10, 12], [range(1, 12), range(12, 20)], COST_19200) == (Read(10, 1), Read(12, 1))


def test_faster_lines_bridge_wider_gaps() -> None:
    # The fixed cost of a transaction (turnaround, silence) weighs more against faster characters.
    readable = [range(1, 1000)]
    assert len(plan_reads([10, 40], readable, COST_19200)) == 2
    assert len(plan_reads([10, 40], readable, COST_115200)) == 1


@pytest.mark.parametrize("model", ["A", "B", "C"])
@pytest.mark.parametrize("cost", [COST_19200, COST_115200], ids=["19200", "115200"])
def test_bcpm_plan_covers_every_needed_register_once_within_limits(model: str, cost: LineCost) -> None:
    pm = load()
    plan = poll_plan(pm, model, cost)
    read = [r for block in plan.reads for r in block.registers]
    assert len(read) == len(set(read)), "a register is read twice in a cycle"
    assert plan.needed <= set(read)
    for block in plan.reads:
        assert 1 <= block.count <= MAX_READ
        assert any(block.start in run and block.registers[-1] in run for run in pm.readable_ranges)
    fast = {r for block in plan.fast for r in block.registers}
    for point in pm.for_model(model):
        if point.poll is PollClass.FAST:
            assert set(point.registers) <= fast, point


def test_model_c_plan_leaves_out_what_a_model_c_does_not_have() -> None:
    pm = load()
    plan = poll_plan(pm, "C", COST_19200)
    kw_channel_1 = pm.find("kw", group="branch", channel=1)
    assert kw_channel_1.register not in plan.needed
    assert pm.find("current", group="branch", channel=1).register in plan.needed


def test_few_registers_are_read_that_nobody_needs() -> None:
    plan = poll_plan(load(), "A", COST_19200)
    assert plan.registers_read <= 1.05 * len(plan.needed)
