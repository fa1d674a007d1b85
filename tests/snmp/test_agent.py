"""The SNMP agent against net-snmp's tools, with the simulated boards behind the gateway."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import structlog
from pysnmp.entity import config

from gateway.pointmap import load
from gateway.sim import Faults
from gateway.snmp.agent import READER
from gateway.snmp.controller import READ_VIEW
from gateway.snmp.placement import default_layout
from gateway.snmp.tree import ADVANCED_FEATURES_OID, BASE
from tests.snmp.netsnmp import dotted, error_of, run_async, varbinds
from tests.snmp.rig import READ, STANDARD_INSTANCES, TRAP, WRITE, instance
from tests.support import eventually

PM = load()
LAYOUT = default_layout()
CURRENT_12 = PM.find("current", group="branch", channel=12)
CT_SIZE_5 = PM.find("ct_size", group="setup", channel=5)
ALARM_7 = PM.find("alarm_status", group="alarms", channel=7)
SNMP_IN_BAD_COMMUNITY_NAMES = ".1.3.6.1.2.1.11.4.0"
SNMP_IN_ASN_PARSE_ERRS = ".1.3.6.1.2.1.11.6.0"
SYS_DESCR = ".1.3.6.1.2.1.1.1.0"


async def test_snmpget_of_a_branch_current_equals_the_simulators(snmp_agent) -> None:
    agent = await snmp_agent(1)
    panel = agent.line.panel(2)
    panel.set_current(12, 17.5)
    node = agent.gateway.nodes.nodes[2]
    await eventually(lambda: node.cache.reading(CURRENT_12).value == 17.5, what="current polled")
    scale = node.cache.scale_of(CURRENT_12)
    assert scale is not None
    [raw] = panel.read(CURRENT_12.register, 1)
    result = await agent.tool("snmpget", instance(CURRENT_12, 2))
    assert result.returncode == 0, result.stderr
    [got] = varbinds(result.stdout)
    assert (got.type, got.number) == ("INTEGER", raw * 10 ** (scale + 3)) == ("INTEGER", 17500)  # milliamps


async def test_bulkwalk_of_the_whole_subtree_returns_every_expected_oid_in_order(snmp_agent) -> None:
    agent = await snmp_agent(1, 3)
    await eventually(agent.all_values_present, 20, "every instance read once")
    result = await agent.tool("snmpbulkwalk", "-Cr25", ".1")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    walked = varbinds(result.stdout)
    assert [vb.value for vb in walked if vb.exception] == [
        "No more variables left in this MIB View (It is past the end of the MIB tree)"
    ]  # one row, not 25
    expected = sorted(i.oid for i in LAYOUT.instances(dict.fromkeys((1, 2, 3, 4), "A")))
    assert [vb.oid for vb in walked if vb.oid[: len(BASE)] == BASE] == expected
    assert len(walked) == len(expected) + STANDARD_INSTANCES + 1
    assert BASE + (1, 5, 1, 1, 7, 4, 42) in expected  # current of channel 42 of panel 4
    assert ADVANCED_FEATURES_OID + (0,) in expected


async def test_getnext_walk_of_a_table_is_the_same_as_the_bulk_walk(snmp_agent) -> None:
    agent = await snmp_agent(1)
    await eventually(agent.all_values_present, 20, "every instance read once")
    table = dotted(BASE + (1, 2, 2))  # channel alarms: 2 panels x 46 channels x 6 columns
    walk = await agent.tool("snmpwalk", table)
    bulk = await agent.tool("snmpbulkwalk", "-Cr50", table)
    assert walk.returncode == bulk.returncode == 0
    oids = [vb.oid for vb in varbinds(walk.stdout)]
    assert oids == [vb.oid for vb in varbinds(bulk.stdout)] and len(oids) == 2 * 46 * 6


async def test_a_walk_is_served_from_the_cache_while_the_bus_is_slow(snmp_agent) -> None:
    agent = await snmp_agent(1)
    await eventually(agent.all_values_present, 20, "every instance read once")
    agent.line.faults = Faults(slow=1.0, slow_delay=0.04)  # every reply late: the bus is busy all the time
    result = await agent.tool("snmpbulkwalk", "-Cr50", dotted(BASE))
    assert result.returncode == 0
    served = len(agent.face.controller.index) - STANDARD_INSTANCES
    assert len([vb for vb in varbinds(result.stdout) if not vb.exception]) == served


async def test_the_agent_logs_the_address_and_port_it_serves_on(snmp_agent) -> None:
    with structlog.testing.capture_logs() as logs:
        agent = await snmp_agent(1)
    [serving] = [entry for entry in logs if entry["event"] == "snmp agent serving"]
    assert (serving["address"], serving["port"]) == ("127.0.0.1", agent.port)


async def test_set_with_the_write_community_reaches_the_meter(snmp_agent) -> None:
    agent = await snmp_agent(1)
    result = await agent.tool("snmpset", instance(CT_SIZE_5, 2), "u", "200", community=WRITE)
    assert result.returncode == 0, result.stderr
    assert agent.line.panel(2).read(CT_SIZE_5.register, 1) == [200]
    [got] = varbinds((await agent.tool("snmpget", instance(CT_SIZE_5, 2))).stdout)
    assert got.number == 200  # the cache took what the meter read back


async def test_set_with_the_read_community_is_refused_and_the_register_is_unchanged(snmp_agent) -> None:
    agent = await snmp_agent(1)
    result = await agent.tool("snmpset", instance(CT_SIZE_5, 1), "u", "200", community=READ)
    assert error_of(result) == "noAccess"
    assert agent.line.panel(1).read(CT_SIZE_5.register, 1) == [100]


class Everyone(frozenset[str]):
    """A set of writers that holds every security name: the controller's own check let through."""

    def __contains__(self, name: object) -> bool:
        return True


