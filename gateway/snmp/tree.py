"""The gateway's OID tree under the BCPME enterprise branch, generated from the point map.

Pure data and functions, no I/O: the agent serves this tree, ``gateway.snmp.mib`` writes the MIB
module from it, and the tests compare the two.

    1.3.6.1.4.1.3833.1.30            bcpmGatewayMIB (module identity)
      .1                             bcpmObjects
        .1 Configuration  .2 Alarms  .3 Voltage Inputs  .4 Auxiliary Inputs
        .5 Branch Inputs  .6 Flex Circuits  .7 Nodes (status)
      .2                             bcpmConformance

Every table is indexed by panel (= Modbus address), and by channel, line-to-line pair or logical
meter where that applies. Each point of the map lands in exactly one column (`place`), or is left
out for a stated reason (`EXCLUDED`). Values are integers in fixed units (mA, W, VA, Wh, 0.1 V,
0.01 Hz, 0.1 %, 0.001) whatever the meter's scale registers say, so no precision is lost and no
floats are needed:

>>> layout = build_layout(load())
>>> column = layout.column_of(load().find("current", group="branch", channel=12))
>>> (column.name, column.units, column.to_snmp(17.5))
('bcpmBranchCurrent', 'mA', 17500)
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from gateway.pointmap import Access, Encoding, Point, PointMap, PollClass, load

ENTERPRISE = (1, 3, 6, 1, 4, 1, 3833)
BASE = ENTERPRISE + (1, 30)  # the BCPME's product branch; our module identity
OBJECTS = BASE + (1,)
CONFORMANCE = BASE + (2,)


class Branch(enum.IntEnum):
    """The six branches the BCPME guide documents, in its order, and the node status branch."""

    CONFIGURATION = 1
    ALARMS = 2
    VOLTAGE_INPUTS = 3
    AUX_INPUTS = 4
    BRANCH_INPUTS = 5
    FLEX_CIRCUITS = 6
    NODES = 7

    @property
    def oid(self) -> tuple[int, ...]:
        return OBJECTS + (self.value,)

    @property
    def descriptor(self) -> str:
        return "bcpm" + "".join(word.capitalize() for word in self.name.split("_"))


#: Where the BCPME guide puts advanced features (register 62017) of the lowest panel.
ADVANCED_FEATURES_OID = Branch.CONFIGURATION.oid + (6, 3, 4)
NOTIFICATIONS = Branch.ALARMS.oid + (0,)
NOTIFY_OBJECTS = Branch.ALARMS.oid + (4,)

MODULE_IDENTITY = "bcpmGatewayMIB"
#: Plain OBJECT IDENTIFIER nodes of the tree, by OID.
NODES: dict[tuple[int, ...], str] = {
    ENTERPRISE: "schneiderElectric",
    ENTERPRISE + (1,): "schneiderProducts",
    OBJECTS: "bcpmObjects",
    CONFORMANCE: "bcpmConformance",
    **{branch.oid: branch.descriptor for branch in Branch},
    ADVANCED_FEATURES_OID[:-2]: "bcpmGuideObjects",
    ADVANCED_FEATURES_OID[:-1]: "bcpmGuideLowestPanel",
    NOTIFICATIONS: "bcpmNotifications",
    NOTIFY_OBJECTS: "bcpmNotifyObjects",
}


class Smi(enum.Enum):
    """SMIv2 syntaxes the tree uses, with the value range each allows."""

    INTEGER32 = ("Integer32", -(2**31), 2**31 - 1)
    UNSIGNED32 = ("Unsigned32", 0, 2**32 - 1)
    COUNTER32 = ("Counter32", 0, 2**32 - 1)
    COUNTER64 = ("Counter64", 0, 2**64 - 1)
    TRUTH_VALUE = ("TruthValue", 1, 2)
    DISPLAY_STRING = ("DisplayString", 0, 255)  # length

    def __init__(self, text: str, low: int, high: int) -> None:
        self.text = text
        self.low = low
        self.high = high


class MaxAccess(enum.StrEnum):
    NOT_ACCESSIBLE = "not-accessible"
    FOR_NOTIFY = "accessible-for-notify"
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"


class Rows(enum.Enum):
    """What identifies a row after the panel: (index descriptor suffix, what it is)."""

    PANEL = ("", "")
    CHANNEL = ("Channel", "CT channel: 1-42 branch circuits, 43-46 AUX inputs (43-45 phases 1-3, 46 neutral)")
    PAIR = ("Pair", "line-to-line pair: 1 A-B, 2 B-C, 3 A-C")
    METER = ("Meter", "logical meter (flex circuit) number")

    def __init__(self, suffix: str, meaning: str) -> None:
        self.suffix = suffix
        self.meaning = meaning


class NodeField(enum.Enum):
    """Node status columns the gateway computes (from health and the discovery profile)."""

    ONLINE = "online"
    POLL_AGE = "poll_age"
    SERIAL = "serial"
    MODEL = "model"
    DEVICE_ID = "device_id"
    FIRMWARE_RS = "firmware_rs"
    FIRMWARE_OS = "firmware_os"
    BOARD = "board"
    PANEL_NUMBER = "panel_number"
    FAILURES = "failures"
    LAST_ERROR = "last_error"
    TRANSACTIONS = "transactions"
    FAILED_TRANSACTIONS = "failed_transactions"
    WENT_OFFLINE = "went_offline"


@dataclass(frozen=True, slots=True)
class Column:
    """One columnar object: the same quantity for every row (or the one scalar instance).

    ``points`` maps a row key (channel, pair or meter; None in per-panel tables) to the point behind
    it; ``node_field`` is set instead for the node status columns the gateway computes. The SNMP integer
    is the engineering value divided by ``10 ** exponent``.
    """

    name: str
    oid: tuple[int, ...]
    smi: Smi
    access: MaxAccess
    description: str
    units: str = ""
    exponent: int = 0
    syntax_range: str = ""  # SMI sub-typing, e.g. "(0..65535)"
    points: Mapping[int | None, Point] = field(default_factory=dict)
    node_field: NodeField | None = None

    @property
    def writable(self) -> bool:
        return self.access is MaxAccess.READ_WRITE

    @property
    def syntax(self) -> str:
        return f"{self.smi.text} {self.syntax_range}".strip()

    def to_snmp(self, value: float | int | str | None) -> int | str | None:
        """The value served for an engineering value; None when there is none (or it does not fit)."""
        if value is None:
            return None
        if self.smi is Smi.DISPLAY_STRING:
            return str(value)[: self.smi.high]
        if isinstance(value, str):
            raise TypeError(f"{self.name} is a number, not {value!r}")
        factor: int = 10**-self.exponent  # exponents are never positive
        number = round(value * factor)
        return number if self.smi.low <= number <= self.smi.high else None

    def raw_for(self, number: int, meter_exponent: int) -> int | None:
        """The register value for an SNMP integer, given the meter's exponent for the point.

        None when the meter cannot hold the number exactly (its resolution is coarser).
        """
        shift = self.exponent - meter_exponent
        factor: int = 10 ** abs(shift)
        if shift >= 0:
            return number * factor
        quotient, remainder = divmod(number, factor)
        return None if remainder else quotient


@dataclass(frozen=True, slots=True)
class Table:
    name: str  # e.g. "bcpmBranchTable"; the entry is "...Entry" and columns share the stem
    oid: tuple[int, ...]
    branch: Branch
    rows: Rows
    description: str
    indexes: tuple[Column, ...]
    columns: tuple[Column, ...]

    @property
    def stem(self) -> str:
        return self.name.removesuffix("Table")

    @property
    def entry(self) -> str:
        return self.stem + "Entry"

    @property
    def entry_oid(self) -> tuple[int, ...]:
        return self.oid + (1,)


@dataclass(frozen=True, slots=True)
class Notification:
    name: str
    oid: tuple[int, ...]
    objects: tuple[str, ...]
    description: str


@dataclass(frozen=True, slots=True)
class Instance:
    """One served instance: its OID, its column, the node (Modbus address) and the point, if any."""

    oid: tuple[int, ...]
    column: Column
    address: int
    point: Point | None


@dataclass(frozen=True)
class Layout:
    """The whole enterprise tree: tables, the guide's scalar, notification objects, notifications."""

    tables: tuple[Table, ...]
    advanced_features: Column  # scalar: register 62017 of the lowest panel
    notify_objects: tuple[Column, ...]
    notifications: tuple[Notification, ...]
    excluded: Mapping[Point, str]

    @functools.cached_property
    def _column_by_register(self) -> dict[int, Column]:
        return {p.register: c for t in self.tables for c in t.columns for p in c.points.values()}

    def column_of(self, point: Point) -> Column:
        return self._column_by_register[point.register]

    def table_of(self, column: Column) -> Table:
        return next(t for t in self.tables if column in t.columns)

    @property
    def objects(self) -> Iterator[Column]:
        """Every object with a readable or notifiable instance (index columns are not)."""
        for table in self.tables:
            yield from table.columns
        yield self.advanced_features
        yield from self.notify_objects

    def instances(self, nodes: Mapping[int, str]) -> Iterator[Instance]:
        """What the agent serves for nodes given as {Modbus address: model}, in no particular order."""
        for table in self.tables:
            for column in table.columns:
                for address, model in nodes.items():
                    if column.node_field is not None:
                        yield Instance(column.oid + (address,), column, address, None)
                    for row, point in column.points.items():
                        if model in point.models:
                            suffix = (address,) if row is None else (address, row)
                            yield Instance(column.oid + suffix, column, address, point)
        if nodes:
            lowest = min(nodes)
            point = self.advanced_features.points[None]
            if nodes[lowest] in point.models:
                yield Instance(self.advanced_features.oid + (0,), self.advanced_features, lowest, point)


