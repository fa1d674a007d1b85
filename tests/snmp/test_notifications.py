"""Notifications: node events become traps (pure), and arrive at snmptrapd with the trap community
(or as an SNMPv3 user's informs, paced alike)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.findings import NetworkFinding
from gateway.nodes.cache import UNREAD
from gateway.nodes.events import AlarmChanged, NodeOffline, NodeOnline, ValueChanged
from gateway.pointmap import load
from gateway.snmp.notifications import TokenBucket, traps_for
from gateway.snmp.placement import default_layout
from gateway.snmp.tree import BASE
from tests.snmp.netsnmp import dotted, varbinds
from tests.snmp.rig import ENGINE_ID, NMS, STANDARD_INSTANCES, TRAP, instance
from tests.support import eventually

PM = load()
LAYOUT = default_layout()
ALARM_7 = PM.find("alarm_status", group="alarms", channel=7)
VOLTAGE_ALARM_AB = PM.find("voltage_alarm_status", channel=1)
GLOBAL_LATCHING = PM.find("global_latching_status")

NOTIFY = BASE + (1, 2, 0)  # bcpmNotifications
OBJECTS = BASE + (1, 2, 4)  # bcpmNotifyObjects
SNMP_TRAP_OID = ".1.3.6.1.6.3.1.1.4.1.0"
COLD_START = (1, 3, 6, 1, 6, 3, 1, 1, 5, 1)
NODE_ONLINE = BASE + (1, 7, 1, 1, 2)  # bcpmNodeOnline
HELD_BACK = next(n.oid for n in LAYOUT.notifications if n.name == "bcpmNotificationsHeldBack")
HELD, CHANNELS = (
    dotted(next(c.oid for c in LAYOUT.notify_objects if c.name == name) + (0,))
    for name in ("bcpmNotifyHeldBack", "bcpmNotifyChannels")
)


def alarm_of(channel: int):
    return PM.find("alarm_status", group="alarms", channel=channel)


def names(trap) -> tuple[str, dict[str, int | str]]:
    by_name = {column.name: value for column, value in trap.objects}
    notification = next(n.name for n in LAYOUT.notifications if n.oid == trap.oid)
    return notification, by_name


def test_an_alarm_that_raises_one_bit_and_clears_another_gives_two_traps() -> None:
    event = AlarmChanged(1, ALARM_7, old_bits=0x0200, new_bits=0x0103)
    raised, cleared = (names(t) for t in traps_for(event, LAYOUT, measured=19.0))
    assert raised == (
        "bcpmChannelAlarmRaised",
        {
            "bcpmNotifyPanel": 1,
            "bcpmNotifyChannel": 7,
            "bcpmNotifyStatus": 0x0103,
            "bcpmNotifyBits": 0x0103,
            "bcpmNotifyCurrent": 19000,
        },
    )
    assert cleared[0] == "bcpmChannelAlarmCleared" and cleared[1]["bcpmNotifyBits"] == 0x0200


def test_a_voltage_alarm_carries_the_pairs_voltage() -> None:
    [trap] = traps_for(AlarmChanged(2, VOLTAGE_ALARM_AB, old_bits=0, new_bits=0x0100), LAYOUT, measured=277.1)
    assert names(trap) == (
        "bcpmVoltageAlarmRaised",
        {
            "bcpmNotifyPanel": 2,
            "bcpmNotifyChannel": 1,
            "bcpmNotifyStatus": 0x0100,
            "bcpmNotifyBits": 0x0100,
            "bcpmNotifyVoltage": 2771,
        },
    )


def test_first_readings_global_summaries_and_value_changes_give_no_trap() -> None:
    assert traps_for(AlarmChanged(1, ALARM_7, old_bits=None, new_bits=0x0200), LAYOUT) == []
    assert traps_for(AlarmChanged(1, GLOBAL_LATCHING, old_bits=0, new_bits=1), LAYOUT) == []
    assert traps_for(ValueChanged(1, ALARM_7, UNREAD, UNREAD), LAYOUT) == []


def test_node_lost_and_restored() -> None:
    [lost] = traps_for(NodeOffline(4, "no reply"), LAYOUT)
    [back] = traps_for(NodeOnline(4), LAYOUT)
    assert names(lost) == ("bcpmNodeLost", {"bcpmNotifyPanel": 4, "bcpmNotifyReason": "no reply"})
    assert names(back) == ("bcpmNodeRestored", {"bcpmNotifyPanel": 4})


def test_the_bacnet_doctors_findings_and_their_end() -> None:
    found = {
        (kind, cleared): names(trap)
        for kind, number in (("network", 50), ("device_id", 50001))
        for cleared in (False, True)
        for trap in traps_for(NetworkFinding(kind, number, "10.0.0.7", cleared), LAYOUT)
    }
    assert found == {
        ("network", False): (
            "bcpmNetworkNumberConflict",
            {"bcpmNotifyBacnetNumber": 50, "bcpmNotifyBacnetOther": "10.0.0.7"},
        ),
        ("network", True): (
            "bcpmNetworkNumberConflictCleared",
            {"bcpmNotifyBacnetNumber": 50, "bcpmNotifyBacnetOther": "10.0.0.7"},
        ),
        ("device_id", False): (
            "bcpmDeviceIdConflict",
            {"bcpmNotifyBacnetNumber": 50001, "bcpmNotifyBacnetOther": "10.0.0.7"},
        ),
        ("device_id", True): (
            "bcpmDeviceIdConflictCleared",
            {"bcpmNotifyBacnetNumber": 50001, "bcpmNotifyBacnetOther": "10.0.0.7"},
        ),
    }


def received(receiver, notification: tuple[int, ...]) -> list[dict[str, str]]:
    return [trap for trap in receiver.traps() if trap.get(SNMP_TRAP_OID) == f"OID: {dotted(notification)}"]


async def test_cold_start_then_an_alarm_on_the_simulator_arrives_at_snmptrapd(snmp_agent, trap_receiver) -> None:
    agent = await snmp_agent(1, notify_hosts=[trap_receiver.endpoint, trap_receiver.endpoint])
    await eventually(lambda: bool(received(trap_receiver, COLD_START)), what="coldStart")
    await eventually(agent.all_values_present, 20, "every status read once")
    agent.line.panel(2).set_current(7, 19.0)  # 95 % of its 20 A breaker: High non-latching alarm (bit 8)
    await eventually(lambda: len(received(trap_receiver, NOTIFY + (1,))) == 2, what="two alarm traps")
    for trap in received(trap_receiver, NOTIFY + (1,)):  # one for each configured receiver
        assert trap[dotted(OBJECTS + (1, 0))] == "INTEGER: 2"  # panel
        assert trap[dotted(OBJECTS + (2, 0))] == "INTEGER: 7"  # channel
        assert trap[dotted(OBJECTS + (3, 0))] == "Gauge32: 256"  # status now
        assert trap[dotted(OBJECTS + (4, 0))] == "Gauge32: 256"  # bits raised
        assert trap[dotted(OBJECTS + (5, 0))] == "INTEGER: 19000"  # mA
    agent.line.panel(2).set_current(7, 5.0)
    await eventually(lambda: bool(received(trap_receiver, NOTIFY + (2,))), what="alarm cleared trap")
    for trap in trap_receiver.traps():
        assert f"[127.0.0.1]:{agent.port}->" in trap["from"]  # traps leave from the agent's own socket
        assert trap["security"] == f"TRAP2, SNMP v2c, community {TRAP}"


async def test_a_voltage_alarm_arrives_with_the_line_to_line_voltage(snmp_agent, trap_receiver) -> None:
    agent = await snmp_agent(1, notify_hosts=[trap_receiver.endpoint])
    await eventually(agent.all_values_present, 20, "every status read once")
    panel = agent.line.panel(1)
    panel.set_voltage("A", 160.0)
    panel.set_voltage("B", 160.0)  # A-B = 277 V, over the 264 V threshold; B-C and A-C 243 V
    await eventually(lambda: bool(received(trap_receiver, NOTIFY + (3,))), what="voltage alarm trap")
    [trap] = received(trap_receiver, NOTIFY + (3,))
    assert trap[dotted(OBJECTS + (2, 0))] == "INTEGER: 1"  # pair A-B
    assert trap[dotted(OBJECTS + (4, 0))] == "Gauge32: 256"  # over-voltage, non-latching
    assert 2760 <= int(trap[dotted(OBJECTS + (6, 0))].split()[1]) <= 2780  # tenths of a volt


async def test_a_vanishing_node_sends_node_lost_and_the_walk_still_completes(snmp_agent, trap_receiver) -> None:
    agent = await snmp_agent(1, notify_hosts=[trap_receiver.endpoint])
    await eventually(agent.all_values_present, 20, "every instance read once")
    served = len(agent.face.controller.index)
    agent.line.vanish(2)
    await eventually(lambda: bool(received(trap_receiver, NOTIFY + (5,))), what="node lost trap")
    [lost] = received(trap_receiver, NOTIFY + (5,))
    assert lost[dotted(OBJECTS + (1, 0))] == "INTEGER: 2"
    result = await agent.tool("snmpbulkwalk", "-Cr50", dotted(BASE))
    assert result.returncode == 0
    walked = {vb.oid: vb for vb in varbinds(result.stdout) if not vb.exception}
    assert len(walked) == served - STANDARD_INSTANCES  # stale values included
    assert walked[NODE_ONLINE + (1,)].number == 1 and walked[NODE_ONLINE + (2,)].number == 2  # true, false
    agent.line.restore(2)
    await eventually(lambda: bool(received(trap_receiver, NOTIFY + (6,))), 20, what="node restored trap")


def test_the_token_bucket_gives_a_burst_then_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=10, clock=lambda: now[0])
    assert [bucket.take() for _ in range(11)] == [True] * 10 + [False]
    assert bucket.delay() == pytest.approx(0.1)
    now[0] = 0.25
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 100.0
    assert sum(bucket.take() for _ in range(20)) == 10  # never more than the burst saved up


@pytest.mark.parametrize("sent_as", ["v2c traps", "v3 informs"])
async def test_an_alarm_storm_is_paced_and_summed_up_per_panel_and_the_table_keeps_every_status(
    snmp_agent, trap_receiver, sent_as: str
) -> None:
    if sent_as == "v2c traps":
        receivers: dict[str, object] = {"notify_hosts": [trap_receiver.endpoint]}
    else:
        informs = NMS.settings(notify_hosts=[trap_receiver.endpoint], notify_type="inform")
        receivers = {"engine_id": f"0x{ENGINE_ID.hex()}", "users": {"nms": informs}}
    agent = await snmp_agent(1, trap_rate=5, **receivers)
    await eventually(agent.all_values_present, 20, "every status read once")
    events = agent.gateway.hub.subscribe(AlarmChanged)
    storm = range(1, 21)
    for channel in storm:
        agent.line.panel(1).set_current(channel, 19.0)  # 95 % of the 20 A breaker: 20 alarms in one poll
    called_for = 0  # traps the storm's events call for (each channel: high alarm raised, low cleared)

    def alarm_traps() -> list[dict[str, str]]:
        return [trap for number in (1, 2) for trap in received(trap_receiver, NOTIFY + (number,))]

    def summed_up() -> bool:
        nonlocal called_for
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                called_for += len(traps_for(events.get_nowait(), LAYOUT))
        held = sum(int(summary[HELD].split()[1]) for summary in received(trap_receiver, HELD_BACK))
        return called_for >= 20 and len(alarm_traps()) + held == called_for

    await eventually(summed_up, 20, what="every trap sent or summed up")
    sent, summaries = alarm_traps(), received(trap_receiver, HELD_BACK)
    assert summaries and len(sent) < 5 * len(summaries) + 5  # a burst, then a summary instead
    held = set()
    for summary in summaries:
        assert summary[dotted(OBJECTS + (1, 0))] == "INTEGER: 1"  # the panel
        held |= {int(channel) for channel in summary[CHANNELS].split(": ", 1)[1].strip('"').split(",")}
    assert held | {int(trap[dotted(OBJECTS + (2, 0))].split()[1]) for trap in sent} == set(storm)
    assert agent.face.notifier.held_back == called_for - len(sent)
    if sent_as == "v3 informs":  # each was acknowledged: summaries, alarms sent and the coldStart
        notifier = agent.face.notifier
        assert notifier.counts["informs_sent"] == len(sent) + len(summaries) + 1
        await eventually(lambda: notifier.counts["informs_acknowledged"] == notifier.counts["informs_sent"])
    assert agent.face.counts["traps_held_back"] == agent.face.notifier.held_back  # in the status log
    for channel in storm:  # every alarm is in the table meanwhile
        [status] = varbinds((await agent.tool("snmpget", instance(alarm_of(channel), 1))).stdout)
        assert status.number & 0x0100, channel
