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
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from gateway.hub import EVERYTHING
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
    covered: tuple[_Covered, ...]
    # The places of the covered points whose words are all in the read, when they are consecutive
    # (in register order, as places are): a read gives them all its time at once.
    inside: slice | None
    by_offset: dict[int, tuple[_Covered, ...]]  # the covered points a word of the read is used by
    straddling: tuple[_Covered, ...]  # covered points with words outside the read too
    # Points read elsewhere but scaled by a scale register the read covers, by that register's offset.
    scaled: tuple[tuple[int, tuple[tuple[Point, int], ...]], ...]


_Covered = tuple[Point, int, frozenset[int], int | None]
_Raw: TypeAlias = "tuple[array[int], array[float]]"  # a node's raw registers and when each was read (NaN: never)


class NodeCache:
    """Raw registers and decoded readings of one node."""

    def __init__(self, pointmap: PointMap, model: str, plan: PollPlan) -> None:
        # Only the values are the node's own: what depends on the model alone (its points, the
        # registers its plan reads) is shared by every node of the model.
        self._pointmap = pointmap
        self._model = model
        self._points = pointmap.for_model(model)
        self._places = _places(self._points)  # point register -> its place in the readings' arrays
        self.readings: Mapping[int, Reading] = _ReadingsView(self, self._places)
        # Raw registers and the wall-clock time each was read (NaN: never), in two arrays in the
        # plan's register order (2 + 8 bytes a register, where objects would take ~130).
        self._slots = _slots(plan)  # register -> its place in the arrays
        count = len(self._slots)
        self._raw: _Raw = (array("H", bytes(2 * count)), array("d", [math.nan]) * count)
        self._readings = _Readings.unread(self._points, self._slots, self._raw)
        self._shapes = _shapes(self._points, plan)
        self._scales = _scale_slots(self._points, plan)  # the plan's scale registers, by place
        self._scaled = False  # whether every scale register has been read: then decoding can wait

    @property
    def points(self) -> tuple[Point, ...]:
        """The model's points, by their place in the readings."""
        return self._points

    def tracks(self, register: int) -> bool:
        """Whether the poll plan reads this register."""
        return register in self._slots

    def word(self, register: int) -> tuple[int, float] | None:
        """A raw register and when it was read, if the plan reads it and it has been read."""
        return _word(self._raw, self._slots, register)  # one reference: a store swaps in a new pair

    def block(self, registers: range) -> tuple[list[int], float] | None:
        """Raw registers and the time of the oldest, all from one read of each (None if any unread)."""
        return _block(self._raw, self._slots, registers)

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
        value, kind = self._readings.resolved(self._places[register])
        return value, _QUALITIES[kind & 3]

    def scale_of(self, point: Point) -> int | None:
        """The power-of-ten exponent that applies to a point now: None while its scale register
        is unread, or holds what no meter would (beyond 10^±MAX_EXPONENT: a garbled reply)."""
        return _scale_of(point, self._raw, self._slots)

    def store(self, start: int, words: Sequence[int], timestamp: float, keen: Container[int] = EVERYTHING) -> Changes:
        """Keep registers the meter returned; return the points among `keen` (registers) whose
        reading changed.

        Only what the read changed is looked at: a point whose registers (and scale register) hold
        the words they held keeps its reading and gets the read's time. Of the others, only the
        keen are decoded now, to tell whether they changed; the rest are decoded when a face asks
        (most values a poll read changes, nobody looks at before the next read changes them again).
        """
        count = len(words)
        shape = self._shape(start, count)
        # New arrays, swapped in whole: a reader on another thread sees one read or the other, never
        # a 32-bit value made of two reads.
        before = self._raw
        stored = array("H", before[0]), array("d", before[1])
        if shape.first is not None:  # the read's registers are consecutive in the arrays (a plan read)
            first = shape.first
            old, read_before = before[0][first : first + count], before[1][first : first + count]
            stored[0][first : first + count] = array("H", words)
            stored[1][first : first + count] = array("d", (timestamp,)) * count
        else:
            old, read_before = array("H", bytes(2 * count)), array("d", bytes(8 * count))
            for index, (slot, word) in enumerate(zip(shape.slots, words)):
                if slot is not None:
                    old[index], read_before[index] = before[0][slot], before[1][slot]
                    stored[0][slot] = word
                    stored[1][slot] = timestamp
        self._raw = stored
        # Decoding can wait once every scale register has been read (a point can then always be decoded).
        self._scaled = self._scaled or all(stored[1][at] == stored[1][at] for at in self._scales)
        lazy = self._scaled and keen is not EVERYTHING
        readings = self._readings
        renewed = readings.copy(stored)
        kinds, times, made = renewed.kinds, renewed.times, renewed.made
        changes: list[int] = []
        if (inside := shape.inside) is not None:
            # Every point all of whose words the read holds was read now, whether or not it changed.
            span = inside.stop - inside.start
            times[inside] = array("d", (timestamp,)) * span
            made[inside] = [None] * span
        if lazy and inside is not None:
            # They are all left to be decoded when asked for, but the keen, decoded now to tell whether
            # they changed; a point the read shares with another read is looked at on its own.
            kinds[inside] = _UNDECODED_KIND * span
            for point, at, _, offset in shape.covered:
                if point.register in keen:
                    found = None if offset is None else (words[offset : offset + point.count], timestamp)
                    self._renew(readings, renewed, point, at, changes, found)
                elif offset is None and (found := _block(stored, self._slots, point.registers)) is not None:
                    renewed.undecoded(at, found[1])
        else:
            self._look_at_changed(shape, words, timestamp, old, read_before, readings, renewed, changes)
        for offset, scaled in shape.scaled:
            # A point read elsewhere changes only if its scale register, read here, did.
            if old[offset] != words[offset] or read_before[offset] != read_before[offset]:  # NaN: first read
                for point, at in scaled:
                    if lazy and point.register not in keen:
                        if (found := _block(stored, self._slots, point.registers)) is not None:
                            renewed.undecoded(at, found[1])
                    else:
                        self._renew(readings, renewed, point, at, changes)
        self._readings = renewed
        if keen is not EVERYTHING:  # decoded before the scale registers were read, yet not asked for
            changes = [at for at in changes if self._points[at].register in keen]
        return Changes(self._points, readings, renewed, changes)

    def _look_at_changed(
        self,
        shape: _Shape,
        words: Sequence[int],
        timestamp: float,
        old: array[int],
        read_before: array[float],
        readings: _Readings,
        renewed: _Readings,
        changes: list[int],
    ) -> None:
        """Decode into `renewed` each point the read covers whose words (or scale) changed, or
        whose reading was stale or unread; the others keep their reading, with the read's time."""
        differ = {index for index, (was, word) in enumerate(zip(old, words)) if was != word}
        if (total := sum(read_before)) != total:  # NaN: words read for the first time are new too
            differ.update(index for index, read_at in enumerate(read_before) if read_at != read_at)
        kinds, times, made = renewed.kinds, renewed.times, renewed.made
        inside = shape.inside
        # Only the points the read may have changed are looked at, unless some reading is not fresh.
        if inside is None or _UNSETTLED in kinds[inside].translate(_SETTLED):
            candidates: Iterable[_Covered] = shape.covered
        else:
            touched = {entry for index in differ for entry in shape.by_offset.get(index, ())}
            candidates = sorted(touched.union(shape.straddling), key=_BY_PLACE)
        for point, at, looked_at, offset in candidates:
            if kinds[at] & 3 <= _LAST_FRESH and differ.isdisjoint(looked_at):
                # Its words and scale as they were, its reading made of them: only its time is new.
                read_at = timestamp if offset is not None else self._oldest(point)
                if times[at] != read_at:
                    times[at] = read_at
                    made[at] = None
            else:
                found = None if offset is None else (words[offset : offset + point.count], timestamp)
                self._renew(readings, renewed, point, at, changes, found)

    def _renew(
        self,
        readings: _Readings,
        renewed: _Readings,
        point: Point,
        at: int,
        changes: list[int],
        found: tuple[Sequence[int], float] | None = None,
    ) -> None:
        """Decode a point's words (`found` with their time, or looked up) into `renewed`; its place
        goes in `changes` when its value or quality is unlike in `readings`."""
        decoded = _decoded(point, renewed.raw, self._slots, found)
        if decoded is None:  # a register or the scale register unread: wait for it
            renewed.times[at], renewed.made[at] = readings.times[at], readings.made[at]
            return
        value, kind, read_at = decoded
        before, was = readings.resolved(at)
        if kind == was and value == before:
            if renewed.times[at] != read_at:
                renewed.times[at] = read_at
                renewed.made[at] = None
            return
        renewed.set(at, value, kind, read_at)
        if (was ^ kind) & 3 or value != before:  # not merely 5 where it was 5.0
            changes.append(at)

    def _oldest(self, point: Point) -> float:
        """When the least recently read register of a point with a reading was read."""
        found = self.block(point.registers)
        assert found is not None  # a point has a reading once all its registers have been read
        return found[1]

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
            inside = [entry[1] for entry in entries if entry[3] is not None]
            span = range(inside[0], inside[-1] + 1) if inside else range(0)
            by_offset: dict[int, list[_Covered]] = {}
            for entry in entries:
                for index in entry[2]:
                    by_offset.setdefault(index, []).append(entry)
            by_scale: dict[int, list[tuple[Point, int]]] = {}
            for point in sorted(scaled, key=_BY_REGISTER):
                by_scale.setdefault(point.scale_register - start, []).append((point, places[point.register]))  # type: ignore[operator]
            shape = _Shape(
                slots,
                slots[0] if consecutive else None,
                entries,
                slice(span.start, span.stop) if inside and inside == list(span) else None,
                {index: tuple(covering) for index, covering in by_offset.items()},
                tuple(entry for entry in entries if entry[3] is None),
                tuple((index, tuple(points)) for index, points in sorted(by_scale.items())),
            )
            if len(self._shapes) < MAX_READ_SHAPES:
                self._shapes[start, count] = shape
        return shape

    def mark_stale(self) -> Changes:
        """The node went offline: every value it gave is now stale (kept, but flagged)."""
        readings = self._readings
        renewed = readings.copy(self._raw)
        kinds, made = renewed.kinds, renewed.made
        changes = [at for at, kind in enumerate(readings.kinds) if kind & 3 <= _LAST_FRESH]
        for at in changes:
            kinds[at] = kinds[at] & ~3 | _STALE
            made[at] = None
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
_BY_PLACE = operator.itemgetter(1)
_FORMS = {type(None): 0, int: 1, float: 2, str: 3}  # a reading's value type, by the high bits of its kind
_NONE, _INT, _FLOAT, _TEXT = _FORMS.values()
_UNDECODED = 4  # the form of a reading whose value is decoded from the raw registers when asked for
_GOOD, _NO_DATA, _STALE = (_QUALITIES.index(q) for q in (Quality.GOOD, Quality.NO_DATA, Quality.STALE))
# Kinds mapped to whether the reading is fresh, for bytes.translate: any stale or unread among many.
_UNSETTLED = 1
_SETTLED = bytes(int(kind & 3 > _LAST_FRESH) for kind in range(256))
_UNDECODED_KIND = bytes([_UNDECODED << 2 | _GOOD])  # a fresh reading to be decoded when asked for


