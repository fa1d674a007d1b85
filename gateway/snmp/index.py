"""The served OIDs in lexicographic order, each with how to read it now: what GET, GETNEXT and
GETBULK look up. Built once the nodes are known; lookups never touch the bus.

An entry's reader returns the pysnmp value, or None while the instance has no value (the meter
has none, or it was not read yet): GET then answers noSuchInstance and GETNEXT skips it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pysnmp.proto import rfc1902, rfc1905

from gateway.nodes.node import Node
from gateway.pointmap import Point
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
        if len(set(self.oids)) != len(self.oids):
            raise ValueError("two entries share an OID")
        self.readers = [entry.read for entry in ordered]
        self._entries = {entry.oid: entry for entry in ordered}
        self._objects = {entry.object_oid for entry in ordered}

    def __len__(self) -> int:
        return len(self.oids)

    def entry(self, oid: Oid) -> Entry | None:
        return self._entries.get(oid)

    def get(self, oid: Oid) -> Any:
        """The value of an instance, or noSuchInstance / noSuchObject."""
        entry = self._entries.get(oid)
        if entry is not None:
            value = entry.read()
            if value is not None:
                return value
            return rfc1905.noSuchInstance
        if any(oid[:length] in self._objects for length in range(len(oid) - 1, 0, -1)):
            return rfc1905.noSuchInstance
        return rfc1905.noSuchObject

    def position_after(self, oid: Oid) -> int:
        """Where a walk continues after ``oid`` (which need not be served)."""
        return bisect.bisect_right(self.oids, oid)

    def first_value(self, position: int) -> tuple[int, Any, Any] | None:
        """(position after it, name, value) of the first instance at or after ``position`` that has a
        value; None at the end of the view."""
        readers = self.readers
        for at in range(position, len(readers)):
            value = readers[at]()
            if value is not None:
                # Built per answer (a few µs): kept for every OID, they would take ~600 B each.
                return at + 1, rfc1902.ObjectName(self.oids[at]), value
        return None
