"""A bounded history of every CT channel's current, in memory: what the web face's trends draw.

    history = History(hours=24)              # one sample a minute, the last 24 hours
    history.sample(nodes.nodes, time.time())  # once a minute, on the faces' loop, from the caches
    times, series = history.series(1, [43, 44, 45])

Once a minute (`STEP`) the current of each CT channel of each node (branch circuits 1-42 and the
AUX inputs 43-46, the mains) is taken from the node cache as it stands: no work on the bus
thread, nothing read from the line. A value the node does not have now (offline, the meter's
"no data", never read) is kept as a gap. Each channel of each node has a ring of `hours * 60`
slots, made whole the first time the node is sampled, so the memory it takes is there from the
start, not after a day. A slot holds the current as the meter gives it, a whole number of its
resolution (0.1 A: 123 is 12.3 A), in the smallest integer type that holds every value of the
ring: a byte while the channel draws at most 25.4 counts (25.4 A at 0.1 A), two bytes up to the
meter's largest reading (its register is 16 bits). So what is given back is the meter's value
exactly, and a day of a node takes 46 x 1440 = 66,240 bytes (2.1 MB for a full segment of 32
nodes), up to twice that once every channel draws more. The slots' times are kept once for all
nodes. A node forgotten is dropped at the next sample.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence

from gateway.nodes.api import NodeAPI, NodeView
from gateway.nodes.cache import MAX_EXPONENT, Quality
from gateway.pointmap import CIRCUITS, PointMap

__all__ = ["STEP", "History", "current_registers"]

STEP = 60.0  # seconds between samples
#: Integer types from the smallest, each with the value that marks a gap and the range it holds.
_TYPES = {"B": 255, "h": -(2**15), "i": -(2**31), "q": -(2**63)}
_RANGES = {"B": (0, 254), "h": (-(2**15) + 1, 2**15 - 1), "i": (-(2**31) + 1, 2**31 - 1), "q": (-(2**62), 2**62)}
_LIMIT = 2**62  # a garbled reading beyond is clamped


def current_registers(pointmap: PointMap) -> tuple[int, ...]:
    """The register of each CT channel's current, channel 1 first."""
    found = {p.channel: p.register for p in pointmap.points if p.key == "current" and p.group in ("branch", "aux")}
    return tuple(found[channel] for channel in CIRCUITS)


class _Ring:
    """One channel's slots: whole numbers of 10**-decimals amperes (the meter's resolution, the
    finest its values showed), in the smallest type that holds them all."""

    __slots__ = ("decimals", "values")

    def __init__(self, slots: int) -> None:
        self.values = array("B", [_TYPES["B"]]) * slots
        self.decimals = 0

    def put(self, slot: int, amps: float | None) -> None:
        if amps is None:
            self.values[slot] = _TYPES[self.values.typecode]
            return
        if self.decimals < MAX_EXPONENT and round(amps, self.decimals) != amps:  # finer than so far (garbage: 10^-9)
            decimals = next((d for d in range(self.decimals + 1, MAX_EXPONENT) if round(amps, d) == amps), MAX_EXPONENT)
            self._retype(self._items(10 ** (decimals - self.decimals)))
            self.decimals = decimals
        counts = max(-_LIMIT, min(_LIMIT, round(amps * 10**self.decimals)))
        low, high = _RANGES[self.values.typecode]
        if not low <= counts <= high:
            self._retype(self._items(), counts)
        self.values[slot] = counts

    def at(self, slot: int) -> float | None:
        counts = self.values[slot]
        return None if counts == _TYPES[self.values.typecode] else counts / 10**self.decimals

    @property
    def nbytes(self) -> int:
        return len(self.values) * self.values.itemsize

    def _items(self, factor: int = 1) -> list[int | None]:
        gap = _TYPES[self.values.typecode]
        return [None if counts == gap else max(-_LIMIT, min(_LIMIT, counts * factor)) for counts in self.values]

    def _retype(self, items: list[int | None], room_for: int = 0) -> None:
        """Hold the slots `items` (None: a gap) in the smallest type that takes them all, and
        `room_for`, a value about to come."""
        known = [counts for counts in items if counts is not None]
        low, high = min(known, default=room_for), max(known, default=room_for)
        low, high = min(low, room_for), max(high, room_for)
        code = next(code for code, (lowest, highest) in _RANGES.items() if lowest <= low and high <= highest)
        gap = _TYPES[code]
        self.values = array(code, [gap if counts is None else counts for counts in items])


