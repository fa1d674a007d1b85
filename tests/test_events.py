"""Events end to end: a meter alarm reaches BACnet and SNMP, and a clear from one face shows on all.

The gateway serves BACnet/IP and SNMP on loopback against the simulated board; a bacpypes3 client
subscribes to COV, snmptrapd receives the notifications, snmpget reads the status back.
"""

from __future__ import annotations

import socket

from gateway.bacnet.objects import av_instances
from gateway.pointmap import load
from gateway.snmp.placement import default_layout
from gateway.snmp.tree import BASE
from tests.bacnet.client import Client, free_udp_port, reported
from tests.snmp.netsnmp import dotted, run_async, varbinds
from tests.snmp.rig import TrapReceiver, instance
from tests.support import eventually, free_port, gateway_config

PM = load()
ALARM_7 = PM.find("alarm_status", group="alarms", channel=7)  # register 184
CURRENT_7 = PM.find("current", group="branch", channel=7)  # register 1342
AV_ALARM_7 = ("analog-value", av_instances(PM)[ALARM_7.register])
AI_CURRENT_7 = ("analog-input", CURRENT_7.register)
LATCHED = 0x000F
HIGH_HIGH_AND_HIGH = 0x0003
IN_ALARM, NORMAL = [1, 0, 0, 0], [0, 0, 0, 0]
SNMP_TRAP_OID = ".1.3.6.1.6.3.1.1.4.1.0"
CHANNEL_ALARM_RAISED = dotted(default_layout().notifications[0].oid)
TRAP_CHANNEL, TRAP_BITS = dotted(BASE + (1, 2, 4, 2, 0)), dotted(BASE + (1, 2, 4, 4, 0))


async def _until_every_object_shows(client: Client, objects: set[tuple[str, int]], check) -> None:
    """Read COV notifications until each of `objects` has reported values for which check holds."""
    pending = set(objects)
    while pending:
        notification = await client.notification(timeout=20)
        obj = notification.monitoredObjectIdentifier
        if check(reported(notification)):
            pending.discard((str(obj[0]), obj[1]))


def _latched_alarm_trap(receiver: TrapReceiver) -> bool:
    return any(
        trap.get(SNMP_TRAP_OID) == f"OID: {CHANNEL_ALARM_RAISED}"
        and trap.get(TRAP_CHANNEL) == "INTEGER: 7"
        and int(trap[TRAP_BITS].split()[-1]) & HIGH_HIGH_AND_HIGH
        for trap in receiver.traps()
    )


async def test_an_alarm_reaches_bacnet_cov_and_snmp_traps_and_a_bacnet_clear_shows_everywhere(
    make_line, start_gateway, tmp_path
) -> None:
    line = make_line(1)
    panel = line.panel(1)
    panel.write(165, [1, 1, 1, 1, 1, 1])  # latching delays, ON and OFF times: 1 s
    panel.set_current(7, 10.0)  # 50 % of the 20 A breaker: no alarm
    receiver = TrapReceiver(tmp_path / "snmptrapd")
    receiver.wait_listening()
    snmp_port = free_port(socket.SOCK_DGRAM)
    config = gateway_config(
        line,
        tmp_path,
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port()},
        snmp={
            "enabled": True,
            "address": "127.0.0.1",
            "port": snmp_port,
            "write_community": "private",
            "notify_hosts": [receiver.endpoint],
        },
    )
    client = Client(config.bacnet.port)
    try:
        gateway = await start_gateway(config)
        await client.find_router()
        node = client.node(1)
        await eventually(lambda: gateway.nodes.nodes[1].cache.reading(ALARM_7).value == 0, what="no alarm at first")
        for process, (kind, number) in enumerate((AV_ALARM_7, AI_CURRENT_7), 1):
            await client.subscribe(node, f"{kind},{number}", process, confirmed=False, lifetime=300)
        await _until_every_object_shows(client, {AV_ALARM_7, AI_CURRENT_7}, lambda v: v["status-flags"] == NORMAL)

        panel.set_current(7, 19.0)  # 95 %: over High-High (70 %) and High (60 %); latches after 1 s
        await _until_every_object_shows(client, {AV_ALARM_7, AI_CURRENT_7}, lambda v: v["status-flags"] == IN_ALARM)
        await _until_every_object_shows(client, {AV_ALARM_7}, lambda v: int(v["present-value"]) & HIGH_HIGH_AND_HIGH)
        await eventually(lambda: _latched_alarm_trap(receiver), timeout=20, what="the latched alarm trap")

        panel.set_current(7, 10.0)  # the non-latching alarm goes, the latched bits stay
        await eventually(lambda: panel.read(ALARM_7.register, 1)[0] == HIGH_HIGH_AND_HIGH, what="only latched bits")
        await client.write(node, f"{AV_ALARM_7[0]},{AV_ALARM_7[1]}", "present-value", 0.0)  # clear from BACnet
        assert panel.read(ALARM_7.register, 1)[0] & LATCHED == 0  # the meter cleared them

        result = await run_async(
            tmp_path / "netsnmp",
            "snmpget",
            "-v2c",
            "-c",
            "public",
            "-On",
            f"udp:127.0.0.1:{snmp_port}",
            instance(ALARM_7, 1),
        )
        [status] = varbinds(result.stdout)
        assert status.number & LATCHED == 0  # SNMP shows the clear
        await _until_every_object_shows(client, {AV_ALARM_7, AI_CURRENT_7}, lambda v: v["status-flags"] == NORMAL)
    finally:
        client.close()
        receiver.stop()