# --- placement: which point goes to which table and column -----------------------------------------

@dataclass(frozen=True, slots=True)
class _TableSpec:
    name: str
    branch: Branch
    number: int
    rows: Rows
    description: str
    holds: Callable[[Point], bool]
    phase_in_name: bool = True  # False where the row (AUX channel) already says the phase


_PROFILE_KEYS = frozenset({"serial_number", "firmware_rs", "firmware_os", "device_id"})

_TABLES = (
    _TableSpec("bcpmConfigTable", Branch.CONFIGURATION, 1, Rows.PANEL,
               "Writable setup of each panel: demand, alarm delays and thresholds, voltage alarms, "
               "advanced features, resets.",
               lambda p: p.writable and p.channel is None and p.group in ("setup", "identity")),
    _TableSpec("bcpmChanConfigTable", Branch.CONFIGURATION, 2, Rows.CHANNEL,
               "Writable setup of each CT channel of each panel: CT size, breaker size, voltage phase.",
               lambda p: p.group == "setup" and p.channel is not None),
    _TableSpec("bcpmAlarmTable", Branch.ALARMS, 1, Rows.PANEL,
               "Global alarm status, most recent alarm channels and alarm counters of each panel.",
               lambda p: p.group == "alarms" and p.channel is None),
    _TableSpec("bcpmChanAlarmTable", Branch.ALARMS, 2, Rows.CHANNEL,
               "Alarm status and latching alarm counters of each CT channel of each panel.",
               lambda p: p.group == "alarms" and p.channel is not None and p.key != "voltage_alarm_status"),
    _TableSpec("bcpmVoltAlarmTable", Branch.ALARMS, 3, Rows.PAIR,
               "Voltage alarm status of each line-to-line pair of each panel (models A and B).",
               lambda p: p.key == "voltage_alarm_status"),
    _TableSpec("bcpmVoltageTable", Branch.VOLTAGE_INPUTS, 1, Rows.PANEL,
               "Voltage inputs of each panel: frequency, line-to-neutral and line-to-line voltages "
               "(models A and B).",
               lambda p: p.group == "voltage"),
    _TableSpec("bcpmAuxTable", Branch.AUX_INPUTS, 1, Rows.PANEL,
               "Three-phase totals of the AUX inputs of each panel.",
               lambda p: p.group == "aux" and p.channel is None),
    _TableSpec("bcpmAuxChanTable", Branch.AUX_INPUTS, 2, Rows.CHANNEL,
               "Per-phase AUX measurements (channels 43-45 phases 1-3, 46 neutral) of each panel.",
               lambda p: p.group == "aux" and p.channel is not None, phase_in_name=False),
    _TableSpec("bcpmBranchTable", Branch.BRANCH_INPUTS, 1, Rows.CHANNEL,
               "Branch circuit measurements of each CT channel 1-42 of each panel.",
               lambda p: p.group == "branch"),
    _TableSpec("bcpmMeter2Table", Branch.FLEX_CIRCUITS, 1, Rows.METER,
               "Two-phase logical meters (flex circuits 1-21) of each panel.",
               lambda p: p.group == "meter2"),
    _TableSpec("bcpmMeter3Table", Branch.FLEX_CIRCUITS, 2, Rows.METER,
               "Three-phase logical meters (flex circuits 1-14) of each panel.",
               lambda p: p.group == "meter3"),
    _TableSpec("bcpmNodeTable", Branch.NODES, 1, Rows.PANEL,
               "Status of each meter node (panel) the gateway polls. Values of an offline node are "
               "served as last read: bcpmNodeOnline says whether they are current.",
               lambda p: p.group in ("identity", "service") and not p.writable),
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


# --- names and descriptions -------------------------------------------------------------------------

_WORDS = {"kw": "Power", "kwh": "Energy", "kva": "ApparentPower", "pf": "PowerFactor", "nl": "Nl",
          "nonlatching": "NonLatching", "ln": "LN", "ll": "LL"}
#: Keys whose table already says what they are, or too long for a 32-character descriptor.
_SHORT_KEYS = {"alarm_status": "status", "voltage_alarm_status": "status", "volts_ln": "ln", "volts_ll": "ll",
               "volts_ln_avg": "ln_avg", "volts_ll_avg": "ll_avg",
               "recent_latching_channel": "last_latching_channel",
               "recent_nonlatching_channel": "last_nonlatching_channel",
               "channels_in_latching_alarm": "channels_latching",
               "channels_in_nonlatching_alarm": "channels_nonlatching"}


def _camel(key: str) -> str:
    return "".join(_WORDS.get(word, word.capitalize()) for word in _SHORT_KEYS.get(key, key).split("_"))


_NOTES = {
    "alarm_status": "Bits: 0 High-High, 1 High, 2 Low, 3 Low-Low latching alarm, 4 latching OFF state, "
                    "8 High, 9 Low non-latching alarm. Write 0 to a latching bit to clear it; non-latching "
                    "bits ignore writes.",
    "voltage_alarm_status": "Bits: 0 over-voltage, 1 under-voltage latching alarm, 8 over-voltage, "
                            "9 under-voltage non-latching alarm. Write 0 to a latching bit to clear it.",
    "global_latching_status": "OR of the channels' latching bits 0-4; bit 8 over-voltage, bit 9 "
                              "under-voltage latching.",
    "global_nonlatching_status": "Bit 0 high, bit 1 low current, bit 8 over-voltage, bit 9 under-voltage.",
    "reset": "Reads 0. Write 10203 to clear the energy, 29877 to clear max current and max power.",
    "aux_reset": "Reads 0. Write 10203 to clear AUX energy, 29877 to clear AUX max current and max power.",
    "global_reset": "Reads 0. Write 26012 to begin a new demand sub-interval, 26013 to reset demand, "
                    "31010 to clear all latched alarms, 10203 to clear all energy, 29877 to clear all "
                    "maxima, 20097 to clear all max demand.",
    "advanced_features": "Bit 0: user CT phase assignment (registers 62116-62161) enabled.",
}


def _runs(numbers: Iterable[int]) -> str:
    ordered = sorted(numbers)
    runs: list[list[int]] = []
    for n in ordered:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _describe(points: Mapping[int | None, Point], rows: Rows, units: str) -> str:
    by_name: dict[str, list[Point]] = {}
    for point in points.values():
        by_name.setdefault(point.name, []).append(point)
    parts = []
    for name, group in by_name.items():
        registers = ("BCPM registers " if len(group) > 1 else "BCPM register ") + _runs(p.register for p in group)
        if rows is Rows.PANEL:
            parts.append(f"{name}, {registers}")
        else:
            parts.append(f"{name} ({rows.suffix.lower()} {_runs(p.channel for p in group if p.channel)}), {registers}")
    first = next(iter(points.values()))
    text = "; ".join(parts) + "."
    if first.scale_register is not None:
        text += f" The meter scales it with its scale registers; served in {units}."
    elif units:
        text += f" In {units}."
    if first.access is Access.W:
        text += " Write-only on the meter."
    if first.writable and first.scale_register is None:
        text += f" Writable: {first.valid_text()}; other values are refused with wrongValue."
    elif first.writable:
        text += (f" Writable: the register accepts {first.valid_text()} in the meter's scale; other values "
                 "are refused with wrongValue.")
    if first.key in _NOTES:
        text += " " + _NOTES[first.key]
    if len(first.models) < 3:
        text += f" Model{'s' if len(first.models) > 1 else ''} {' and '.join(sorted(first.models))} only."
    return text


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
        description=_describe(points, spec.rows, units),
        units=units,
        exponent=exponent,
        syntax_range=_range(first, smi),
        points=points,
    )


