"""The gateway's OID tree under the BCPME enterprise branch: its OIDs and the types it is made of.

Pure data, no I/O: ``gateway.snmp.placement`` builds the `Layout` from the point map (which point
lands in which table and column), the agent serves it, ``gateway.snmp.mib`` writes the MIB module
from it, and the tests compare the two.

    1.3.6.1.4.1.3833.1.30            bcpmGatewayMIB (module identity)
      .1                             bcpmObjects
        .1 Configuration  .2 Alarms  .3 Voltage Inputs  .4 Auxiliary Inputs
        .5 Branch Inputs  .6 Flex Circuits  .7 Nodes (status)
      .2                             bcpmConformance

A column serves integers in fixed units whatever the meter's scale registers say, so no precision
is lost and no floats are needed:

>>> current = Column("bcpmBranchCurrent", (1,), Smi.INTEGER32, MaxAccess.READ_ONLY, "", "mA", exponent=-3)
>>> current.to_snmp(17.5), current.raw_for(17500, meter_exponent=-1)
(17500, 175)
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from gateway.pointmap import Point

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
    """Columns the gateway computes: a node's status (from health and the discovery profile), and
    the name a user gave a circuit (a row of a channel table)."""

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
    CIRCUIT_NAME = "circuit_name"


@dataclass(frozen=True, slots=True)
class Column:
    """One columnar object: the same quantity for every row (or the one scalar instance).

    ``points`` maps a row key (channel, pair or meter; None in per-panel tables) to the point behind
    it; ``node_field`` is set instead for the columns the gateway computes, one instance a node or,
    with ``rows``, one a row of each node. The SNMP integer is the engineering value divided by
    ``10 ** exponent``.
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
    rows: tuple[int, ...] = ()  # a computed column's rows (channels), when it has them

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
                        suffixes: list[tuple[int, ...]] = [(address, row) for row in column.rows] or [(address,)]
                        for suffix in suffixes:
                            yield Instance(column.oid + suffix, column, address, None)
                    for row, point in column.points.items():
                        if model in point.models:
                            suffix = (address,) if row is None else (address, row)
                            yield Instance(column.oid + suffix, column, address, point)
        if nodes:
            lowest = min(nodes)
            point = self.advanced_features.points[None]
            if nodes[lowest] in point.models:
                yield Instance(self.advanced_features.oid + (0,), self.advanced_features, lowest, point)


def descriptor_ok(name: str) -> bool:
    """An SMIv2 descriptor: a lower-case letter, then letters and digits, at most 64 characters."""
    return re.fullmatch(r"[a-z][A-Za-z0-9]{0,63}", name) is not None
