"""Index entries bound to live data: node caches and health, and the engine's own counters.

    index = OidIndex([*layout_entries(layout, nodes), *standard_entries(engine, settings, counts)])

Point values come from the node cache as decoded by the poller; the pysnmp value object is kept
until the cache holds a new reading, so a walk over unchanged values builds no new objects.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import rfc1902

from gateway.config import SnmpSettings
from gateway.nodes.api import NodeView
from gateway.nodes.cache import Reading
from gateway.pointmap import Access, Point
from gateway.snmp.index import Entry, Reader, Target
from gateway.snmp.tree import BASE, Column, Instance, Layout, NodeField, Smi

SYNTAX: dict[Smi, Any] = {  # the pysnmp class of each syntax
    Smi.INTEGER32: rfc1902.Integer32,
    Smi.UNSIGNED32: rfc1902.Unsigned32,
    Smi.COUNTER32: rfc1902.Counter32,
    Smi.COUNTER64: rfc1902.Counter64,
    Smi.TRUTH_VALUE: rfc1902.Integer32,
    Smi.DISPLAY_STRING: rfc1902.OctetString,
}

TRUE, FALSE = 1, 2  # TruthValue
COUNTER32_WRAP = 2**32
UNSIGNED32_MAX = 2**32 - 1  # a poll age past 49 days stays there

SYSTEM = (1, 3, 6, 1, 2, 1, 1)
SNMP_GROUP = (1, 3, 6, 1, 2, 1, 11)
SYS_DESCR = "BCPM gateway: Schneider Electric / Veris BCPM branch circuit power meters (Modbus RTU) over SNMP v2c"
SYS_SERVICES = 72  # applications (layer 7) and end-to-end (layer 4)
SNMP_AUTHEN_TRAPS_DISABLED = 2


@dataclass(slots=True)
class FastCounts:
    """What the fast path counted without pysnmp (a pyasn1 counter costs ~25 µs to bump), added to
    pysnmp's own counts where they are served."""

    in_packets: int = 0  # snmpInPkts
    bad_community_names: int = 0  # snmpInBadCommunityNames


class PointReader:
    """The served value of one point of one node, rebuilt only when the cache's reading changes."""

    __slots__ = ("_column", "_readings", "_register", "_seen", "_syntax", "_value")

    def __init__(self, node: NodeView, point: Point, column: Column) -> None:
        self._readings: Mapping[int, Reading] = node.cache.readings
        self._register = point.register
        self._column = column
        self._syntax = SYNTAX[column.smi]
        self._seen: Reading | None = None
        self._value: Any = None

    def __call__(self) -> Any:
        reading = self._readings[self._register]
        if reading is not self._seen:
            number = self._column.to_snmp(reading.value)
            self._value = None if number is None else self._syntax(number)
            self._seen = reading
        return self._value


def _node_value(node: NodeView, field: NodeField) -> int | str | None:
    health, profile = node.health, node.profile
    match field:
        case NodeField.ONLINE:
            return TRUE if health.online else FALSE
        case NodeField.POLL_AGE:
            last = health.last_success
            return None if last is None else min(max(0, round((time.time() - last) * 1000)), UNSIGNED32_MAX)
        case NodeField.SERIAL:
            return profile.serial
        case NodeField.MODEL:
            return profile.model
        case NodeField.DEVICE_ID:
            return profile.device_id
        case NodeField.FIRMWARE_RS:
            return profile.firmware_rs
        case NodeField.FIRMWARE_OS:
            return profile.firmware_os
        case NodeField.BOARD:
            return profile.primary_address
        case NodeField.PANEL_NUMBER:
            return node.profile.panel
        case NodeField.FAILURES:
            return health.consecutive_failures
        case NodeField.LAST_ERROR:
            return health.last_error
        case NodeField.TRANSACTIONS:
            return health.transactions % COUNTER32_WRAP
        case NodeField.FAILED_TRANSACTIONS:
            return health.failures % COUNTER32_WRAP
        case NodeField.WENT_OFFLINE:
            return health.went_offline % COUNTER32_WRAP