async def test_the_read_communitys_set_is_refused_by_its_write_view_alone(snmp_agent) -> None:
    """Two guards refuse the read community's SET; here the agent's VACM view (an empty write view
    for the read community) must do it with the controller's list of writers let through."""
    agent = await snmp_agent(1)
    assert agent.face.controller is not None
    agent.face.controller.writers = Everyone()
    assert error_of(await agent.tool("snmpset", instance(CT_SIZE_5, 1), "u", "200", community=READ)) == "noAccess"
    assert agent.line.panel(1).read(CT_SIZE_5.register, 1) == [100]
    # the guard left is the one that refused: the write community still writes
    assert (await agent.tool("snmpset", instance(CT_SIZE_5, 1), "u", "200", community=WRITE)).returncode == 0


async def test_the_read_communitys_set_is_refused_by_the_list_of_writers_alone(snmp_agent) -> None:
    """The other guard alone: the read community given the write view of the enterprise tree, the
    controller, which lets only the write community's security name write, must refuse it."""
    agent = await snmp_agent(1)
    assert agent.face.snmp_engine is not None
    config.add_vacm_user(agent.face.snmp_engine, 2, READER, "noAuthNoPriv", readSubTree=READ_VIEW, writeSubTree=BASE)
    assert error_of(await agent.tool("snmpset", instance(CT_SIZE_5, 1), "u", "200", community=READ)) == "noAccess"
    assert agent.line.panel(1).read(CT_SIZE_5.register, 1) == [100]
    assert error_of(await agent.tool("snmpset", SYS_DESCR, "s", "x", community=WRITE)) == "noAccess"  # views hold


async def test_sets_the_meter_cannot_take_are_refused_with_the_matching_error(snmp_agent) -> None:
    agent = await snmp_agent(1)
    cases = {
        (instance(CT_SIZE_5, 1), "u", "40000"): "wrongValue",  # CT size is 0-32767
        (instance(CT_SIZE_5, 1), "i", "200"): "wrongType",  # an Unsigned32 column
        (instance(CURRENT_12, 1), "i", "5"): "notWritable",
        (dotted(LAYOUT.column_of(CT_SIZE_5).oid + (9, 5)), "u", "200"): "noCreation",  # no node 9
        (SYS_DESCR, "s", "x"): "noAccess",  # outside the write view
    }
    for args, expected in cases.items():
        assert error_of(await agent.tool("snmpset", *args, community=WRITE)) == expected, args
    assert agent.line.panel(1).read(CT_SIZE_5.register, 1) == [100]