def _index_columns(spec: _TableSpec, entry: tuple[int, ...], rows: Iterable[int | None]) -> tuple[Column, ...]:
    stem = spec.name.removesuffix("Table")
    panel = Column(stem + "Panel", entry + (1,), Smi.INTEGER32, MaxAccess.NOT_ACCESSIBLE,
                   "The panel: the Modbus address of the meter node.", syntax_range="(1..247)")
    if spec.rows is Rows.PANEL:
        return (panel,)
    numbers = [r for r in rows if r is not None]
    row = Column(stem + spec.rows.suffix, entry + (2,), Smi.INTEGER32, MaxAccess.NOT_ACCESSIBLE,
                 f"The {spec.rows.meaning}.", syntax_range=f"({min(numbers)}..{max(numbers)})")
    return panel, row


_NODE_FIELDS: tuple[tuple[NodeField, str, Smi, str, str, str], ...] = (
    # field, descriptor suffix, syntax, range, units, description
    (NodeField.ONLINE, "Online", Smi.TRUTH_VALUE, "", "",
     "true while the node answers; false once it failed the configured number of transactions in a "
     "row. While false, its other objects hold the last values read."),
    (NodeField.POLL_AGE, "PollAge", Smi.UNSIGNED32, "", "ms",
     "Time since the node last answered a transaction. No instance until it has answered once."),
    (NodeField.SERIAL, "Serial", Smi.UNSIGNED32, "", "", "Serial number (registers 1-2), as discovered."),
    (NodeField.MODEL, "Model", Smi.DISPLAY_STRING, "(SIZE (1))", "",
     "Model letter: A (current, power, energy), B (current, voltage), C (current only)."),
    (NodeField.DEVICE_ID, "DeviceId", Smi.UNSIGNED32, "(0..65535)", "",
     "Device ID (register 5): 15172 model A, 15171 model B, 15170 model C."),
    (NodeField.FIRMWARE_RS, "FirmwareRs", Smi.UNSIGNED32, "(0..65535)", "", "Firmware revision RS (register 3)."),
    (NodeField.FIRMWARE_OS, "FirmwareOs", Smi.UNSIGNED32, "(0..65535)", "", "Firmware revision OS (register 4)."),
    (NodeField.BOARD, "Board", Smi.INTEGER32, "(1..246)", "",
     "Modbus address of the board's first panel; a board answers at that address and the next."),
    (NodeField.PANEL_NUMBER, "PanelNumber", Smi.INTEGER32, "(1..2)", "", "1 or 2: which panel of its board."),
    (NodeField.FAILURES, "Failures", Smi.UNSIGNED32, "", "", "Failed transactions in a row, now."),
    (NodeField.LAST_ERROR, "LastError", Smi.DISPLAY_STRING, "(SIZE (0..255))", "",
     "The last failure of a transaction with the node, empty if none."),
    (NodeField.TRANSACTIONS, "Transactions", Smi.COUNTER32, "", "", "Transactions with the node since start."),
    (NodeField.FAILED_TRANSACTIONS, "FailedTransactions", Smi.COUNTER32, "", "",
     "Transactions the node did not answer, or answered corrupt, since start."),
    (NodeField.WENT_OFFLINE, "OfflineCount", Smi.COUNTER32, "", "", "Times the node went offline since start."),
)


