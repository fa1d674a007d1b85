"""The node cache: every value a meter node gave us, with its quality and the time it was read.

One writer (the poller, on the bus thread) and many readers (the faces, on the main loop). The
writer swaps in new arrays of raw registers per read, and new arrays of decoded values, so a
reader never sees a half-updated value (nor a 32-bit value made of two reads) and never trips
over a resized container.
"""

from __future__ import annotations

import enum
import functools
import math
import operator
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from gateway.nodes.plan import PollPlan
from gateway.pointmap import Encoding, Point, PointMap, signed


class Quality(enum.StrEnum):
    GOOD = "good"
    NO_DATA = "no-data"  # the meter answered 0x8000 / NaN: this model or channel has no such value
    STALE = "stale"  # the node is offline; the value is the last one it gave
    UNKNOWN = "unknown"  # never read


@dataclass(frozen=True, slots=True)
class Reading:
    value: float | int | str | None
    quality: Quality
    timestamp: float | None  # wall-clock time of the read that gave it

    @property
    def fresh(self) -> bool:
        return self.quality in (Quality.GOOD, Quality.NO_DATA)


UNREAD = Reading(None, Quality.UNKNOWN, None)
#: The meter's scale registers hold a few powers of ten either way; far beyond, a value would be
#: meaningless (and 10.0**exponent overflows).
MAX_EXPONENT = 9
MAX_READ_SHAPES = 1024  # (start, count) pairs whose points are kept per model: the plans' reads, write read-backs


