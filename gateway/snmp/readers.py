"""Index entries bound to live data: node caches and health, and the engine's own counters.

    index = OidIndex(itertools.chain(layout_entries(layout, nodes, names), standard_entries(engine, settings, counts)))

One reader per object serves all its instances: a table column's reads the row its suffix names
(the panel, then the channel, pair or meter) from that node's cache as decoded by the poller, or
from its health and profile. Readers return plain values; the index makes pysnmp values of them
with the object's syntax where pysnmp answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import rfc1902

from gateway.config import SnmpSettings
from gateway.nodes.api import NodeView
from gateway.pointmap import Access, Point
from gateway.snmp.index import Entry, Oid, Reader, Syntax, Target, Targets
from gateway.snmp.tree import BASE, Column, Layout, NodeField, Smi

SYNTAX: dict[Smi, Any] = {  # the pysnmp class of each syntax
    Smi.INTEGER32: rfc1902.Integer32,
    Smi.UNSIGNED32: rfc1902.Unsigned32,
    Smi.COUNTER32: rfc1902.Counter32,
    Smi.COUNTER64: rfc1902.Counter64,
    Smi.TRUTH_VALUE: rfc1902.Integer32,
    Smi.DISPLAY_STRING: rfc1902.OctetString,
}

CircuitNames = Callable[[int], Mapping[int, str]]  # the node API's circuit_names

TRUE, FALSE = 1, 2  # TruthValue
COUNTER32_WRAP = 2**32
UNSIGNED32_MAX = 2**32 - 1  # a poll age past 49 days stays there

SYSTEM = (1, 3, 6, 1, 2, 1, 1)
SNMP_GROUP = (1, 3, 6, 1, 2, 1, 11)
SNMP_ENGINE = (1, 3, 6, 1, 6, 3, 10, 2, 1)  # SNMP-FRAMEWORK-MIB (RFC 3411)
MPD_STATS = (1, 3, 6, 1, 6, 3, 11, 2, 1)  # SNMP-MPD-MIB (RFC 3412)
USM_STATS = (1, 3, 6, 1, 6, 3, 15, 1, 1)  # SNMP-USER-BASED-SM-MIB (RFC 3414)
UNKNOWN_CONTEXTS = (1, 3, 6, 1, 6, 3, 12, 1, 5)  # snmpUnknownContexts (SNMP-TARGET-MIB, RFC 3413)
#: The usmStats counters by their number under USM_STATS.
USM_COUNTERS = {
    1: "usmStatsUnsupportedSecLevels",
    2: "usmStatsNotInTimeWindows",
    3: "usmStatsUnknownUserNames",
    4: "usmStatsUnknownEngineIDs",
    5: "usmStatsWrongDigests",
    6: "usmStatsDecryptionErrors",
}
SYS_DESCR = "BCPM gateway: Schneider Electric / Veris BCPM branch circuit power meters (Modbus RTU) over SNMP"
SYS_SERVICES = 72  # applications (layer 7) and end-to-end (layer 4)
SNMP_AUTHEN_TRAPS_DISABLED = 2


@dataclass(slots=True)
class FastCounts:
    """What the fast path counted without pysnmp (a pyasn1 counter costs ~25 µs to bump), added to
    pysnmp's own counts where they are served."""

    in_packets: int = 0  # snmpInPkts
    bad_community_names: int = 0  # snmpInBadCommunityNames
    bad_versions: int = 0  # snmpInBadVersions: SNMPv1 and v2c while snmp.v2c is false
    invalid_msgs: int = 0  # snmpInvalidMsgs
    unknown_contexts: int = 0  # snmpUnknownContexts
    usm: list[int] = field(default_factory=lambda: [0] * (len(USM_COUNTERS) + 1))  # by USM_COUNTERS number


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
        case NodeField.CIRCUIT_NAME:
            raise ValueError("a circuit's name is a row's, not a node's")


