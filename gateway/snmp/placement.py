"""Which point of the map lands in which table and column of the OID tree, and in what units.

Pure functions, no I/O. Every table is indexed by panel (= Modbus address), and by channel,
line-to-line pair or logical meter where that applies. Each point of the map lands in exactly one
column (`place`), or is left out for a stated reason (`exclusion`). Values are integers in fixed
units (mA, W, VA, Wh, 0.1 V, 0.01 Hz, 0.1 %, 0.001) whatever the meter's scale registers say
(`served_units`). `build_layout` applies these rules to a point map; the column descriptions come
from ``gateway.snmp.prose``:

>>> layout = build_layout(load())
>>> column = layout.column_of(load().find("current", group="branch", channel=12))
>>> (column.name, column.units, column.to_snmp(17.5))
('bcpmBranchCurrent', 'mA', 17500)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.modbus import UNIT_ADDRESSES
from gateway.nodes.circuits import CIRCUIT_NAME_MAX
from gateway.pointmap import Access, Encoding, Point, PointMap, PollClass, load
from gateway.snmp import prose
from gateway.snmp.tree import (
    ADVANCED_FEATURES_OID,
    NOTIFICATIONS,
    NOTIFY_OBJECTS,
    Branch,
    Column,
    Layout,
    MaxAccess,
    NodeField,
    Notification,
    Rows,
    Smi,
    Table,
)

_UNIT_RANGE = f"({UNIT_ADDRESSES[0]}..{UNIT_ADDRESSES[-1]})"  # a panel index: the node's Modbus address


@dataclass(frozen=True, slots=True)
class _TableSpec:
    name: str
    branch: Branch
    number: int
    rows: Rows
    description: str
    holds: Callable[[Point], bool]
    phase_in_name: bool = True  # False where the row (AUX channel) already says the phase
    named_rows: bool = False  # a last column with the name a user gave each row's circuit


_PROFILE_KEYS = frozenset({"serial_number", "firmware_rs", "firmware_os", "device_id"})

_TABLES = (
    _TableSpec(
        "bcpmConfigTable",
        Branch.CONFIGURATION,
        1,
        Rows.PANEL,
        "Writable setup of each panel: demand, alarm delays and thresholds, voltage alarms, advanced features, resets.",
        lambda p: p.writable and p.channel is None and p.group in ("setup", "identity"),
    ),
    _TableSpec(
        "bcpmChanConfigTable",
        Branch.CONFIGURATION,
        2,
        Rows.CHANNEL,
        "Writable setup of each CT channel of each panel: CT size, breaker size, voltage phase; and the "
        "circuit's name.",
        lambda p: p.group == "setup" and p.channel is not None,
        named_rows=True,
    ),
    _TableSpec(
        "bcpmAlarmTable",
        Branch.ALARMS,
        1,
        Rows.PANEL,
        "Global alarm status, most recent alarm channels and alarm counters of each panel.",
        lambda p: p.group == "alarms" and p.channel is None,
    ),
    _TableSpec(
        "bcpmChanAlarmTable",
        Branch.ALARMS,
        2,
        Rows.CHANNEL,
        "Alarm status and latching alarm counters of each CT channel of each panel.",
        lambda p: p.group == "alarms" and p.channel is not None and p.key != "voltage_alarm_status",
    ),
    _TableSpec(
        "bcpmVoltAlarmTable",
        Branch.ALARMS,
        3,
        Rows.PAIR,
        "Voltage alarm status of each line-to-line pair of each panel (models A and B).",
        lambda p: p.key == "voltage_alarm_status",
    ),
    _TableSpec(
        "bcpmVoltageTable",
        Branch.VOLTAGE_INPUTS,
        1,
        Rows.PANEL,
        "Voltage inputs of each panel: frequency, line-to-neutral and line-to-line voltages (models A and B).",
        lambda p: p.group == "voltage",
    ),
    _TableSpec(
        "bcpmAuxTable",
        Branch.AUX_INPUTS,
        1,
        Rows.PANEL,
        "Three-phase totals of the AUX inputs of each panel.",
        lambda p: p.group == "aux" and p.channel is None,
    ),
    _TableSpec(
        "bcpmAuxChanTable",
        Branch.AUX_INPUTS,
        2,
        Rows.CHANNEL,
        "Per-phase AUX measurements (channels 43-45 phases 1-3, 46 neutral) of each panel.",
        lambda p: p.group == "aux" and p.channel is not None,
        phase_in_name=False,
    ),
    _TableSpec(
        "bcpmBranchTable",
        Branch.BRANCH_INPUTS,
        1,
        Rows.CHANNEL,
        "Branch circuit measurements of each CT channel 1-42 of each panel.",
        lambda p: p.group == "branch",
    ),
    _TableSpec(
        "bcpmMeter2Table",
        Branch.FLEX_CIRCUITS,
        1,
        Rows.METER,
        "Two-phase logical meters (flex circuits 1-21) of each panel.",
        lambda p: p.group == "meter2",
    ),
    _TableSpec(
        "bcpmMeter3Table",
        Branch.FLEX_CIRCUITS,
        2,
        Rows.METER,
        "Three-phase logical meters (flex circuits 1-14) of each panel.",
        lambda p: p.group == "meter3",
    ),
    _TableSpec(
        "bcpmNodeTable",
        Branch.NODES,
        1,
        Rows.PANEL,
        "Status of each meter node (panel) the gateway polls. Values of an offline node are "
        "served as last read: bcpmNodeOnline says whether they are current.",
        lambda p: p.group in ("identity", "service") and not p.writable,
    ),
)


def exclusion(point: Point) -> str | None:
    """Why a point has no OID (None: it has one)."""
    if point.key.endswith("_scale"):
        return "scale register: every value is served already scaled, in fixed units"
    if point.encoding is Encoding.STRING:
        return "string block that is not polled (read on demand only)"
    if point.poll is PollClass.NONE and point.access is not Access.W:
        return "not polled (reserved or placeholder), so the cache never holds it"
    if point.key in _PROFILE_KEYS:
        return "served from the discovery profile by bcpmNodeTable"
    return None


def place(point: Point) -> _TableSpec:
    """The table of a point that has an OID; exactly one must hold it."""
    specs = [spec for spec in _TABLES if spec.holds(point)]
    if len(specs) != 1:
        raise ValueError(f"{point.label} (register {point.register}) fits {len(specs)} tables")
    return specs[0]


# --- units and syntax -------------------------------------------------------------------------------

#: Served unit and exponent for quantities the meter scales with a scale register.
_SCALED_UNITS = {"A": ("mA", -3), "kW": ("W", -3), "kVA": ("VA", -3), "kWh": ("Wh", -3), "V": ("0.1 V", -1)}
_FIXED_UNITS = {("%", -1): "0.1 %", ("Hz", -2): "0.01 Hz", ("", -3): "0.001"}
_FIXED_UNITS_TEXT = {"A": "A", "s": "s", "": ""}


def served_units(point: Point) -> tuple[str, int]:
    """(UNITS text, exponent) of a point's SNMP value."""
    if point.scale_register is not None:
        return _SCALED_UNITS[point.units]
    if point.exponent is not None:
        return _FIXED_UNITS[(point.units, point.exponent)], point.exponent
    return _FIXED_UNITS_TEXT[point.units], 0