class _Readings:
    """A node's decoded readings, in its model's point order: the numbers in an array, each one's
    kind (quality and value type) in a byte, its time in an array, the few texts by place (25
    bytes a point with ``made``, where a Reading object, its value and a dictionary slot take
    ~110). A reading whose kind says it is not decoded yet is decoded from ``raw``, the raw
    registers as they were when these readings were swapped in, when first asked for. Never
    changed once swapped in but for those decoded values, ``made``, the Reading objects faces
    asked for (kept so that a face comparing by identity sees a new object only when the reading
    changed, and so that a value read thousands of times a second is made once), and ``stamps``."""

    __slots__ = ("kinds", "made", "numbers", "points", "raw", "slots", "stamps", "texts", "times")

    def __init__(
        self,
        numbers: array[float],
        kinds: bytearray,
        times: array[float],
        texts: dict[int, str],
        made: list[Reading | None],
        points: tuple[Point, ...],
        slots: dict[int, int],
        raw: _Raw,
    ) -> None:
        self.numbers, self.kinds, self.times, self.texts, self.made = numbers, kinds, times, texts, made
        self.points, self.slots, self.raw = points, slots, raw  # what an undecoded reading is decoded from
        # The made readings' times, one float object per read as the readings of a read share it
        # (24 bytes a reading otherwise); a few dozen, as many as the reads of the node's plan.
        self.stamps: dict[float, float] = {}

    @classmethod
    def unread(cls, points: tuple[Point, ...], slots: dict[int, int], raw: _Raw) -> _Readings:
        count = len(points)
        kind = _NONE << 2 | _QUALITIES.index(Quality.UNKNOWN)
        return cls(
            array("d", bytes(8 * count)),
            bytearray([kind]) * count,
            array("d", [math.nan]) * count,
            {},
            [UNREAD] * count,
            points,
            slots,
            raw,
        )

    def current(self, at: int) -> Reading:
        """The reading at a place, as made for a face or made now (for the writer: not kept)."""
        made = self.made[at]
        return self.reading(at) if made is None else made

    def reading(self, at: int) -> Reading:
        timestamp = self.times[at]
        shared = None if timestamp != timestamp else self.stamps.setdefault(timestamp, timestamp)  # NaN: never read
        value, kind = self.resolved(at)
        return Reading(value, _QUALITIES[kind & 3], shared)

    def resolved(self, at: int) -> tuple[float | int | str | None, int]:
        """The value at a place and its kind, decoded now if it was left undecoded."""
        kind = self.kinds[at]
        form = kind >> 2
        if form == _FLOAT:
            return self.numbers[at], kind
        if form == _INT:
            return int(self.numbers[at]), kind
        if form == _TEXT:
            return self.texts[at], kind
        if form == _UNDECODED:
            decoded = _decoded(self.points[at], self.raw, self.slots)
            assert decoded is not None  # left undecoded only once it could be decoded
            value, fresh, _ = decoded
            kind = fresh if kind & 3 <= _LAST_FRESH else fresh & ~3 | kind & 3  # stale, it stays so
            # Kept for the next reader: the value first, its kind last, as `copy` copies the kinds
            # first; a copy made meanwhile has it undecoded still, never a kind without its value.
            if kind >> 2 == _TEXT:
                self.texts[at] = value  # type: ignore[assignment]
            else:
                self.numbers[at] = 0.0 if value is None else value  # type: ignore[assignment]
            self.kinds[at] = kind
            return value, kind
        return None, kind

    def copy(self, raw: _Raw) -> _Readings:
        """The same readings in new arrays, of these raw registers, for a writer to change before
        swapping them in."""
        kinds = bytearray(self.kinds)  # before the values: see `resolved`
        return _Readings(
            array("d", self.numbers),
            kinds,
            array("d", self.times),
            dict(self.texts),
            list(self.made),
            self.points,
            self.slots,
            raw,
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
        self.times[at] = timestamp
        self.made[at] = None  # made when a face asks

    def undecoded(self, at: int, timestamp: float) -> None:
        """A fresh reading at a place, read at `timestamp`, to be decoded from ``raw`` when asked."""
        self.kinds[at] = _UNDECODED_KIND[0]
        self.times[at] = timestamp
        self.made[at] = None


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
def _slots(plan: PollPlan) -> dict[int, int]:
    """The registers a plan reads, each with its place in a node's arrays (shared by the plan's nodes)."""
    registers = dict.fromkeys(register for read in plan.reads for register in read.registers)
    return {register: at for at, register in enumerate(registers)}


@functools.cache
def _scale_slots(points: tuple[Point, ...], plan: PollPlan) -> tuple[int, ...]:
    """The places in the raw arrays of the scale registers of a model's points that a plan reads."""
    slots = _slots(plan)
    return tuple(sorted({slots[point.scale_register] for point in points if point.scale_register in slots}))


def _word(raw: _Raw, slots: dict[int, int], register: int) -> tuple[int, float] | None:
    """A raw register and when it was read, if the plan reads it and it has been read."""
    words, times = raw
    at = slots.get(register)
    if at is None or times[at] != times[at]:  # not read by the plan, or not yet (NaN)
        return None
    return words[at], times[at]


def _block(raw: _Raw, slots: dict[int, int], registers: range) -> tuple[list[int], float] | None:
    """Raw registers and the time of the oldest, all from one read of each (None if any unread)."""
    words, times = raw
    places = [slots.get(r) for r in registers]
    if None in places:
        return None
    read = [times[at] for at in places]  # type: ignore[index]
    if any(t != t for t in read):  # NaN: never read
        return None
    return [words[at] for at in places], min(read)  # type: ignore[index]


def _scale_of(point: Point, raw: _Raw, slots: dict[int, int]) -> int | None:
    """The power-of-ten exponent of a point in these raw registers: None while its scale register
    is unread, or holds what no meter would (beyond 10^±MAX_EXPONENT: a garbled reply)."""
    if point.exponent is not None:
        return point.exponent
    if point.scale_register is None:
        return 0
    found = _word(raw, slots, point.scale_register)
    exponent = signed(found[0]) if found else None
    return exponent if exponent is not None and abs(exponent) <= MAX_EXPONENT else None


def _decoded(
    point: Point, raw: _Raw, slots: dict[int, int], found: tuple[Sequence[int], float] | None = None
) -> tuple[float | int | str | None, int, float] | None:
    """A point's value in these raw registers (its words and their time in `found`, if known), its
    kind (as in ``_Readings.kinds``, fresh) and the time of its oldest register; None while a
    register of it or its scale register is unread."""
    found = found or _block(raw, slots, point.registers)
    if found is None:
        return None
    words, read_at = found
    scale = _scale_of(point, raw, slots)
    if scale is not None:
        value = point.decode(words, scale)
        quality = _NO_DATA if value is None and point.encoding is not Encoding.STRING else _GOOD
    elif point.scale_register is not None and _word(raw, slots, point.scale_register) is None:
        return None
    else:
        value, quality = None, _NO_DATA  # a scale register that holds garbage: no usable value
    return value, _FORMS[type(value)] << 2 | quality, read_at
