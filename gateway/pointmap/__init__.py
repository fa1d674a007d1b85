"""The BCPM register map: what every register of a meter node means.

The map is data (``bcpm_points.csv`` beside this file, one row per point, reviewable line by line
against the vendor's "BCPMSC Series Modbus Point Map" rev I) plus pure functions over it. Every
face, the poll planner and the simulator are derived from it; none keeps a register table of its
own.

Register numbers are the vendor's (1-based); the Modbus PDU address is ``register - 1``.

>>> pm = load()
>>> p = pm.point_at(1336)
>>> (p.key, p.channel, p.units, p.scale_register)
('current', 1, 'A', 1000)
>>> [(int(code), code.action) for code in pm.find("global_reset").resets][2]
(26012, 'Start a demand subinterval')
"""

from __future__ import annotations

import csv
import enum
import functools
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal, get_args

#: What the meter returns for a point that its model or a channel does not support.
INVALID_WORD = 0x8000
INVALID_FLOAT_WORDS = (0x7FC0, 0x0000)

#: The bits of an alarm status bitmap that mean "too high" and "too low", by point key. A channel
#: (178-223): b0 High-High, b1 High, b2 Low, b3 Low-Low latching, b8 High, b9 Low non-latching
#: (b4, latching OFF state declared, is a state, not an alarm). A voltage pair (241-243): b0 over,
#: b1 under latching, b8 over, b9 under non-latching.
ALARM_BITS = {"alarm_status": (0x0103, 0x020C), "voltage_alarm_status": (0x0101, 0x0202)}

#: Groups whose channel numbers are CT channels; in "alarms" too, but for these keys.
CIRCUIT_GROUPS = frozenset({"branch", "aux", "setup"})
NOT_CIRCUITS = frozenset({"voltage_alarm_status", "error_bitmap"})
BRANCH_CIRCUITS = range(1, 43)
AUX_CIRCUITS = range(43, 47)  # phases 1-3 (the mains when the AUX CTs are on them), then neutral
CIRCUITS = range(1, 47)  # every CT channel

#: Device ID (register 5) per model letter.
Model = Literal["A", "B", "C"]
MODELS: tuple[Model, ...] = get_args(Model)
MODEL_BY_DEVICE_ID: dict[int, Model] = {15170: "C", 15171: "B", 15172: "A"}
DEVICE_ID_BY_MODEL: dict[str, int] = {model: device_id for device_id, model in MODEL_BY_DEVICE_ID.items()}


class ResetCode(enum.IntEnum):
    """The codes the meter's reset registers take (BCPME guide); which codes a register takes is
    the `valid` column of its row (register 295, global_reset, takes them all)."""

    NEW_SUBINTERVAL = 26012
    RESET_DEMAND = 26013
    CLEAR_LATCHED_ALARMS = 31010
    CLEAR_ENERGY = 10203
    CLEAR_MAXIMA = 29877  # max current and max kW
    CLEAR_MAX_DEMAND = 20097

    @property
    def action(self) -> str:
        """What the meter does for the code."""
        return _RESET_ACTIONS[self]


_RESET_ACTIONS = {
    ResetCode.CLEAR_ENERGY: "Clear energy",
    ResetCode.CLEAR_MAXIMA: "Clear maxima",
    ResetCode.CLEAR_MAX_DEMAND: "Clear maximum demand",
    ResetCode.NEW_SUBINTERVAL: "Start a demand subinterval",
    ResetCode.RESET_DEMAND: "Reset demand",
    ResetCode.CLEAR_LATCHED_ALARMS: "Clear latched alarms",
}

#: The keys of the reset registers: global (295), AUX (294) and each logical meter's.
RESET_KEYS = frozenset({"global_reset", "aux_reset", "reset"})


class Encoding(enum.StrEnum):
    UINT16 = "uint16"
    INT16 = "int16"  # signed; engineering value = raw * 10**scale
    UINT32 = "uint32"  # two registers, most significant word first
    BITMAP = "bitmap"  # uint16 of flags
    STRING = "string"  # ASCII, two characters a register, first in the high byte, NUL-padded


class Access(enum.StrEnum):
    R = "R"
    RW = "RW"
    W = "W"


class PollClass(enum.StrEnum):
    FAST = "fast"  # every poll cycle
    SLOW = "slow"  # once every few cycles
    NONE = "none"  # never polled (write-only, reserved, read on demand)


