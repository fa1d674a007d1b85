"""The device objects: the router's and one per meter node, and the router's setting AVs.

A node device's Object_Name and Object_Identifier are writable; the write is checked, saved in
the state file and applied at once, and survives restarts, offset changes and rediscovery (see
`plan.py`). The router's identity is its configuration: its Object_Identifier is the device
ID offset, so it changes through AV1 (applied at the next restart), and neither is writable.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bacpypes3.basetypes import ObjectTypesSupported
from bacpypes3.errors import ExecutionError
from bacpypes3.local.analog import AnalogValueObject
from bacpypes3.local.device import ArrayOfObjectIdentifier, DeviceObject
from bacpypes3.primitivedata import Boolean, CharacterString, Date, Integer, ObjectIdentifier, Time

from gateway.bacnet.clock import Clock
from gateway.bacnet.local_objects import GuardedWrites, real_value
from gateway.bacnet.plan import RouterSetting
from gateway.bacnet.stack import bits, owner

__all__ = ["GatewayDevice", "NodeDevice", "NodeIdentities", "RouterSettingValue"]

#: Longest Object_Name a client may give a node device (names live in BMS databases).
MAX_NAME_LENGTH = 64


class GatewayDevice(GuardedWrites, DeviceObject):
    """A device of the gateway: local time, UTC offset and daylight saving from the gateway's clock
    and the board's time zone, and the objects and object types it really has (built or not;
    bacpypes3 reports the built ones, and no types)."""

    _clock: Clock

    @property
    def localDate(self) -> Date:
        return Date.now(self._clock.time())

    @localDate.setter
    def localDate(self, value: Any) -> None:
        pass  # computed

    @property
    def localTime(self) -> Time:
        return Time.now(self._clock.time())

    @localTime.setter
    def localTime(self, value: Any) -> None:
        pass  # computed

    @property
    def utcOffset(self) -> Integer:
        """Minutes from local standard time to UTC (BACnet's sign: positive west of Greenwich)."""
        return Integer(time.timezone // 60)

    @utcOffset.setter
    def utcOffset(self, value: Any) -> None:
        pass  # the board's time zone

    @property
    def daylightSavingsStatus(self) -> Boolean:
        return Boolean(time.localtime(self._clock.time()).tm_isdst > 0)

    @daylightSavingsStatus.setter
    def daylightSavingsStatus(self, value: Any) -> None:
        pass  # the board's time zone

    @property
    def objectList(self) -> ArrayOfObjectIdentifier:
        return ArrayOfObjectIdentifier(self._identifiers())

    @objectList.setter
    def objectList(self, value: Any) -> None:
        pass  # computed

    @property
    def protocolObjectTypesSupported(self) -> ObjectTypesSupported:
        return bits(ObjectTypesSupported, {identifier[0].attr for identifier in self._identifiers()})

    @protocolObjectTypesSupported.setter
    def protocolObjectTypesSupported(self, value: Any) -> None:
        pass  # computed

    def keep_time(self, clock: Clock) -> None:
        """Show the time of `clock`."""
        self._clock = clock

    def _identifiers(self) -> list[ObjectIdentifier]:
        app = owner(self)
        return [self.objectIdentifier] if app is None else app.object_identifiers()


class NodeIdentities(Protocol):
    """Who checks and saves a new node identity (`identities.DeviceIdentities`, which knows every device)."""

    async def rename(self, device: NodeDevice, name: str) -> None: ...

    async def renumber(self, device: NodeDevice, instance: int) -> None: ...


class NodeDevice(GatewayDevice):
    _saved_properties = frozenset({"objectName", "objectIdentifier"})
    _address: int
    _identities: NodeIdentities

    def serve(self, address: int, identities: NodeIdentities) -> None:
        """Be the device of the node at Modbus `address`; `identities` checks and saves a new name or ID."""
        self._address = address
        self._identities = identities

    @property
    def address(self) -> int:
        """The node's Modbus address."""
        return self._address

    async def _write(self, name: str, value: Any) -> None:
        if name == "objectName":
            text = str(value) if isinstance(value, CharacterString) else None
            if text is None or not text.strip() or len(text) > MAX_NAME_LENGTH:
                raise ExecutionError("property", "valueOutOfRange" if text is not None else "invalidDataType")
            await self._identities.rename(self, text)
        elif name == "objectIdentifier":
            if not isinstance(value, ObjectIdentifier) or value[0] != self.objectIdentifier[0]:
                raise ExecutionError("property", "valueOutOfRange")
            await self._identities.renumber(self, value[1])
        else:
            await super()._write(name, value)


class RouterSettingValue(GuardedWrites, AnalogValueObject):
    """AV1 (device ID offset) or AV2 (virtual network): saved at once, applied at next start."""

    _saved_properties = frozenset({"presentValue"})
    _setting: RouterSetting
    _save: Callable[[RouterSetting, int], Awaitable[None]]

    def serve(self, setting: RouterSetting, save: Callable[[RouterSetting, int], Awaitable[None]]) -> None:
        """Show `setting`; `save` saves a value written to it."""
        self._setting = setting
        self._save = save

    async def _write(self, name: str, value: Any) -> None:
        if name != "presentValue":
            await super()._write(name, value)
            return
        number = real_value(value)
        if not number.is_integer() or int(number) not in self._setting.valid:
            raise ExecutionError("property", "valueOutOfRange")
        await self._save(self._setting, int(number))
        self.presentValue = number
