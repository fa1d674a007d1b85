"""docs/PICS.md says what a running gateway does: its services and object types, read from the
router and a node device with @bacnet-js/client."""

from __future__ import annotations

from pathlib import Path

from tests.bacnet.js_client import bacnet_js
from tests.bacnet.test_conformance import meter
from tests.bacnet.test_device_objects import DEVICE, ROUTER_SERVICES, bits, read

PICS = Path(__file__).parents[2] / "docs" / "PICS.md"
PROTOCOL_SERVICES_SUPPORTED, PROTOCOL_OBJECT_TYPES_SUPPORTED, PROTOCOL_REVISION = 97, 96, 139
OBJECT_TYPES = {"Analog Input": 0, "Analog Value": 2, "Device": 8, "Multi-state Value": 19, "Network Port": 56}


def table(heading: str) -> list[list[str]]:
    """The rows of the first table under `## heading`, as cells."""
    section = PICS.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header


def executed(column: int) -> set[str]:
    return {row[0] for row in table("Services") if "Execute" in row[column]}


def object_types(column: int) -> set[str]:
    return {row[0] for row in table("Object types") if row[column].startswith("yes")}


async def test_the_pics_lists_the_services_and_object_types_the_devices_report(bacnet_gateway) -> None:
    gateway, _ = bacnet_gateway
    router_services, router_types, node_services, node_types, revision = await bacnet_js(
        gateway.config.bacnet.port,
        read(None, DEVICE, 50000, PROTOCOL_SERVICES_SUPPORTED),
        read(None, DEVICE, 50000, PROTOCOL_OBJECT_TYPES_SUPPORTED),
        read(meter(1), DEVICE, 50001, PROTOCOL_SERVICES_SUPPORTED),
        read(meter(1), DEVICE, 50001, PROTOCOL_OBJECT_TYPES_SUPPORTED),
        read(None, DEVICE, 50000, PROTOCOL_REVISION),
    )
    assert {ROUTER_SERVICES[bit] for bit in bits(router_services[0])} == executed(1)
    assert {ROUTER_SERVICES[bit] for bit in bits(node_services[0])} == executed(2)
    names = {number: name for name, number in OBJECT_TYPES.items()}
    assert {names[bit] for bit in bits(router_types[0])} == object_types(1)
    assert {names[bit] for bit in bits(node_types[0])} == object_types(2)
    assert f"| BACnet protocol revision | {revision[0]} |" in PICS.read_text()
