"""The node service: the bus and the parts of the node layer around one registry of nodes.

Its parts, each a class of its own: the line (configured, or searched for by
:class:`~gateway.nodes.line.LineFinder`), the :class:`~gateway.nodes.registry.NodeRegistry` of known
nodes (saved profiles and meters found), the :class:`~gateway.nodes.scanning.Scanner` (the first
scan and the rescans), the :class:`~gateway.nodes.poller.Poller`, the
:class:`~gateway.nodes.client.NodeClient` (every transaction with a node, and the node's health)
and the :class:`~gateway.nodes.writes.Writer`. The service builds them, runs them and keeps the
state file in step.

``NodeService.run`` is the main coroutine of the bus thread (see :mod:`gateway.threads`). To the
faces on the main loop it is a :class:`~gateway.nodes.api.NodeAPI`: they read ``nodes`` directly
(as read-only views) and call :meth:`NodeService.write` / :meth:`NodeService.write_value` /
:meth:`NodeService.passthrough`, which hop onto the bus thread and come back with the outcome or
a node error (the bus's errors end here).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

import structlog

from gateway.bus import (
    Bus,
    BusClosed,
    BusError,
    BusOverloaded,
    ExceptionReply,
    LineSettings,
    OpenTransport,
    RtuTransport,
)
from gateway.config import Config
from gateway.hub import EventHub
from gateway.nodes.api import NodeStatistics
from gateway.nodes.circuits import circuit_name_problem
from gateway.nodes.client import NodeClient
from gateway.nodes.discovery import boards
from gateway.nodes.errors import (
    LineUnavailable,
    MeterRefused,
    NodeError,
    NodeUnavailable,
    OutOfRange,
    ScanRefused,
    UnknownTarget,
)
from gateway.nodes.events import CircuitsNamed, NodeAdded, NodeRemoved
from gateway.nodes.line import LineFinder, line_settings
from gateway.nodes.node import Node
from gateway.nodes.poller import Poller
from gateway.nodes.profile import NodeProfile
from gateway.nodes.registry import NodeRegistry
from gateway.nodes.scanning import Scanner
from gateway.nodes.writes import Writer
from gateway.pointmap import CIRCUITS, PointMap, load
from gateway.threads import LoopThread

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Longest the bus thread waits for the interpreter while a face holds it on the main thread
#: (Python's default is 5 ms, three inter-frame silences at 115200 baud). The bus thread needs it
#: a few times a transaction (the reply's end, the end of the silence), each wait idle time on the
#: line, and gives it back at once; a busy face switches only when the bus thread asks. Under load
#: at 115200 baud, 0.5 ms cost 2.9 ms per transaction beyond the wire, 0.1 ms 0.9 ms (bench/poll.py).
GIL_SWITCH_INTERVAL = 0.0001


class SavedProfiles(Protocol):
    """Where the profiles of the nodes found are kept across restarts (the identity store)."""

    def saved_profiles(self) -> list[NodeProfile]: ...

    def save_profiles(self, profiles: Sequence[NodeProfile]) -> None:
        """Add or replace these profiles; the others stay (a node is never forgotten by accident)."""

    def forget_profiles(self, addresses: Iterable[int]) -> None:
        """Remove the profiles of these nodes (a user forgot them)."""

    def held(self) -> AbstractContextManager[None]:
        """Hold the store for this process while the service runs (see ``bcpm-gateway forget``)."""

    def saved_line(self) -> tuple[int, str] | None:
        """The line settings (rate, parity) ``serial.baudrate = "auto"`` found last, if ever."""

    def save_line(self, baudrate: int, parity: str) -> None: ...

    def circuit_names(self, address: int) -> Mapping[int, str]: ...

    def name_circuits(self, address: int, names: Mapping[int, str | None]) -> None:
        """Save names of a node's circuits (None or "" removes one)."""


