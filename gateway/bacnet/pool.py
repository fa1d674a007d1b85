"""The meter objects built in memory, over the whole gateway, and the index of a model's objects.

A node device lists every object of its model (Object_List, Who-Has) but builds one only when a
request names it: a model-A node has 1,828 objects, and as bacpypes3 objects they cost about 5 KB
and 1.5 ms each, so building all of them for eight nodes would take some 80 MB and many seconds
of start-up. At most `ObjectPool.capacity` built objects are kept over the gateway, the least
recently used dropped first, never one a COV subscription watches (those are kept on top). A built
object takes its values from the node cache at once, so a rebuilt object is as fresh as a kept one.

    pool = ObjectPool(capacity=2048)
    pool.added(app, objid)      # a new object: the least recently used beyond capacity dropped
    pool.used(app, objid)       # a request named it again
    pool.show(app, objid)       # about to build it: the changes of what it shows are wanted (pool.shown)
    pool.release(app)           # the application closed: its objects are no longer counted
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from bacpypes3.primitivedata import ObjectIdentifier

from gateway.bacnet.objects import ObjectSpec

__all__ = ["BuildsObjects", "ObjectIndex", "ObjectPool", "shown_registers"]


class BuildsObjects(Hashable, Protocol):
    """A node's application (`applications.NodeApplication`), as the pool sees it."""

    def watched(self, objid: ObjectIdentifier) -> bool:
        """Whether a COV subscription watches that object."""
        ...

    def drop(self, objid: ObjectIdentifier) -> None:
        """Drop that built object from memory."""
        ...

    def shown_by(self, objid: ObjectIdentifier) -> list[tuple[int, int]]:
        """(address, register) of the registers that meter object shows."""
        ...


class ObjectPool:
    """The meter objects built over the whole gateway, the least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._built: OrderedDict[tuple[BuildsObjects, ObjectIdentifier], None] = OrderedDict()
        # (address, register) of each register a built object shows, with how many show it: the
        # node values whose changes the face takes (`Subscription.show_only`)
        self.shown: dict[tuple[int, int], int] = {}

    def __len__(self) -> int:
        return len(self._built)

    def used(self, app: BuildsObjects, objid: ObjectIdentifier) -> None:
        if (app, objid) in self._built:  # not after the app closed
            self._built.move_to_end((app, objid))

    def added(self, app: BuildsObjects, objid: ObjectIdentifier) -> None:
        """Keep a new object; drop the least recently used beyond capacity, but never the new one
        (a request is about to use it) nor one a COV subscription watches (kept on top)."""
        for _ in range(len(self._built)):  # each older entry looked at once at most
            if len(self._built) < self.capacity:
                break
            oldest = next(iter(self._built))
            del self._built[oldest]
            if oldest[0].watched(oldest[1]):
                self._built[oldest] = None  # to the end: kept while subscribed
            else:
                oldest[0].drop(oldest[1])
                self._unshow(*oldest)
        self._built[app, objid] = None

    def show(self, app: BuildsObjects, objid: ObjectIdentifier) -> None:
        """An object is about to be built: its values' changes are wanted from now on (before it
        first reads the cache, so that no change falls in between)."""
        for shown in app.shown_by(objid):
            self.shown[shown] = self.shown.get(shown, 0) + 1

    def release(self, app: BuildsObjects) -> None:
        """The application closed: none of its objects counts any more."""
        for key in [key for key in self._built if key[0] is app]:
            del self._built[key]
            self._unshow(*key)

    def _unshow(self, app: BuildsObjects, objid: ObjectIdentifier) -> None:
        for shown in app.shown_by(objid):
            if self.shown[shown] > 1:
                self.shown[shown] -= 1
            else:
                del self.shown[shown]


@dataclass(frozen=True)
class ObjectIndex:
    """The meter objects of one model, by identifier, name and the registers they show (shared
    by every node of that model)."""

    by_id: dict[ObjectIdentifier, ObjectSpec]
    by_name: dict[str, ObjectIdentifier]
    by_register: dict[int, list[ObjectIdentifier]]

    @staticmethod
    @functools.cache
    def of(specs: tuple[ObjectSpec, ...]) -> ObjectIndex:
        index = ObjectIndex({}, {}, {})
        for spec in specs:
            objid = ObjectIdentifier((spec.object_type, spec.instance))
            index.by_id[objid] = spec
            index.by_name[spec.name] = objid
            for register in shown_registers(spec):
                index.by_register.setdefault(register, []).append(objid)
        return index


def shown_registers(spec: ObjectSpec) -> tuple[int, ...]:
    """The registers a meter object shows: its point's, and its alarm status's."""
    return (spec.point.register, *([spec.alarm.register] if spec.alarm else []))
