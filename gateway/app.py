"""The composition root: builds the gateway from a Config and runs it until told to stop.

    main loop  : signals, the event hub, the protocol faces
    bus thread : the bus, discovery, the poll loop (gateway.nodes.service)

Every face is built from the same parts, each taking those it needs, in this order: its
settings, the node API (`gateway.nodes.api`), the event hub, the identity store
(`gateway.state.IdentityStore`) and a callback that restarts the gateway. The gateway reports
ready once every face listens on its ports.

Shutdown is the tree unwinding: SIGTERM sets the stop event, the bus thread is cancelled and
joined, and an error on either side ends the whole gateway with that error.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import structlog

from gateway import systemd
from gateway.bacnet import BacnetFace, device_plan, install_stack
from gateway.config import Config
from gateway.cpu import CpuBudget, datagrams_dropped
from gateway.hub import EventHub
from gateway.logging import event_counts
from gateway.modbus_tcp import ModbusTcpFace
from gateway.nodes.service import NodeService
from gateway.snmp import SnmpFace
from gateway.state import IdentityStore, StateStore
from gateway.threads import LoopThread
from gateway.upstream import UpstreamFace

log = structlog.get_logger(__name__)

STATUS_EVERY = 30.0  # seconds between status lines in the log


class Face(Protocol):
    """A northbound protocol face: serves its protocol from the node cache until cancelled.

    ``run`` first binds its ports (or checks they can be bound) and sets ``listening``; a face
    that cannot ends ``run`` with the reason, and the gateway does not start.
    """

    listening: asyncio.Event

    async def run(self) -> None: ...


@runtime_checkable
class Reloadable(Protocol):
    """A face with something to re-read on SIGHUP without a restart."""

    def reload(self) -> None: ...


@runtime_checkable
class Counting(Protocol):
    """A face that counts what no PeerEvents class does; the status line shows its counts."""

    @property
    def counts(self) -> dict[str, int]: ...


@runtime_checkable
class ServesUpstream(Protocol):
    """The face that serves the upstream serial port: the Modbus RTU slave, or the BACnet face
    whose router has its MS/TP port there. The status line and the web face show its counters."""

    def upstream_counts(self) -> dict[str, int]: ...


@dataclass(slots=True)
class Gateway:
    """A running gateway, for the faces, the command line and tests that drive it."""

    config: Config
    hub: EventHub
    identities: IdentityStore
    nodes: NodeService
    thread: LoopThread  # the bus thread
    budget: CpuBudget | None = None  # the pace of the faces' loop, when it has one
    restart: asyncio.Event = field(default_factory=asyncio.Event)  # set to restart in-process
    faces: list[Face] = field(default_factory=list)
    face_tasks: list[asyncio.Task[None]] = field(default_factory=list)


def build_faces(gateway: Gateway) -> list[Face]:
    """The faces the configuration enables."""
    config, nodes, hub = gateway.config, gateway.nodes, gateway.hub
    faces: list[Face] = []
    if config.bacnet.enabled:
        install_stack()  # bacpypes3's workarounds are process-wide: in place before any device is built
        mstp = config.upstream if config.upstream.mode == "mstp" else None
        faces.append(BacnetFace(config.bacnet, nodes, hub, gateway.identities, gateway.restart.set, mstp))
    if config.modbus_tcp.enabled:
        faces.append(ModbusTcpFace(config.modbus_tcp, nodes))
    if config.snmp.enabled:
        faces.append(SnmpFace(config.snmp, nodes, hub, gateway.identities))
    if config.web.enabled:
        from gateway.web.face import WebFace  # its libraries load only when it is on (it is off by default)

        # it shows each node's BACnet device ID and name now (written ones included), as the BACnet face plans them
        devices = gateway.identities
        web = WebFace(
            config,
            nodes,
            hub,
            gateway.restart.set,
            lambda: device_plan(config.bacnet, devices.state, nodes.pointmap).node_devices(),
        )
        web.source.upstream = lambda: upstream_status(gateway)
        web.source.cpu = lambda: cpu_status(gateway.budget)
        faces.append(web)
    if config.upstream.mode == "modbus_rtu":
        faces.append(UpstreamFace(config.upstream, nodes))
    return faces


@contextlib.asynccontextmanager
async def running(config: Config, budget: CpuBudget | None = None) -> AsyncIterator[Gateway]:
    """Start the gateway; stop it cleanly when the block ends. `budget`: the pace of the running
    loop (see `gateway.cpu`), which leaves the bus thread its CPU first."""
    for warning in config.warnings:
        log.warning("config", detail=warning)
    identities = IdentityStore(StateStore(config.gateway.state_file))
    hub = EventHub(asyncio.get_running_loop())
    nodes = NodeService(config, identities, hub)
    thread = nodes.start()
    if budget is not None:
        budget.protect(thread.native_id)
    gateway = Gateway(config, hub, identities, nodes, thread, budget)
    gateway.faces = build_faces(gateway)
    gateway.face_tasks = [asyncio.create_task(face.run(), name=type(face).__name__) for face in gateway.faces]
    try:
        await _listening(gateway)
        yield gateway
    finally:
        for task in gateway.face_tasks:
            task.cancel()
        results = await asyncio.gather(*gateway.face_tasks, return_exceptions=True)
        thread.stop()
        if thread.done:
            await thread.wait()  # raise what ended the bus thread, if anything did
        for result in results:
            if isinstance(result, Exception):
                raise result


async def serve(load: Callable[[], Config], budget: CpuBudget | None = None) -> None:
    """Run until SIGTERM or SIGINT; an error on the bus thread ends the gateway with that error.

    A restart request (BACnet ReinitializeDevice) stops everything and starts again from a
    fresh ``load()`` of the configuration, in the same process. `budget`: see `running`.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        while await _serve_once(load(), stop, budget):
            log.info("restarting")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _listening(gateway: Gateway) -> None:
    """Until every face listens; a face that ended instead raises why (the gateway does not start)."""
    for face, task in zip(gateway.faces, gateway.face_tasks, strict=True):
        listening = asyncio.ensure_future(face.listening.wait())
        try:
            await asyncio.wait((listening, task), return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()
        if not face.listening.is_set():
            task.result()  # the face's error
            raise RuntimeError(f"{task.get_name()} ended before listening")


def reload(gateway: Gateway) -> None:
    """SIGHUP: every face re-reads what it can without a restart."""
    log.info("reload")
    for face in gateway.faces:
        if isinstance(face, Reloadable):
            face.reload()


async def _serve_once(config: Config, stop: asyncio.Event, budget: CpuBudget | None) -> bool:
    """Run one life of the gateway; True when it ended for a restart."""
    loop = asyncio.get_running_loop()
    async with running(config, budget) as gateway:
        loop.add_signal_handler(signal.SIGHUP, reload, gateway)
        waits: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(gateway.thread.wait()): "bus thread",
            asyncio.ensure_future(stop.wait()): "signal",
            asyncio.ensure_future(gateway.restart.wait()): "restart",
            # A face serves until cancelled: one that ends (a port it cannot bind, a bad bdt.ini)
            # ends the gateway with its error rather than leaving a protocol silently missing.
            **{asyncio.shield(task): "face" for task in gateway.face_tasks},
        }
        helpers = [
            asyncio.ensure_future(_report_status(gateway)),
            asyncio.ensure_future(systemd.feed_watchdog(lambda: _healthy(gateway))),
            asyncio.ensure_future(_announce_ready(gateway)),
        ]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            for task in (*waits, *helpers):
                task.cancel()
            await asyncio.gather(*waits, *helpers, return_exceptions=True)
        ended = done.pop()
        reason = waits[ended]
        if reason == "bus thread":
            await gateway.thread.wait()  # re-raise the bus thread's error
            raise RuntimeError("the bus thread ended on its own")
        if reason == "face":
            ended.result()  # re-raise the face's error
            raise RuntimeError("a protocol face ended on its own")
        log.info("stopping", reason=reason)
        systemd.notify("RELOADING=1" if reason == "restart" else "STOPPING=1")
        return reason == "restart"