def _node_columns(stem: str, entry: tuple[int, ...]) -> list[Column]:
    return [Column(stem + suffix, entry + (number,), smi, MaxAccess.READ_ONLY, description, units,
                   syntax_range=syntax_range, node_field=node_field)
            for number, (node_field, suffix, smi, syntax_range, units, description) in enumerate(_NODE_FIELDS, 2)]


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
    return Table(spec.name, oid, spec.branch, spec.rows, spec.description, indexes, tuple(columns))


def _notify_objects() -> tuple[Column, ...]:
    current_units, current_exponent = _SCALED_UNITS["A"]
    voltage_units, voltage_exponent = _SCALED_UNITS["V"]
    specs = (
        ("bcpmNotifyPanel", Smi.INTEGER32, "(1..247)", "", 0, "The panel (Modbus address) of the event."),
        ("bcpmNotifyChannel", Smi.INTEGER32, "(1..46)", "", 0,
         "The CT channel of a channel alarm, or the line-to-line pair (1 A-B, 2 B-C, 3 A-C) of a voltage alarm."),
        ("bcpmNotifyStatus", Smi.UNSIGNED32, "(0..65535)", "", 0, "The alarm status bits after the transition."),
        ("bcpmNotifyBits", Smi.UNSIGNED32, "(0..65535)", "", 0,
         "The status bits that were raised (in a ...Raised notification) or cleared (in a ...Cleared one)."),
        ("bcpmNotifyCurrent", Smi.INTEGER32, "", current_units, current_exponent,
         "The channel's current when the gateway saw the transition."),
        ("bcpmNotifyVoltage", Smi.INTEGER32, "", voltage_units, voltage_exponent,
         "The pair's line-to-line voltage when the gateway saw the transition."),
        ("bcpmNotifyReason", Smi.DISPLAY_STRING, "(SIZE (0..255))", "", 0, "Why the gateway lost the node."),
        ("bcpmNotifyBacnetNumber", Smi.UNSIGNED32, "(0..4194303)", "", 0,
         "The BACnet network number or device instance that another party uses too."),
        ("bcpmNotifyBacnetOther", Smi.DISPLAY_STRING, "(SIZE (0..255))", "", 0,
         "The BACnet address of that other party."),
        ("bcpmNotifyHeldBack", Smi.UNSIGNED32, "", "", 0,
         "How many notifications about the panel the gateway held back (over snmp.trap_rate)."),
        ("bcpmNotifyChannels", Smi.DISPLAY_STRING, "(SIZE (0..255))", "", 0,
         "The CT channels (1-46) and line-to-line pairs (V1 A-B, V2 B-C, V3 A-C) whose alarms changed in "
         "the notifications held back, comma-separated."),
    )
    return tuple(Column(name, NOTIFY_OBJECTS + (number,), smi, MaxAccess.FOR_NOTIFY, description, units,
                        exponent, syntax_range)
                 for number, (name, smi, syntax_range, units, exponent, description) in enumerate(specs, 1))


