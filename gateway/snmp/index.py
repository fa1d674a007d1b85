"""The served OIDs in lexicographic order, each with how to read it now: what GET, GETNEXT and
GETBULK look up. Built once the nodes are known; lookups never touch the bus.

An entry's reader returns the pysnmp value, or None while the instance has no value (the meter
has none, or it was not read yet): GET then answers noSuchInstance and GETNEXT skips it. Readers
return the same value object until the value changes, so the BER varbind the fast path answers
with (`varbind`) is encoded once per value change, its name once per OID.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyasn1.codec.ber import encoder
from pysnmp.proto import rfc1902, rfc1905

from gateway.nodes.node import Node
from gateway.pointmap import Point
from gateway.snmp import ber
from gateway.snmp.tree import Column

Oid = tuple[int, ...]
Reader = Callable[[], Any]


@dataclass(frozen=True, slots=True)
class Target:
    """What a SET of a writable instance writes: a point of a node."""

    node: Node
    point: Point
    column: Column


@dataclass(frozen=True, slots=True)
class Entry:
    oid: Oid
    read: Reader
    object_oid: Oid  # the OID of the object (column or scalar) this is an instance of
    target: Target | None = None  # set on writable instances


class OidIndex:
    def __init__(self, entries: Iterable[Entry]) -> None:
        ordered = sorted(entries, key=lambda entry: entry.oid)
        self.oids: list[Oid] = [entry.oid for entry in ordered]
        self._positions = {oid: at for at, oid in enumerate(self.oids)}
        if len(self._positions) != len(self.oids):
            raise ValueError("two entries share an OID")
        self._entries = ordered
        self.readers = [entry.read for entry in ordered]
        self._objects = {entry.object_oid for entry in ordered}
        count = len(ordered)
        self._values: list[Any] = [None] * count  # as last read
        self._encoded: list[Any] = [None] * count  # the value each varbind below was encoded with
        # Encoded when first served (~30 µs each with pyasn1): a start builds none of them.
        self._varbinds: list[bytes] = [b""] * count

    def __len__(self) -> int:
        return len(self.oids)

    def entry(self, oid: Oid) -> Entry | None:
        at = self._positions.get(oid)
        return None if at is None else self._entries[at]

    def get(self, oid: Oid) -> Any:
        """The value of an instance, or noSuchInstance / noSuchObject; a value is kept for `varbind`."""
        at = self._positions.get(oid)
        if at is not None:
            value = self.read(at)
            return rfc1905.noSuchInstance if value is None else value
        if any(oid[:length] in self._objects for length in range(len(oid) - 1, 0, -1)):
            return rfc1905.noSuchInstance
        return rfc1905.noSuchObject

    def position(self, oid: Oid) -> int | None:
        return self._positions.get(oid)

    def position_after(self, oid: Oid) -> int:
        """Where a walk continues after ``oid`` (which need not be served)."""
        return bisect.bisect_right(self.oids, oid)

    def read(self, at: int) -> Any:
        value = self._values[at] = self.readers[at]()
        return value

    def next_served(self, position: int) -> int | None:
        """The position of the first instance at or after ``position`` that has a value (kept for
        `value` and `varbind`); None at the end of the view."""
        read = self.read
        for at in range(position, len(self.oids)):
            if read(at) is not None:
                return at
        return None

    def name(self, at: int) -> Any:
        # Built per answer (a few µs): kept for every OID, they would take ~600 B each.
        return rfc1902.ObjectName(self.oids[at])

    def value(self, at: int) -> Any:
        """The value last read at ``at``."""
        return self._values[at]

    def varbind(self, at: int) -> bytes:
        """The BER varbind of the value last read at ``at``."""
        value = self._values[at]
        if value is not self._encoded[at]:
            self._varbinds[at] = ber.tlv(ber.SEQUENCE, self.name_ber(at) + encoder.encode(value))
            self._encoded[at] = value
        return self._varbinds[at]

    def name_ber(self, at: int) -> bytes:
        """The BER of the OID at ``at``: taken out of its varbind once there is one (not kept twice)."""
        varbind = self._varbinds[at]
        if not varbind:
            return encoder.encode(self.name(at))
        start, _ = ber.header(varbind, 0, ber.SEQUENCE)
        _, end = ber.header(varbind, start, ber.OID)
        return varbind[start:end]

    def bulk(self, starts: list[int], repetitions: int) -> list[tuple[int, int | None]]:
        """The repeated part of a GETBULK response, from each column's start position: rows of
        (column, position served, or None past the end of the view), ending after the first row
        where every column has ended."""
        positions = list(starts)
        end = len(self.oids)
        rows: list[tuple[int, int | None]] = []
        for _ in range(repetitions):
            ended = True
            for column, position in enumerate(positions):
                at = self.next_served(position)
                rows.append((column, at))
                if at is None:
                    positions[column] = end
                else:
                    positions[column] = at + 1
                    ended = False
            if ended:
                break
        return rows
