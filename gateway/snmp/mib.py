"""The SMIv2 module BCPM-GATEWAY-MIB, written from the tree layout (so it describes what is served).

``mibs/BCPM-GATEWAY-MIB.txt`` is this module's output, checked in for NMS users; a test fails when
the two differ. Regenerate it after a point map change with:

    python -m gateway.snmp.mib > mibs/BCPM-GATEWAY-MIB.txt
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable, Iterator

from gateway.snmp.placement import default_layout
from gateway.snmp.tree import (
    BASE,
    CONFORMANCE,
    MODULE_IDENTITY,
    NODES,
    Column,
    Layout,
    MaxAccess,
    Smi,
    Table,
)

MODULE = "BCPM-GATEWAY-MIB"
REVISION = "202611260000Z"
COMPLIANCES = CONFORMANCE + (1,)
GROUPS = CONFORMANCE + (2,)
_CONFORMANCE_NODES: dict[tuple[int, ...], str] = {COMPLIANCES: "bcpmCompliances", GROUPS: "bcpmGroups"}

_SMI_IMPORTS = {
    Smi.INTEGER32: "SNMPv2-SMI",
    Smi.UNSIGNED32: "SNMPv2-SMI",
    Smi.COUNTER32: "SNMPv2-SMI",
    Smi.COUNTER64: "SNMPv2-SMI",
    Smi.TRUTH_VALUE: "SNMPv2-TC",
    Smi.DISPLAY_STRING: "SNMPv2-TC",
}

_MODULE_DESCRIPTION = (
    "The BCPM gateway's MIB: Schneider Electric / Veris BCPM branch circuit power meters polled "
    "over Modbus RTU, republished by an open-source gateway. Modelled on the BCPME layout (the six "
    "branches of its installation guide and the one OID the guide documents), but not the vendor's "
    "MIB. Tables are indexed by panel (the Modbus address of a meter node) and, where it applies, by "
    "CT channel, line-to-line pair or logical meter. Values are integers in the units their UNITS "
    "clause names, whatever scale the meter uses; an instance is absent while the meter has no value "
    "for it (a model or a channel without that quantity, or not read yet). Values of an offline node "
    "are the last ones read: bcpmNodeOnline says which."
)


def render(layout: Layout) -> str:
    """The module text."""
    names: dict[tuple[int, ...], str] = {BASE: MODULE_IDENTITY, **NODES, **_CONFORMANCE_NODES}
    for column in _all_columns(layout):
        names[column.oid] = column.name
    for table in layout.tables:
        names[table.oid] = table.name
        names[table.entry_oid] = table.entry
    parts = [
        f"{MODULE} DEFINITIONS ::= BEGIN",
        _imports(layout),
        _module_identity(names),
        *(f"{names[oid]} OBJECT IDENTIFIER ::= {_parent(oid, names)}" for oid in sorted(NODES)),
        *(_table(table, names) for table in layout.tables),
        _object(layout.advanced_features, names),
        *(_object(column, names) for column in layout.notify_objects),
        *(_notification(n.name, n.objects, n.description, _parent(n.oid, names)) for n in layout.notifications),
        *(f"{name} OBJECT IDENTIFIER ::= {_parent(oid, names)}" for oid, name in _CONFORMANCE_NODES.items()),
        *_conformance(layout),
        "END",
    ]
    return "\n\n".join(parts) + "\n"


def _all_columns(layout: Layout) -> Iterator[Column]:
    for table in layout.tables:
        yield from table.indexes
    yield from layout.objects


def _parent(oid: tuple[int, ...], names: dict[tuple[int, ...], str]) -> str:
    parent = oid[:-1]
    if parent in names:
        return f"{{ {names[parent]} {oid[-1]} }}"
    if parent == (1, 3, 6, 1, 4, 1):
        return f"{{ enterprises {oid[-1]} }}"
    raise ValueError(f"no name for the parent of {oid}")


def _text(text: str, indent: int = 8) -> str:
    if '"' in text:
        raise ValueError(f"a MIB text may not contain double quotes: {text!r}")
    lines = textwrap.wrap(text, 96 - indent)
    return '"' + ("\n" + " " * (indent + 1)).join(lines) + '"'


def _imports(layout: Layout) -> str:
    used = {column.smi for column in _all_columns(layout)}
    smi = [
        "MODULE-IDENTITY",
        "OBJECT-TYPE",
        "NOTIFICATION-TYPE",
        "enterprises",
        *(s.text for s in Smi if s in used and _SMI_IMPORTS[s] == "SNMPv2-SMI"),
    ]
    tc = [s.text for s in Smi if s in used and _SMI_IMPORTS[s] == "SNMPv2-TC"]
    return (
        "IMPORTS\n"
        f"    {', '.join(smi)}\n        FROM SNMPv2-SMI\n"
        f"    {', '.join(tc)}\n        FROM SNMPv2-TC\n"
        "    MODULE-COMPLIANCE, OBJECT-GROUP, NOTIFICATION-GROUP\n        FROM SNMPv2-CONF;"
    )


def _module_identity(names: dict[tuple[int, ...], str]) -> str:
    return (
        f"{MODULE_IDENTITY} MODULE-IDENTITY\n"
        f'    LAST-UPDATED "{REVISION}"\n'
        '    ORGANIZATION "bcpm-gateway project"\n'
        f"    CONTACT-INFO {_text('The bcpm-gateway project; see the README of its source repository.')}\n"
        f"    DESCRIPTION {_text(_MODULE_DESCRIPTION)}\n"
        f'    REVISION "{REVISION}"\n'
        f"    DESCRIPTION {_text('First version.')}\n"
        f"    ::= {_parent(BASE, names)}"
    )


def _object(column: Column, names: dict[tuple[int, ...], str]) -> str:
    units = f'    UNITS       "{column.units}"\n' if column.units else ""
    return (
        f"{column.name} OBJECT-TYPE\n"
        f"    SYNTAX      {column.syntax}\n"
        f"{units}"
        f"    MAX-ACCESS  {column.access}\n"
        "    STATUS      current\n"
        f"    DESCRIPTION {_text(column.description, 16)}\n"
        f"    ::= {_parent(column.oid, names)}"
    )


def _table(table: Table, names: dict[tuple[int, ...], str]) -> str:
    entry_type = table.entry[0].upper() + table.entry[1:]
    members = [*table.indexes, *table.columns]
    width = max(len(c.name) for c in members)
    sequence = ",\n".join(f"    {c.name:<{width}}  {c.smi.text}" for c in members)
    rows = "panel" if len(table.indexes) == 1 else f"{table.rows.name.lower()} of a panel"
    parts = [
        f"{table.name} OBJECT-TYPE\n"
        f"    SYNTAX      SEQUENCE OF {entry_type}\n"
        "    MAX-ACCESS  not-accessible\n"
        "    STATUS      current\n"
        f"    DESCRIPTION {_text(table.description, 16)}\n"
        f"    ::= {_parent(table.oid, names)}",
        f"{table.entry} OBJECT-TYPE\n"
        f"    SYNTAX      {entry_type}\n"
        "    MAX-ACCESS  not-accessible\n"
        "    STATUS      current\n"
        f"    DESCRIPTION {_text(f'One {rows}.', 16)}\n"
        f"    INDEX       {{ {', '.join(c.name for c in table.indexes)} }}\n"
        f"    ::= {_parent(table.entry_oid, names)}",
        f"{entry_type} ::= SEQUENCE {{\n{sequence}\n}}",
        *(_object(column, names) for column in members),
    ]
    return "\n\n".join(parts)


def _notification(name: str, objects: Iterable[str], description: str, parent: str) -> str:
    return (
        f"{name} NOTIFICATION-TYPE\n"
        f"    OBJECTS     {{ {', '.join(objects)} }}\n"
        "    STATUS      current\n"
        f"    DESCRIPTION {_text(description, 16)}\n"
        f"    ::= {parent}"
    )


def _members(names: Iterable[str]) -> str:
    return "{ " + ",\n                  ".join(names) + " }"


def _conformance(layout: Layout) -> Iterator[str]:
    groups: list[tuple[str, str, list[str]]] = [
        (table.stem + "Group", f"The objects of {table.name}.", [c.name for c in table.columns])
        for table in layout.tables
    ]
    groups.append(
        ("bcpmGuideGroup", "The object at the OID the BCPME guide documents.", [layout.advanced_features.name])
    )
    groups.append(
        (
            "bcpmNotifyObjectsGroup",
            "The objects that notifications carry.",
            [c.name for c in layout.notify_objects if c.access is MaxAccess.FOR_NOTIFY],
        )
    )
    notification_group = "bcpmNotificationGroup"
    yield (
        "bcpmCompliance MODULE-COMPLIANCE\n"
        "    STATUS      current\n"
        f"    DESCRIPTION {_text('What the BCPM gateway implements: everything in this module.', 16)}\n"
        "    MODULE\n"
        f"        MANDATORY-GROUPS {_members([*(g[0] for g in groups), notification_group])}\n"
        f"    ::= {{ bcpmCompliances 1 }}"
    )
    for number, (name, description, objects) in enumerate(groups, 1):
        yield (
            f"{name} OBJECT-GROUP\n"
            f"    OBJECTS     {_members(objects)}\n"
            "    STATUS      current\n"
            f"    DESCRIPTION {_text(description, 16)}\n"
            f"    ::= {{ bcpmGroups {number} }}"
        )
    yield (
        f"{notification_group} NOTIFICATION-GROUP\n"
        f"    NOTIFICATIONS {_members(n.name for n in layout.notifications)}\n"
        "    STATUS      current\n"
        f"    DESCRIPTION {_text('The notifications the gateway sends.', 16)}\n"
        f"    ::= {{ bcpmGroups {len(groups) + 1} }}"
    )


if __name__ == "__main__":
    sys.stdout.write(render(default_layout()))