@dataclass(frozen=True, slots=True)
class Point:
    """One value of the meter: one register, or two (32-bit), or a block (string)."""

    register: int
    count: int
    group: str
    key: str
    name: str
    encoding: Encoding
    access: Access
    models: frozenset[str]
    poll: PollClass
    channel: int | None = None
    phase: int | None = None
    float_register: int | None = None  # float32 copy, MSW first, read-only
    scale_register: int | None = None  # the register holding the power-of-ten exponent
    exponent: int | None = None  # a fixed power-of-ten exponent instead of a scale register
    units: str = ""
    nv: bool = False
    valid: tuple[tuple[int, int], ...] = ()  # accepted raw values for writes, as closed intervals
    default: int | str | None = None

    @property
    def registers(self) -> range:
        return range(self.register, self.register + self.count)

    @property
    def float_registers(self) -> range:
        return range(self.float_register, self.float_register + 2) if self.float_register else range(0)

    @property
    def readable(self) -> bool:
        return self.access is not Access.W

    @property
    def writable(self) -> bool:
        return self.access is not Access.R

    @property
    def scaled(self) -> bool:
        return self.scale_register is not None or self.exponent is not None

    @property
    def label(self) -> str:
        """A name that says what and which channel, e.g. "Current Ch 12"."""
        if self.channel is None:
            return self.name
        word = {"branch": "Ch", "aux": "Ch", "meter2": "Meter", "meter3": "Meter"}.get(self.group, "Ch")
        return f"{self.name} {word} {self.channel}"

    @property
    def resets(self) -> tuple[ResetCode, ...]:
        """Of a reset register, the codes it takes, in the map's order (none for other points)."""
        return tuple(ResetCode(low) for low, _ in self.valid) if self.key in RESET_KEYS else ()

    @property
    def circuit(self) -> int | None:
        """The CT channel the point is about (1-42 branch circuits, 43-46 AUX inputs), if any: what a
        user's name for that circuit describes. A logical meter's number, a voltage pair's or an
        error bitmap's is none.

        >>> [load().point_at(r).circuit for r in (1336, 119, 178, 241, 230)]
        [1, 1, 1, None, None]
        """
        if self.channel is None:
            return None
        if self.group in CIRCUIT_GROUPS or (self.group == "alarms" and self.key not in NOT_CIRCUITS):
            return self.channel
        return None

    def accepts(self, raw: int) -> bool:
        """Whether ``raw`` may be written to this point."""
        return self.writable and any(low <= raw <= high for low, high in self.valid)

    def valid_text(self) -> str:
        return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.valid) or "none"

    def __hash__(self) -> int:  # a dictionary key on every poll read: its register says which point
        return hash(self.register)

    def decode(self, words: Sequence[int], scale: int = 0) -> float | int | str | None:
        """The engineering value of the point's raw registers; None where the meter has no data."""
        if self.encoding is Encoding.STRING:
            return b"".join(w.to_bytes(2, "big") for w in words).split(b"\0", 1)[0].decode("ascii", "replace")
        if self.encoding is Encoding.UINT32:
            if words[0] == INVALID_WORD and words[1] == INVALID_WORD:
                return None
            raw = words[0] << 16 | words[1]
        elif self.encoding is Encoding.INT16:
            if words[0] == INVALID_WORD:
                return None
            raw = signed(words[0])
        else:
            raw = words[0]
        return scale_value(raw, self.exponent if self.exponent is not None else scale) if self.scaled else raw

    def encodes_exactly(self, value: float | int, scale: int = 0) -> bool:
        """Whether the registers can hold `value` as it is (2.7 cannot go to a whole-number point)."""
        raw = value / 10.0 ** (self.exponent if self.exponent is not None else scale) if self.scaled else value
        return math.isclose(raw, round(raw), abs_tol=1e-6)

    def encode(self, value: float | int, scale: int = 0) -> list[int]:
        """The raw registers for an engineering value (inverse of :meth:`decode`)."""
        raw = unscale_value(value, self.exponent if self.exponent is not None else scale) if self.scaled else int(value)
        if self.encoding is Encoding.UINT32:
            return [(raw >> 16) & 0xFFFF, raw & 0xFFFF]
        return [raw & 0xFFFF]


def scale_value(raw: int, exponent: int) -> float | int:
    return raw if exponent == 0 else round(raw * 10.0**exponent, max(0, -exponent))