class History:
    def __init__(self, hours: int, pointmap: PointMap, step: float = STEP) -> None:
        self.hours = hours
        self.step = step
        self.slots = max(1, round(hours * 3600 / step))
        self._registers = current_registers(pointmap)
        self._times = array("d", [math.nan]) * self.slots  # when each slot was sampled (wall clock)
        self._next = 0  # the slot the next sample takes
        self._nodes: dict[int, list[_Ring]] = {}  # by address: a ring a channel

    @property
    def nbytes(self) -> int:
        """The memory the samples take (the arrays' contents)."""
        return len(self._times) * self._times.itemsize + sum(
            ring.nbytes for rings in self._nodes.values() for ring in rings
        )

    def sample(self, nodes: Mapping[int, NodeView], now: float) -> None:
        """One sample of every channel of every node, into the next slot (the oldest goes)."""
        slot = self._next
        self._times[slot] = now
        self._nodes = {address: self._nodes.get(address) or self._empty() for address in nodes}
        for address, node in nodes.items():
            cache = node.cache
            for ring, register in zip(self._nodes[address], self._registers):
                try:
                    value, quality = cache.current(register)
                except KeyError:  # not a point of this node's model
                    value, quality = None, Quality.UNKNOWN
                good = quality is Quality.GOOD and isinstance(value, int | float) and math.isfinite(value)
                ring.put(slot, float(value) if good else None)  # type: ignore[arg-type]
        self._next = (slot + 1) % self.slots

    def series(
        self, address: int, channels: Sequence[int], now: float | None = None
    ) -> tuple[list[float], dict[int, list[float | None]]]:
        """The sample times (oldest first) and, for each channel asked, its currents then (None:
        a gap). Empty when the node was never sampled. See `_taken` for `now`."""
        rings = self._nodes.get(address)
        if rings is None:
            return [], {}
        taken = self._taken(now)
        times = [self._times[slot] for slot in taken]
        return times, {channel: [rings[channel - CIRCUITS[0]].at(slot) for slot in taken] for channel in channels}

    def rows(self, address: int, now: float | None = None) -> Iterator[tuple[float, tuple[float, ...]]]:
        """Each sample of a node, oldest first: its time and every channel's current (NaN: a gap).
        One row at a time: a day of a node is some 66,000 values. See `_taken` for `now`."""
        rings = self._nodes.get(address)
        if rings is None:
            return
        for slot in self._taken(now):
            yield self._times[slot], tuple(math.nan if (amps := ring.at(slot)) is None else amps for ring in rings)

    def _taken(self, now: float | None) -> list[int]:
        """The slots sampled within the hours kept before `now` (the clock's), oldest first. A clock
        stepped since (a board without one, set by NTP after it booted) leaves samples dated outside
        that window: left out, rather than drawn years away."""
        now = time.time() if now is None else now
        earliest, latest = now - self.slots * self.step, now + self.step
        taken = [slot for slot in range(self.slots) if earliest <= self._times[slot] <= latest]  # NaN: never
        return sorted(taken, key=self._times.__getitem__)

    def _empty(self) -> list[_Ring]:
        return [_Ring(self.slots) for _ in self._registers]

    async def run(self, nodes: NodeAPI) -> None:
        """Sample at every whole `step` of the clock, until cancelled."""
        while True:
            await asyncio.sleep(self.step - time.time() % self.step)
            self.sample(nodes.nodes, time.time())