def _smi(point: Point) -> Smi:
    if point.encoding is Encoding.UINT32:
        return Smi.COUNTER64 if point.units == "kWh" else Smi.UNSIGNED32
    return Smi.INTEGER32 if point.encoding is Encoding.INT16 else Smi.UNSIGNED32


def _range(point: Point, smi: Smi) -> str:
    if point.writable:  # in served units only where they equal the register's
        valid = ((0, 0), *point.valid) if point.access is Access.W else point.valid  # reads 0
        parts = [str(low) if low == high else f"{low}..{high}" for low, high in valid]
        return "" if point.scale_register is not None else f"({' | '.join(parts)})"
    if smi is Smi.UNSIGNED32 and point.count == 1:
        return "(0..65535)"
    return ""


# --- descriptors ------------------------------------------------------------------------------------

_WORDS = {
    "kw": "Power",
    "kwh": "Energy",
    "kva": "ApparentPower",
    "pf": "PowerFactor",
    "nl": "Nl",
    "nonlatching": "NonLatching",
    "ln": "LN",
    "ll": "LL",
}
#: Keys whose table already says what they are, or too long for a 32-character descriptor.
_SHORT_KEYS = {
    "alarm_status": "status",
    "voltage_alarm_status": "status",
    "volts_ln": "ln",
    "volts_ll": "ll",
    "volts_ln_avg": "ln_avg",
    "volts_ll_avg": "ll_avg",
    "recent_latching_channel": "last_latching_channel",
    "recent_nonlatching_channel": "last_nonlatching_channel",
    "channels_in_latching_alarm": "channels_latching",
    "channels_in_nonlatching_alarm": "channels_nonlatching",
}


