"""The BACnet/IP face: serves the router and the meter devices until cancelled.

It checks that its address and port can be listened on (and, as a BBMD, reads its table), says
it is listening, waits for the node service to know its nodes, plans the devices
(`plan.device_plan`; Database_Revision goes up first if there are nodes the state file did not
hold at start), wires the network that runs them (`network.py`) to the builder that makes them
(`building.py`) and the identities that check and save their names and IDs (`identities.py`),
announces them, then follows the node events: every value change, node loss and return shows on
the objects, and COV notifications follow from there; a node found or forgotten gets or loses its
device. An event that cannot be shown is logged and the face goes on; if the event queue
overflowed, every object is refreshed from the cache. The bacpypes3 stack it runs on is installed
by the composition root (`install_stack()`), not here.

With `upstream.mode = "mstp"` the router has a third port, on the MS/TP trunk of the upstream
serial port (`mstp_port.py`); `upstream_counts` are its data link's counters.

With `bbmd = true` the gateway is also a BBMD with the table of `bdt_file`, read at start (a bad
file keeps the BACnet face from starting) and again by `reload()` on SIGHUP (a bad file then
keeps the table in use). With `foreign_bbmd` set it registers as a foreign device for as long as
it serves.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import asdict
from ipaddress import IPv4Interface

import structlog

from gateway.bacnet.bdt import BdtEntry, BdtError, load_bdt
from gateway.bacnet.building import DeviceBuilder
from gateway.bacnet.clock import Clock
from gateway.bacnet.doctor import Doctor
from gateway.bacnet.identities import DeviceIdentities
from gateway.bacnet.ip_port import MAX_APDU
from gateway.bacnet.mstp_port import MSTP_APDU, MstpPort, mstp_port
from gateway.bacnet.network import BacnetNetwork
from gateway.bacnet.plan import device_plan
from gateway.config import BacnetSettings, UpstreamSettings
from gateway.errors import ListenError
from gateway.hub import EventHub, Subscription
from gateway.nodes.api import NodeAPI
from gateway.nodes.events import CircuitsNamed, NodeAdded, NodeOffline, NodeOnline, NodeRemoved, ValueChanged
from gateway.state import IdentityStore

__all__ = ["BacnetBindError", "BacnetFace"]

log = structlog.get_logger(__name__)


class BacnetBindError(ListenError):
    """The configured BACnet/IP address and port cannot be listened on."""


class BacnetFace:
    def __init__(
        self,
        settings: BacnetSettings,
        nodes: NodeAPI,
        hub: EventHub,
        identities: IdentityStore,
        restart: Callable[[], None],
        mstp: UpstreamSettings | None = None,
    ) -> None:
        self.settings = settings
        self._mstp = mstp
        self._nodes = nodes
        self._hub = hub
        self._identities = identities
        self._restart = restart
        self.listening = asyncio.Event()  # set once the address and port are known to be free
        self.network: BacnetNetwork | None = None  # while serving
        self._bdt: tuple[BdtEntry, ...] = ()  # the table in use when a BBMD

    async def run(self) -> None:
        settings, nodes = self.settings, self._nodes
        if settings.bbmd:
            try:
                self._bdt = load_bdt(settings)
            except BdtError as error:
                log.error("bacnet not started", detail=str(error))
                raise
        check_bindable(settings.address, settings.port)
        self.listening.set()
        await nodes.wait_ready()
        events = self._hub.subscribe(ValueChanged, NodeOnline, NodeOffline, NodeAdded, NodeRemoved, CircuitsNamed)
        try:
            profiles = [node.profile for node in nodes.nodes.values()]
            identities = DeviceIdentities(self._identities)
            if {profile.address for profile in profiles} != set(self._identities.at_start.profiles):
                await identities.database_changed()  # nodes found before the devices were planned (a first scan)
            plan = device_plan(settings, self._identities.state, nodes.pointmap, profiles)
            clock = Clock(follows_bacnet=settings.rtc_control == "bacnet")
            mstp = None if self._mstp is None else mstp_port(self._mstp, identities)
            builder = DeviceBuilder(plan, settings, nodes, identities, clock, MAX_APDU if mstp is None else MSTP_APDU)
            events.show_only(builder.pool.shown)  # only built objects show values, and few are
            self.network = BacnetNetwork(
                plan, settings, nodes, builder, identities, restart=self._restart, bdt=self._bdt, mstp=mstp
            )
            try:
                await self.network.start()
                log.info(
                    "bacnet ready",
                    address=f"{settings.address}:{settings.port}",
                    router=plan.router.instance,
                    network=plan.router.network,
                    ip_network=plan.router.ip_network if plan.router.ip_network_configured else "auto",
                    devices={n.address: n.instance for n in plan.nodes},
                    **_ip_mode(settings, self._bdt),
                    **({} if mstp is None else {"mstp": _mstp_port(mstp)}),
                )
                await _serve(events, self.network, settings.doctor_interval, self._hub)
            finally:
                await self.network.close()
                self.network = None
        finally:
            events.close()

    def upstream_counts(self) -> dict[str, int]:
        """The MS/TP data link's counters (none without an MS/TP port); `port_open` 1 while open."""
        mstp = None if self.network is None else self.network.mstp
        if mstp is None:
            return {}
        return {**asdict(mstp.link.counts), "port_open": int(mstp.link.port_open)}

    def reload(self) -> None:
        """SIGHUP: a BBMD reads its bdt_file again; a bad file keeps the table in use and says why."""
        settings = self.settings
        if not settings.bbmd:
            return
        try:
            table = load_bdt(settings)
        except BdtError as error:
            log.error(
                "bdt file not reloaded: the table in use stays",
                detail=str(error),
                table=[str(entry) for entry in self._bdt],
            )
            return
        self._bdt = table
        if self.network is not None and self.network.bbmd is not None:
            self.network.bbmd.set_table(table)
        log.info("bdt file reloaded", table=[str(entry) for entry in table])