_ALARM_OBJECTS = ("bcpmNotifyPanel", "bcpmNotifyChannel", "bcpmNotifyStatus", "bcpmNotifyBits")
_NOTIFICATIONS = (
    ("bcpmChannelAlarmRaised", (*_ALARM_OBJECTS, "bcpmNotifyCurrent"),
     "Alarm bits of a CT channel went from 0 to 1 (latching bits 0-4 or non-latching bits 8-9)."),
    ("bcpmChannelAlarmCleared", (*_ALARM_OBJECTS, "bcpmNotifyCurrent"),
     "Alarm bits of a CT channel went from 1 to 0."),
    ("bcpmVoltageAlarmRaised", (*_ALARM_OBJECTS, "bcpmNotifyVoltage"),
     "Voltage alarm bits of a line-to-line pair went from 0 to 1."),
    ("bcpmVoltageAlarmCleared", (*_ALARM_OBJECTS, "bcpmNotifyVoltage"),
     "Voltage alarm bits of a line-to-line pair went from 1 to 0."),
    ("bcpmNodeLost", ("bcpmNotifyPanel", "bcpmNotifyReason"),
     "The node stopped answering; its values are now served as last read."),
    ("bcpmNodeRestored", ("bcpmNotifyPanel",), "The node answers again."),
    *((f"bcpm{kind}Conflict{change}", ("bcpmNotifyBacnetNumber", "bcpmNotifyBacnetOther"), description)
      for kind, what in (("NetworkNumber", "the BACnet network number the gateway routes to its meters"),
                         ("DeviceId", "the device ID of one of the gateway's BACnet devices"))
      for change, description in (
          ("", f"The BACnet network doctor found another party using {what}: communication with it breaks."),
          ("Cleared", f"The other party no longer uses {what}."))),
    ("bcpmNotificationsHeldBack", ("bcpmNotifyPanel", "bcpmNotifyHeldBack", "bcpmNotifyChannels"),
     "Notifications about the panel came faster than the gateway sends them (snmp.trap_rate per second): "
     "these were held back, and this one sums them up. The alarm tables hold every status as it is now."),
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
    advanced = Column("bcpmAdvancedFeatures", ADVANCED_FEATURES_OID, source.smi, source.access,
                      "Advanced features of the lowest panel (the lowest Modbus address), at the OID "
                      f"the BCPME guide documents. The same value as {source.name} of that panel. "
                      + _NOTES["advanced_features"],
                      syntax_range=source.syntax_range, points={None: features})
    notifications = tuple(Notification(name, NOTIFICATIONS + (number,), objects, description)
                          for number, (name, objects, description) in enumerate(_NOTIFICATIONS, 1))
    return Layout(tables, advanced, _notify_objects(), notifications, excluded)


@functools.cache
def default_layout() -> Layout:
    """The layout of the packaged point map."""
    return build_layout(load())


def descriptor_ok(name: str) -> bool:
    """An SMIv2 descriptor: a lower-case letter, then letters and digits, at most 64 characters."""
    return re.fullmatch(r"[a-z][A-Za-z0-9]{0,63}", name) is not None
