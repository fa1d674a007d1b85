"""The events the node layer publishes on the :class:`~gateway.hub.EventHub`: values, alarms,
nodes going offline and back, nodes found and forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.hub import Shown
from gateway.nodes.cache import Reading
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import Point


@dataclass(frozen=True, slots=True)
class ValueChanged(Shown):
    address: int
    point: Point
    old: Reading
    new: Reading

    @property
    def shown_as(self) -> tuple[int, int]:
        return self.address, self.point.register


@dataclass(frozen=True, slots=True)
class AlarmChanged:
    """A transition of an alarm status bitmap (per channel, voltage pair or global)."""

    address: int
    point: Point
    old_bits: int | None
    new_bits: int

    @property
    def raised(self) -> int:
        return self.new_bits & ~(self.old_bits or 0)

    @property
    def cleared(self) -> int:
        return (self.old_bits or 0) & ~self.new_bits


@dataclass(frozen=True, slots=True)
class NodeOnline:
    address: int


@dataclass(frozen=True, slots=True)
class NodeOffline:
    address: int
    reason: str


@dataclass(frozen=True, slots=True)
class RegistersRead:
    """A block of a node's registers was read into the cache (published with what it changed)."""

    address: int
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class NodeAdded:
    """A meter found after the gateway started serving (see ``serial.rescan_interval``)."""

    address: int
    profile: NodeProfile


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    """A node a user forgot: no longer polled, saved or served (found again only if it answers a rescan)."""

    address: int


@dataclass(frozen=True, slots=True)
class CircuitsNamed:
    """A user named (or unnamed) circuits of a node; the names are the node API's `circuit_names`."""

    address: int


NodeEvent = (
    ValueChanged | AlarmChanged | NodeOnline | NodeOffline | RegistersRead | NodeAdded | NodeRemoved | CircuitsNamed
)
