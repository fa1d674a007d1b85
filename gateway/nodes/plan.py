"""The poll plan: which block reads cover the registers the faces need, at the least wire time.

Pure functions of the point map and the line: no I/O, testable on their own.

A read costs a fixed overhead (request frame, reply header and CRC, the meter's turnaround, the
inter-frame silence) plus two bytes per register. Two needed registers with a gap between them go
into one read when carrying the gap costs less wire time than a second transaction; a read never
crosses registers the meter rejects and never exceeds 125 registers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.modbus import MAX_READ_REGISTERS
from gateway.pointmap import PointMap, PollClass

MAX_READ = MAX_READ_REGISTERS
REQUEST_BYTES = 8  # unit, function, address, count, CRC
REPLY_OVERHEAD_BYTES = 5  # unit, function, byte count, CRC


@dataclass(frozen=True, slots=True)
class Read:
    start: int  # first register (vendor numbering)
    count: int

    @property
    def registers(self) -> range:
        return range(self.start, self.start + self.count)


@dataclass(frozen=True, slots=True)
class LineCost:
    """Wire cost of a transaction, in seconds."""

    char_time: float  # one character on the wire
    fixed: float  # turnaround plus inter-frame silence

    def read_cost(self, count: int) -> float:
        return (REQUEST_BYTES + REPLY_OVERHEAD_BYTES + 2 * count) * self.char_time + self.fixed


@dataclass(frozen=True, slots=True)
class PollPlan:
    fast: tuple[Read, ...]  # every cycle
    slow: tuple[Read, ...]  # a slice of these each cycle, all of them every `slow_every` cycles
    needed: frozenset[int]  # registers the faces need

    @property
    def reads(self) -> tuple[Read, ...]:
        return self.fast + self.slow

    @property
    def registers_read(self) -> int:
        return sum(r.count for r in self.reads)


def plan_reads(needed: Iterable[int], readable: Sequence[range], cost: LineCost) -> tuple[Read, ...]:
    """The cheapest set of block reads covering ``needed`` (optimal by dynamic programming).

    ``readable`` are runs of registers a single read may span.
    """
    registers = sorted(set(needed))
    run_of = _run_index(registers, readable)
    # best[i]: least cost covering registers[:i]; choice[i]: where the last read starts.
    best = [0.0] + [float("inf")] * len(registers)
    choice = [0] * (len(registers) + 1)
    for end in range(1, len(registers) + 1):
        last = registers[end - 1]
        for start in range(end - 1, -1, -1):
            first = registers[start]
            if last - first + 1 > MAX_READ or run_of[start] != run_of[end - 1]:
                break
            candidate = best[start] + cost.read_cost(last - first + 1)
            if candidate < best[end]:
                best[end], choice[end] = candidate, start
    reads: list[Read] = []
    end = len(registers)
    while end:
        start = choice[end]
        reads.append(Read(registers[start], registers[end - 1] - registers[start] + 1))
        end = start
    return tuple(reversed(reads))


def _run_index(registers: Sequence[int], readable: Sequence[range]) -> list[int]:
    runs = sorted(readable, key=lambda r: r.start)
    index, i = [], 0
    for register in registers:
        while i < len(runs) and register >= runs[i].stop:
            i += 1
        if i == len(runs) or register < runs[i].start:
            raise ValueError(f"register {register} is not readable")
        index.append(i)
    return index


def _split(readable: Sequence[range], holes: set[int]) -> list[range]:
    """The readable runs with ``holes`` cut out."""
    runs: list[range] = []
    for run in readable:
        start = run.start
        for register in run:
            if register in holes:
                if register > start:
                    runs.append(range(start, register))
                start = register + 1
        if start < run.stop:
            runs.append(range(start, run.stop))
    return runs


def poll_plan(pointmap: PointMap, model: str, cost: LineCost) -> PollPlan:
    """The plan for one node of a model: fast points every cycle, slow points spread over cycles.

    Registers a fast read carries anyway are not read again by the slow plan, and slow reads never
    span a fast register, so no register is read twice in a cycle.
    """
    fast: set[int] = set()
    slow: set[int] = set()
    for point in pointmap.for_model(model):
        if point.poll is PollClass.FAST:
            fast.update(point.registers)
        elif point.poll is PollClass.SLOW:
            slow.update(point.registers)
    fast_reads = plan_reads(fast, pointmap.readable_ranges, cost)
    carried = {register for read in fast_reads for register in read.registers}
    slow_reads = plan_reads(slow - carried, _split(pointmap.readable_ranges, carried), cost)
    return PollPlan(fast_reads, slow_reads, frozenset(fast | slow))
