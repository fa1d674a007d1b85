"""What the gateway needs to know of bacpypes3's objects beyond their properties.

owner(obj)                                 # the application it was added to, or None
await read_access_result(obj, objid, [(PropertyIdentifier.all, None)])   # bytes, as bacpypes3's RPM
status_flags(AnalogInputObject, "no-fault-detected", "high-limit")       # Status_Flags it computes
bits(ObjectTypesSupported, ["device", "analog-input"])                   # a bit string, bits by name
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from bacpypes3.basetypes import PropertyIdentifier, ReadAccessResult
from bacpypes3.local.object import Object
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.service.object import read_property_to_result_element

from gateway.bacnet.stack.application import StackApplication

__all__ = ["bits", "owner", "read_access_result", "status_flags"]

_PROPERTY_SETS = (PropertyIdentifier.all, PropertyIdentifier.required, PropertyIdentifier.optional)


def owner(obj: Object) -> StackApplication | None:
    """The application `obj` was added to (None before, and after it was deleted)."""
    app = getattr(obj, "_app", None)  # bacpypes3 sets it in Object.__init__, after the first properties
    return app if isinstance(app, StackApplication) else None


async def read_access_result(
    obj: Object | None, objid: ObjectIdentifier, properties: Sequence[tuple[PropertyIdentifier, int | None]]
) -> bytes:
    """One ReadAccessResult of a ReadPropertyMultiple answer, as bacpypes3's own RPM handler builds
    it (`obj` None: the object does not exist)."""
    elements = []
    for prop, index in properties:
        names = None if obj is None else _property_set(obj, prop)
        if names is None or len(names) == 1:
            elements.append(await read_property_to_result_element(obj, prop, None if names else index))
            continue
        for name in names:  # all, required, optional: only what the object has, no errors
            if inspect.getattr_static(obj, name, None) is None:
                continue
            element = await read_property_to_result_element(obj, name, None)
            if not element.readResult.propertyAccessError:
                elements.append(element)
    result = ReadAccessResult(objectIdentifier=objid, listOfResults=elements)
    return bytes(result.encode().encode().pduData)


def _property_set(obj: Object, prop: PropertyIdentifier) -> set[str] | None:
    """The properties `all`, `required` or `optional` stand for on this object (None for any other
    property), built as bacpypes3's RPM handler builds them, so they come in the same order."""
    if prop not in _PROPERTY_SETS:
        return None
    required: set[str] = set()
    for cls in reversed(obj.__class__.__mro__):
        if hasattr(cls, "_required"):
            required = required.union(set(cls._required))
    if prop == PropertyIdentifier.optional:
        return set(obj._elements.keys()).difference(required)
    names = set(obj._elements.keys())
    if prop == PropertyIdentifier.required:
        names = names.intersection(required)
    names.discard("propertyList")
    return names


def status_flags(cls: type[Object], reliability: str, event: str) -> Any:
    """Status_Flags as an object of `cls` computes them from its Reliability and Event_State (never
    out of service here), without making one."""
    shown = SimpleNamespace(
        reliability=cls.get_property_type("reliability")(reliability),
        eventState=cls.get_property_type("eventState")(event),
        outOfService=False,
    )
    return Object.statusFlags.fget(shown)


def bits(cls: type, names: Iterable[str]) -> Any:
    """A bit string of type `cls` (ServicesSupported, ObjectTypesSupported...) with the named bits set."""
    value = cls([])
    for name in names:
        value[getattr(value, name)] = 1  # bacpypes3 names each bit's position as a class attribute
    return value
