"""The BACnet side of a running gateway: a router on BACnet/IP (and BACnet MS/TP) and the meters behind it.

The face (`face.py`) wires it: the devices are made by a `DeviceBuilder` (`building.py`) and their
names and IDs checked and saved by `DeviceIdentities` (`identities.py`); this runs them.

    identities = DeviceIdentities(store)
    builder = DeviceBuilder(plan, settings, nodes, identities, clock)
    network = BacnetNetwork(plan, settings, nodes, builder, identities, restart=restart, bdt=table, mstp=port)
    await network.start()         # I-Am-Router-To-Network and I-Am for every device
    await network.restore_subscriptions()  # the COV subscriptions kept across the restart
    await network.apply(event)    # a node event -> Present_Value, Reliability, COV; a device comes or goes
    network.kept                  # the COV subscriptions kept across restarts (`subscriptions.py`)
    network.bbmd                  # the BBMD link layer when bbmd = true (`stack/bbmd.py`)
    network.foreign               # the foreign-device link layer when foreign_bbmd is set
    network.mstp                  # the MS/TP port when upstream.mode = "mstp" (`mstp_port.py`)
    await network.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

import structlog

from gateway.bacnet.applications import DeviceApplication, NodeApplication
from gateway.bacnet.bdt import BdtEntry
from gateway.bacnet.building import DeviceBuilder, system_status
from gateway.bacnet.devices import NodeDevice
from gateway.bacnet.doctor import Conflict, diagnose
from gateway.bacnet.fastpath import FastPath
from gateway.bacnet.identities import DeviceIdentities
from gateway.bacnet.ip_port import ip_port
from gateway.bacnet.limits import RequestLimits
from gateway.bacnet.mstp_port import MstpPort
from gateway.bacnet.plan import DevicePlan, NodePlan, device_plan
from gateway.bacnet.stack import Bbmd, ForeignDevice, IpSocket, NetworkSide, network_side, settled
from gateway.bacnet.subscriptions import KeptSubscriptions
from gateway.config import BacnetSettings
from gateway.nodes.api import NodeAPI
from gateway.nodes.events import CircuitsNamed, NodeAdded, NodeEvent, NodeOffline, NodeOnline, NodeRemoved, ValueChanged

__all__ = ["BacnetNetwork"]

log = structlog.get_logger(__name__)

SOCKET_OPEN_TIMEOUT = 2.0  # seconds; opening a UDP socket on an address of the board is immediate
LEARN_IP_NETWORK_TIMEOUT = 3.0  # seconds a router of the IP network has to answer What-Is-Network-Number
RESTORE_WAIT = 30.0  # seconds kept COV subscriptions wait for the first poll cycle at most
RESTORE_CHECK = 0.05  # seconds between two looks


class BacnetNetwork:
    """The router application and one application per node, running. Build it inside the running loop."""

    def __init__(
        self,
        plan: DevicePlan,
        settings: BacnetSettings,
        nodes: NodeAPI,
        builder: DeviceBuilder,
        identities: DeviceIdentities,
        restart: Callable[[], None],
        bdt: Sequence[BdtEntry] = (),
        mstp: MstpPort | None = None,
    ) -> None:
        self._nodes = nodes
        self._settings = settings
        self._builder = builder
        self._identities = identities
        port = ip_port(settings, plan.router.ip_network, plan.router.ip_network_configured, bdt)
        self._ip_port = port
        self._ip_network_configured = plan.router.ip_network_configured
        self._network = plan.router.network
        self._ip_link_layer = port.link_layer()  # None in normal mode
        self.mstp = mstp
        self.router = builder.router(plan.router, port, restart, mstp)
        builder.shares.guard(self.router)
        self.devices: dict[int, NodeDevice] = {}
        self.applications: dict[int, NodeApplication] = {}
        self.pool = builder.pool
        self.kept = KeptSubscriptions(identities.save, identities.state.cov_subscriptions, self)
        self.router.keep_subscriptions = self.kept.changed
        for node in plan.nodes:
            self._add_node(node)
        limits = RequestLimits(
            settings.max_segments, settings.max_segmented_requests, settings.max_segmented_requests_per_client
        )
        self.fast_path = FastPath(plan.router.network, self.applications, limits, settings.fast_reads)

    @property
    def bbmd(self) -> Bbmd | None:
        return self._ip_link_layer if isinstance(self._ip_link_layer, Bbmd) else None

    @property
    def foreign(self) -> ForeignDevice | None:
        return self._ip_link_layer if isinstance(self._ip_link_layer, ForeignDevice) else None

    async def start(self) -> None:
        """Tell the IP (and MS/TP) network who is here; bacpypes3 announces nothing by itself."""
        await self._sockets_open()
        if not self._ip_network_configured:
            # the fallback is a number the router routes with, not one it knows, until a router of
            # the IP network says (Network-Number-Is, see `learn_ip_network`)
            self._ip_side().mark_unknown()
        for socket in IpSocket.of(self.router):  # the BACnet/IP port's
            await socket.opened(SOCKET_OPEN_TIMEOUT)
            self.fast_path.install(socket)
        await self.router.nse.i_am_router_to_network()
        for app in self._all_applications():
            app.i_am()

    async def restore_subscriptions(self) -> None:
        """Take up the COV subscriptions kept across the restart once the meters' values are known
        (the first poll cycle is done, or RESTORE_WAIT has passed), so each notifies a real value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTORE_WAIT
        while self._nodes.statistics().last_cycle is None and loop.time() < deadline:
            await asyncio.sleep(RESTORE_CHECK)
        self.kept.restore()

    def cov_devices(self) -> Iterator[tuple[int | None, DeviceApplication]]:
        """Each device's application with its node's address (None for the router)."""
        yield None, self.router
        yield from self.applications.items()

    def ip_network(self) -> int:
        """The number the router routes its BACnet/IP side with (known or not)."""
        return self._ip_side().number

    async def learn_ip_network(self) -> None:
        """With `ip_network = "auto"`: ask the IP network its number (What-Is-Network-Number); the
        network layer takes the answer (and any later Network-Number-Is) itself."""
        if self._ip_network_configured:
            return
        side = self._ip_side()
        fallback = side.number
        # What counts is the number once the others had their time: one may announce it later.
        asking = side.ask_number()
        await asyncio.sleep(LEARN_IP_NETWORK_TIMEOUT)
        asking.cancel()
        if side.known:
            log.info("bacnet ip network learned", ip_network=side.number, quality=side.quality)
        else:
            log.info(
                "bacnet ip network not learned: no other router answered; the router stays silent about it",
                routes_with=fallback,
            )

    def set_fast_reads(self, on: bool) -> None:
        """Answer the common reads from encodings (`bacnet.fast_reads`), or all through the full stack."""
        self.fast_path.fast_reads = on
        for app in self._all_applications():
            app.fast_reads = on

    async def apply(self, event: NodeEvent) -> None:
        """Show a node event on the node's objects; a node found later gets its device, announced; a
        forgotten one loses it (Database_Revision goes up first, `identities.database_changed`); a
        circuit named changes Descriptions its objects read when asked, and Database_Revision."""
        if isinstance(event, NodeAdded):
            if event.address not in self.applications:
                await self._identities.database_changed()
                plan = device_plan(self._settings, self._identities.state, self._nodes.pointmap, [event.profile])
                self._add_node(plan.nodes[0])
                self.applications[event.address].i_am()
        elif isinstance(event, NodeRemoved):
            if event.address in self.applications:
                await self._identities.database_changed()
                self._builder.remove(event.address, self.applications.pop(event.address))
                del self.devices[event.address]
        elif isinstance(event, CircuitsNamed):
            if event.address in self.applications:
                await self._identities.database_changed()
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
                self.devices[each].systemStatus = system_status(self._nodes.nodes[each].health.online)

    async def diagnose(self) -> frozenset[Conflict]:
        """Who else uses the virtual network or a device ID of the gateway (see `doctor.py`)."""
        return await diagnose(self.router, self._network, self._identities.instances(), self._ip_port.address)

    def show_conflicts(self, conflicting: bool) -> None:
        """The router device's Reliability (so Status_Flags) tells whether the doctor found one."""
        self.router.device_object.reliability = "configuration-error" if conflicting else "no-fault-detected"

    async def close(self) -> None:
        try:
            await self._sockets_open()
            await self.kept.close()  # before the devices close, and their subscriptions with them
        finally:
            for app in self._all_applications():
                app.cancel_all_subscriptions()
                app.close()
            self._builder.close()

    async def _sockets_open(self) -> None:
        """Until the BACnet/IP sockets are open (`stack.settled`); `check_bindable` has made a bind
        that keeps failing unlikely."""
        await settled(self.router, SOCKET_OPEN_TIMEOUT)

    def _ip_side(self) -> NetworkSide:
        """The network layer's view of the BACnet/IP port (bound when the router was built)."""
        side = network_side(self._ip_port)
        assert side is not None, "the router binds its BACnet/IP port when it is built"
        return side

    def _all_applications(self) -> Iterator[DeviceApplication]:
        yield self.router
        yield from self.applications.values()

    def _add_node(self, plan: NodePlan) -> None:
        self.devices[plan.address], self.applications[plan.address] = self._builder.node(plan)
        self.applications[plan.address].keep_subscriptions = self.kept.changed
