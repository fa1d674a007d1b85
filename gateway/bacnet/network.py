"""The BACnet side of a running gateway: a router on BACnet/IP and the meters behind it.

The pattern that works with bacpypes3 (it serves one device object per application): one
`Application` per device. The router's has the BACnet/IP port first (so its device sits on the IP
network; normal, BBMD or foreign device, see `ip_port.py`) and a port on a private in-process
virtual network numbered `network` (AV2); each node's has one port on that virtual network, its MAC
address the node's Modbus address, so node 3 is "50:3".

    network = BacnetNetwork(plan, settings, nodes, identities, clock, restart=restart, bdt=table)
    await network.start()         # I-Am-Router-To-Network and I-Am for every device
    network.apply(event)          # a node event -> Present_Value, Reliability, COV
    network.bbmd                  # the BBMD link layer when bbmd = true (`bbmd.py`)
    network.foreign               # the foreign-device link layer when foreign_bbmd is set
    await network.close()

`BacnetNetwork` also checks and saves a node device's new name or ID (`NodeIdentities`): device
names and IDs must be unique among the gateway's devices.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from importlib import metadata
from typing import Any

import structlog
from bacpypes3.basetypes import NetworkNumberQuality
from bacpypes3.errors import ExecutionError
from bacpypes3.ipv4 import IPv4DatagramServer
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.vlan import VirtualNetwork

from gateway.bacnet.application import (
    CovLimits,
    DeviceApplication,
    NodeApplication,
    ObjectPool,
    Protection,
    RouterApplication,
)
from gateway.bacnet.bbmd import Bbmd
from gateway.bacnet.bdt import BdtEntry
from gateway.bacnet.clock import Clock
from gateway.bacnet.devices import GatewayDevice, NodeDevice, RouterSettingValue
from gateway.bacnet.doctor import Conflict, diagnose
from gateway.bacnet.fastpath import Entry
from gateway.bacnet.fixes import GuardedVirtualNetwork
from gateway.bacnet.foreign import ForeignDevice
from gateway.bacnet.identity import ROUTER_SETTINGS, DevicePlan, NodePlan, RouterSetting, plan_devices
from gateway.bacnet.ip_port import MAX_APDU, IPv4Port, ip_port
from gateway.bacnet.limits import RequestLimits
from gateway.bacnet.local_objects import GuardedWrites
from gateway.bacnet.shares import Shares
from gateway.config import MAX_DEVICE_INSTANCE, BacnetSettings
from gateway.nodes.api import NodeAPI
from gateway.nodes.events import Event, NodeAdded, NodeOffline, NodeOnline, NodeRemoved, ValueChanged
from gateway.state import DeviceOverride, IdentityStore, State
from gateway.state_saves import StateSaves

__all__ = ["BacnetNetwork"]

log = structlog.get_logger(__name__)

ROUTER_MAC = 0  # node MACs are Modbus addresses, 1-247
SOCKET_OPEN_TIMEOUT = 2.0  # seconds; opening a UDP socket on an address of the board is immediate
LEARN_IP_NETWORK_TIMEOUT = 3.0  # seconds a router of the IP network has to answer What-Is-Network-Number
_network_names = (f"bcpm-meters-{n}" for n in itertools.count(1))


def _version() -> str:
    try:
        return metadata.version("bcpm-gateway")
    except metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


class BacnetNetwork:
    """The router application and one application per node. Build it inside the running loop."""

    def __init__(self, plan: DevicePlan, settings: BacnetSettings, nodes: NodeAPI, identities: IdentityStore,
                 clock: Clock, restart: Callable[[], None], bdt: Sequence[BdtEntry] = ()) -> None:
        self._nodes = nodes
        self._identities = identities
        self._clock = clock
        self._settings = settings
        self._vendor = {"vendorIdentifier": plan.router.vendor_id, "vendorName": plan.router.vendor_name,
                        "applicationSoftwareVersion": _version(), "maxApduLengthAccepted": MAX_APDU,
                        "maxSegmentsAccepted": settings.max_segments}
        # bacpypes3 keeps virtual networks in a process-wide registry by name.
        self._network_name = next(_network_names)
        GuardedVirtualNetwork(self._network_name)
        self._cov_limits = CovLimits(settings.max_cov_subscriptions, settings.max_cov_per_client,
                                     settings.max_cov_indefinite)
        self.shares = Shares(settings)
        self._protection = Protection(settings.reinit_password, settings.read_only)
        port = ip_port(settings, plan.router.ip_network, plan.router.ip_network_configured, bdt)
        self._ip_port = port
        self._ip_network_configured = plan.router.ip_network_configured
        self._network = plan.router.network
        self._ip_link_layer = port._link_layer  # None in normal mode
        self.router = self._router(plan, port, restart)
        self.shares.guard(self.router)
        self.devices: dict[int, NodeDevice] = {}
        self.applications: dict[int, NodeApplication] = {}
        self.pool = ObjectPool(settings.max_built_objects)
        self._identity_lock = asyncio.Lock()
        self._saves = StateSaves(identities.update)  # writes that come together share one fsync
        for node in plan.nodes:
            self._add_node(node)
        limits = RequestLimits(settings.max_segments, settings.max_segmented_requests,
                               settings.max_segmented_requests_per_client)
        self.entry = Entry(plan.router.network, self.applications, limits, settings.fast_reads)

    # --- building ---

    def _router(self, plan: DevicePlan, port: IPv4Port, restart: Callable[[], None]) -> RouterApplication:
        router = plan.router
        device = GatewayDevice(
            objectIdentifier=("device", router.instance),
            objectName=router.name,
            modelName="BCPM gateway (BACnet router)",
            firmwareRevision=_version(),
            description=f"BACnet router to the meters on network {router.network}",
            reliability="no-fault-detected",  # configuration-error while the doctor finds a conflict
            databaseRevision=self._identities.state.database_revision,
            **self._vendor,
        )
        device._clock = self._clock
        settings = [self._router_setting(setting, router.setting(setting)) for setting in ROUTER_SETTINGS]
        # The IP port first: the router's device object lives on the first bound port.
        app = RouterApplication.from_object_list(
            [device, port, self._virtual_port(2, ROUTER_MAC, router.network), *settings]
        )
        app.configure(self._clock, restart)
        self._share(app)
        return app

    def _share(self, app: DeviceApplication) -> None:
        """Every application counts against the gateway's one set of COV caps and fair shares, has
        its protection, and reads as `bacnet.fast_reads` says."""
        app.cov_limits = self._cov_limits
        app.shares = self.shares
        self._cov_limits.apps.append(app)
        app.protection = self._protection
        app.fast_reads = self._settings.fast_reads

    def _router_setting(self, setting: RouterSetting, value: int) -> RouterSettingValue:
        obj = RouterSettingValue(
            objectIdentifier=("analog-value", setting.instance),
            objectName=setting.name,
            description="saved at once, applied at the next restart",
            presentValue=float(value),
            reliability="no-fault-detected",
            eventState="normal",
            outOfService=False,
            units="noUnits",
            covIncrement=1.0,
            minPresValue=float(setting.valid.start),
            maxPresValue=float(setting.valid.stop - 1),
        )
        obj._setting = setting
        obj._save = self._save_setting
        return obj

    def _add_node(self, plan: NodePlan) -> None:
        node = self._nodes.nodes[plan.address]
        device = NodeDevice(
            objectIdentifier=("device", plan.instance),
            objectName=plan.name,
            modelName=plan.model_name,
            firmwareRevision=plan.firmware_revision,
            serialNumber=plan.serial_number,
            description=plan.description,
            systemStatus=_system_status(node.health.online),
            databaseRevision=self._identities.state.database_revision,
            **self._vendor,
        )
        device._clock = self._clock
        device._address = plan.address
        device._identities = self
        app = NodeApplication.from_object_list([device, self._virtual_port(1, plan.address, None)])
        app.serve(self._nodes, node, plan.objects, self.pool)
        self._share(app)
        self.applications[plan.address] = app
        self.devices[plan.address] = device

    def _remove_node(self, address: int) -> None:
        """A forgotten node's device leaves the virtual network: its subscriptions end, it answers no more."""
        app = self.applications.pop(address)
        del self.devices[address]
        app.cancel_all_subscriptions()
        self._cov_limits.apps.remove(app)
        app.close()
        for link_layer in app.link_layers.values():
            link_layer.node.lan.remove_node(link_layer.node)

    def _virtual_port(self, instance: int, mac: int, network: int | None) -> VirtualPort:
        numbering: dict[str, Any] = (
            {"networkNumber": network, "networkNumberQuality": "configured"}
            if network is not None
            else {"networkNumber": 0, "networkNumberQuality": "unknown"}
        )
        return VirtualPort(
            objectIdentifier=("network-port", instance),
            objectName="Virtual network",
            networkType="virtual",
            protocolLevel="bacnet-application",
            macAddress=bytes([mac]),
            networkInterfaceName=self._network_name,
            statusFlags=[0, 0, 0, 0],
            reliability="no-fault-detected",
            outOfService=False,
            changesPending=False,
            apduLength=MAX_APDU,
            **numbering,
        )

    # --- running ---

    @property
    def bbmd(self) -> Bbmd | None:
        return self._ip_link_layer if isinstance(self._ip_link_layer, Bbmd) else None

    @property
    def foreign(self) -> ForeignDevice | None:
        return self._ip_link_layer if isinstance(self._ip_link_layer, ForeignDevice) else None

    async def start(self) -> None:
        """Tell the IP network who is here; bacpypes3 announces nothing by itself."""
        await self._sockets_open()
        if not self._ip_network_configured:
            # bacpypes3 numbers every bound port "configured"; a learned number yields to what a
            # router of the IP network says (Network-Number-Is, see `learn_ip_network`).
            self._ip_port.adapter().adapterNetConfigured = NetworkNumberQuality.learned
        for link_layer in self.router.link_layers.values():
            server = getattr(link_layer, "server", None)
            if isinstance(server, IPv4DatagramServer):  # the BACnet/IP port
                # its socket's protocol is known once bacpypes3's callback has run after the opening
                await asyncio.wait_for(server._local_transport_ready.wait(), SOCKET_OPEN_TIMEOUT)
                self.entry.install(server)
        await self.router.nse.i_am_router_to_network()
        for app in self._all_applications():
            app.i_am()

    async def learn_ip_network(self) -> None:
        """With `ip_network = "auto"`: ask the IP network its number (What-Is-Network-Number); the
        network layer takes the answer (and any later Network-Number-Is) itself."""
        if self._ip_network_configured:
            return
        fallback = self._ip_port.networkNumber
        # The router hears its own answer too (the fallback, at once), so the future says little:
        # what counts is the number once the others had their time.
        asking = self.router.nse.what_is_network_number(self._ip_port.adapter())
        await asyncio.sleep(LEARN_IP_NETWORK_TIMEOUT)
        asking.cancel()
        learned = self._ip_port.networkNumber
        if learned != fallback:
            log.info("bacnet ip network learned", ip_network=learned, fallback=fallback)
        else:
            log.info("bacnet ip network not learned: no other router answered", ip_network=fallback)

    def set_fast_reads(self, on: bool) -> None:
        """Answer the common reads from encodings (`bacnet.fast_reads`), or all through the full stack."""
        self.entry.fast_reads = on
        for app in self._all_applications():
            app.fast_reads = on

    def apply(self, event: Event) -> None:
        """Show a node event on the node's objects; a node found later gets its device, announced; a
        forgotten one loses it."""
        if isinstance(event, NodeAdded):
            if event.address not in self.applications:
                plan = plan_devices(self._settings, self._identities.state, [event.profile], self._nodes.pointmap)
                self._add_node(plan.nodes[0])
                self._show_revision()  # the node layer saved the node, and the revision with it
                self.applications[event.address].i_am()
        elif isinstance(event, NodeRemoved):
            if event.address in self.applications:
                self._remove_node(event.address)
                self._show_revision()  # the node layer saved the state without it, and the revision
        elif isinstance(event, ValueChanged):
            if (app := self.applications.get(event.address)) is not None:
                app.show(event.point.register)
        elif isinstance(event, NodeOnline | NodeOffline):
            self.sync(event.address)

    def sync(self, address: int | None = None) -> None:
        """Show the cache on every object of one node (all nodes when None)."""
        for each in self.applications if address is None else (address,):
            if each in self.applications:
                self.applications[each].show()
                self.devices[each].systemStatus = _system_status(self._nodes.nodes[each].health.online)

    async def diagnose(self) -> frozenset[Conflict]:
        """Who else uses the virtual network or a device ID of the gateway (see `doctor.py`)."""
        instances = {device.objectIdentifier[1] for device in self._all_devices()}
        return await diagnose(self.router, self._network, instances, self._ip_port.address)

    def show_conflicts(self, conflicting: bool) -> None:
        """The router device's Reliability (so Status_Flags) tells whether the doctor found one."""
        self.router.device_object.reliability = "configuration-error" if conflicting else "no-fault-detected"

    async def close(self) -> None:
        try:
            await self._sockets_open()
        finally:
            for app in self._all_applications():
                app.cancel_all_subscriptions()
                app.close()
            VirtualNetwork._networks.pop(self._network_name, None)

    async def _sockets_open(self) -> None:
        """Until the BACnet/IP sockets are open.

        bacpypes3 opens them in tasks of their own, which its first send gathers: cancelling that
        send (the gateway stopping) cancels them too, and their callbacks fail; closing before
        they are open leaves them to open afterwards, never closed. `asyncio.wait` cancels nothing.
        A bind that keeps failing (bacpypes3 retries every second) is not waited for beyond
        SOCKET_OPEN_TIMEOUT; `check_bindable` has made that unlikely.
        """
        opening = [task for link_layer in self.router.link_layers.values()
                   for task in getattr(getattr(link_layer, "server", None), "_transport_tasks", ())]
        if opening:
            await asyncio.wait(opening, timeout=SOCKET_OPEN_TIMEOUT)

    def _all_applications(self) -> Iterator[DeviceApplication]:
        yield self.router
        yield from self.applications.values()

    # --- identities (NodeIdentities) ---

    async def rename(self, device: NodeDevice, name: str) -> None:
        async with self._identity_lock:  # check and assign as one: two writes may interleave
            if (any(other is not device and str(other.objectName) == name for other in self._all_devices())
                    or self.applications[device._address].names(name, device)):  # unique within the device too
                raise ExecutionError("property", "duplicateName")
            saved = self._save_override(device._address, object_name=name)
            old, device.objectName = str(device.objectName), name  # so the next write's check sees it
        try:
            await saved  # acknowledged once on disk
        except BaseException:
            if str(device.objectName) == name:  # not renamed again meanwhile
                device.objectName = old
            raise
        self._show_revision()

    async def renumber(self, device: NodeDevice, instance: int) -> None:
        if instance not in range(MAX_DEVICE_INSTANCE):  # the top one is the wildcard
            raise ExecutionError("property", "valueOutOfRange")
        async with self._identity_lock:
            if any(other is not device and other.objectIdentifier[1] == instance for other in self._all_devices()):
                raise ExecutionError("property", "duplicateObjectId")
            saved = self._save_override(device._address, object_instance=instance)
            old, device.objectIdentifier = device.objectIdentifier, ("device", instance)
        try:
            await saved
        except BaseException:
            if device.objectIdentifier[1] == instance:
                device.objectIdentifier = old
            raise
        self._show_revision()
        app = self.applications[device._address]
        if app.communicating():
            app.i_am()  # a BMS that bound the old ID learns the new one

    def _all_devices(self) -> Iterator[GatewayDevice]:
        yield self.router.device_object
        yield from self.devices.values()

    def _show_revision(self) -> None:
        """Every device shows the saved Database_Revision: `State` raises it in the save of a change."""
        for device in self._all_devices():
            device.databaseRevision = self._identities.state.database_revision

    def _save_override(self, address: int, **fields: Any) -> asyncio.Future[None]:
        def change(state: State) -> State:
            return state.with_override(address, replace(state.overrides.get(address, DeviceOverride()), **fields))

        return self._saves.save(change)

    async def _save_setting(self, setting: RouterSetting, value: int) -> None:
        await self._saves.save(lambda state: state.with_router(**{setting.key: value}))
        self._show_revision()


class VirtualPort(GuardedWrites, NetworkPortObject):
    """A port on the virtual network: nothing of it is writable remotely."""


def _system_status(online: bool) -> str:
    return "operational" if online else "non-operational"