class NodeService:
    def __init__(
        self,
        config: Config,
        saved: SavedProfiles,
        hub: EventHub,
        pointmap: PointMap | None = None,
        open_transport: OpenTransport = RtuTransport.open,
    ) -> None:
        self.config = config
        self.saved = saved
        self.pointmap = pointmap or load()
        line = line_settings(config, saved.saved_line())
        if config.serial.baudrate == "auto":
            known = [profile.address for profile in saved.saved_profiles()]
            scanned = [] if config.gateway.operating_mode == "locked" else config.serial.scan
            open_transport = LineFinder(
                open_transport,
                known + [a for a in scanned if a not in known],
                config.serial.probe_timeout,
                self._line_found,
                first=saved.saved_line(),
            )
        self.bus = Bus(line, open_transport)
        self.registry = NodeRegistry(self.pointmap, lambda: self.bus.settings)
        self.publish = hub.publish
        self.client = NodeClient(
            self.bus,
            retries=config.serial.retries,
            offline_after=config.serial.offline_after,
            probe_timeout=config.serial.probe_timeout,
            publish=hub.publish,
            watched=hub.watched,
        )
        self.poller = Poller(
            self.client, self.registry, interval=config.serial.poll_interval, slow_every=config.serial.slow_every
        )
        self.scanner = Scanner(
            self.bus,
            config.serial.scan,
            probe_timeout=config.serial.probe_timeout,
            patient_timeout=config.serial.timeout,
            known=self.registry.profiles,
            found=self._found,
        )
        self.writer = Writer(self.client, self.registry)
        self.ready = threading.Event()  # set once the nodes are known (saved ones loaded, or a first scan done)
        self._thread: LoopThread | None = None

    @property
    def nodes(self) -> Mapping[int, Node]:
        return self.registry.nodes

    @property
    def line(self) -> LineSettings:
        """The line settings now (the ones found, with ``serial.baudrate = "auto"``)."""
        return self.bus.settings

    # --- on the bus thread ---

    async def run(self) -> None:
        """Serve the line, the known nodes at once, and the discovered ones, until cancelled.

        Every node ever discovered stays known (only ``forget`` removes one): a known node that
        does not answer is served as offline and comes back by itself. A port that is missing or
        fails takes every node offline until the bus has it open again.
        """
        with self.saved.held():
            await self._run()

    async def _run(self) -> None:
        discovery = self.config.gateway.operating_mode == "discovery"
        async with asyncio.TaskGroup() as group:
            group.create_task(self.bus.serve())
            self.registry.add(self.saved.saved_profiles())
            known_at_start = bool(self.nodes)
            group.create_task(self.poller.run())
            if not known_at_start:
                if discovery:
                    await self.scanner.run_first_scan()  # a first start: the line is the scan's alone
                else:
                    log.error("locked mode without saved profiles: nothing to poll; run once in discovery mode")
            log.info("nodes ready", addresses=sorted(self.nodes), boards=boards(n.profile for n in self.nodes.values()))
            self.ready.set()
            if discovery:
                # The known nodes are served now; the rest of serial.scan is looked at beside polling.
                group.create_task(self.scanner.run(self.config.serial.rescan_interval, pass_now=known_at_start))

    async def _ask_rescan(self) -> None:
        if self.config.gateway.operating_mode != "discovery":
            raise ScanRefused("locked mode serves exactly the saved nodes and never scans (gateway.operating_mode)")
        self.scanner.ask()

    async def _forget(self, addresses: Sequence[int]) -> None:
        unknown = sorted(set(addresses) - set(self.nodes))
        if unknown:
            raise UnknownTarget(f"no node known at {', '.join(map(str, unknown))}; nothing forgotten")
        self.saved.forget_profiles(addresses)  # saved first: a failed save forgets nothing
        self.registry.remove(addresses)
        log.info("nodes forgotten", addresses=sorted(set(addresses)), known=sorted(self.nodes))
        self.publish([NodeRemoved(address) for address in sorted(set(addresses))])

    def _line_found(self, line: LineSettings) -> None:
        """``serial.baudrate = "auto"`` found the line settings: use them, and try them first next time."""
        log.info("line settings found", port=line.port, baudrate=line.baudrate, parity=line.parity)
        self.bus.settings = line
        self.saved.save_line(line.baudrate, line.parity)

    def _found(self, profiles: Sequence[NodeProfile]) -> None:
        """New meters: polled from now on, saved, and announced to the faces once they serve."""
        if not profiles:
            return
        self.registry.add(profiles)
        self.saved.save_profiles(profiles)
        if self.ready.is_set():
            for profile in profiles:
                log.info("node found", address=profile.address, model=profile.model, serial=f"0x{profile.serial:08X}")
            self.publish([NodeAdded(profile.address, profile) for profile in profiles])

    # --- from any thread or loop ---

    def statistics(self) -> NodeStatistics:
        reports = self.poller.reports
        return NodeStatistics(
            self.poller.interval, reports[-1] if reports else None, self.bus.stats, self.scanner.progress
        )

    async def wait_ready(self) -> None:
        """Until the nodes are known (discovery done, or the saved profiles loaded)."""
        while not self.ready.is_set():
            await asyncio.sleep(0.05)

    def start(self) -> LoopThread:
        """Run the service on a thread of its own, which gets the interpreter soon when it needs it."""
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        self._thread = LoopThread("bus")
        self._thread.start(self.run)
        return self._thread

    async def write(self, address: int, register: int, words: Sequence[int]) -> None:
        """Write raw registers of one point, checked against the point map, then read them back."""
        await self._on_bus_thread(self.writer.write(address, register, list(words)))

    async def forget(self, addresses: Sequence[int]) -> None:
        """Stop polling and serving these nodes and remove them from the state file (``NodeRemoved``).

        ``UnknownTarget`` when one is not known (then nothing is forgotten); a meter still on the
        line is found again by the next rescan pass in discovery mode.
        """
        await self._on_bus_thread(self._forget(list(addresses)))

    async def rescan(self) -> None:
        """Start a pass of the background scan of the unused addresses of ``serial.scan`` now.

        ``ScanRefused`` in locked mode. Meters it finds come as ``NodeAdded``.
        """
        await self._on_bus_thread(self._ask_rescan())

    async def passthrough(self, unit: int, pdu: bytes) -> bytes:
        """A Modbus request of any function, as a master sent it, to a node in its turn; its reply PDU.

        A write that succeeds is read back so the cache follows the meter. An exception reply is
        ``MeterRefused``. Answered at once, without the bus: an address where discovery found no
        meter and an offline node (``NodeUnavailable``), and a standard request that does not
        parse (``MeterRefused(3)``).
        """
        return await self._on_bus_thread(self.writer.passthrough(unit, pdu))

    def circuit_names(self, address: int) -> Mapping[int, str]:
        return self.saved.circuit_names(address)

    async def name_circuits(self, address: int, names: Mapping[int, str | None]) -> None:
        """Name circuits of a node (None or "" removes a name), saved before this returns; then
        ``CircuitsNamed`` if a name changed. ``WriteRefused`` names the first problem, and nothing
        is saved."""
        if address not in self.nodes:
            raise UnknownTarget(f"no meter node at address {address}")
        for channel, name in names.items():
            if channel not in CIRCUITS:
                raise UnknownTarget(f"no CT channel {channel}: channels are 1-46")
            problem = None if not name else circuit_name_problem(name)
            if problem is not None:
                raise OutOfRange(f"the name of channel {channel} must be {problem}, not {name!r}")
        before = dict(self.saved.circuit_names(address))
        await asyncio.to_thread(self.saved.name_circuits, address, names)  # an fsync: off the faces' loop
        if self.saved.circuit_names(address) != before:
            self.publish([CircuitsNamed(address)])

    async def _on_bus_thread(self, work: Coroutine[Any, Any, T]) -> T:
        """Run work on the bus thread and await it here; a stopped bus thread is an unavailable line."""
        if self._thread is None or self._thread.done:
            work.close()
            raise LineUnavailable("the gateway is not running")
        try:
            future = self._thread.call(work)
        except RuntimeError as error:  # stopped between the check and the call
            raise LineUnavailable(str(error)) from None
        try:
            return await asyncio.wrap_future(future)
        except BusError as error:
            raise node_error(error) from error
        except asyncio.CancelledError:
            # The bus thread cancels what it still runs when it stops; that is an unavailable line
            # to the caller, unless the caller itself is being cancelled.
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                raise LineUnavailable("the bus stopped") from None
            raise

    async def write_value(self, address: int, register: int, value: float) -> None:
        """Write an engineering value, scaled the way the meter scales that point."""
        await self.write(address, register, self.writer.words_for(address, register, value))


def node_error(error: BusError) -> NodeError:
    """What a bus error means to a face."""
    if isinstance(error, ExceptionReply):
        return MeterRefused(error.code, str(error))
    if isinstance(error, BusClosed | BusOverloaded):
        return LineUnavailable(str(error))
    return NodeUnavailable(str(error))  # no reply, or a corrupt one
