"""Names users give circuits: what a name may hold, wherever it is kept or shown.

    circuit_name_problem("Rack A12 PDU A")   # None: a good name
    circuit_name_problem("")                 # "a name of 1-40 characters"

A name is 1-`CIRCUIT_NAME_MAX` printable ASCII characters, spaces inside only: what SNMP's
DisplayString, a BACnet CharacterString and every BMS's point list take as they are.
"""

from __future__ import annotations

__all__ = ["CIRCUIT_NAME_MAX", "circuit_name_problem"]

CIRCUIT_NAME_MAX = 40


def circuit_name_problem(name: object) -> str | None:
    """Why `name` cannot name a circuit, or None when it can.

    >>> circuit_name_problem(" padded")
    'printable ASCII characters (spaces inside only)'
    """
    if not isinstance(name, str) or not 1 <= len(name) <= CIRCUIT_NAME_MAX:
        return f"a name of 1-{CIRCUIT_NAME_MAX} characters"
    if not all(" " <= char <= "~" for char in name) or name != name.strip():
        return "printable ASCII characters (spaces inside only)"
    return None