async def test_without_a_write_community_nothing_can_be_set(snmp_agent) -> None:
    agent = await snmp_agent(1, write_community="")
    assert error_of(await agent.tool("snmpset", instance(CT_SIZE_5, 1), "u", "200")) == "noAccess"
    refused = await agent.tool("snmpset", instance(CT_SIZE_5, 1), "u", "200", community=WRITE, timeout=0.3)
    assert "Timeout" in refused.stderr
    [counted] = varbinds((await agent.tool("snmpget", SNMP_IN_BAD_COMMUNITY_NAMES)).stdout)
    assert counted.number == 2  # dropped unanswered, not just slow: the set and its retry
    assert agent.line.panel(1).read(CT_SIZE_5.register, 1) == [100]


async def test_a_wrong_community_gets_no_answer_and_is_counted(snmp_agent) -> None:
    agent = await snmp_agent(1)
    for community in ("wrong", TRAP):  # the trap community only signs traps
        result = await agent.tool("snmpget", SYS_DESCR, community=community, timeout=0.3)
        assert result.returncode != 0 and "Timeout" in result.stderr
    [counted] = varbinds((await agent.tool("snmpget", SNMP_IN_BAD_COMMUNITY_NAMES)).stdout)
    assert counted.number == 4  # two requests, each sent twice (one retry), dropped unanswered, not just slow


async def test_the_documented_oid_is_advanced_features_of_the_lowest_panel(snmp_agent) -> None:
    agent = await snmp_agent(5, 3)
    await eventually(agent.all_values_present, 20, "every instance read once")
    oid = dotted(ADVANCED_FEATURES_OID + (0,))
    [got] = varbinds((await agent.tool("snmpget", oid)).stdout)
    assert got.number == 0
    result = await agent.tool("snmpset", oid, "u", "1", community=WRITE)
    assert result.returncode == 0, result.stderr
    assert agent.line.panel(3).read(62017, 1) == [1]
    assert agent.line.panel(5).read(62017, 1) == [0]


async def test_a_latched_alarm_is_cleared_by_setting_its_status(snmp_agent) -> None:
    agent = await snmp_agent(1)
    for key in ("alarm_on_time", "delay_high_high", "delay_high"):  # latch at once
        assert (await agent.tool("snmpset", instance(PM.find(key), 1), "u", "0", community=WRITE)).returncode == 0
    panel = agent.line.panel(1)
    panel.set_current(7, 19.0)  # 95 % of the 20 A breaker: High-High and High latch, High non-latching
    await eventually(lambda: panel.read(ALARM_7.register, 1) == [0x0103], what="alarms latched")
    panel.set_current(7, 5.0)
    await eventually(lambda: panel.read(ALARM_7.register, 1) == [0x0003], what="non-latching alarm gone")
    result = await agent.tool("snmpset", instance(ALARM_7, 1), "u", "0", community=WRITE)
    assert result.returncode == 0, result.stderr
    assert panel.read(ALARM_7.register, 1) == [0]


async def test_a_set_to_an_offline_node_is_refused_as_resource_unavailable(snmp_agent) -> None:
    agent = await snmp_agent(1)
    agent.line.vanish(2)
    await eventually(lambda: not agent.gateway.nodes.nodes[2].health.online, what="node 2 offline")
    result = await agent.tool("snmpset", instance(CT_SIZE_5, 2), "u", "200", community=WRITE)
    assert error_of(result) == "resourceUnavailable"