def _point_value(node: NodeView, point: Point, column: Column) -> int | str | None:
    if point.access is Access.W:
        return 0  # what the meter reads write-only registers as
    return column.to_snmp(node.cache.current(point.register)[0])


def _locator(layout: Layout, column: Column, nodes: Mapping[int, NodeView]) -> Callable[[Oid], tuple[NodeView, Point]]:
    """The node and point behind an instance of a column with points, by the instance's suffix."""
    points = column.points
    if column is layout.advanced_features:  # register 62017 of the lowest panel, at .0
        lowest = nodes[min(nodes)]
        return lambda suffix: (lowest, points[None])
    # a table's: the suffix is (panel,) or (panel, channel / pair / meter)
    return lambda suffix: (nodes[suffix[0]], points[suffix[1] if len(suffix) > 1 else None])


def _object(
    layout: Layout, column: Column, nodes: Mapping[int, NodeView], names: CircuitNames
) -> tuple[Reader, Targets | None]:
    """How every instance of a column (or the guide's scalar) is read, and written if it is writable."""
    field = column.node_field
    if field is NodeField.CIRCUIT_NAME:
        return lambda suffix: column.to_snmp(names(suffix[0]).get(suffix[1], "")), None
    if field is not None:
        return lambda suffix: column.to_snmp(_node_value(nodes[suffix[0]], field)), None
    locate = _locator(layout, column, nodes)
    targets = (lambda suffix: Target(*locate(suffix), column)) if column.writable else None
    return lambda suffix: _point_value(*locate(suffix), column), targets


def _constant(value: Any) -> Reader:
    return lambda suffix: value


def layout_entries(layout: Layout, nodes: Mapping[int, NodeView], names: CircuitNames) -> Iterator[Entry]:
    """The enterprise tree's instances for these nodes (`names`: a node's circuit names by channel)."""
    models = {address: node.profile.model for address, node in nodes.items()}
    objects: dict[Oid, tuple[Reader, Targets | None]] = {}
    for instance in layout.instances(models):
        column = instance.column
        if column.oid not in objects:
            objects[column.oid] = _object(layout, column, nodes, names)
        read, targets = objects[column.oid]
        yield Entry(column.oid, instance.oid[len(column.oid) :], read, SYNTAX[column.smi], targets)


def engine_counter(
    engine: SnmpEngine, module: str, symbol: str, also: Callable[[], int] = lambda: 0
) -> Callable[[], int]:
    """A counter of the engine's as served: pysnmp's count and the fast path's (``also``)."""
    (instance,) = engine.get_mib_builder().import_symbols(module, symbol)
    # A counter is replaced as it counts: read the current one.
    return lambda: (int(instance.syntax) + also()) % COUNTER32_WRAP


def usm_counter(engine: SnmpEngine, fast: FastCounts) -> Callable[[int], int]:
    """A usmStats counter as served, by its number."""
    counters = {
        number: engine_counter(engine, "__SNMP-USER-BASED-SM-MIB", symbol, _usm_count(fast, number))
        for number, symbol in USM_COUNTERS.items()
    }
    return lambda number: counters[number]()


