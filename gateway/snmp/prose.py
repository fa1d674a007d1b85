"""The MIB's prose: the DESCRIPTION of each column made from its points, and notes on some of them.

Pure text, no I/O; ``gateway.snmp.placement`` puts it on the columns, ``gateway.snmp.mib`` prints it.

>>> runs([1, 2, 3, 5, 7, 8])
'1-3, 5, 7-8'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.pointmap import Access, Point
from gateway.pointmap import ResetCode as _R
from gateway.snmp.tree import Rows

_NOTES = {
    "alarm_status": "Bits: 0 High-High, 1 High, 2 Low, 3 Low-Low latching alarm, 4 latching OFF state, "
    "8 High, 9 Low non-latching alarm. Write 0 to a latching bit to clear it; non-latching "
    "bits ignore writes.",
    "voltage_alarm_status": "Bits: 0 over-voltage, 1 under-voltage latching alarm, 8 over-voltage, "
    "9 under-voltage non-latching alarm. Write 0 to a latching bit to clear it.",
    "global_latching_status": "OR of the channels' latching bits 0-4; bit 8 over-voltage, bit 9 "
    "under-voltage latching.",
    "global_nonlatching_status": "Bit 0 high, bit 1 low current, bit 8 over-voltage, bit 9 under-voltage.",
    "reset": f"Reads 0. Write {_R.CLEAR_ENERGY:d} to clear the energy, {_R.CLEAR_MAXIMA:d} to clear max current "
    "and max power.",
    "aux_reset": f"Reads 0. Write {_R.CLEAR_ENERGY:d} to clear AUX energy, {_R.CLEAR_MAXIMA:d} to clear AUX max "
    "current and max power.",
    "global_reset": f"Reads 0. Write {_R.NEW_SUBINTERVAL:d} to begin a new demand sub-interval, "
    f"{_R.RESET_DEMAND:d} to reset demand, {_R.CLEAR_LATCHED_ALARMS:d} to clear all latched alarms, "
    f"{_R.CLEAR_ENERGY:d} to clear all energy, {_R.CLEAR_MAXIMA:d} to clear all maxima, "
    f"{_R.CLEAR_MAX_DEMAND:d} to clear all max demand.",
    "advanced_features": "Bit 0: user CT phase assignment (registers 62116-62161) enabled.",
}


def runs(numbers: Iterable[int]) -> str:
    """Numbers as sorted ranges of consecutive ones."""
    groups: list[list[int]] = []
    for n in sorted(numbers):
        if groups and n == groups[-1][-1] + 1:
            groups[-1].append(n)
        else:
            groups.append([n])
    return ", ".join(str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups)


def describe(points: Mapping[int | None, Point], rows: Rows, units: str) -> str:
    """The DESCRIPTION of a column serving `points` (by row) in `units`."""
    by_name: dict[str, list[Point]] = {}
    for point in points.values():
        by_name.setdefault(point.name, []).append(point)
    parts = []
    for name, group in by_name.items():
        registers = ("BCPM registers " if len(group) > 1 else "BCPM register ") + runs(p.register for p in group)
        if rows is Rows.PANEL:
            parts.append(f"{name}, {registers}")
        else:
            parts.append(f"{name} ({rows.suffix.lower()} {runs(p.channel for p in group if p.channel)}), {registers}")
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
        text += (
            f" Writable: the register accepts {first.valid_text()} in the meter's scale; other values "
            "are refused with wrongValue."
        )
    if first.key in _NOTES:
        text += " " + _NOTES[first.key]
    if len(first.models) < 3:
        text += f" Model{'s' if len(first.models) > 1 else ''} {' and '.join(sorted(first.models))} only."
    return text


def advanced_features(same_as: str) -> str:
    """The DESCRIPTION of the guide's advanced-features scalar, the same value as column `same_as`."""
    return (
        "Advanced features of the lowest panel (the lowest Modbus address), at the OID the BCPME guide "
        f"documents. The same value as {same_as} of that panel. " + _NOTES["advanced_features"]
    )
