"""A bounded history of every CT channel's current, in memory: what the web face's trends draw.

    history = History(hours=24)              # one sample a minute, the last 24 hours
    history.sample(nodes.nodes, time.time())  # once a minute, on the faces' loop, from the caches
    times, series = history.series(1, [43, 44, 45])

Once a minute (`STEP`) the current of each CT channel of each node (branch circuits 1-42 and the
AUX inputs 43-46, the mains) is taken from the node cache as it stands: no work on the bus
thread, nothing read from the line. A value the node does not have now (offline, the meter's
"no data", never read) is kept as a gap (NaN). Each node's samples live in a ring of
`hours * 60` slots a channel, as half-precision floats (2 bytes: three significant digits,
enough to draw a load; 0.1 A steps at 100-200 A), made whole the first time the node is sampled,
so the memory it takes is there from the start, not after a day: 46 x 1440 x 2 = 132,480 bytes a
node for 24 hours (4.2 MB for a full segment of 32 nodes). The slots' times are kept once for all
nodes. A node forgotten is dropped at the next sample.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from array import array
from collections.abc import Iterator, Mapping, Sequence

from gateway.nodes.api import NodeAPI, NodeView
from gateway.nodes.cache import Quality
from gateway.pointmap import CIRCUITS, PointMap

__all__ = ["STEP", "History", "current_registers"]

STEP = 60.0  # seconds between samples
_HALF = struct.Struct("<e")
_HALF_MAX = 65504.0  # the largest half-precision float; a garbled reading beyond is clamped
NAN_BYTES = _HALF.pack(math.nan)


def current_registers(pointmap: PointMap) -> tuple[int, ...]:
    """The register of each CT channel's current, channel 1 first."""
    found = {p.channel: p.register for p in pointmap.points if p.key == "current" and p.group in ("branch", "aux")}
    return tuple(found[channel] for channel in CIRCUITS)


class History:
    def __init__(self, hours: int, pointmap: PointMap, step: float = STEP) -> None:
        self.hours = hours
        self.step = step
        self.slots = max(1, round(hours * 3600 / step))
        self._registers = current_registers(pointmap)
        self._times = array("d", [math.nan]) * self.slots  # when each slot was sampled (wall clock)
        self._next = 0  # the slot the next sample takes
        self._nodes: dict[int, bytearray] = {}  # by address: channel after channel, slot after slot
        self._block = struct.Struct(f"<{self.slots}e")  # one channel's ring

    @property
    def nbytes(self) -> int:
        """The memory the samples take (buffers' contents)."""
        return len(self._times) * self._times.itemsize + sum(len(buffer) for buffer in self._nodes.values())

    def sample(self, nodes: Mapping[int, NodeView], now: float) -> None:
        """One sample of every channel of every node, into the next slot (the oldest goes)."""
        slot = self._next
        self._times[slot] = now
        self._nodes = {address: self._nodes.get(address) or self._empty() for address in nodes}
        for address, node in nodes.items():
            buffer, cache = self._nodes[address], node.cache
            for at, register in enumerate(self._registers):
                try:
                    value, quality = cache.current(register)
                except KeyError:  # not a point of this node's model
                    value, quality = None, Quality.UNKNOWN
                offset = 2 * (at * self.slots + slot)
                if quality is Quality.GOOD and isinstance(value, int | float):
                    _HALF.pack_into(buffer, offset, max(-_HALF_MAX, min(_HALF_MAX, value)))
                else:
                    buffer[offset : offset + 2] = NAN_BYTES
        self._next = (slot + 1) % self.slots

    def series(
        self, address: int, channels: Sequence[int], now: float | None = None
    ) -> tuple[list[float], dict[int, list[float | None]]]:
        """The sample times (oldest first) and, for each channel asked, its currents then (None:
        a gap). Empty when the node was never sampled. See `_taken` for `now`."""
        buffer = self._nodes.get(address)
        if buffer is None:
            return [], {}
        taken = self._taken(now)
        times = [self._times[slot] for slot in taken]
        found: dict[int, list[float | None]] = {}
        for channel in channels:
            ring = self._block.unpack_from(buffer, 2 * (channel - CIRCUITS[0]) * self.slots)
            found[channel] = [None if math.isnan(ring[slot]) else ring[slot] for slot in taken]
        return times, found

    def rows(self, address: int, now: float | None = None) -> Iterator[tuple[float, tuple[float, ...]]]:
        """Each sample of a node, oldest first: its time and every channel's current (NaN: a gap).
        One row at a time: a day of a node is some 66,000 values. See `_taken` for `now`."""
        buffer = self._nodes.get(address)
        if buffer is None:
            return
        channels, unpack = range(len(self._registers)), _HALF.unpack_from
        for slot in self._taken(now):
            yield self._times[slot], tuple(unpack(buffer, 2 * (channel * self.slots + slot))[0] for channel in channels)

    def _taken(self, now: float | None) -> list[int]:
        """The slots sampled within the hours kept before `now` (the clock's), oldest first. A clock
        stepped since (a board without one, set by NTP after it booted) leaves samples dated outside
        that window: left out, rather than drawn years away."""
        now = time.time() if now is None else now
        earliest, latest = now - self.slots * self.step, now + self.step
        taken = [slot for slot in range(self.slots) if earliest <= self._times[slot] <= latest]  # NaN: never
        return sorted(taken, key=self._times.__getitem__)

    def _empty(self) -> bytearray:
        return bytearray(NAN_BYTES * (len(self._registers) * self.slots))

    async def run(self, nodes: NodeAPI) -> None:
        """Sample at every whole `step` of the clock, until cancelled."""
        while True:
            await asyncio.sleep(self.step - time.time() % self.step)
            self.sample(nodes.nodes, time.time())
