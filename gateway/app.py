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
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address
from typing import Any, Protocol, runtime_checkable

import structlog

from gateway import systemd
from gateway.bacnet import BacnetFace, DevicePlan, device_plan, install_stack
from gateway.bacnet.bdt import load_bdt, parse_bdt
from gateway.config import Config
from gateway.cpu import CpuBudget, datagrams_dropped
from gateway.errors import ConfigError, ConfigProblem
from gateway.hub import EventHub
from gateway.logging import event_counts
from gateway.modbus_tcp import ModbusTcpFace
from gateway.nodes.history import History
from gateway.nodes.service import NodeService
from gateway.service import shipped
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
    history: History | None = None  # the currents' history for the trends, kept across restarts
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
        from gateway.web.source import Wiring

        wiring = Wiring(
            restart=gateway.restart.set,
            device_names=lambda: bacnet_plan(gateway).node_devices(),
            history=gateway.history,
            ede=lambda: ede_list(gateway),
            check=check_startable,
            check_bdt=check_bdt,
            shipped=lambda name: shipped(name).read_bytes(),
            upstream=lambda: upstream_status(gateway),
            cpu=lambda: cpu_status(gateway.budget),
        )
        faces.append(WebFace(config, nodes, hub, wiring))
    if config.upstream.mode == "modbus_rtu":
        faces.append(UpstreamFace(config.upstream, nodes))
    return faces


def ede_list(gateway: Gateway) -> str:
    """The EDE point list of the BACnet devices as they are now (names and IDs written included)."""
    from gateway.bacnet.ede import ede_text  # only a download needs it

    return ede_text(bacnet_plan(gateway), "BCPM gateway")


def check_startable(config: Config) -> None:
    """What a configuration must pass beyond its keys for the gateway to start with it on this
    board: a BBMD's table (as `check-config` reads it), and addresses the faces listen on that
    are this board's. ConfigError or BdtError saying why not."""
    if config.bacnet.enabled and config.bacnet.bbmd:
        load_bdt(config.bacnet)
    bacnet, snmp, modbus = config.bacnet, config.snmp, config.modbus_tcp
    listening = (
        ("bacnet.address", bacnet.enabled, str(bacnet.address), bacnet.address.ip),
        ("snmp.address", snmp.enabled, snmp.address, IPv4Address(snmp.address)),
        ("modbus_tcp.address", modbus.enabled, modbus.address, IPv4Address(modbus.address)),
    )
    problems = [
        ConfigProblem(key, shown, "an address of this board (or 0.0.0.0): a face must listen there after the restart")
        for key, enabled, shown, address in listening
        if enabled and not _local(address)
    ]
    if problems:
        raise ConfigError(problems)


def _local(address: IPv4Address) -> bool:
    """Whether this board has the address (or it is the wildcard)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def check_bdt(text: str, config: Config) -> None:
    """A BBMD table as the BACnet face would take it with this configuration: BdtError if not."""
    parse_bdt(text, (config.bacnet.address.ip, config.bacnet.port))


def bacnet_plan(gateway: Gateway) -> DevicePlan:
    """The BACnet devices as the face plans them now, one per node served (names and IDs
    written included): what the web face shows and the EDE list it hands out."""
    nodes = gateway.nodes
    return device_plan(
        gateway.config.bacnet, gateway.identities.state, nodes.pointmap, [n.profile for n in nodes.nodes.values()]
    )


@contextlib.asynccontextmanager
async def running(
    config: Config, budget: CpuBudget | None = None, history: History | None = None
) -> AsyncIterator[Gateway]:
    """Start the gateway; stop it cleanly when the block ends. `budget`: the pace of the running
    loop (see `gateway.cpu`), which leaves the bus thread its CPU first. `history`: the currents'
    history of a life before (see `kept_history`), sampled on from here."""
    for warning in config.warnings:
        log.warning("config", detail=warning)
    identities = IdentityStore(StateStore(config.gateway.state_file))
    hub = EventHub(asyncio.get_running_loop())
    nodes = NodeService(config, identities, hub)
    thread = nodes.start()
    if budget is not None:
        budget.protect(thread.native_id)
    gateway = Gateway(config, hub, identities, nodes, thread, budget, history=kept_history(config, history, nodes))
    gateway.faces = build_faces(gateway)
    gateway.face_tasks = [asyncio.create_task(face.run(), name=type(face).__name__) for face in gateway.faces]
    sampling = asyncio.create_task(gateway.history.run(nodes)) if gateway.history else None
    try:
        await _listening(gateway)
        yield gateway
    finally:
        for task in (*gateway.face_tasks, *([sampling] if sampling else [])):
            task.cancel()
        if sampling is not None:
            await asyncio.gather(sampling, return_exceptions=True)
        results = await asyncio.gather(*gateway.face_tasks, return_exceptions=True)
        thread.stop()
        if thread.done:
            await thread.wait()  # raise what ended the bus thread, if anything did
        for result in results:
            if isinstance(result, Exception):
                raise result


def kept_history(config: Config, before: History | None, nodes: NodeService) -> History | None:
    """The currents' history for the trends (the web face's): the one before, while its length
    stays the same; None without the web face or with ``web.trend_hours = 0``."""
    hours = config.web.trend_hours if config.web.enabled else 0
    if not hours:
        return None
    if before is not None and before.hours == hours:
        return before
    return History(hours, nodes.pointmap)


async def serve(load: Callable[[], Config], budget: CpuBudget | None = None) -> None:
    """Run until SIGTERM or SIGINT; an error on the bus thread ends the gateway with that error.

    A restart request (BACnet ReinitializeDevice, the web face) stops everything and starts again
    from a fresh ``load()`` of the configuration, in the same process; the currents' history goes
    on. `budget`: see `running`.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    history: list[History | None] = [None]  # the life before's, for the next
    try:
        while await _serve_once(load(), stop, budget, history):
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


async def _serve_once(
    config: Config, stop: asyncio.Event, budget: CpuBudget | None, history: list[History | None]
) -> bool:
    """Run one life of the gateway; True when it ended for a restart. `history` holds the
    currents' history from one life to the next."""
    loop = asyncio.get_running_loop()
    async with running(config, budget, history[0]) as gateway:
        history[0] = gateway.history
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