def _camel(key: str) -> str:
    return "".join(_WORDS.get(word, word.capitalize()) for word in _SHORT_KEYS.get(key, key).split("_"))


# --- tables and columns ---------------------------------------------------------------------------


def _point_column(spec: _TableSpec, oid: tuple[int, ...], points: dict[int | None, Point]) -> Column:
    first = next(iter(points.values()))
    units, exponent = served_units(first)
    smi = _smi(first)
    phase = f"Ph{first.phase}" if spec.phase_in_name and first.phase is not None else ""
    return Column(
        name=spec.name.removesuffix("Table") + _camel(first.key) + phase,
        oid=oid,
        smi=smi,
        access=MaxAccess.READ_WRITE if first.writable else MaxAccess.READ_ONLY,
        description=prose.describe(points, spec.rows, units),
        units=units,
        exponent=exponent,
        syntax_range=_range(first, smi),
        points=points,
    )


def _index_columns(spec: _TableSpec, entry: tuple[int, ...], rows: Iterable[int | None]) -> tuple[Column, ...]:
    stem = spec.name.removesuffix("Table")
    panel = Column(
        stem + "Panel",
        entry + (1,),
        Smi.INTEGER32,
        MaxAccess.NOT_ACCESSIBLE,
        "The panel: the Modbus address of the meter node.",
        syntax_range=_UNIT_RANGE,
    )
    if spec.rows is Rows.PANEL:
        return (panel,)
    numbers = [r for r in rows if r is not None]
    row = Column(
        stem + spec.rows.suffix,
        entry + (2,),
        Smi.INTEGER32,
        MaxAccess.NOT_ACCESSIBLE,
        f"The {spec.rows.meaning}.",
        syntax_range=f"({min(numbers)}..{max(numbers)})",
    )
    return panel, row


_NODE_FIELDS: tuple[tuple[NodeField, str, Smi, str, str, str], ...] = (
    # field, descriptor suffix, syntax, range, units, description
    (
        NodeField.ONLINE,
        "Online",
        Smi.TRUTH_VALUE,
        "",
        "",
        "true while the node answers; false once it failed the configured number of transactions in a "
        "row. While false, its other objects hold the last values read.",
    ),
    (
        NodeField.POLL_AGE,
        "PollAge",
        Smi.UNSIGNED32,
        "",
        "ms",
        "Time since the node last answered a transaction. No instance until it has answered once.",
    ),
    (NodeField.SERIAL, "Serial", Smi.UNSIGNED32, "", "", "Serial number (registers 1-2), as discovered."),
    (
        NodeField.MODEL,
        "Model",
        Smi.DISPLAY_STRING,
        "(SIZE (1))",
        "",
        "Model letter: A (current, power, energy), B (current, voltage), C (current only).",
    ),
    (
        NodeField.DEVICE_ID,
        "DeviceId",
        Smi.UNSIGNED32,
        "(0..65535)",
        "",
        "Device ID (register 5): 15172 model A, 15171 model B, 15170 model C.",
    ),
    (NodeField.FIRMWARE_RS, "FirmwareRs", Smi.UNSIGNED32, "(0..65535)", "", "Firmware revision RS (register 3)."),
    (NodeField.FIRMWARE_OS, "FirmwareOs", Smi.UNSIGNED32, "(0..65535)", "", "Firmware revision OS (register 4)."),
    (
        NodeField.BOARD,
        "Board",
        Smi.INTEGER32,
        "(1..246)",
        "",
        "Modbus address of the board's first panel; a board answers at that address and the next.",
    ),
    (NodeField.PANEL_NUMBER, "PanelNumber", Smi.INTEGER32, "(1..2)", "", "1 or 2: which panel of its board."),
    (NodeField.FAILURES, "Failures", Smi.UNSIGNED32, "", "", "Failed transactions in a row, now."),
    (
        NodeField.LAST_ERROR,
        "LastError",
        Smi.DISPLAY_STRING,
        "(SIZE (0..255))",
        "",
        "The last failure of a transaction with the node, empty if none.",
    ),
    (NodeField.TRANSACTIONS, "Transactions", Smi.COUNTER32, "", "", "Transactions with the node since start."),
    (
        NodeField.FAILED_TRANSACTIONS,
        "FailedTransactions",
        Smi.COUNTER32,
        "",
        "",
        "Transactions the node did not answer, or answered corrupt, since start.",
    ),
    (NodeField.WENT_OFFLINE, "OfflineCount", Smi.COUNTER32, "", "", "Times the node went offline since start."),
)


