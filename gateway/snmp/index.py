"""The served OIDs in lexicographic order, each with how to read it now: what GET, GETNEXT and
GETBULK look up. Built once the nodes are known; lookups never touch the bus.

An object's reader serves every instance of it: called with an instance's suffix, it returns the
plain value (an int, a str or an OID tuple), or None while the instance has no value (the meter
has none, or it was not read yet): GET then answers noSuchInstance and GETNEXT skips it. The
object's syntax makes the pysnmp value of it when pysnmp answers; the BER varbind the fast path
answers with (`varbind`) is encoded once per value change, its name once per OID. A value is read
once an answer (`read`, `next_served`, `bulk` hand it on) and given back to `value` or `varbind`:
nothing depends on what was read before.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyasn1.codec.ber import encoder
from pysnmp.proto import rfc1902, rfc1905

from gateway.nodes.api import NodeView
from gateway.pointmap import Point
from gateway.snmp import ber
from gateway.snmp.tree import Column

Oid = tuple[int, ...]
_NEVER = object()  # no varbind encoded yet
Reader = Callable[[Oid], Any]  # an instance's plain value, by its suffix
Syntax = Callable[[Any], Any]  # the pysnmp value of a plain one


@dataclass(frozen=True, slots=True)
class Target:
    """What a SET of a writable instance writes: a point of a node."""

    node: NodeView
    point: Point
    column: Column


Targets = Callable[[Oid], Target]  # what a SET of an instance writes, by its suffix


@dataclass(frozen=True, slots=True)
class Entry:
    object_oid: Oid  # the OID of the object (column or scalar) this is an instance of
    suffix: Oid  # the instance's own part: its OID is object_oid + suffix
    read: Reader  # the object's: the same for every instance of it
    syntax: Syntax  # the pysnmp type of the object's values
    targets: Targets | None = None  # the object's, if it is writable

    @property
    def oid(self) -> Oid:
        return self.object_oid + self.suffix


class OidIndex:
    """Kept by object, as the tree is: each object's OID once, and the suffixes of its instances,
    one tuple of them shared by every object with the same rows (every column of a table, for the
    same nodes), and one reader and syntax per object. Per instance only the varbind last served
    and the value it was encoded from are kept: two list slots (16 bytes) an instance, and the
    varbind once served. Positions number the instances in OID order, objects
    never nesting."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        # Taken one entry at a time, keeping of each only its suffix (once per distinct suffix):
        # holding every entry until sorted (some 85,000 objects, 5 MB, with 32 nodes) left the
        # interpreter's small-object arenas that much larger for good, part used, never returned.
        first: dict[Oid, Entry] = {}  # by object
        by_object: dict[Oid, list[Oid]] = {}  # the suffixes of its instances
        names: dict[Oid, Oid] = {}
        for entry in entries:
            object_oid = entry.object_oid
            known = first.setdefault(object_oid, entry)
            if (entry.read, entry.syntax, entry.targets) != (known.read, known.syntax, known.targets):
                raise ValueError(f"the instances of object {object_oid} are read or written differently")
            by_object.setdefault(object_oid, []).append(names.setdefault(entry.suffix, entry.suffix))
        self._objects: list[Oid] = sorted(by_object)
        for before, after in zip(self._objects, self._objects[1:]):
            if after[: len(before)] == before:
                raise ValueError(f"object {after} is inside object {before}")
        rows: dict[tuple[Oid, ...], tuple[Oid, ...]] = {}
        self._suffixes: list[tuple[Oid, ...]] = []
        self._starts: list[int] = []  # each object's first position, then the count of instances
        self._readers: list[Reader] = []  # by object
        self._syntaxes: list[Syntax] = []  # by object
        self._targets: list[Targets | None] = []  # by object
        count = 0
        for object_oid in self._objects:
            suffixes = tuple(sorted(by_object.pop(object_oid)))
            if any(a == b for a, b in zip(suffixes, suffixes[1:])):
                raise ValueError("two entries share an OID")
            known = first[object_oid]
            self._suffixes.append(rows.setdefault(suffixes, suffixes))
            self._readers.append(known.read)
            self._syntaxes.append(known.syntax)
            self._targets.append(known.targets)
            self._starts.append(count)
            count += len(suffixes)
        self._starts.append(count)
        self._count = count
        self._encoded: list[Any] = [_NEVER] * count  # the value each varbind below was encoded from
        # Encoded when first served (~30 µs each with pyasn1): a start builds none of them.
        self._varbinds: list[bytes] = [b""] * count

    def __len__(self) -> int:
        return self._count

    def entry(self, oid: Oid) -> Entry | None:
        at = self.position(oid)
        if at is None:
            return None
        number = self._object_of(at)
        object_oid = self._objects[number]
        return Entry(
            object_oid, oid[len(object_oid) :], self._readers[number], self._syntaxes[number], self._targets[number]
        )

    def get(self, oid: Oid) -> Any:
        """The value of an instance, or noSuchInstance / noSuchObject."""
        at = self.position(oid)
        if at is not None:
            plain = self.read(at)
            return rfc1905.noSuchInstance if plain is None else self.value(at, plain)
        number = self._object_before(oid)
        if number >= 0 and len(oid) > len(self._objects[number]) and self._inside(oid, number):
            return rfc1905.noSuchInstance
        return rfc1905.noSuchObject

    def position(self, oid: Oid) -> int | None:
        number = self._object_before(oid)
        if number < 0 or not self._inside(oid, number):
            return None
        suffixes, suffix = self._suffixes[number], oid[len(self._objects[number]) :]
        at = bisect.bisect_left(suffixes, suffix)
        return self._starts[number] + at if at < len(suffixes) and suffixes[at] == suffix else None

    def position_after(self, oid: Oid) -> int:
        """Where a walk continues after ``oid`` (which need not be served)."""
        number = self._object_before(oid)
        if number < 0:
            return 0
        if self._inside(oid, number):
            suffix = oid[len(self._objects[number]) :]
            return self._starts[number] + bisect.bisect_right(self._suffixes[number], suffix)
        return self._starts[number + 1]  # past an object that does not hold it: after all of that object

    def _object_before(self, oid: Oid) -> int:
        """The last object at or before ``oid`` in OID order (-1: none); the only one that can hold it."""
        return bisect.bisect_right(self._objects, oid) - 1

    def _inside(self, oid: Oid, number: int) -> bool:
        object_oid = self._objects[number]
        return oid[: len(object_oid)] == object_oid

    def _object_of(self, at: int) -> int:
        return bisect.bisect_right(self._starts, at) - 1

    def oid(self, at: int) -> Oid:
        number = self._object_of(at)
        return self._objects[number] + self._suffixes[number][at - self._starts[number]]

    def read(self, at: int) -> Any:
        """The plain value at ``at`` now (None: none)."""
        number = self._object_of(at)
        return self._readers[number](self._suffixes[number][at - self._starts[number]])

    def all_have_values(self) -> bool:
        """Every instance has a value now (every node was read once)."""
        return all(self.read(at) is not None for at in range(len(self)))

    def next_served(self, position: int) -> tuple[int, Any] | None:
        """The first instance at or after ``position`` that has a value: its position and plain
        value; None at the end of the view."""
        read = self.read
        for at in range(position, self._count):
            plain = read(at)
            if plain is not None:
                return at, plain
        return None

    def name(self, at: int) -> Any:
        # Built per answer (a few µs): kept for every OID, they would take ~600 B each.
        return rfc1902.ObjectName(self.oid(at))

    def value(self, at: int, plain: Any) -> Any:
        """The pysnmp value of the instance at ``at`` for a plain value read there."""
        return self._syntaxes[self._object_of(at)](plain)

    def varbind(self, at: int, plain: Any) -> bytes:
        """The BER varbind of the instance at ``at`` with a plain value read there."""
        if plain != self._encoded[at]:
            self._varbinds[at] = ber.tlv(ber.SEQUENCE, self.name_ber(at) + encoder.encode(self.value(at, plain)))
            self._encoded[at] = plain
        return self._varbinds[at]

    def name_ber(self, at: int) -> bytes:
        """The BER of the OID at ``at``: taken out of its varbind once there is one (not kept twice)."""
        varbind = self._varbinds[at]
        if not varbind:
            return encoder.encode(self.name(at))
        start, _ = ber.header(varbind, 0, ber.SEQUENCE)
        _, end = ber.header(varbind, start, ber.OID)
        return varbind[start:end]

    def bulk(self, starts: list[int], repetitions: int) -> list[tuple[int, tuple[int, Any] | None]]:
        """The repeated part of a GETBULK response, from each column's start position: rows of
        (column, what `next_served` gives: position and plain value, or None past the end of the
        view), ending after the first row where every column has ended."""
        positions = list(starts)
        end = self._count
        rows: list[tuple[int, tuple[int, Any] | None]] = []
        for _ in range(repetitions):
            ended = True
            for column, position in enumerate(positions):
                served = self.next_served(position)
                rows.append((column, served))
                if served is None:
                    positions[column] = end
                else:
                    positions[column] = served[0] + 1
                    ended = False
            if ended:
                break
        return rows
