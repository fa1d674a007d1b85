"""Who is who on BACnet: the router device and one device per meter node. Pure functions, no I/O.

    plan = device_plan(config.bacnet, state, load())   # the nodes of the state file
    plan.router.instance                     # 50000: the device ID offset (AV1)
    plan.router.network                      # 50: the virtual network (AV2)
    plan.node_devices()                      # {1: (50001, "BCPM_1"), 2: (50002, "BCPM_2")}

The offset and network written over BACnet (AV1/AV2, kept in the state file) take precedence
over the configuration. A node's device ID is offset + Modbus address and its name
"BCPM_<address>", unless a client wrote them: an override in the state file wins from then on,
whatever the offset or a rediscovery say. `device_plan` is the one place the plan is made: the
running face, the web face (through the composition root) and the commands (`export-ede`,
`doctor`) all ask it, so they always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.bacnet.objects import ObjectSpec, object_specs
from gateway.config import MAX_DEVICE_ID_OFFSET, VALID_NETWORKS, BacnetSettings
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import PointMap
from gateway.state import DeviceOverride, State

__all__ = ["ROUTER_SETTINGS", "DevicePlan", "NodePlan", "RouterPlan", "RouterSetting", "device_plan"]

#: The series abbreviation in default device names ("BCPM_1").
SERIES = "BCPM"
VENDOR_NAMES = {133: "Veris Industries", 10: "Schneider Electric"}


@dataclass(frozen=True, slots=True)
class RouterSetting:
    """An Analog Value of the router device that sets the gateway up for its next start."""

    instance: int
    name: str
    key: str  # the State / BacnetSettings field it sets
    valid: range


ROUTER_SETTINGS = (
    RouterSetting(1, "Device ID Offset", "device_id_offset", range(MAX_DEVICE_ID_OFFSET + 1)),
    RouterSetting(2, "Virtual Network Number", "network", VALID_NETWORKS),
)


@dataclass(frozen=True, slots=True)
class RouterPlan:
    instance: int  # the device ID offset
    name: str
    network: int  # the virtual network the nodes sit on
    ip_network: int  # the number the router gives its IP side (until it learns another)
    ip_network_configured: bool  # False: a fallback, to be learned from the network
    vendor_id: int

    def setting(self, setting: RouterSetting) -> int:
        """The value a router setting has in this plan."""
        return {"device_id_offset": self.instance, "network": self.network}[setting.key]

    @property
    def vendor_name(self) -> str:
        return VENDOR_NAMES.get(self.vendor_id, f"vendor {self.vendor_id}")


@dataclass(frozen=True, slots=True)
class NodePlan:
    profile: NodeProfile
    instance: int
    name: str
    objects: tuple[ObjectSpec, ...]
    circuit_names: Mapping[int, str] = field(default_factory=dict)  # as saved when planned (the EDE list's)

    @property
    def address(self) -> int:
        return self.profile.address

    @property
    def model_name(self) -> str:
        return f"{SERIES} model {self.profile.model} (device ID {self.profile.device_id})"

    @property
    def firmware_revision(self) -> str:
        return f"RS {self.profile.firmware_rs} OS {self.profile.firmware_os}"

    @property
    def serial_number(self) -> str:
        return f"0x{self.profile.serial:08X}"

    @property
    def description(self) -> str:
        panel = self.profile.panel
        return f"Modbus address {self.address}, panel {panel} of board {self.serial_number}"


@dataclass(frozen=True, slots=True)
class DevicePlan:
    router: RouterPlan
    nodes: tuple[NodePlan, ...]

    def node_devices(self) -> dict[int, tuple[int, str]]:
        """Each node's device ID and name, by Modbus address."""
        return {node.address: (node.instance, node.name) for node in self.nodes}


def device_plan(
    settings: BacnetSettings, state: State, pointmap: PointMap, profiles: Iterable[NodeProfile] | None = None
) -> DevicePlan:
    """The devices of the gateway: the router, and one per node of `profiles` (the state file's
    when None)."""
    offset = settings.device_id_offset if state.device_id_offset is None else state.device_id_offset
    network = settings.network if state.network is None else state.network
    configured = settings.ip_network not in (None, network)  # AV2 may have taken it since
    number = settings.ip_network if settings.ip_network is not None and configured else ip_network(network)
    router = RouterPlan(offset, f"{SERIES}_Gateway_{offset}", network, number, configured, settings.vendor_id)
    nodes = []
    for profile in sorted(state.profiles.values() if profiles is None else profiles, key=lambda p: p.address):
        override = state.overrides.get(profile.address, DeviceOverride())
        nodes.append(
            NodePlan(
                profile,
                offset + profile.address if override.object_instance is None else override.object_instance,
                f"{SERIES}_{profile.address}" if override.object_name is None else override.object_name,
                object_specs(pointmap, profile.model),
                state.circuit_names.get(profile.address, {}),
            )
        )
    return DevicePlan(router, tuple(nodes))


def ip_network(virtual: int) -> int:
    """The IP side's network number until the router learns it (`bacnet.ip_network = "auto"`, or a
    number AV2 has since given the virtual network): it only has to differ from the virtual one."""
    return 1 if virtual != 1 else 2
