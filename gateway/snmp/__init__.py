"""SNMP face: an agent (v2c, and v3 with USM users) serving the node cache under the BCPME's
enterprise branch, with notifications.

gateway.snmp.tree           the OID tree's OIDs and types: branches, tables, columns, the layout (pure)
gateway.snmp.placement      which point lands in which table and column, in what units; builds the layout
gateway.snmp.prose          the MIB's descriptions of columns, made from their points (pure)
gateway.snmp.mib            the MIB module text, written from the tree (pure)
gateway.snmp.index          served OIDs in order, looked up by GET, GETNEXT, GETBULK; their varbinds' BER
gateway.snmp.readers        index entries bound to node caches, health and engine counters
gateway.snmp.controller     the pysnmp MIB controller: reads from the index, checks SETs; GETBULK limits
gateway.snmp.responders     one-call GETBULK; SET answered once the meter took it
gateway.snmp.ber            the little BER the fast path reads and writes
gateway.snmp.engine         the engine's ID, boots and time (RFC 3411, 3414), kept across restarts
gateway.snmp.usm            SNMPv3 messages checked, reported, opened and sealed (USM: SHA-2, AES)
gateway.snmp.fast           GET, GETNEXT, GETBULK answered from pre-encoded varbinds, beside pysnmp
gateway.snmp.gate           snmp.allow and snmp.rate_limit, per source address
gateway.snmp.notifications  node events to notifications, sent as v2c traps, v3 traps or informs
gateway.snmp.transport      pysnmp's UDP transport behind the gate and the fast path
gateway.snmp.agent          the face: engine, socket, communities and users, tasks

They stand in layers, each importing only from those below it (the SNMP contract in
pyproject.toml): tree and ber at the bottom; index, engine and gate; readers and prose; usm,
controller and placement; fast, responders, notifications and mib; the transport; the agent on top.
"""

from gateway.snmp.agent import SnmpFace

__all__ = ["SnmpFace"]
