"""The node service: the bus, discovery or saved profiles, the poll loop, and validated writes.

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
    Priority,
    RtuTransport,
)
from gateway.config import Config
from gateway.modbus import ILLEGAL_DATA_VALUE
from gateway.nodes.api import NodeStatistics
from gateway.nodes.circuits import circuit_name_problem
from gateway.nodes.client import NodeClient
from gateway.nodes.discovery import AUTO_LINES, LineFinder, boards
from gateway.nodes.errors import (
    LineUnavailable,
    MeterRefused,
    NodeError,
    NodeUnavailable,
    NotWritable,
    OutOfRange,
    ScanRefused,
    UnknownTarget,
    WriteRefused,
)
from gateway.nodes.events import CircuitsNamed, EventHub, NodeAdded, NodeRemoved
from gateway.nodes.modbus import malformed, write_registers, written_registers
from gateway.nodes.node import Node
from gateway.nodes.plan import LineCost, PollPlan, Read, poll_plan
from gateway.nodes.poller import Poller
from gateway.nodes.profile import NodeProfile
from gateway.nodes.scanning import Scanner
from gateway.pointmap import CIRCUITS, Encoding, Point, PointMap, load, signed
from gateway.serialport import driver_keys
from gateway.threads import LoopThread

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: What the planner assumes a meter needs to start answering (the BCPM's is not published).
ASSUMED_TURNAROUND = 0.005

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


def line_settings(config: Config, found: tuple[int, str] | None = None) -> LineSettings:
    """The configured line; with ``baudrate = "auto"``, at the settings `found` last (or the first tried)."""
    serial = config.serial
    baudrate, parity = (serial.baudrate, serial.parity) if isinstance(serial.baudrate, int) else found or AUTO_LINES[0]
    return LineSettings(
        port=serial.port,
        baudrate=baudrate,
        parity=parity,
        stopbits=serial.stopbits,
        timeout=serial.timeout,
        max_queue=serial.max_queue,
        **driver_keys(serial),
    )


def line_cost(line: LineSettings) -> LineCost:
    return LineCost(char_time=line.wire_time(1), fixed=ASSUMED_TURNAROUND + line.silence)


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
        self.line = line_settings(config, saved.saved_line())
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
        self.bus = Bus(self.line, open_transport)
        self.nodes: dict[int, Node] = {}
        self.publish = hub.publish
        self.client = NodeClient(
            self.bus,
            retries=config.serial.retries,
            offline_after=config.serial.offline_after,
            probe_timeout=config.serial.probe_timeout,
            publish=hub.publish,
        )
        self.poller = Poller(
            self.client,
            self.nodes,
            self.line,
            interval=config.serial.poll_interval,
            slow_every=config.serial.slow_every,
        )
        self.scanner = Scanner(
            self.bus,
            config.serial.scan,
            probe_timeout=config.serial.probe_timeout,
            patient_timeout=config.serial.timeout,
            known=lambda: {address: node.profile for address, node in self.nodes.items()},
            found=self._found,
        )
        self.ready = threading.Event()  # set once the nodes are known (saved ones loaded, or a first scan done)
        self._plans: dict[str, PollPlan] = {}  # by model
        self._thread: LoopThread | None = None

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
            self._add(self.saved.saved_profiles())
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
        # A new dict, not a changed one: faces on the main loop may be iterating the old one.
        self.nodes = self.poller.nodes = {a: node for a, node in self.nodes.items() if a not in addresses}
        log.info("nodes forgotten", addresses=sorted(set(addresses)), known=sorted(self.nodes))
        self.publish([NodeRemoved(address) for address in sorted(set(addresses))])

    def _line_found(self, line: LineSettings) -> None:
        """``serial.baudrate = "auto"`` found the line settings: use them, and try them first next time."""
        log.info("line settings found", port=line.port, baudrate=line.baudrate, parity=line.parity)
        self.line = self.bus.settings = self.poller.line = line
        self.saved.save_line(line.baudrate, line.parity)

    def _found(self, profiles: Sequence[NodeProfile]) -> None:
        """New meters: polled from now on, saved, and announced to the faces once they serve."""
        if not profiles:
            return
        self._add(profiles)
        self.saved.save_profiles(profiles)
        if self.ready.is_set():
            for profile in profiles:
                log.info("node found", address=profile.address, model=profile.model, serial=f"0x{profile.serial:08X}")
            self.publish([NodeAdded(profile.address, profile) for profile in profiles])

    def _add(self, profiles: Iterable[NodeProfile]) -> None:
        cost = line_cost(self.line)
        nodes = dict(self.nodes)
        for profile in profiles:
            if profile.model not in self._plans:
                self._plans[profile.model] = poll_plan(self.pointmap, profile.model, cost)
            nodes[profile.address] = Node.create(profile, self._plans[profile.model], self.pointmap)
        # A new dict, not a changed one: faces on the main loop may be iterating the old one.
        self.nodes = self.poller.nodes = nodes

    async def _write(self, address: int, register: int, words: Sequence[int]) -> None:
        node, point = self._check_write(address, register, words)
        await self.client.transact(node, write_registers(register, words), Priority.WRITE)
        # The cache follows what the meter now holds (an alarm status keeps its non-latching bits).
        await self._read_back(node, Read(register, point.count), Priority.WRITE)

    async def _passthrough(self, unit: int, pdu: bytes) -> bytes:
        node = self.nodes.get(unit)
        if node is None:
            raise NodeUnavailable(f"no meter node answered at address {unit} during discovery")
        if malformed(pdu):
            raise MeterRefused(ILLEGAL_DATA_VALUE, "a request the meter would not parse")
        if not node.health.online:
            # Its probes will notice when it is back; a master's retries must not eat the bus meanwhile.
            raise NodeUnavailable(f"node {unit} is offline: {node.health.last_error}")
        # Straight to the bus: no retry (the master retries by itself), and no say in the node's
        # health: a meter that ignores an odd request from a master is not offline.
        reply = await self.bus.transact(unit, pdu, Priority.PASSTHROUGH)
        written = written_registers(pdu)
        if written is not None and any(node.cache.tracks(r) for r in written):
            await self._read_back(node, Read(written.start, len(written)), Priority.PASSTHROUGH)
        return reply

    async def _read_back(self, node: Node, read: Read, priority: Priority) -> None:
        """After a write the meter accepted: its registers into the cache, so every face sees them.

        A failed read-back does not undo the write: the next poll catches up.
        """
        try:
            await self.client.read(node, read, priority)
        except BusError as error:
            log.info("read-back after a write failed", address=node.address, register=read.start, error=str(error))

    def _check_write(self, address: int, register: int, words: Sequence[int]) -> tuple[Node, Point]:
        node = self.nodes.get(address)
        if node is None:
            raise UnknownTarget(f"no meter node at address {address}")
        point = self.pointmap.point_at(register)
        if point is None or point.register != register:
            raise UnknownTarget(f"register {register} is not the first register of a point")
        if not point.writable or node.profile.model not in point.models:
            raise NotWritable(f"{point.label} (register {register}) is not writable on a model {node.profile.model}")
        if len(words) != point.count:
            raise OutOfRange(f"{point.label} takes {point.count} registers, got {len(words)}")
        if point.encoding is not Encoding.STRING:
            raw = (
                words[0] << 16 | words[1]
                if point.count == 2
                else (signed(words[0]) if point.encoding is Encoding.INT16 else words[0])
            )
            if not point.accepts(raw):
                raise OutOfRange(f"{point.label} (register {register}) accepts {point.valid_text()}, not {raw}")
        return node, point

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
        await self._on_bus_thread(self._write(address, register, list(words)))

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
        return await self._on_bus_thread(self._passthrough(unit, pdu))

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
        node = self.nodes.get(address)
        point = self.pointmap.point_at(register)
        if node is None or point is None:
            raise UnknownTarget(f"no point at register {register} of address {address}")
        scale = node.cache.scale_of(point)
        if scale is None:
            raise WriteRefused(f"the scale of {point.label} is not known (its scale register unread or garbled)")
        await self.write(address, register, point.encode(value, scale))


def node_error(error: BusError) -> NodeError:
    """What a bus error means to a face."""
    if isinstance(error, ExceptionReply):
        return MeterRefused(error.code, str(error))
    if isinstance(error, BusClosed | BusOverloaded):
        return LineUnavailable(str(error))
    return NodeUnavailable(str(error))  # no reply, or a corrupt one
