"""The identities of the gateway's BACnet devices while it runs (`plan.py` plans them at start),
and their Database_Revision.

A node device's new name or ID is checked against every device of the gateway (names and IDs are
unique among them, and a name within its own device too) and saved before it is acknowledged; a
router setting (AV1, AV2) is saved.

Database_Revision is one number for every device of the gateway, kept in the state file. It goes
up with every change a client's copy of the device database must notice: a device name or ID
written, or the device ID offset (AV1), in the same save as the change; a node's device found or
forgotten (`database_changed`: the face sees NodeAdded or NodeRemoved, or finds at start nodes the
state file did not hold; `bcpm-gateway forget` with the gateway stopped saves `forgotten`), saved
before the device comes or goes; a circuit named (`database_changed` when the face sees
CircuitsNamed: its objects' Description). Every device shows it once saved. The network number (AV2) is no
part of the database; writing what is already there changes nothing.

    identities = DeviceIdentities(store)
    identities.add_router(device)             # as the builder makes the devices (`building.py`)
    identities.add_node(device, app)
    await identities.rename(device, "Panel 3")  # a NodeDevice's WriteProperty of Object_Name
    await identities.database_changed()       # a node's device about to come or go
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import structlog
from bacpypes3.errors import ExecutionError

from gateway.bacnet.applications import NodeApplication
from gateway.bacnet.devices import GatewayDevice, NodeDevice
from gateway.bacnet.plan import RouterSetting
from gateway.config import MAX_DEVICE_INSTANCE
from gateway.state import DeviceOverride, IdentityStore, State
from gateway.state_saves import StateSaves

__all__ = ["DeviceIdentities", "forgotten", "revised", "with_identity", "with_setting"]

log = structlog.get_logger(__name__)

#: Database_Revision is an Unsigned32: after the last one comes 0, still a change to a client.
REVISIONS = 2**32


def revised(state: State) -> State:
    """`state` with the devices' Database_Revision one higher."""
    return state.with_database_revision((state.database_revision + 1) % REVISIONS)


def forgotten(state: State, addresses: Iterable[int]) -> State:
    """`state` without these nodes, their devices gone with them (Database_Revision up when one was
    known): what `bcpm-gateway forget` saves with the gateway stopped."""
    left = state.without_nodes(addresses)
    return left if left.profiles.keys() == state.profiles.keys() else revised(left)


def with_identity(state: State, address: int, **fields: Any) -> State:
    """`state` with a node device's name or ID written (Database_Revision up when it changes)."""
    old = state.overrides.get(address, DeviceOverride())
    new = replace(old, **fields)
    written = state.with_override(address, new)
    return written if new == old else revised(written)


def with_setting(state: State, setting: RouterSetting, value: int) -> State:
    """`state` with a router setting written (Database_Revision up when the device ID offset, every
    device's ID, changes)."""
    changed = setting.key == "device_id_offset" and value != state.device_id_offset
    written = state.with_router(**{setting.key: value})
    return revised(written) if changed else written


class DeviceIdentities:
    """Checks and saves the identities of the devices added to it (the `NodeIdentities` of node devices)."""

    def __init__(self, store: IdentityStore) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        self._saves = StateSaves(store.update)  # writes that come together share one fsync
        self._router: GatewayDevice | None = None
        self._nodes: dict[int, tuple[NodeDevice, NodeApplication]] = {}  # by Modbus address

    @property
    def state(self) -> State:
        """The saved identities (overrides, router settings, Database_Revision)."""
        return self._store.state

    def add_router(self, device: GatewayDevice) -> None:
        self._router = device

    def add_node(self, device: NodeDevice, app: NodeApplication) -> None:
        self._nodes[device.address] = device, app

    def remove_node(self, address: int) -> None:
        del self._nodes[address]

    def instances(self) -> set[int]:
        """The device instances of the gateway's devices."""
        return {device.objectIdentifier[1] for device in self._all_devices()}

    async def rename(self, device: NodeDevice, name: str) -> None:
        async with self._lock:  # check and assign as one: two writes may interleave
            if any(
                other is not device and str(other.objectName) == name for other in self._all_devices()
            ) or self._nodes[device.address][1].names(name, device):  # unique within the device too
                raise ExecutionError("property", "duplicateName")
            saved = self._save_override(device.address, object_name=name)
            old, device.objectName = str(device.objectName), name  # so the next write's check sees it
        try:
            await saved  # acknowledged once on disk
        except BaseException:
            if str(device.objectName) == name:  # not renamed again meanwhile
                device.objectName = old
            raise
        self.show_revision()

    async def renumber(self, device: NodeDevice, instance: int) -> None:
        if instance not in range(MAX_DEVICE_INSTANCE):  # the top one is the wildcard
            raise ExecutionError("property", "valueOutOfRange")
        async with self._lock:
            if any(other is not device and other.objectIdentifier[1] == instance for other in self._all_devices()):
                raise ExecutionError("property", "duplicateObjectId")
            saved = self._save_override(device.address, object_instance=instance)
            old, device.objectIdentifier = device.objectIdentifier, ("device", instance)
        try:
            await saved
        except BaseException:
            if device.objectIdentifier[1] == instance:
                device.objectIdentifier = old
            raise
        self.show_revision()
        app = self._nodes[device.address][1]
        if app.communicating():
            app.i_am()  # a BMS that bound the old ID learns the new one

    def save(self, change: Callable[[State], State]) -> asyncio.Future[None]:
        """Save another change of the state file (the COV subscriptions), sharing fsyncs with these."""
        return self._saves.save(change)

    async def save_setting(self, setting: RouterSetting, value: int) -> None:
        """Save a router setting (applied at the next restart)."""
        await self._saves.save(lambda state: with_setting(state, setting, value))
        self.show_revision()

    async def database_changed(self) -> None:
        """A node's device is about to come or go, or its objects' Descriptions changed (a circuit
        named): Database_Revision goes up, saved, and every device shows it. A save that fails is
        logged; the change goes on all the same."""
        try:
            await self._saves.save(revised)
        except Exception as error:
            log.error("bacnet database revision not saved", detail=str(error))
            return
        self.show_revision()

    def show_revision(self) -> None:
        """Every device shows the saved Database_Revision."""
        for device in self._all_devices():
            device.databaseRevision = self._store.state.database_revision

    def _all_devices(self) -> Iterator[GatewayDevice]:
        if self._router is not None:
            yield self._router
        for device, _ in self._nodes.values():
            yield device

    def _save_override(self, address: int, **fields: Any) -> asyncio.Future[None]:
        return self._saves.save(lambda state: with_identity(state, address, **fields))
