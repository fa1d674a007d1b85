"""Building the gateway's BACnet devices: the router's application and one application per node.

The pattern that works with bacpypes3 (it serves one device object per application): one
`Application` per device. The router's has the BACnet/IP port first (so its device sits on the IP
network; normal, BBMD or foreign device, see `ip_port.py`), a port on a private in-process
virtual network numbered `network` (AV2) and, with `upstream.mode = "mstp"`, the MS/TP port
(`mstp_port.py`; its Max_Master shown and writable on the router's device object too); each
node's has one port on that virtual network, its MAC address the node's Modbus address, so node 3
is "50:3". Every application counts against the
gateway's one set of COV caps and fair shares, has its protection, and builds its objects in the
one object pool; every device is added to the identities (`identities.py`).

    builder = DeviceBuilder(plan, settings, nodes, identities, clock, max_apdu=MAX_APDU)
    router = builder.router(plan.router, ip_port(...), restart, mstp=None)
    device, app = builder.node(plan.nodes[0])
    builder.remove(app)             # a forgotten node's device leaves the virtual network
    builder.close()                 # the virtual network goes, once every application is closed
"""

from __future__ import annotations

from collections.abc import Callable

from bacpypes3.local.networkport import NetworkPortObject

from gateway import __version__
from gateway.bacnet.applications import (
    DeviceApplication,
    NodeApplication,
    Protection,
    RouterApplication,
)
from gateway.bacnet.clock import Clock
from gateway.bacnet.cov_limits import CovLimits
from gateway.bacnet.devices import GatewayDevice, NodeDevice, RouterSettingValue
from gateway.bacnet.identities import DeviceIdentities
from gateway.bacnet.ip_port import MAX_APDU, IPv4Port
from gateway.bacnet.local_objects import GuardedWrites
from gateway.bacnet.mstp_port import MaxMasterWrites, MstpPort
from gateway.bacnet.plan import ROUTER_SETTINGS, DevicePlan, NodePlan, RouterPlan, RouterSetting
from gateway.bacnet.pool import ObjectPool
from gateway.bacnet.reads import KeptEncodings
from gateway.bacnet.shares import Shares
from gateway.bacnet.stack import VirtualLan
from gateway.config import BacnetSettings
from gateway.nodes.api import NodeAPI

__all__ = ["DeviceBuilder", "system_status"]

ROUTER_MAC = 0  # node MACs are Modbus addresses, 1-247


class DeviceBuilder:
    """Makes the router's and the nodes' applications on one virtual network. Build it inside the running loop."""

    def __init__(
        self,
        plan: DevicePlan,
        settings: BacnetSettings,
        nodes: NodeAPI,
        identities: DeviceIdentities,
        clock: Clock,
        max_apdu: int = MAX_APDU,
    ) -> None:
        self._nodes = nodes
        self._identities = identities
        self._clock = clock
        self._settings = settings
        self._network = plan.router.network
        self._vendor = {
            "vendorIdentifier": plan.router.vendor_id,
            "vendorName": plan.router.vendor_name,
            "applicationSoftwareVersion": __version__,
            # what the smallest network of the router carries: no device answers in larger APDUs
            "maxApduLengthAccepted": max_apdu,
            "maxSegmentsAccepted": settings.max_segments,
        }
        self._lan = VirtualLan()
        self._cov_limits = CovLimits(
            settings.max_cov_subscriptions, settings.max_cov_per_client, settings.max_cov_indefinite
        )
        self.shares = Shares(settings)
        self._protection = Protection(settings.reinit_password, settings.read_only)
        self.pool = ObjectPool(settings.max_built_objects)
        self.kept_encodings = KeptEncodings(settings.max_encoded_objects)

    def router(
        self, router: RouterPlan, port: IPv4Port, restart: Callable[[], None], mstp: MstpPort | None = None
    ) -> RouterApplication:
        identity = {
            "objectIdentifier": ("device", router.instance),
            "objectName": router.name,
            "modelName": "BCPM gateway (BACnet router)",
            "firmwareRevision": __version__,
            "description": f"BACnet router to the meters on network {router.network}",
            "reliability": "no-fault-detected",  # configuration-error while the doctor finds a conflict
            "databaseRevision": self._identities.state.database_revision,
            **self._vendor,
        }
        device: GatewayDevice
        if mstp is None:
            device = GatewayDevice(**identity)
        else:
            device = RouterDevice(**identity, maxInfoFrames=mstp.maxInfoFrames)
            device.show_max_master(mstp.max_master)
        device.keep_time(self._clock)
        settings = [self._router_setting(setting, router.setting(setting)) for setting in ROUTER_SETTINGS]
        # The IP port first: the router's device object lives on the first bound port.
        app = RouterApplication.from_object_list(
            [
                device,
                port,
                self._virtual_port(2, ROUTER_MAC, self._network),
                *([] if mstp is None else [mstp]),
                *settings,
            ]
        )
        app.configure(self._clock, restart)
        self._share(app)
        self._identities.add_router(device)
        return app

    def node(self, plan: NodePlan) -> tuple[NodeDevice, NodeApplication]:
        node = self._nodes.nodes[plan.address]
        device = NodeDevice(
            objectIdentifier=("device", plan.instance),
            objectName=plan.name,
            modelName=plan.model_name,
            firmwareRevision=plan.firmware_revision,
            serialNumber=plan.serial_number,
            description=plan.description,
            systemStatus=system_status(node.health.online),
            databaseRevision=self._identities.state.database_revision,
            **self._vendor,
        )
        device.keep_time(self._clock)
        device.serve(plan.address, self._identities)
        app = NodeApplication.from_object_list([device, self._virtual_port(1, plan.address, self._network)])
        app.serve(self._nodes, node, plan.objects, self.pool, self.kept_encodings)
        self._share(app)
        self._identities.add_node(device, app)
        return device, app

    def remove(self, address: int, app: NodeApplication) -> None:
        """A forgotten node's device leaves the virtual network: its subscriptions end, it answers no more."""
        self._identities.remove_node(address)
        app.cancel_all_subscriptions()
        self._cov_limits.apps.remove(app)
        app.close()
        self._lan.leave(app)

    def close(self) -> None:
        """Forget the virtual network."""
        self._lan.close()

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
        obj.serve(setting, self._identities.save_setting)
        return obj

    def _virtual_port(self, instance: int, mac: int, network: int) -> VirtualPort:
        return VirtualPort(
            objectIdentifier=("network-port", instance),
            objectName="Virtual network",
            networkType="virtual",
            protocolLevel="bacnet-application",
            macAddress=bytes([mac]),
            networkInterfaceName=self._lan.name,
            statusFlags=[0, 0, 0, 0],
            reliability="no-fault-detected",
            outOfService=False,
            changesPending=False,
            apduLength=MAX_APDU,
            linkSpeed=0.0,  # a virtual network has no link speed: 0 is "unknown" (12.56)
            networkNumber=network,  # the gateway's configuration (bacnet.network, AV2)
            networkNumberQuality="configured",
        )


class RouterDevice(MaxMasterWrites, GatewayDevice):
    """The router's device object with an MS/TP port: Max_Master and Max_Info_Frames are the port's."""


class VirtualPort(GuardedWrites, NetworkPortObject):
    """A port on the virtual network: nothing of it is writable remotely."""


def system_status(online: bool) -> str:
    """A node device's System_Status."""
    return "operational" if online else "non-operational"