class NodeCache:
    """Raw registers and decoded readings of one node."""

    def __init__(self, pointmap: PointMap, model: str, plan: PollPlan) -> None:
        # Only the values are the node's own: what depends on the model alone (its points, the
        # registers its plan reads) is shared by every node of the model.
        self._pointmap = pointmap
        self._model = model
        self._points = pointmap.for_model(model)
        self._places = _places(self._points)  # point register -> its place in the readings' arrays
        self._readings = _Readings.unread(len(self._points))
        self.readings: Mapping[int, Reading] = _ReadingsView(self, self._places)
        # Raw registers and the wall-clock time each was read (NaN: never), in two arrays in the
        # plan's register order (2 + 8 bytes a register, where objects would take ~130).
        self._slots = _slots(plan)  # register -> its place in the arrays
        count = len(self._slots)
        self._raw = (array("H", bytes(2 * count)), array("d", [math.nan]) * count)
        self._touched_by_read = _touched_by_read(self._points)

    def tracks(self, register: int) -> bool:
        """Whether the poll plan reads this register."""
        return register in self._slots

    def word(self, register: int) -> tuple[int, float] | None:
        """A raw register and when it was read, if the plan reads it and it has been read."""
        words, times = self._raw  # one reference: a store on the bus thread swaps in a new pair
        at = self._slots.get(register)
        if at is None or times[at] != times[at]:  # not read by the plan, or not yet (NaN)
            return None
        return words[at], times[at]

    def block(self, registers: range) -> tuple[list[int], float] | None:
        """Raw registers and the time of the oldest, all from one read of each (None if any unread)."""
        words, times = self._raw  # one reference: a store on the bus thread swaps in a new pair
        slots = self._slots
        places = [slots.get(r) for r in registers]
        if None in places:
            return None
        read = [times[at] for at in places]  # type: ignore[index]
        if any(t != t for t in read):  # NaN: never read
            return None
        return [words[at] for at in places], min(read)  # type: ignore[index]

    def reading(self, point: Point) -> Reading:
        at = self._places.get(point.register)
        return UNREAD if at is None else self.reading_at(at)

    def reading_at(self, at: int) -> Reading:
        """The reading of the point at this place of the model's points (``PointMap.for_model``)."""
        readings = self._readings  # one reference: a store on the bus thread swaps in new ones
        made = readings.made[at]
        if made is None:
            made = readings.made[at] = readings.reading(at)
        return made

    def current(self, register: int) -> tuple[float | int | str | None, Quality]:
        """A point's value and quality now, by register, making no Reading (nor keeping one): for
        faces that read every point of every node (an SNMP walk, a /metrics scrape), where a kept
        Reading a point would stay behind, some 0.2 MB a node."""
        readings = self._readings  # one reference: a store on the bus thread swaps in new ones
        at = self._places[register]
        return readings.value(at), _QUALITIES[readings.kinds[at] & 3]

    def scale_of(self, point: Point) -> int | None:
        """The power-of-ten exponent that applies to a point now: None while its scale register
        is unread, or holds what no meter would (beyond 10^±MAX_EXPONENT: a garbled reply)."""
        if point.exponent is not None:
            return point.exponent
        if point.scale_register is None:
            return 0
        found = self.word(point.scale_register)
        exponent = signed(found[0]) if found else None
        return exponent if exponent is not None and abs(exponent) <= MAX_EXPONENT else None

    def store(self, start: int, words: Sequence[int], timestamp: float) -> dict[Point, tuple[Reading, Reading]]:
        """Keep registers the meter returned; return the points whose reading changed (old, new)."""
        registers = range(start, start + len(words))
        # New arrays, swapped in whole: a reader on another thread sees one read or the other, never
        # a 32-bit value made of two reads.
        before = self._raw
        stored = array("H", before[0]), array("d", before[1])
        slots = self._slots
        for register, word in zip(registers, words):
            at = slots.get(register)
            if at is not None:
                stored[0][at] = word
                stored[1][at] = timestamp
        self._raw = stored
        covered, scaled = self._touched(start, len(words))
        # A point read elsewhere changes only if its scale register, read here, changed.
        rescaled = [
            point
            for point in scaled
            if _word(before, slots, point.scale_register) != _word(stored, slots, point.scale_register)
        ]
        changes: dict[Point, tuple[Reading, Reading]] = {}
        renewed: dict[int, Reading] = {}
        for point in (*covered, *rescaled):
            new = self._decode(point)
            at = self._places[point.register]
            old_reading = self._readings.current(at)
            if new is not None and new != old_reading:
                renewed[at] = new
                if (new.value, new.quality) != (old_reading.value, old_reading.quality):
                    changes[point] = (old_reading, new)
        self._readings = self._readings.with_readings(renewed)
        return changes

    def _touched(self, start: int, count: int) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
        """The points a read of `count` registers from `start` can change: those it covers, and
        those read elsewhere but scaled by a scale register it covers. Kept per read (the poll
        plan's, and those of write read-backs up to MAX_READ_SHAPES), shared by the nodes of the model."""
        touched = self._touched_by_read.get((start, count))
        if touched is None:
            registers = range(start, start + count)
            covered = {
                point
                for register in registers
                if (point := self._pointmap.point_at(register)) is not None and self._model in point.models
            }
            scaled = {point for point in self._points if point.scale_register in registers} - covered
            by_register = operator.attrgetter("register")
            touched = tuple(sorted(covered, key=by_register)), tuple(sorted(scaled, key=by_register))
            if len(self._touched_by_read) < MAX_READ_SHAPES:
                self._touched_by_read[start, count] = touched
        return touched

    def _decode(self, point: Point) -> Reading | None:
        found = self.block(point.registers)
        if found is None:
            return None
        words, timestamp = found
        scale = self.scale_of(point)
        if scale is None:
            # An unread scale register: wait for it. One that holds garbage: no usable value.
            unread = point.scale_register is not None and self.word(point.scale_register) is None
            return None if unread else Reading(None, Quality.NO_DATA, timestamp)
        value = point.decode(words, scale)
        if point.encoding is Encoding.STRING:
            return Reading(value, Quality.GOOD, timestamp)
        return Reading(value, Quality.NO_DATA if value is None else Quality.GOOD, timestamp)

    def mark_stale(self) -> dict[Point, tuple[Reading, Reading]]:
        """The node went offline: every value it gave is now stale (kept, but flagged)."""
        changes = {}
        renewed = {}
        for at, point in enumerate(self._points):
            old = self._readings.current(at)
            if old.quality in (Quality.GOOD, Quality.NO_DATA):
                renewed[at] = new = Reading(old.value, Quality.STALE, old.timestamp)
                changes[point] = (old, new)
        self._readings = self._readings.with_readings(renewed)
        return changes


_QUALITIES = tuple(Quality)  # a reading's quality, by the low two bits of its kind
_FORMS = {type(None): 0, int: 1, float: 2, str: 3}  # a reading's value type, by the high bits of its kind
_NONE, _INT, _FLOAT, _TEXT = _FORMS.values()