class NodeReader:
    """The served value of a node's own field (health, profile), rebuilt only when it changes."""

    __slots__ = ("_column", "_field", "_node", "_number", "_syntax", "_value")

    def __init__(self, node: NodeView, column: Column) -> None:
        assert column.node_field is not None
        self._node = node
        self._field = column.node_field
        self._column = column
        self._syntax = SYNTAX[column.smi]
        self._number: int | str | None = None
        self._value: Any = None

    def __call__(self) -> Any:
        number = self._column.to_snmp(_node_value(self._node, self._field))
        if number != self._number or self._value is None:
            self._number = number
            self._value = None if number is None else self._syntax(number)
        return self._value


def _constant(value: Any) -> Reader:
    return lambda: value


#: What the meter reads write-only registers as: one reader per syntax, shared by every such instance.
_ZERO = {smi: _constant(syntax(0)) for smi, syntax in SYNTAX.items()}


def _entry(instance: Instance, node: NodeView) -> Entry:
    column, point = instance.column, instance.point
    read: Reader
    if point is None:
        read = NodeReader(node, column)
    elif point.access is Access.W:
        read = _ZERO[column.smi]
    else:
        read = PointReader(node, point, column)
    target = Target(node, point, column) if point is not None and column.writable else None
    return Entry(column.oid, instance.oid[len(column.oid):], read, target)


def layout_entries(layout: Layout, nodes: Mapping[int, NodeView]) -> Iterator[Entry]:
    """The enterprise tree's instances for these nodes."""
    models = {address: node.profile.model for address, node in nodes.items()}
    for instance in layout.instances(models):
        yield _entry(instance, nodes[instance.address])


def standard_entries(engine: SnmpEngine, settings: SnmpSettings, fast: FastCounts) -> Iterator[Entry]:
    """The system group (sysContact, sysName, sysLocation from the settings) and the snmp group's
    current objects (RFC 3418), from the engine's counters."""
    builder = engine.get_mib_builder()

    def engine_scalar(symbol: str, also: Callable[[], int] | None = None) -> Reader:
        (instance,) = builder.import_symbols("__SNMPv2-MIB", symbol)
        if symbol == "sysUpTime":
            return lambda: instance.syntax.clone()  # computes its value then
        if also is not None:
            return lambda: instance.syntax.clone((int(instance.syntax) + also()) % COUNTER32_WRAP)
        return lambda: instance.syntax  # a counter is replaced as it counts

    constants: dict[tuple[int, ...], Any] = {
        SYSTEM + (1,): rfc1902.OctetString(SYS_DESCR),
        SYSTEM + (2,): rfc1902.ObjectIdentifier(BASE),
        SYSTEM + (4,): rfc1902.OctetString(settings.contact),
        SYSTEM + (5,): rfc1902.OctetString(settings.name or socket.gethostname()),
        SYSTEM + (6,): rfc1902.OctetString(settings.location),
        SYSTEM + (7,): rfc1902.Integer32(SYS_SERVICES),
        SYSTEM + (8,): rfc1902.TimeTicks(0),
        SNMP_GROUP + (30,): rfc1902.Integer32(SNMP_AUTHEN_TRAPS_DISABLED),
    }
    counters: dict[tuple[int, ...], Callable[[], Any]] = {
        SYSTEM + (3,): engine_scalar("sysUpTime"),
        SNMP_GROUP + (1,): engine_scalar("snmpInPkts", lambda: fast.in_packets),
        SNMP_GROUP + (3,): engine_scalar("snmpInBadVersions"),
        SNMP_GROUP + (4,): engine_scalar("snmpInBadCommunityNames", lambda: fast.bad_community_names),
        SNMP_GROUP + (5,): engine_scalar("snmpInBadCommunityUses"),
        SNMP_GROUP + (6,): engine_scalar("snmpInASNParseErrs"),
        SNMP_GROUP + (31,): engine_scalar("snmpSilentDrops"),
        SNMP_GROUP + (32,): engine_scalar("snmpProxyDrops"),
    }
    for oid, value in constants.items():
        yield Entry(oid, (0,), _constant(value))
    for oid, read in counters.items():
        yield Entry(oid, (0,), read)
