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


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a read of some registers touches in the nodes of a model and plan."""

    slots: tuple[int | None, ...]  # each register's place in the raw arrays (None: the plan does not read it)
    first: int | None  # the first register's place, when the read's are consecutive there (a plan read)
    # The points it covers, in register order: each with its place in the readings, the offsets in
    # the read of the words its reading is made of (its scale register's too), and the offset of its
    # words when all of them are in the read.
    covered: tuple[tuple[Point, int, frozenset[int], int | None], ...]
    scaled: tuple[tuple[Point, int], ...]  # read elsewhere, scaled by a scale register the read covers
    # The places of the covered points, first and past the last, when they run unbroken (a plan read).
    span: tuple[int, int] | None
    touching: tuple[tuple[int, ...], ...]  # by offset in the read: the covered points that look at its word


class NodeCache:
    """Raw registers and decoded readings of one node."""

    def __init__(self, pointmap: PointMap, model: str, plan: PollPlan) -> None:
        # Only the values are the node's own: what depends on the model alone (its points, the
        # registers its plan reads) is shared by every node of the model.
        self._pointmap = pointmap
        self._model = model
        self._points = pointmap.for_model(model)
        self._places = _places(self._points)  # point register -> its place in the readings' arrays
        # Raw registers and the wall-clock time each was read (NaN: never), in two arrays in the
        # plan's register order (2 + 8 bytes a register, where objects would take ~130).
        self._slots = _slots(plan)  # register -> its place in the arrays
        count = len(self._slots)
        self._raw = (array("H", bytes(2 * count)), array("d", [math.nan]) * count)
        self._readings = _Readings.unread(self._raw[1], _point_slots(self._points, plan))
        self.readings: Mapping[int, Reading] = _ReadingsView(self, self._places)
        self._shapes = _shapes(self._points, plan)

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
        made = readings.made.get(at)
        if made is None:
            made = readings.reading(at)
            if made is not UNREAD:
                readings.made[at] = made
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

    def store(self, start: int, words: Sequence[int], timestamp: float) -> Changes:
        """Keep registers the meter returned; return the points whose reading changed.

        Only what the read changed is decoded: a point whose registers (and scale register) hold
        the words they held, with a reading of them, keeps its reading; its time is its registers'.
        On a plan read where every point has such a reading (most reads, polling), only the points
        of the words that changed are looked at.
        """
        count = len(words)
        shape = self._shape(start, count)
        # New arrays, swapped in whole: a reader on another thread sees one read or the other, never
        # a 32-bit value made of two reads.
        before = self._raw
        stored = array("H", before[0]), array("d", before[1])
        if shape.first is not None:  # the read's registers are consecutive in the arrays (a plan read)
            first = shape.first
            old = before[0][first : first + count]
            stored[0][first : first + count] = array("H", words)
            stored[1][first : first + count] = array("d", (timestamp,)) * count
        else:
            old = array("H", bytes(2 * count))
            for index, (slot, word) in enumerate(zip(shape.slots, words)):
                if slot is not None:
                    old[index] = before[0][slot]
                    stored[0][slot] = word
                    stored[1][slot] = timestamp
        self._raw = stored
        differ = {index for index, (was, word) in enumerate(zip(old, words)) if was != word}
        readings = self._readings
        renewed = readings.copy(stored[1])
        renewed.forget_made(shape)
        kinds = renewed.kinds
        covered = shape.covered
        if shape.span is not None and _UNFRESH not in kinds[slice(*shape.span)].translate(_FRESHNESS):
            touching = shape.touching
            covered = tuple(covered[i] for i in sorted({i for index in differ for i in touching[index]}))
        changes: list[int] = []
        for point, at, looked_at, offset in covered:
            if kinds[at] & 3 <= _LAST_FRESH and differ.isdisjoint(looked_at):
                if offset is not None:
                    renewed.read_apart(at, timestamp)  # its words and scale as they were: only its time is new
            elif offset is not None:
                self._renew(readings, renewed, point, at, words[offset : offset + point.count], timestamp, changes)
            elif (found := self.block(point.registers)) is not None:  # a point this read shares with another
                self._renew(readings, renewed, point, at, *found, changes)
        slots = self._slots
        for point, at in shape.scaled:
            # A point read elsewhere changes only if its scale register, read here, changed.
            if _word(before, slots, point.scale_register) != _word(stored, slots, point.scale_register):
                found = self.block(point.registers)
                if found is not None:
                    self._renew(readings, renewed, point, at, *found, changes)
        self._readings = renewed
        return Changes(self._points, readings, renewed, changes)

    def _renew(
        self,
        readings: _Readings,
        renewed: _Readings,
        point: Point,
        at: int,
        words: Sequence[int],
        read_at: float,
        changes: list[int],
    ) -> None:
        """Decode a point's words into `renewed`; its place goes in `changes` when its value or
        quality is unlike in `readings`."""
        scale = self.scale_of(point)
        if scale is not None:
            value = point.decode(words, scale)
            no_data = value is None and point.encoding is not Encoding.STRING
            quality = _NO_DATA if no_data else _GOOD
        elif point.scale_register is not None and self.word(point.scale_register) is None:
            return  # an unread scale register: wait for it
        else:
            value, quality = None, _NO_DATA  # one that holds garbage: no usable value
        kind = _FORMS[type(value)] << 2 | quality
        was = readings.kinds[at]
        if kind == was and value == readings.value(at):
            renewed.read_apart(at, read_at)
            return
        renewed.set(at, value, kind, read_at)
        if (was ^ kind) & 3 or value != readings.value(at):  # not merely 5 where it was 5.0
            changes.append(at)

    def _shape(self, start: int, count: int) -> _Shape:
        """What a read of `count` registers from `start` touches: where its registers are kept, the
        points it covers, and those read elsewhere but scaled by a scale register it covers. Kept per
        read (the poll plan's, and those of write read-backs up to MAX_READ_SHAPES), shared by the
        nodes of the model."""
        shape = self._shapes.get((start, count))
        if shape is None:
            registers = range(start, start + count)
            covered = {
                point
                for register in registers
                if (point := self._pointmap.point_at(register)) is not None and self._model in point.models
            }
            scaled = {point for point in self._points if point.scale_register in registers} - covered
            slots = tuple(self._slots.get(register) for register in registers)
            consecutive = slots[0] is not None and slots == tuple(range(slots[0], slots[0] + count))
            places = self._places

            def looked_at(point: Point) -> frozenset[int]:
                """The offsets in the read of the words a point is decoded from (its scale's too)."""
                used = (*point.registers, point.scale_register)
                return frozenset(register - start for register in used if register in registers)

            def offset(point: Point) -> int | None:
                """Where a point's words are in the read, if all of them are."""
                inside = start <= point.register and point.registers.stop <= registers.stop
                return point.register - start if inside else None

            entries = tuple(
                (point, places[point.register], looked_at(point), offset(point))
                for point in sorted(covered, key=_BY_REGISTER)
            )
            spread = [at for _, at, _, _ in entries]
            unbroken = consecutive and bool(spread) and spread == list(range(spread[0], spread[0] + len(spread)))
            shape = _Shape(
                slots,
                slots[0] if consecutive else None,
                entries,
                tuple((point, places[point.register]) for point in sorted(scaled, key=_BY_REGISTER)),
                (spread[0], spread[-1] + 1) if unbroken else None,
                tuple(
                    tuple(i for i, (_, _, looked, _) in enumerate(entries) if index in looked) for index in range(count)
                ),
            )
            if len(self._shapes) < MAX_READ_SHAPES:
                self._shapes[start, count] = shape
        return shape

    def mark_stale(self) -> Changes:
        """The node went offline: every value it gave is now stale (kept, but flagged)."""
        readings = self._readings
        renewed = readings.copy(readings.raw_times)
        kinds, made = renewed.kinds, renewed.made
        changes = [at for at, kind in enumerate(readings.kinds) if kind & 3 <= _LAST_FRESH]
        for at in changes:
            kinds[at] = kinds[at] & ~3 | _STALE
            made.pop(at, None)
        self._readings = renewed
        return Changes(self._points, readings, renewed, changes)


@dataclass(frozen=True, slots=True)
class Changes:
    """What a store (or the node going stale) changed: the places of the points whose value or
    quality moved, with the readings before and after, of which Reading objects are made only
    for what somebody looks at (most values a poll read changes, no face shows)."""

    points: tuple[Point, ...]  # the model's, by place
    before: _Readings
    after: _Readings
    places: list[int]

    def __len__(self) -> int:
        return len(self.places)

    def __iter__(self) -> Iterator[tuple[Point, int]]:
        points = self.points
        return ((points[at], at) for at in self.places)

    def pair(self, at: int) -> tuple[Reading, Reading]:
        """The readings before and after of the point at this place."""
        return self.before.current(at), self.after.current(at)

    def pairs(self) -> dict[Point, tuple[Reading, Reading]]:
        """Every change made into readings, by point."""
        return {point: self.pair(at) for point, at in self}


_QUALITIES = tuple(Quality)  # a reading's quality, by the low two bits of its kind
_LAST_FRESH = _QUALITIES.index(Quality.NO_DATA)  # the kinds of fresh readings have low bits up to this
_BY_REGISTER = operator.attrgetter("register")
_FORMS = {type(None): 0, int: 1, float: 2, str: 3}  # a reading's value type, by the high bits of its kind
_NONE, _INT, _FLOAT, _TEXT = _FORMS.values()
_GOOD, _NO_DATA, _STALE, _UNKNOWN = (_QUALITIES.index(q) for q in Quality)
_UNFRESH = 1
_FRESHNESS = bytes(_UNFRESH if kind & 3 > _LAST_FRESH else 0 for kind in range(256))  # kind -> _UNFRESH or 0


class _Readings:
    """A node's decoded readings, in its model's point order: the numbers in an array, each one's
    kind (quality and value type) in a byte, the few texts by place (9 bytes a point, where a
    Reading object, its value and a dictionary slot take ~110). A reading's time
    is not kept apart from its registers': it is when the least recently read of them was read
    (``raw_times``, the raw registers' times swapped in with these readings), so a read that
    changes no word of a point has nothing to do for it; only the points the plan does not read
    keep theirs (``apart``: a write's read-back). Never changed once swapped in but for ``made``,
    the Reading objects faces asked for, by place (kept so that a face comparing by identity sees a new
    object only when the reading changed, and so that a value read thousands of times a second is
    made once), and ``stamps``."""

    __slots__ = ("apart", "kinds", "made", "numbers", "raw_times", "slots", "stamps", "texts")

    def __init__(
        self,
        numbers: array[float],
        kinds: bytearray,
        texts: dict[int, str],
        made: dict[int, Reading],
        raw_times: array[float],
        slots: tuple[tuple[int, ...] | None, ...],
        apart: dict[int, float],
    ) -> None:
        self.numbers, self.kinds, self.texts, self.made = numbers, kinds, texts, made
        self.raw_times, self.slots, self.apart = raw_times, slots, apart
        # The made readings' times, one float object per read as the readings of a read share it
        # (24 bytes a reading otherwise); a few dozen, as many as the reads of the node's plan.
        self.stamps: dict[float, float] = {}

    @classmethod
    def unread(cls, raw_times: array[float], slots: tuple[tuple[int, ...] | None, ...]) -> _Readings:
        count = len(slots)
        kind = _NONE << 2 | _UNKNOWN
        return cls(array("d", bytes(8 * count)), bytearray([kind]) * count, {}, {}, raw_times, slots, {})

    def current(self, at: int) -> Reading:
        """The reading at a place, as made for a face or made now (for the writer: not kept)."""
        made = self.made.get(at)
        return self.reading(at) if made is None else made

    def reading(self, at: int) -> Reading:
        quality = self.kinds[at] & 3
        if quality == _UNKNOWN:
            return UNREAD
        timestamp = self.stamp(at)
        shared = None if timestamp is None else self.stamps.setdefault(timestamp, timestamp)
        return Reading(self.value(at), _QUALITIES[quality], shared)

    def stamp(self, at: int) -> float | None:
        """When the reading at a place (one that was read) was read: its least recently read register."""
        slots = self.slots[at]
        if slots is None:
            return self.apart.get(at)
        times = self.raw_times
        return times[slots[0]] if len(slots) == 1 else min(times[slot] for slot in slots)

    def value(self, at: int) -> float | int | str | None:
        form = self.kinds[at] >> 2
        if form == _FLOAT:
            return self.numbers[at]
        if form == _INT:
            return int(self.numbers[at])
        if form == _TEXT:
            return self.texts[at]
        return None

    def copy(self, raw_times: array[float]) -> _Readings:
        """The same readings in new arrays, with the raw registers' times swapped in with them,
        for a writer to change before swapping them in."""
        return _Readings(
            array("d", self.numbers),
            bytearray(self.kinds),
            dict(self.texts),
            dict(self.made),
            raw_times,
            self.slots,
            dict(self.apart),
        )

    def set(self, at: int, value: float | int | str | None, kind: int, timestamp: float) -> None:
        """Set the reading at a place (in a copy not yet swapped in); `kind` as in ``kinds``."""
        if kind >> 2 == _TEXT:
            self.texts[at] = value  # type: ignore[assignment]
        else:
            if self.texts:
                self.texts.pop(at, None)
            self.numbers[at] = 0.0 if value is None else value  # type: ignore[assignment]
        self.kinds[at] = kind
        self.made.pop(at, None)  # made when a face asks
        self.read_apart(at, timestamp)

    def forget_made(self, shape: _Shape) -> None:
        """Drop the Reading objects of the points a read covers: their time is the read's now."""
        made = self.made
        if made:
            span = shape.span
            if span is None:
                gone = [at for _, at, _, _ in shape.covered if at in made]
            elif len(made) < span[1] - span[0]:
                gone = [at for at in made if span[0] <= at < span[1]]
            else:  # a face holds more readings of the node than the read covers (a page of all its values)
                gone = [at for at in range(*span) if at in made]
            for at in gone:
                del made[at]

    def read_apart(self, at: int, timestamp: float) -> None:
        """The time of a reading made of registers the plan does not read (the others' is theirs)."""
        if self.slots[at] is None:
            self.apart[at] = timestamp


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
def _shapes(points: tuple[Point, ...], plan: PollPlan) -> dict[tuple[int, int], _Shape]:
    """What each read shape touches, for the nodes of one model and plan (filled on the bus thread only)."""
    return {}


@functools.cache
def _places(points: tuple[Point, ...]) -> dict[int, int]:
    """Each point's register, with its place in the readings' arrays (shared by the model's nodes)."""
    return {point.register: at for at, point in enumerate(points)}


@functools.cache
def _point_slots(points: tuple[Point, ...], plan: PollPlan) -> tuple[tuple[int, ...] | None, ...]:
    """Each point's registers' places in a node's raw arrays, by its place; None for a point the plan
    does not read whole (shared by the nodes of a model and plan)."""
    slots = _slots(plan)
    return tuple(
        tuple(slots[r] for r in point.registers) if all(r in slots for r in point.registers) else None
        for point in points
    )


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