def _mstp_port(port: MstpPort) -> dict[str, object]:
    """What the log says about the MS/TP port."""
    link = port.link.settings
    return {
        "port": link.port.port,
        "baudrate": link.port.baudrate,
        "mac": link.station,
        "network": int(port.networkNumber),
        "max_master": port.max_master.value,
        "max_info_frames": link.max_info_frames,
    }


def _ip_mode(settings: BacnetSettings, bdt: tuple[BdtEntry, ...]) -> dict[str, object]:
    """What the log says about the BACnet/IP mode."""
    if settings.bbmd:
        return {
            "mode": "bbmd",
            "bdt": [str(entry) for entry in bdt],
            "max_foreign_devices": settings.max_foreign_devices,
        }
    if settings.foreign_bbmd is not None:
        host, port = settings.foreign_bbmd
        return {"mode": "foreign device", "foreign_bbmd": f"{host}:{port}", "foreign_ttl": settings.foreign_ttl}
    return {"mode": "normal"}


async def _serve(events: Subscription, network: BacnetNetwork, doctor_interval: float, hub: EventHub) -> None:
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_follow(events, network))
        tasks.create_task(network.learn_ip_network())
        tasks.create_task(network.restore_subscriptions())
        if doctor_interval:
            tasks.create_task(Doctor(network.diagnose, doctor_interval, network.show_conflicts, hub.publish).run())
        if network.foreign is not None:
            tasks.create_task(network.foreign.keep_registered())


async def _follow(events: Subscription, network: BacnetNetwork) -> None:
    dropped = events.dropped
    async for event in events:
        try:
            if events.dropped != dropped:
                log.warning(
                    "bacnet fell behind the node events; refreshing every object", lost=events.dropped - dropped
                )
                dropped = events.dropped
                network.sync()
            await network.apply(event)
        except Exception:
            log.exception("bacnet could not show a node event", event=repr(event))


def check_bindable(address: IPv4Interface, port: int) -> None:
    """Fail now, naming the settings, if the address and port cannot be listened on.

    bacpypes3 retries a failed bind forever without a word, and binds with SO_REUSEPORT, so it
    would also share the port silently with another BACnet stack on the same board.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address.ip), port))
        except OSError as error:
            message = (
                f"bacnet.address = {address}, bacnet.port = {port}: cannot listen there "
                f"({error.strerror}); give an address of this board, or a free port"
            )
            log.error("bacnet not started", detail=message)
            raise BacnetBindError(message) from error