async def test_a_getbulk_response_holds_at_most_the_configured_number_of_varbinds(snmp_agent) -> None:
    agent = await snmp_agent(1, max_response_varbinds=20)
    await eventually(agent.all_values_present, 20, "every instance read once")
    table = BASE + (1, 2, 2)  # channel alarms: 2 panels x 46 channels x 6 columns
    walk = [vb.oid for vb in varbinds((await agent.tool("snmpwalk", dotted(table))).stdout)]
    one = await agent.tool("snmpbulkget", "-Cn0", "-Cr50", dotted(table))
    assert one.returncode == 0 and [vb.oid for vb in varbinds(one.stdout)] == walk[:20]
    two = await agent.tool("snmpbulkget", "-Cn0", "-Cr50", dotted(table), dotted(table + (1, 1, 2)))
    assert two.returncode == 0 and len(varbinds(two.stdout)) == 20  # 10 rows of 2 columns
    three = await agent.tool("snmpbulkget", "-Cn1", "-Cr50", dotted(table), dotted(table + (1, 1, 2)))
    assert three.returncode == 0 and len(varbinds(three.stdout)) == 20  # the non-repeater counts too
    bulk = await agent.tool("snmpbulkwalk", "-Cr50", dotted(table))
    assert bulk.returncode == 0 and [vb.oid for vb in varbinds(bulk.stdout)] == walk  # in steps of 20


async def test_a_getbulk_response_is_cut_to_fit_one_udp_datagram(snmp_agent) -> None:
    agent = await snmp_agent(1, max_response_varbinds=4096, bulk_amplification=1000)
    await eventually(agent.all_values_present, 20, "every instance read once")
    served = len(agent.face.controller.index) - STANDARD_INSTANCES
    walk = await agent.tool("snmpbulkwalk", "-Cr4096", dotted(BASE))  # every response cut short
    assert walk.returncode == 0 and walk.stderr == "", walk.stderr
    walked = [vb.oid for vb in varbinds(walk.stdout) if not vb.exception]
    assert len(walked) == served  # about 3,800 instances, some 100 KB of varbinds
    greedy = await agent.tool("snmpbulkget", "-Cn0", "-Cr4096", dotted(BASE))
    assert greedy.returncode == 0, greedy.stderr  # answered, not dropped by pysnmp as too big
    got = [vb.oid for vb in varbinds(greedy.stdout)]
    assert 1000 < len(got) < served and got == walked[: len(got)]  # cut by size, not by the cap or the view


async def test_garbage_and_greedy_requests_never_stop_the_agent(snmp_agent, caplog) -> None:
    agent = await snmp_agent(1, max_response_varbinds=20)
    hostile = [
        b"",
        os.urandom(300),
        b"\x30\x84\x7f\xff\xff\xff\x02\x01\x01",
        b"\x30\x03\x02\x01\x09",
        bytes.fromhex("302902010104067075626c6963a01c02020001020100020100301030"),  # truncated GET
        b"\x30" + b"\x80" * 2000,
        bytes.fromhex("7706f85d"),
    ]  # the last makes pyasn1 raise TypeError
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in hostile * 20:
            sender.sendto(datagram, ("127.0.0.1", agent.port))
    greedy = await agent.tool("snmpbulkget", "-Cn0", "-Cr2000000000", dotted(BASE))
    assert greedy.returncode == 0 and len(varbinds(greedy.stdout)) == 20  # max_response_varbinds
    wide = await agent.tool("snmpbulkget", "-Cr10", *[dotted(BASE + (1, n)) for n in range(200)])
    assert "genError" in wide.stderr  # an answer, as pysnmp gives it: 200 repeaters leave no room
    deep = await agent.tool("snmpget", "." + ".".join(["1"] * 120))
    assert "No Such Object" in deep.stdout
    version_1 = await run_async(
        agent.folder, "snmpget", "-v1", "-c", READ, "-t", "2", "-r", "0", agent.target, SYS_DESCR
    )  # SNMPv1 is not served: refused with an error, not a crash
    assert "noSuchName" in version_1.stderr
    trap = await run_async(agent.folder, "snmptrap", "-v2c", "-c", READ, agent.target, "", ".1.3.6.1.6.3.1.1.5.1")
    assert trap.returncode == 0
    await asyncio.sleep(0.1)
    result = await agent.tool("snmpget", SYS_DESCR, SNMP_IN_ASN_PARSE_ERRS)
    assert result.returncode == 0 and "BCPM gateway" in result.stdout
    assert varbinds(result.stdout)[1].number > 0  # the garbage was counted, and dropped
    assert not any(task.done() for task in asyncio.all_tasks() if task.get_name() == "SnmpFace")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # no "Exception in callback"
