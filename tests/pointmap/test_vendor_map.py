"""The packaged point map agrees with the vendor's register list, row by row.

The vendor's list is test data kept beside this file (data/, see its README): every register row
of Schneider's "BCPMSC SERIES MODBUS POINT MAP" rev. I, one row per integer register.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from gateway.pointmap import Access, load

VENDOR_CSV = Path(__file__).resolve().parent / "data" / "bcpmsc_modbus_point_map_revI.csv"

#: The legacy map the gateway covers (the firmware-download and EEPROM interfaces stay out).
COVERED = [
    range(1, 544),
    range(1000, 2924),
    range(4000, 5924),
    range(7000, 8812),
    range(60000, 60005),
    range(62017, 62018),
    range(62116, 62162),
]


def _covered(register: int) -> bool:
    return any(register in r for r in COVERED)


def _vendor_rows() -> list[dict[str, str]]:
    with VENDOR_CSV.open(newline="") as f:
        return [row for row in csv.DictReader(f) if _covered(int(row["int_reg"]))]


def test_every_vendor_register_in_the_covered_ranges_belongs_to_a_point() -> None:
    pm = load()
    missing = [row["int_reg"] for row in _vendor_rows() if pm.point_at(int(row["int_reg"])) is None]
    assert missing == []


def test_every_point_register_is_in_the_vendor_list() -> None:
    vendor = {int(row["int_reg"]) for row in _vendor_rows()}
    # The location string is one vendor row (register 7) for registers 7-70.
    vendor |= set(range(7, 71))
    extra = [r for p in load().points for r in p.registers if r not in vendor]
    assert extra == []


def test_float_copies_access_models_and_nv_match_the_vendor() -> None:
    pm = load()
    access = {"R": Access.R, "R/W": Access.RW, "W": Access.W}
    mismatches = []
    for row in _vendor_rows():
        register = int(row["int_reg"])
        point = pm.point_at(register)
        assert point is not None
        if register != point.register:  # LSW of a 32-bit value, or inside the location string
            continue
        expected = {
            "float_register": int(row["float_reg_msw"]) if row["float_reg_msw"] else None,
            "access": access[row["rw"]],
            "models": frozenset(row["models"].replace(",", "")),
            "nv": row["nv"] == "NV",
        }
        actual = {k: getattr(point, k) for k in expected}
        if actual != expected:
            mismatches.append((register, actual, expected))
    assert mismatches == []


#: Rows where the vendor's scale cell came out of the PDF empty; every neighbouring PF row says -3.
VENDOR_BLANK_SCALE = {1323, 4251, 7185}


def _vendor_scale(row: dict[str, str]) -> str:
    if row["scale_reg"] or int(row["int_reg"]) in VENDOR_BLANK_SCALE:
        return row["scale_reg"] or "-3"
    if row["extraction"].startswith("text-fallback"):
        # Rows taken from page text carry the scale inside the description ("PF Phase 2 -3 0.0 - 1.0").
        return next((t for t in row["description"].split() if t.startswith("-") and t[1:].isdigit()), "")
    return ""


def test_scale_registers_and_fixed_exponents_match_the_vendor() -> None:
    pm = load()
    mismatches = []
    for row in _vendor_rows():
        point = pm.point_at(int(row["int_reg"]))
        if point is None or point.register != int(row["int_reg"]):
            continue
        ours = str(point.scale_register) if point.scale_register else (str(point.exponent) if point.exponent else "")
        if ours != _vendor_scale(row):
            mismatches.append((row["int_reg"], ours, _vendor_scale(row)))
    assert mismatches == []


def _vendor_range(row: dict[str, str]) -> str:
    """The vendor's range as space-separated intervals ("0, 10-32767" -> "0 10-32767")."""
    if row["extraction"].startswith("text-fallback"):
        return next((t for t in row["description"].split() if re.fullmatch(r"\d+-\d+", t)), "")
    first = re.match(r"\d+(?:-\d+)?(?:,\s*\d+(?:-\d+)?)*", row["range"])
    return re.sub(r",\s*", " ", first.group()).strip() if first else ""


def test_write_ranges_match_the_vendor_where_it_gives_one() -> None:
    pm = load()
    mismatches = []
    for row in _vendor_rows():
        point = pm.point_at(int(row["int_reg"]))
        vendor = _vendor_range(row)
        if point is None or not point.writable or not vendor:
            continue
        if point.valid_text().replace(", ", " ") != vendor:
            mismatches.append((row["int_reg"], point.valid_text(), vendor))
    assert mismatches == []


def test_channels_and_meters_match_the_vendor() -> None:
    pm = load()
    mismatches = []
    for row in _vendor_rows():
        register = int(row["int_reg"])
        point = pm.point_at(register)
        channel = row["channel_or_meter"]
        if point is not None and point.register == register and channel.isdigit() and point.channel != int(channel):
            mismatches.append((register, point.channel, channel))
    assert mismatches == []