def standard_entries(engine: SnmpEngine, settings: SnmpSettings, fast: FastCounts) -> Iterator[Entry]:
    """The system group (sysContact, sysName, sysLocation from the settings) and the snmp group's
    current objects (RFC 3418); the engine's identity (RFC 3411), its message processing (RFC 3412),
    context (RFC 3413) and USM (RFC 3414) counters: from the engine, and the counts of the fast path."""
    builder = engine.get_mib_builder()
    (up_time,) = builder.import_symbols("__SNMPv2-MIB", "sysUpTime")
    identity, boots, seconds, max_size = builder.import_symbols(
        "__SNMP-FRAMEWORK-MIB", "snmpEngineID", "snmpEngineBoots", "snmpEngineTime", "snmpEngineMaxMessageSize"
    )
    constants: dict[Oid, tuple[Syntax, Any]] = {
        SYSTEM + (1,): (rfc1902.OctetString, SYS_DESCR),
        SYSTEM + (2,): (rfc1902.ObjectIdentifier, BASE),
        SYSTEM + (4,): (rfc1902.OctetString, settings.contact),
        SYSTEM + (5,): (rfc1902.OctetString, settings.name or socket.gethostname()),
        SYSTEM + (6,): (rfc1902.OctetString, settings.location),
        SYSTEM + (7,): (rfc1902.Integer32, SYS_SERVICES),
        SYSTEM + (8,): (rfc1902.TimeTicks, 0),
        SNMP_GROUP + (30,): (rfc1902.Integer32, SNMP_AUTHEN_TRAPS_DISABLED),
        SNMP_ENGINE + (1,): (rfc1902.OctetString, bytes(identity.syntax)),
        SNMP_ENGINE + (2,): (rfc1902.Integer32, int(boots.syntax)),
        SNMP_ENGINE + (4,): (rfc1902.Integer32, int(max_size.syntax)),
    }
    clocks: dict[Oid, tuple[Reader, Syntax]] = {  # clone() computes them
        SYSTEM + (3,): (lambda suffix: int(up_time.syntax.clone()), rfc1902.TimeTicks),
        SNMP_ENGINE + (3,): (lambda suffix: int(seconds.syntax.clone()), rfc1902.Integer32),
    }
    counters: dict[Oid, tuple[str, str, Callable[[], int]]] = {  # (module, symbol, the fast path's count)
        SNMP_GROUP + (1,): ("__SNMPv2-MIB", "snmpInPkts", lambda: fast.in_packets),
        SNMP_GROUP + (3,): ("__SNMPv2-MIB", "snmpInBadVersions", lambda: fast.bad_versions),
        SNMP_GROUP + (4,): ("__SNMPv2-MIB", "snmpInBadCommunityNames", lambda: fast.bad_community_names),
        SNMP_GROUP + (5,): ("__SNMPv2-MIB", "snmpInBadCommunityUses", lambda: 0),
        SNMP_GROUP + (6,): ("__SNMPv2-MIB", "snmpInASNParseErrs", lambda: 0),
        SNMP_GROUP + (31,): ("__SNMPv2-MIB", "snmpSilentDrops", lambda: 0),
        SNMP_GROUP + (32,): ("__SNMPv2-MIB", "snmpProxyDrops", lambda: 0),
        MPD_STATS + (1,): ("__SNMP-MPD-MIB", "snmpUnknownSecurityModels", lambda: 0),
        MPD_STATS + (2,): ("__SNMP-MPD-MIB", "snmpInvalidMsgs", lambda: fast.invalid_msgs),
        MPD_STATS + (3,): ("__SNMP-MPD-MIB", "snmpUnknownPDUHandlers", lambda: 0),
        UNKNOWN_CONTEXTS: ("__SNMP-TARGET-MIB", "snmpUnknownContexts", lambda: fast.unknown_contexts),
        **{
            USM_STATS + (number,): ("__SNMP-USER-BASED-SM-MIB", symbol, _usm_count(fast, number))
            for number, symbol in USM_COUNTERS.items()
        },
    }
    for oid, (syntax, value) in constants.items():
        yield Entry(oid, (0,), _constant(value), syntax)
    for oid, (read, syntax) in clocks.items():
        yield Entry(oid, (0,), read, syntax)
    for oid, (module, symbol, also) in counters.items():
        yield Entry(oid, (0,), _counted(engine_counter(engine, module, symbol, also)), rfc1902.Counter32)


def _usm_count(fast: FastCounts, number: int) -> Callable[[], int]:
    return lambda: fast.usm[number]


def _counted(count: Callable[[], int]) -> Reader:
    return lambda suffix: count()
