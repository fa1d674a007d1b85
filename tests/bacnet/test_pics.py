"""docs/PICS.md says what a running gateway does, with the shipped settings: its services and object
types (read with @bacnet-js/client), and each object's properties, which of them take a write, and
every value it states (read, and written back, with rusty-bacnet). A table that drifts from the
devices fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import rusty_bacnet as rb
from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.primitivedata import Boolean, Enumerated, OctetString, Real, Unsigned

from tests.bacnet.js_client import bacnet_js
from tests.bacnet.rusty_client import oid, prop, rusty_client
from tests.bacnet.test_conformance import meter
from tests.bacnet.test_device_objects import DEVICE, ROUTER_SERVICES, bits, read

PICS = Path(__file__).parents[2] / "docs" / "PICS.md"
PROTOCOL_SERVICES_SUPPORTED, PROTOCOL_OBJECT_TYPES_SUPPORTED, PROTOCOL_REVISION = 97, 96, 139
OBJECT_TYPES = {"Analog Input": 0, "Analog Value": 2, "Device": 8, "Multi-state Value": 19, "Network Port": 56}
ROUTER, NODE = 50000, 50001
#: The object each row of "Properties" stands for: (device instance, object type, instance).
OBJECTS = {
    "Device (router)": (ROUTER, "device", ROUTER),
    "Device (node devices)": (NODE, "device", NODE),
    "Analog Input (node devices)": (NODE, "analog-input", 1336),
    "Analog Value (router)": (ROUTER, "analog-value", 1),
    "Analog Value (node devices)": (NODE, "analog-value", 8),  # a CT size
    "Multi-state Value (node devices)": (NODE, "multi-state-value", 1),
    "Network Port (router, BACnet/IP)": (ROUTER, "network-port", 1),
    "Network Port (router, virtual network)": (ROUTER, "network-port", 2),
    "Network Port (node devices)": (NODE, "network-port", 1),
}
DEVICES = {"Router": OBJECTS["Device (router)"], "Node devices": OBJECTS["Device (node devices)"]}
PORTS = {"Router, BACnet/IP": OBJECTS["Network Port (router, BACnet/IP)"]}
PORTS |= {"Router, virtual network": OBJECTS["Network Port (router, virtual network)"]}
PORTS |= {"Node devices": OBJECTS["Network Port (node devices)"]}
WRITE_ACCESS_DENIED = 40
#: Values rusty-bacnet can write back as it read them (not lists, arrays or constructed values).
PRIMITIVE = {
    "real",
    "unsigned",
    "signed",
    "enumerated",
    "boolean",
    "character_string",
    "bit_string",
    "object_identifier",
}


def table(heading: str) -> list[list[str]]:
    """The rows of the first table under `## heading`, as cells."""
    section = PICS.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[2:]]  # without the header and the rule


def header(heading: str) -> list[str]:
    section = PICS.read_text().split(f"## {heading}\n", 1)[1]
    line = next(line for line in section.splitlines() if line.startswith("| "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def executed(column: int) -> set[str]:
    return {row[0] for row in table("Services") if "Execute" in row[column]}


def object_types(column: int) -> set[str]:
    return {row[0] for row in table("Object types") if row[column].startswith("yes")}


def property_id(name: str) -> int:
    """A property as the PICS names it ("APDU_Length"), as a number."""
    return int(PropertyIdentifier(name.lower().replace("_", "-")))


def names(cell: str) -> list[str]:
    return [] if cell == "-" else [name.strip() for name in cell.split(",")]


def stated(object_class: type, name: str, text: str) -> Any:
    """A value as the PICS states it, as rusty-bacnet reads it (enumerations as numbers)."""
    kind = object_class.get_property_type(PropertyIdentifier(name.lower().replace("_", "-")))
    if issubclass(kind, Enumerated):
        return int(kind(text))
    if issubclass(kind, Boolean):
        return {"true": True, "false": False}[text]
    if issubclass(kind, Real):
        return float(text)
    if issubclass(kind, OctetString):
        return bytes.fromhex(text)
    assert issubclass(kind, Unsigned), f"{name}: no rule for {kind.__name__}"
    return int(text)


async def test_the_pics_lists_the_services_and_object_types_the_devices_report(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    router_services, router_types, node_services, node_types, revision = await bacnet_js(
        gateway.config.bacnet.port,
        read(None, DEVICE, ROUTER, PROTOCOL_SERVICES_SUPPORTED),
        read(None, DEVICE, ROUTER, PROTOCOL_OBJECT_TYPES_SUPPORTED),
        read(meter(1), DEVICE, NODE, PROTOCOL_SERVICES_SUPPORTED),
        read(meter(1), DEVICE, NODE, PROTOCOL_OBJECT_TYPES_SUPPORTED),
        read(None, DEVICE, ROUTER, PROTOCOL_REVISION),
    )
    assert {ROUTER_SERVICES[bit] for bit in bits(router_services[0])} == executed(1)
    assert {ROUTER_SERVICES[bit] for bit in bits(node_services[0])} == executed(2)
    types = {number: name for name, number in OBJECT_TYPES.items()}
    assert {types[bit] for bit in bits(router_types[0])} == object_types(1)
    assert {types[bit] for bit in bits(node_types[0])} == object_types(2)
    assert f"| BACnet protocol revision | {revision[0]} |" in PICS.read_text()


async def test_the_pics_lists_each_objects_properties_and_the_writable_ones(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    rows = {row[0]: (names(row[1]), names(row[2])) for row in table("Properties")}
    assert rows.keys() == OBJECTS.keys()
    async with rusty_client(gateway.config.bacnet.port) as client:
        for label, (device, object_type, instance) in OBJECTS.items():
            listed, writable = rows[label]
            objid = oid(object_type, instance)
            reported = await client.read_property_from_device(device, objid, prop("property-list"))
            assert sorted(reported.value) == sorted(property_id(name) for name in listed), label
            for name in listed:
                pid = rb.PropertyIdentifier.from_raw(property_id(name))
                value = await client.read_property_from_device(device, objid, pid)
                if value.tag not in PRIMITIVE:
                    continue
                try:
                    await client.write_property_to_device(device, objid, pid, value)
                except rb.BacnetProtocolError as refused:
                    assert name not in writable and refused.error_code == WRITE_ACCESS_DENIED, f"{label}: {name}"
                else:
                    assert name in writable, f"{label}: {name} took a write"


@pytest.mark.parametrize(
    ("heading", "objects", "object_class"),
    [
        (
            "Device object values",
            {"Router": (ROUTER, "device", ROUTER), "Node devices": (NODE, "device", NODE)},
            DeviceObject,
        ),
        ("Network Port values", PORTS, NetworkPortObject),
    ],
)
async def test_the_values_the_pics_states_are_the_devices(bacnet_gateway, heading, objects, object_class) -> None:
    gateway, _ = bacnet_gateway
    columns = header(heading)[1:]
    assert columns == list(objects)
    async with rusty_client(gateway.config.bacnet.port) as client:
        for name, *cells in table(heading):
            pid = rb.PropertyIdentifier.from_raw(property_id(name))
            for column, cell in zip(columns, cells, strict=True):
                device, object_type, instance = objects[column]
                value = await client.read_property_from_device(device, oid(object_type, instance), pid)
                assert value.value == stated(object_class, name, cell), f"{name} of {column}"