async def _announce_ready(gateway: Gateway) -> None:
    # Serving starts now; discovery (which may wait for meters to boot) reports when it is done.
    systemd.notify("READY=1\nSTATUS=discovering meter nodes")
    await gateway.nodes.wait_ready()
    systemd.notify(f"STATUS=serving {len(gateway.nodes.nodes)} meter nodes")


async def _healthy(gateway: Gateway, timeout: float = 2.0) -> bool:
    """Both event loops answer: the main one (we are running on it) and the bus thread's."""
    if gateway.thread.done:
        return False
    try:
        async with asyncio.timeout(timeout):
            await asyncio.wrap_future(gateway.thread.call(asyncio.sleep(0)))
    except (TimeoutError, RuntimeError):
        return False
    return True


def upstream_status(gateway: Gateway) -> dict[str, Any]:
    """The upstream port as the status line and the web overview show it: its mode, port, rate
    (MAC for MS/TP) and the counters of the face that serves it."""
    upstream = gateway.config.upstream
    if upstream.mode == "off":
        return {"mode": "off"}
    counts = next((face.upstream_counts() for face in gateway.faces if isinstance(face, ServesUpstream)), {})
    mac = {"mac": upstream.mac} if upstream.mode == "mstp" else {}
    return {"mode": upstream.mode, "port": upstream.port, "baudrate": upstream.baudrate, **mac, "counts": counts}


def cpu_status(budget: CpuBudget | None) -> dict[str, Any]:
    """What the line left the faces: the CPU they may take now and how long they were held back
    (with a budget), and the datagrams their sockets dropped meanwhile, by port."""
    paced = (
        {}
        if budget is None
        else {
            "cores": round(budget.quota.cores, 3),
            "faces_rate": round(budget.faces_rate, 3),
            "faces_held_back_s": round(budget.held_back, 3),
        }
    )
    return {**paced, "datagrams_dropped": datagrams_dropped()}


async def _report_status(gateway: Gateway) -> None:
    while True:
        await asyncio.sleep(STATUS_EVERY)
        statistics = gateway.nodes.statistics()
        cycle = statistics.last_cycle
        log.info(
            "status",
            online=sorted(a for a, n in gateway.nodes.nodes.items() if n.health.online),
            offline=sorted(a for a, n in gateway.nodes.nodes.items() if not n.health.online),
            cycle_seconds=round(cycle.duration, 3) if cycle else None,
            wire_seconds=round(cycle.wire_time, 3) if cycle else None,
            bus=asdict(statistics.line),  # an object in the JSON log, not the dataclass's repr
            scan=asdict(statistics.scan),  # "not found yet" (a pass running) or "not there" (passes done)
            cpu=cpu_status(gateway.budget),
            upstream=upstream_status(gateway),
            **{
                type(face).__name__: face.counts
                for face in gateway.faces
                if isinstance(face, Counting) and not isinstance(face, ServesUpstream)  # shown as "upstream"
            },
            peer_events=event_counts(),  # counted, not logged one by one (gateway.logging.PeerEvents)
        )
