"""What a face may use of the node layer: node views, statistics, writes, pass-through.

The faces run on the main event loop; the node layer runs on the bus thread. A face reads the
nodes through read-only views of the live nodes (profile, health, cache: single fields, written
only by the bus thread; mypy refuses a face that writes to them) and awaits writes, which hop to
the bus thread and come back with the outcome or an error of :mod:`gateway.nodes.errors`. It
never touches the bus. Events come from the
:class:`~gateway.hub.EventHub` (:mod:`gateway.nodes.events`). :class:`~gateway.nodes.service.NodeService` is the one
implementation; tests may give a face anything of this shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.bus import BusStats
from gateway.nodes.cache import Quality, Reading
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import Point, PointMap

__all__ = ["CacheView", "CycleReport", "HealthView", "NodeAPI", "NodeStatistics", "NodeView", "ScanProgress"]


class HealthView(Protocol):
    """How a node answers, as the poller keeps it (:class:`~gateway.nodes.node.Health`)."""

    @property
    def online(self) -> bool: ...
    @property
    def consecutive_failures(self) -> int: ...
    @property
    def last_success(self) -> float | None:
        """Wall-clock time of the last transaction the node answered."""
        ...

    @property
    def last_error(self) -> str: ...
    @property
    def transactions(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def went_offline(self) -> int: ...


class CacheView(Protocol):
    """What a node gave us (:class:`~gateway.nodes.cache.NodeCache`), to read."""

    @property
    def readings(self) -> Mapping[int, Reading]:
        """The decoded readings by register."""
        ...

    def reading(self, point: Point) -> Reading: ...

    def current(self, register: int) -> tuple[float | int | str | None, Quality]:
        """A point's value and quality now, leaving nothing behind (for faces that read every point)."""
        ...

    def scale_of(self, point: Point) -> int | None:
        """The power-of-ten exponent that applies to a point now (None while unknown)."""
        ...

    def block(self, registers: range) -> tuple[list[int], float] | None:
        """Raw registers and the time of the oldest (None if any is unread)."""
        ...


class NodeView(Protocol):
    """One meter node as a face sees it: the live node, read-only (no copy per read)."""

    @property
    def address(self) -> int: ...
    @property
    def profile(self) -> NodeProfile: ...
    @property
    def health(self) -> HealthView: ...
    @property
    def cache(self) -> CacheView: ...


@dataclass(frozen=True, slots=True)
class CycleReport:
    duration: float  # seconds from the first request to the last reply
    transactions: int  # block reads planned (a node that fails skips the rest of its share)
    registers: int  # registers those reads ask for
    wire_time: float  # time those frames take on the wire at the line's baud rate


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """Where the search for meters stands, for the status line, /metrics and the web face."""

    running: bool = False  # a scan or a pass is under way
    left: int = 0  # addresses it has still to probe
    passes: int = 0  # scans and passes finished since start
    last_seconds: float | None = None  # how long the last one took
    last_finished: float | None = None  # wall-clock time it finished


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """How polling goes: the configured interval, the last cycle (None before the first), the line;
    and where the search for meters stands."""

    poll_interval: float
    last_cycle: CycleReport | None
    line: BusStats
    scan: ScanProgress


class NodeAPI(Protocol):
    @property
    def nodes(self) -> Mapping[int, NodeView]:
        """The meter nodes by Modbus address; empty until ready."""
        ...

    @property
    def pointmap(self) -> PointMap: ...

    def statistics(self) -> NodeStatistics: ...

    async def wait_ready(self) -> None:
        """Until the nodes are known (discovery done, or the saved profiles loaded)."""
        ...

    async def write(self, address: int, register: int, words: Sequence[int]) -> None:
        """Write raw registers of one point, checked against the point map, then read them back."""
        ...

    async def write_value(self, address: int, register: int, value: float) -> None:
        """Write an engineering value, scaled the way the meter scales that point."""
        ...

    async def forget(self, addresses: Sequence[int]) -> None:
        """Stop polling and serving these nodes and remove them from the state file (``NodeRemoved``)."""
        ...

    async def rescan(self) -> None:
        """Start a pass of the background scan of the unused addresses of ``serial.scan`` now."""
        ...

    async def passthrough(self, unit: int, pdu: bytes) -> bytes:
        """A Modbus request PDU of any function to a node, in its turn on the line; the reply PDU."""
        ...

    def circuit_names(self, address: int) -> Mapping[int, str]:
        """The names users gave a node's circuits, by CT channel (1-46); every face that describes a
        circuit (``Point.circuit``) shows its name."""
        ...

    async def name_circuits(self, address: int, names: Mapping[int, str | None]) -> None:
        """Name circuits of a node (None or "" removes a name), saved before it returns
        (``CircuitsNamed``); ``WriteRefused`` for an unknown node, channel or a name
        `gateway.nodes.circuits.circuit_name_problem` refuses, and then nothing is changed."""
        ...