class _Readings:
    """A node's decoded readings, in its model's point order: the numbers in an array, each one's
    kind (quality and value type) in a byte, its time in an array, the few texts by place (25
    bytes a point with ``made``, where a Reading object, its value and a dictionary slot take
    ~110). Never changed once swapped in but for ``made``, the Reading objects faces asked for
    (kept so that a face comparing by identity sees a new object only when the reading changed,
    and so that a value read thousands of times a second is made once), and ``stamps``."""

    __slots__ = ("kinds", "made", "numbers", "stamps", "texts", "times")

    def __init__(
        self,
        numbers: array[float],
        kinds: bytearray,
        times: array[float],
        texts: dict[int, str],
        made: list[Reading | None],
    ) -> None:
        self.numbers, self.kinds, self.times, self.texts, self.made = numbers, kinds, times, texts, made
        # The made readings' times, one float object per read as the readings of a read share it
        # (24 bytes a reading otherwise); a few dozen, as many as the reads of the node's plan.
        self.stamps: dict[float, float] = {}

    @classmethod
    def unread(cls, count: int) -> _Readings:
        kind = _NONE << 2 | _QUALITIES.index(Quality.UNKNOWN)
        return cls(
            array("d", bytes(8 * count)),
            bytearray([kind]) * count,
            array("d", [math.nan]) * count,
            {},
            [UNREAD] * count,
        )

    def current(self, at: int) -> Reading:
        """The reading at a place, as made for a face or made now (for the writer: not kept)."""
        made = self.made[at]
        return self.reading(at) if made is None else made

    def reading(self, at: int) -> Reading:
        timestamp = self.times[at]
        shared = None if timestamp != timestamp else self.stamps.setdefault(timestamp, timestamp)  # NaN: never read
        return Reading(self.value(at), _QUALITIES[self.kinds[at] & 3], shared)

    def value(self, at: int) -> float | int | str | None:
        form = self.kinds[at] >> 2
        if form == _FLOAT:
            return self.numbers[at]
        if form == _INT:
            return int(self.numbers[at])
        if form == _TEXT:
            return self.texts[at]
        return None

    def with_readings(self, renewed: dict[int, Reading]) -> _Readings:
        """New readings: these ones by place, the others as they are (with the objects made of them)."""
        if not renewed:
            return self
        numbers, kinds, times, texts, made = (
            array("d", self.numbers),
            bytearray(self.kinds),
            array("d", self.times),
            dict(self.texts),
            list(self.made),
        )
        for at, reading in renewed.items():
            value = reading.value
            texts.pop(at, None)
            if isinstance(value, str):
                texts[at] = value
            else:
                numbers[at] = 0.0 if value is None else value
            kinds[at] = _FORMS[type(value)] << 2 | _QUALITIES.index(reading.quality)
            times[at] = math.nan if reading.timestamp is None else reading.timestamp
            made[at] = None  # made when a face asks
        return _Readings(numbers, kinds, times, texts, made)


class _ReadingsView(Mapping[int, Reading]):
    """A node's readings by register, read-only, made on demand from its arrays."""

    __slots__ = ("_cache", "_places")

    def __init__(self, cache: NodeCache, places: dict[int, int]) -> None:
        self._cache, self._places = cache, places

    def __getitem__(self, register: int) -> Reading:
        return self._cache.reading_at(self._places[register])

    def __iter__(self) -> Iterator[int]:
        return iter(self._places)

    def __len__(self) -> int:
        return len(self._places)


@functools.cache
def _touched_by_read(points: tuple[Point, ...]) -> dict[tuple[int, int], tuple[tuple[Point, ...], tuple[Point, ...]]]:
    """What each read shape touches, for the nodes of one model (filled on the bus thread only)."""
    return {}


@functools.cache
def _places(points: tuple[Point, ...]) -> dict[int, int]:
    """Each point's register, with its place in the readings' arrays (shared by the model's nodes)."""
    return {point.register: at for at, point in enumerate(points)}


@functools.cache
def _slots(plan: PollPlan) -> dict[int, int]:
    """The registers a plan reads, each with its place in a node's arrays (shared by the plan's nodes)."""
    registers = dict.fromkeys(register for read in plan.reads for register in read.registers)
    return {register: at for at, register in enumerate(registers)}


def _word(raw: tuple[array[int], array[float]], slots: dict[int, int], register: int | None) -> int | None:
    at = None if register is None else slots.get(register)
    if at is None or raw[1][at] != raw[1][at]:  # not read by the plan, or not yet (NaN)
        return None
    return raw[0][at]