def _node_columns(stem: str, entry: tuple[int, ...]) -> list[Column]:
    return [
        Column(
            stem + suffix,
            entry + (number,),
            smi,
            MaxAccess.READ_ONLY,
            description,
            units,
            syntax_range=syntax_range,
            node_field=node_field,
        )
        for number, (node_field, suffix, smi, syntax_range, units, description) in enumerate(_NODE_FIELDS, 2)
    ]


def _table(spec: _TableSpec, points: list[Point]) -> Table:
    oid = spec.branch.oid + (spec.number,)
    entry = oid + (1,)
    # Columns in the order the map first mentions them: (key, phase) unless the row says the phase.
    by_column: dict[tuple[str, int | None], dict[int | None, Point]] = {}
    for point in points:
        key = (point.key, point.phase if spec.phase_in_name else None)
        by_column.setdefault(key, {})[point.channel] = point
    indexes = _index_columns(spec, entry, (p.channel for p in points))
    columns: list[Column] = _node_columns(spec.name.removesuffix("Table"), entry) if spec.branch is Branch.NODES else []
    for group in by_column.values():
        columns.append(_point_column(spec, entry + (len(indexes) + len(columns) + 1,), group))
    if spec.named_rows:
        rows = tuple(sorted({p.channel for p in points if p.channel is not None}))
        columns.append(_name_column(spec, entry + (len(indexes) + len(columns) + 1,), rows))
    return Table(spec.name, oid, spec.branch, spec.rows, spec.description, indexes, tuple(columns))


def _name_column(spec: _TableSpec, oid: tuple[int, ...], rows: tuple[int, ...]) -> Column:
    return Column(
        spec.name.removesuffix("Table") + "Name",
        oid,
        Smi.DISPLAY_STRING,
        MaxAccess.READ_ONLY,
        "The name a user gave the circuit on the gateway's web face (what it feeds); empty if none.",
        syntax_range=f"(SIZE (0..{CIRCUIT_NAME_MAX}))",
        node_field=NodeField.CIRCUIT_NAME,
        rows=rows,
    )


def _notify_objects() -> tuple[Column, ...]:
    current_units, current_exponent = _SCALED_UNITS["A"]
    voltage_units, voltage_exponent = _SCALED_UNITS["V"]
    specs = (
        ("bcpmNotifyPanel", Smi.INTEGER32, _UNIT_RANGE, "", 0, "The panel (Modbus address) of the event."),
        (
            "bcpmNotifyChannel",
            Smi.INTEGER32,
            "(1..46)",
            "",
            0,
            "The CT channel of a channel alarm, or the line-to-line pair (1 A-B, 2 B-C, 3 A-C) of a voltage alarm.",
        ),
        ("bcpmNotifyStatus", Smi.UNSIGNED32, "(0..65535)", "", 0, "The alarm status bits after the transition."),
        (
            "bcpmNotifyBits",
            Smi.UNSIGNED32,
            "(0..65535)",
            "",
            0,
            "The status bits that were raised (in a ...Raised notification) or cleared (in a ...Cleared one).",
        ),
        (
            "bcpmNotifyCurrent",
            Smi.INTEGER32,
            "",
            current_units,
            current_exponent,
            "The channel's current when the gateway saw the transition.",
        ),
        (
            "bcpmNotifyVoltage",
            Smi.INTEGER32,
            "",
            voltage_units,
            voltage_exponent,
            "The pair's line-to-line voltage when the gateway saw the transition.",
        ),
        ("bcpmNotifyReason", Smi.DISPLAY_STRING, "(SIZE (0..255))", "", 0, "Why the gateway lost the node."),
        (
            "bcpmNotifyBacnetNumber",
            Smi.UNSIGNED32,
            "(0..4194303)",
            "",
            0,
            "The BACnet network number or device instance that another party uses too.",
        ),
        (
            "bcpmNotifyBacnetOther",
            Smi.DISPLAY_STRING,
            "(SIZE (0..255))",
            "",
            0,
            "The BACnet address of that other party.",
        ),
        (
            "bcpmNotifyHeldBack",
            Smi.UNSIGNED32,
            "",
            "",
            0,
            "How many notifications about the panel the gateway held back (over snmp.trap_rate).",
        ),
        (
            "bcpmNotifyChannels",
            Smi.DISPLAY_STRING,
            "(SIZE (0..255))",
            "",
            0,
            "The CT channels (1-46) and line-to-line pairs (V1 A-B, V2 B-C, V3 A-C) whose alarms changed in "
            "the notifications held back, comma-separated.",
        ),
    )
    return tuple(
        Column(name, NOTIFY_OBJECTS + (number,), smi, MaxAccess.FOR_NOTIFY, description, units, exponent, syntax_range)
        for number, (name, smi, syntax_range, units, exponent, description) in enumerate(specs, 1)
    )