def unscale_value(value: float | int, exponent: int) -> int:
    return round(value / 10.0**exponent)


def float_words(value: float | None) -> tuple[int, int]:
    """The float32 copy of a value as (MSW, LSW); NaN where the meter has no data."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return INVALID_FLOAT_WORDS
    msw, lsw = struct.unpack(">HH", struct.pack(">f", value))
    return msw, lsw


def signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


@dataclass(frozen=True)  # no slots: cached_property needs the instance dict
class PointMap:
    points: tuple[Point, ...]
    _by_register: dict[int, Point] = field(repr=False, compare=False)
    _by_float_register: dict[int, Point] = field(repr=False, compare=False)

    @classmethod
    def from_points(cls, points: Iterable[Point]) -> PointMap:
        ordered = tuple(sorted(points, key=lambda p: p.register))
        by_register: dict[int, Point] = {}
        by_float: dict[int, Point] = {}
        for point in ordered:
            for register in point.registers:
                if register in by_register:
                    raise ValueError(f"register {register} belongs to two points")
                by_register[register] = point
            for register in point.float_registers:
                by_float[register] = point
        return cls(ordered, by_register, by_float)

    def point_at(self, register: int) -> Point | None:
        """The point an integer register belongs to."""
        return self._by_register.get(register)

    def float_point_at(self, register: int) -> Point | None:
        """The point whose float32 copy covers a register."""
        return self._by_float_register.get(register)

    def is_mapped(self, register: int) -> bool:
        return register in self._by_register or register in self._by_float_register

    def find(
        self, key: str, *, group: str | None = None, channel: int | None = None, phase: int | None = None
    ) -> Point:
        for point in self.points:
            if (
                point.key == key
                and (group is None or point.group == group)
                and point.channel == channel
                and point.phase == phase
            ):
                return point
        raise KeyError(f"no point {key!r} group={group} channel={channel} phase={phase}")

    def for_model(self, model: str) -> tuple[Point, ...]:
        """The points of a model: one tuple per model, shared by its nodes."""
        found = self._by_model.get(model)
        if found is None:
            found = self._by_model[model] = tuple(p for p in self.points if model in p.models)
        return found

    @functools.cached_property
    def _by_model(self) -> dict[str, tuple[Point, ...]]:
        return {}

    @functools.cached_property
    def scale_registers(self) -> frozenset[int]:
        return frozenset(p.scale_register for p in self.points if p.scale_register is not None)

    @functools.cached_property
    def readable_ranges(self) -> tuple[range, ...]:
        """Runs of registers the meter answers (integer and float copies); a read must stay inside one."""
        registers = sorted(set(self._by_register) | set(self._by_float_register))
        runs: list[range] = []
        start = previous = registers[0]
        for register in registers[1:]:
            if register != previous + 1:
                runs.append(range(start, previous + 1))
                start = register
            previous = register
        runs.append(range(start, previous + 1))
        return tuple(runs)


def _parse_valid(text: str) -> tuple[tuple[int, int], ...]:
    intervals = []
    for token in text.split():
        low, _, high = token.partition("-")
        intervals.append((int(low), int(high or low)))
    return tuple(intervals)


def _optional_int(text: str) -> int | None:
    return int(text) if text else None


def _point_from_row(row: dict[str, str]) -> Point:
    encoding = Encoding(row["encoding"])
    default: int | str | None = row["default"] if encoding is Encoding.STRING else _optional_int(row["default"])
    return Point(
        register=int(row["register"]),
        count=int(row["count"]),
        group=row["group"],
        key=row["key"],
        name=row["name"],
        encoding=encoding,
        access=Access(row["access"]),
        models=frozenset(row["models"]),
        poll=PollClass(row["poll"]),
        channel=_optional_int(row["channel"]),
        phase=_optional_int(row["phase"]),
        float_register=_optional_int(row["float_register"]),
        scale_register=_optional_int(row["scale_register"]),
        exponent=_optional_int(row["exponent"]),
        units=row["units"],
        nv=row["nv"] == "NV",
        valid=_parse_valid(row["valid"]),
        default=default,
    )


@functools.cache
def load() -> PointMap:
    """The BCPM point map shipped with the package."""
    text = resources.files(__package__).joinpath("bcpm_points.csv").read_text(encoding="ascii")
    return PointMap.from_points(_point_from_row(row) for row in csv.DictReader(text.splitlines()))
