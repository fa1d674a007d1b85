"""Who may talk to the agent and how often (snmp.allow, snmp.rate_limit), and quiet logs: every
kind of refused datagram is counted and reported at most once a minute, whatever the flood."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from gateway.logging import event_counts
from gateway.snmp.readers import SNMP_GROUP, SYSTEM
from tests.snmp.netsnmp import dotted, run_async, varbinds
from tests.snmp.rig import READ, Agent
from tests.snmp.test_fast import BULK, GET, crafted, request
from tests.support import eventually

SYS_DESCR = dotted(SYSTEM + (1, 0))
SNMP_IN_BAD_COMMUNITY_NAMES = dotted(SNMP_GROUP + (4, 0))
FLOOD = 100  # datagrams at once: well within a socket's receive buffer


async def snmpget_from(agent: Agent, folder: Path, source: str, *names: str) -> str:
    """net-snmp's snmpget, sending from ``source`` (a loopback address); its stdout."""
    folder.mkdir(exist_ok=True)
    (folder / "snmp.conf").write_text(f"clientaddr {source}\n")
    result = await run_async(folder, "snmpget", "-v2c", "-c", READ, "-On", "-t", "1", "-r", "1", agent.target, *names)
    return result.stdout


async def flood(agent: Agent, sender: socket.socket, datagram: bytes, count: int) -> int:
    """Send ``count`` copies of ``datagram`` at once from ``sender``; how many were answered, once
    every one is answered or dropped over the rate limit."""
    gate = agent.face.transport.gate
    sender.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    for _ in range(count):
        sender.sendto(datagram, ("127.0.0.1", agent.port))
    answered = 0

    def accounted() -> bool:
        nonlocal answered
        while True:
            try:
                sender.recv(65535)
            except BlockingIOError:
                return answered + gate.limited.dropped == count
            answered += 1

    await eventually(accounted, what="every datagram answered or dropped")
    return answered


async def test_only_allowed_sources_are_answered_and_the_others_counted(snmp_agent, tmp_path) -> None:
    agent = await snmp_agent(1, allow=["127.0.0.2/31", "127.0.0.9"])
    assert "BCPM gateway" in await snmpget_from(agent, tmp_path / "a", "127.0.0.3", SYS_DESCR)
    assert "BCPM gateway" in await snmpget_from(agent, tmp_path / "b", "127.0.0.9", SYS_DESCR)
    assert await snmpget_from(agent, tmp_path / "c", "127.0.0.1", SYS_DESCR) == ""  # timed out
    assert await snmpget_from(agent, tmp_path / "d", "127.0.0.4", SYS_DESCR) == ""
    gate = agent.face.transport.gate
    assert (gate.refused.dropped, gate.refused.reported) == (4, 1)  # two requests, each sent twice; one warning


async def test_a_source_over_the_rate_limit_is_dropped_while_others_are_served(snmp_agent, tmp_path) -> None:
    agent = await snmp_agent(1, rate_limit=10)
    gate = agent.face.transport.gate
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        answered = await flood(agent, sender, request(GET, [SYSTEM + (1, 0)]), FLOOD)
        # Meanwhile another source is served.
        assert "BCPM gateway" in await snmpget_from(agent, tmp_path / "other", "127.0.0.2", SYS_DESCR)
    assert 10 <= answered <= 30  # 10 in each second the flood spanned (one, or a few)
    assert gate.limited.reported == 1


async def test_a_flood_of_every_refused_kind_logs_one_warning_per_kind(snmp_agent) -> None:
    agent = await snmp_agent(1, allow=["127.0.0.1"], rate_limit=100000)
    kinds = [  # (datagram, sending address)
        (request(GET, [SYSTEM + (1, 0)], community="guess"), "127.0.0.1"),
        (bytes.fromhex("7706f85d"), "127.0.0.1"),  # pyasn1 raises TypeError on it
        (request(GET, [SYSTEM + (1, 0)]), "127.0.0.7"),
    ]
    transport = agent.face.transport
    reports = [transport.fast.bad_communities, transport.drops, transport.gate.refused]
    for (datagram, source), report in zip(kinds, reports):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind((source, 0))
            for _ in range(FLOOD):
                sender.sendto(datagram, ("127.0.0.1", agent.port))
        await eventually(lambda report=report: report.dropped == FLOOD, what="every datagram counted")
    assert [report.reported for report in reports] == [1, 1, 1]
    # What the status line shows, each count once: the drops as peer events, the face's own beside them.
    assert [event_counts()[report.what] for report in reports] == [FLOOD] * 3
    assert agent.face.counts == {"traps_held_back": 0}
    [counted] = varbinds((await agent.tool("snmpget", SNMP_IN_BAD_COMMUNITY_NAMES)).stdout)
    assert counted.number == FLOOD


async def test_getbulks_of_10000_repetitions_at_100_a_second_leave_the_agent_answering(snmp_agent) -> None:
    agent = await snmp_agent(1)
    greedy = request(BULK, [(1, 3)], max_repetitions=10000)
    received = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        sender.setblocking(False)
        loop = asyncio.get_running_loop()

        async def flood() -> None:
            for _ in range(100):  # a second's worth
                await loop.sock_sendto(sender, greedy, ("127.0.0.1", agent.port))
                await asyncio.sleep(0.01)

        async def collect() -> None:
            while len(received) < 100:
                received.append(await loop.sock_recv(sender, 65535))

        flooding = asyncio.gather(flood(), collect())
        during = await agent.tool("snmpget", SYS_DESCR)  # another manager, meanwhile
        await asyncio.wait_for(flooding, 30)
    assert "BCPM gateway" in during.stdout
    # Each answer is at most snmp.bulk_amplification (16) times the request, beside its envelope.
    assert max(len(answer) for answer in received) <= 16 * len(greedy) + len(greedy)


async def test_a_request_left_to_pysnmp_counts_as_ten_toward_the_rate_limit(snmp_agent) -> None:
    agent = await snmp_agent(1, rate_limit=20)
    refused_set = crafted(pdu=0xA3, value=b"\x42\x01\x05")  # a SET with the read community: noAccess
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        answered = await flood(agent, sender, refused_set, 30)
    assert 2 <= answered <= 6  # two in each second the flood spanned