_ALARM_OBJECTS = ("bcpmNotifyPanel", "bcpmNotifyChannel", "bcpmNotifyStatus", "bcpmNotifyBits")
_NOTIFICATIONS = (
    (
        "bcpmChannelAlarmRaised",
        (*_ALARM_OBJECTS, "bcpmNotifyCurrent"),
        "Alarm bits of a CT channel went from 0 to 1 (latching bits 0-4 or non-latching bits 8-9).",
    ),
    ("bcpmChannelAlarmCleared", (*_ALARM_OBJECTS, "bcpmNotifyCurrent"), "Alarm bits of a CT channel went from 1 to 0."),
    (
        "bcpmVoltageAlarmRaised",
        (*_ALARM_OBJECTS, "bcpmNotifyVoltage"),
        "Voltage alarm bits of a line-to-line pair went from 0 to 1.",
    ),
    (
        "bcpmVoltageAlarmCleared",
        (*_ALARM_OBJECTS, "bcpmNotifyVoltage"),
        "Voltage alarm bits of a line-to-line pair went from 1 to 0.",
    ),
    (
        "bcpmNodeLost",
        ("bcpmNotifyPanel", "bcpmNotifyReason"),
        "The node stopped answering; its values are now served as last read.",
    ),
    ("bcpmNodeRestored", ("bcpmNotifyPanel",), "The node answers again."),
    *(
        (f"bcpm{kind}Conflict{change}", ("bcpmNotifyBacnetNumber", "bcpmNotifyBacnetOther"), description)
        for kind, what in (
            ("NetworkNumber", "the BACnet network number the gateway routes to its meters"),
            ("DeviceId", "the device ID of one of the gateway's BACnet devices"),
        )
        for change, description in (
            ("", f"The BACnet network doctor found another party using {what}: communication with it breaks."),
            ("Cleared", f"The other party no longer uses {what}."),
        )
    ),
    (
        "bcpmNotificationsHeldBack",
        ("bcpmNotifyPanel", "bcpmNotifyHeldBack", "bcpmNotifyChannels"),
        "Notifications about the panel came faster than the gateway sends them (snmp.trap_rate per second): "
        "these were held back, and this one sums them up. The alarm tables hold every status as it is now.",
    ),
)


def build_layout(pointmap: PointMap) -> Layout:
    placed: dict[str, list[Point]] = {spec.name: [] for spec in _TABLES}
    excluded: dict[Point, str] = {}
    for point in pointmap.points:
        reason = exclusion(point)
        if reason is None:
            placed[place(point).name].append(point)
        else:
            excluded[point] = reason
    tables = tuple(_table(spec, placed[spec.name]) for spec in _TABLES)
    features = pointmap.find("advanced_features")
    config = next(t for t in tables if t.name == "bcpmConfigTable")
    source = next(c for c in config.columns if features in c.points.values())
    advanced = Column(
        "bcpmAdvancedFeatures",
        ADVANCED_FEATURES_OID,
        source.smi,
        source.access,
        prose.advanced_features(source.name),
        syntax_range=source.syntax_range,
        points={None: features},
    )
    notifications = tuple(
        Notification(name, NOTIFICATIONS + (number,), objects, description)
        for number, (name, objects, description) in enumerate(_NOTIFICATIONS, 1)
    )
    return Layout(tables, advanced, _notify_objects(), notifications, excluded)


@functools.cache
def default_layout() -> Layout:
    """The layout of the packaged point map."""
    return build_layout(load())
