"""The fast path answers exactly as pysnmp does: each request is sent over the agent's socket twice,
answered once by the fast path and once by pysnmp (the fast path set aside), and the two answers
are compared byte for byte (varbind by varbind where a value moves by itself: sysUpTime, packet
counters, poll ages). Requests the fast path does not read are shown to reach pysnmp unchanged."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v1, v2c

from gateway.snmp import ber
from gateway.snmp.readers import SNMP_ENGINE, SNMP_GROUP, SYSTEM
from gateway.snmp.tree import BASE, Branch
from tests.snmp.netsnmp import dotted, varbinds
from tests.snmp.rig import NMS, READ, TRAP, WRITE, Agent
from tests.support import eventually

Oid = tuple[int, ...]
GET, NEXT, BULK = v2c.GetRequestPDU, v2c.GetNextRequestPDU, v2c.GetBulkRequestPDU
SYS_UP_TIME, SNMP_IN_PKTS, SNMP_IN_BAD_COMMUNITY_NAMES = SYSTEM + (3, 0), SNMP_GROUP + (1, 0), SNMP_GROUP + (4, 0)
ENGINE_TIME = SNMP_ENGINE + (3, 0)  # snmpEngineTime: moves with the clock
NODE_TABLE = Branch.NODES.oid + (1, 1)
POLL_AGE = NODE_TABLE + (3,)  # bcpmNodeLastPollAge: moves with the clock
CURRENT_1_3 = Branch.BRANCH_INPUTS.oid + (1, 1, 3, 1, 3)  # a branch current: panel 1, channel 3


def request(
    kind: type,
    names: Sequence[Oid],
    *,
    community: str = READ,
    request_id: int = 4242,
    non_repeaters: int = 0,
    max_repetitions: int = 0,
    version: object = v2c,
) -> bytes:
    pdu = kind()
    if kind is BULK:
        v2c.apiBulkPDU.set_defaults(pdu)
        v2c.apiBulkPDU.set_non_repeaters(pdu, non_repeaters)
        v2c.apiBulkPDU.set_max_repetitions(pdu, max_repetitions)
    else:
        version.apiPDU.set_defaults(pdu)
    version.apiPDU.set_request_id(pdu, request_id)
    version.apiPDU.set_varbinds(pdu, [(name, v2c.null) for name in names])
    message = version.Message()
    version.apiMessage.set_defaults(message)
    version.apiMessage.set_community(message, community)
    version.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


PROBE_ID = 777777
PROBE = request(GET, [SYSTEM + (1, 0)], request_id=PROBE_ID)


def request_id(response: bytes) -> int:
    message, _ = decoder.decode(response, asn1Spec=v2c.Message())
    return int(v2c.apiPDU.get_request_id(v2c.apiMessage.get_pdu(message)))


def decoded(response: bytes) -> tuple[int, int, list[tuple[Oid, str, object]]]:
    """(error status, error index, [(name, type, value)]) of a v2c response."""
    message, _ = decoder.decode(response, asn1Spec=v2c.Message())
    pdu = v2c.apiMessage.get_pdu(message)
    return (
        int(v2c.apiPDU.get_error_status(pdu)),
        int(v2c.apiPDU.get_error_index(pdu)),
        [(tuple(name), type(value).__name__, value.prettyPrint()) for name, value in v2c.apiPDU.get_varbinds(pdu)],
    )


class Client:
    """A manager's UDP socket on the test's event loop (the agent runs on the same loop)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def ask(self, datagram: bytes, *unanswered: bytes) -> bytes | None:
        """The answer to ``datagram`` (None: no answer), sent after ``unanswered`` ones and before a
        probe: answers come in order on loopback, so any answer to those would arrive first, and
        the probe's answer comes after the answer to ``datagram`` if there is one."""
        loop = asyncio.get_running_loop()
        for sent in (*unanswered, datagram, PROBE):
            await loop.sock_sendto(self.sock, sent, ("127.0.0.1", self.agent.port))
        answer = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), 5)
        if request_id(answer) == PROBE_ID:
            return None
        probed = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), 5)
        assert request_id(probed) == PROBE_ID
        return answer

    async def both(self, datagram: bytes, *unanswered: bytes) -> tuple[bytes | None, bytes | None]:
        """(the fast path's answer, pysnmp's answer)."""
        transport = self.agent.face.transport
        assert transport is not None and transport.fast is not None
        fast = await self.ask(datagram, *unanswered)
        transport.fast, kept = None, transport.fast
        try:
            slow = await self.ask(datagram, *unanswered)
        finally:
            transport.fast = kept
        return fast, slow

    def answers_fast(self, datagram: bytes) -> bool:
        transport = self.agent.face.transport
        assert transport is not None and transport.fast is not None
        return transport.fast.answer(datagram, "127.0.0.1") is not None


def same(fast: bytes, slow: bytes, moving: tuple[Oid, ...] = ()) -> bool:
    """Byte-identical, or identical but for the values of OIDs under ``moving``."""
    if fast == slow:
        return True
    (status, index, ours), (their_status, their_index, theirs) = decoded(fast), decoded(slow)

    def still(varbinds: list[tuple[Oid, str, object]]) -> list[tuple[Oid, str, object]]:
        return [
            (name, kind, None if any(name[: len(m)] == m for m in moving) else value) for name, kind, value in varbinds
        ]

    # A moving value may take a byte more by the second answer (sysUpTime at 327.68 s): then the
    # lengths differ too, and both answers decoded, which checks each one's framing.
    moved = ours != theirs
    return (status, index, still(ours)) == (their_status, their_index, still(theirs)) and (
        moved or len(fast) == len(slow)
    )


@pytest.fixture
async def still_agent(snmp_agent) -> AsyncIterator[Agent]:
    """An agent with two panels, every value read, and polling paused (values stand still)."""
    agent = await snmp_agent(
        1,
        max_response_varbinds=40,
        name="panel-room",
        location="Room 12",
        contact="ops",
        rate_limit=1000000,  # walks through pysnmp alone, each request counting as ten
        users={NMS.name: NMS.settings()},
    )
    await eventually(agent.all_values_present, 20, "every instance read once")
    poller = agent.gateway.nodes.poller
    poller.interval = 3600
    cycles = len(poller.reports)
    await eventually(lambda: len(poller.reports) > cycles, 10, "the cycle under way to end")
    yield agent


async def test_gets_are_answered_byte_for_byte_as_pysnmp_answers(still_agent) -> None:
    client = Client(still_agent)
    cases = [
        [CURRENT_1_3],
        [SYSTEM + (1, 0), SYSTEM + (4, 0), SYSTEM + (5, 0), SYSTEM + (6, 0), SYSTEM + (2, 0)],
        [CURRENT_1_3[:-1] + (99,)],  # a channel the panel does not have: noSuchInstance
        [BASE + (1, 99, 1, 0)],  # no such object
        [(1, 2, 3), (0, 0), CURRENT_1_3, NODE_TABLE + (2, 1)],
        [(1, 3, 6, 1, 4, 1, 3833, 1, 30, 2**32 - 1, 2**40)],  # sub-identifiers beyond 32 bits
    ]
    for names in cases:
        datagram = request(GET, names)
        assert client.answers_fast(datagram)
        fast, slow = await client.both(datagram)
        assert fast == slow, names
    result = await still_agent.tool("snmpget", *(dotted(SYSTEM + (number, 0)) for number in (4, 5, 6)))
    assert [(vb.type, vb.value) for vb in varbinds(result.stdout)] == [  # sysContact, sysName, sysLocation
        ("STRING", '"ops"'),
        ("STRING", '"panel-room"'),
        ("STRING", '"Room 12"'),
    ]


async def test_getnexts_are_answered_as_pysnmp_answers_up_to_the_end_of_the_view(still_agent) -> None:
    client = Client(still_agent)
    index = still_agent.face.controller.index
    last = index.oid(len(index) - 1)
    cases = [
        [(1, 0)],
        [(0, 0)],
        [CURRENT_1_3],
        [CURRENT_1_3[:-2]],
        [last[:-1]],
        [last],
        [(2, 1)],
        [(1, 3, 6, 1, 2, 1, 1, 9)],
        [CURRENT_1_3, last, (1, 3), SYSTEM],
    ]
    for names in cases:
        datagram = request(NEXT, names)
        assert client.answers_fast(datagram)
        fast, slow = await client.both(datagram)
        assert same(fast, slow, (SYS_UP_TIME, SNMP_IN_PKTS)), names
    _, _, [(name, kind, _)] = decoded(await client.ask(request(NEXT, [last])))
    assert (name, kind) == (last, "EndOfMibView")


async def test_getbulks_are_answered_as_pysnmp_answers_within_every_cap(still_agent) -> None:
    client = Client(still_agent)
    index = still_agent.face.controller.index
    last = index.oid(len(index) - 1)
    cases = [  # (non-repeaters, max-repetitions, names)
        (0, 10, [(1, 0)]),
        (0, 25, [NODE_TABLE]),  # poll ages
        (1, 5, [SYSTEM, CURRENT_1_3, BASE]),
        (2, 3, [SYSTEM, CURRENT_1_3, BASE, (1, 3, 6, 1, 2, 1, 11)]),
        (5, 7, [SYSTEM, CURRENT_1_3]),  # more non-repeaters than varbinds
        (1, 0, [CURRENT_1_3, SYSTEM]),  # repetitions 0: the non-repeater alone
        (0, 10000, [CURRENT_1_3]),  # capped at 40 varbinds (snmp.max_response_varbinds)
        (0, 10000, [CURRENT_1_3, BASE, SYSTEM]),  # 13 rows of 3
        (0, 6, [index.oid(len(index) - 3), index.oid(len(index) - 6)]),  # the columns end at different rows
        (0, 4, [last]),  # at the end already: one row of endOfMibView
        (0, 3, [(2, 1), (2, 999, 1)]),
    ]
    for non_repeaters, repetitions, names in cases:
        datagram = request(BULK, names, non_repeaters=non_repeaters, max_repetitions=repetitions)
        assert client.answers_fast(datagram)
        fast, slow = await client.both(datagram)
        assert same(fast, slow, (SYS_UP_TIME, SNMP_IN_PKTS, POLL_AGE, ENGINE_TIME)), (non_repeaters, repetitions, names)
    _, _, capped = decoded(await client.ask(request(BULK, [CURRENT_1_3, BASE, SYSTEM], max_repetitions=10000)))
    assert len(capped) == 39
    # the non-repeaters count against the cap too: 2 of them and 38 rows of the one column
    with_non_repeaters = request(BULK, [CURRENT_1_3] * 3, non_repeaters=2, max_repetitions=10000)
    assert len(decoded(await client.ask(with_non_repeaters))[2]) == 40


def varbind_sizes(response: bytes) -> list[int]:
    message, _ = decoder.decode(response, asn1Spec=v2c.Message())
    return [len(encoder.encode(varbind)) for varbind in v2c.apiMessage.get_pdu(message)["variable-bindings"]]


@pytest.mark.parametrize("amplification", [1, 4])  # at 1, sysDescr alone is over the budget
async def test_a_getbulk_answers_at_most_the_amplification_times_the_request_size(snmp_agent, amplification) -> None:
    agent = await snmp_agent(1, bulk_amplification=amplification)
    await eventually(agent.all_values_present, 20, "every instance read once")
    client = Client(agent)
    datagram = request(BULK, [CURRENT_1_3], max_repetitions=100)
    fast, slow = await client.both(datagram)
    assert same(fast, slow, (SYS_UP_TIME, SNMP_IN_PKTS, POLL_AGE, ENGINE_TIME))
    sizes = varbind_sizes(fast)  # as many as fit: the next current would not
    assert 1 < len(sizes) < 100 and amplification * len(datagram) - max(sizes) < sum(sizes)
    assert sum(sizes) <= amplification * len(datagram)
    description = request(BULK, [SYSTEM], max_repetitions=100)  # sysDescr comes first: long
    fast, slow = await client.both(description)
    assert same(fast, slow, (SYS_UP_TIME,))
    sizes = varbind_sizes(fast)
    assert len(sizes) == 1 or sum(sizes) <= amplification * len(description)  # the first is always answered
    wide = request(BULK, [CURRENT_1_3, SYSTEM, BASE], non_repeaters=1, max_repetitions=100)
    fast, slow = await client.both(wide)
    assert same(fast, slow, (SYS_UP_TIME, SNMP_IN_PKTS, POLL_AGE, ENGINE_TIME))


async def test_a_request_with_an_unknown_community_is_dropped_and_counted_as_pysnmp_does(still_agent) -> None:
    client = Client(still_agent)
    counter = request(GET, [SNMP_IN_BAD_COMMUNITY_NAMES, SNMP_IN_PKTS])
    _, _, [(_, _, before), (_, _, packets)] = decoded(await client.ask(counter))
    wrong = [
        request(GET, [CURRENT_1_3], community="wrong"),
        request(NEXT, [CURRENT_1_3], community=TRAP),
        request(BULK, [CURRENT_1_3], community="x" * 32, max_repetitions=5),
        request(NEXT, [CURRENT_1_3], community="wrong", version=v1),
    ]
    assert all(client.answers_fast(datagram) for datagram in wrong)  # dropped there
    fast, slow = await client.both(counter, *wrong)  # no answer to any of the four, on either path
    (_, _, [(_, _, after_fast), (_, _, packets_fast)]), (_, _, [(_, _, after_slow), (_, _, packets_slow)]) = (
        decoded(fast),
        decoded(slow),
    )
    assert (int(after_fast) - int(before), int(after_slow) - int(after_fast)) == (4 + 4, 4)  # answers_fast too
    # The four, the GET of the counters, and the probe after the previous GET (and answers_fast's four).
    assert (int(packets_fast) - int(packets), int(packets_slow) - int(packets_fast)) == (6 + 4, 6)


async def test_the_write_community_reads_on_the_fast_path_too(still_agent) -> None:
    client = Client(still_agent)
    for datagram in (
        request(GET, [CURRENT_1_3], community=WRITE),
        request(BULK, [CURRENT_1_3], community=WRITE, max_repetitions=20),
    ):
        assert client.answers_fast(datagram)
        fast, slow = await client.both(datagram)
        assert fast == slow


def crafted(
    *,
    version: bytes = b"\x02\x01\x01",
    pdu: int = 0xA0,
    request_id: bytes = b"\x02\x01\x05",
    name: bytes = b"",
    value: bytes = b"\x05\x00",
    length: Callable[[int], bytes] = ber.length,
) -> bytes:
    """A GET of CURRENT_1_3 written by hand, with one part changed (``length`` writes every length)."""

    def tlv(tag: int, content: bytes) -> bytes:
        return bytes((tag,)) + length(len(content)) + content

    oid = name or encoder.encode(rfc1902.ObjectName(CURRENT_1_3))
    varbinds = tlv(0x30, tlv(0x30, oid + value))
    return tlv(0x30, version + tlv(0x04, READ.encode()) + tlv(pdu, request_id + b"\x02\x01\x00" * 2 + varbinds))


async def test_what_the_fast_path_does_not_read_goes_to_pysnmp_unchanged(still_agent) -> None:
    client = Client(still_agent)
    assert crafted() == request(GET, [CURRENT_1_3], request_id=5)
    long = encoder.encode(rfc1902.ObjectName(CURRENT_1_3))
    unusual = {
        "SNMPv1": crafted(version=b"\x02\x01\x00"),
        "a SET": crafted(pdu=0xA3, value=b"\x42\x01\x05"),
        "a GETBULK without varbinds": request(BULK, [], max_repetitions=3),
        "a GETBULK with nothing to answer": request(BULK, [CURRENT_1_3]),
        "a request-id padded with a zero": crafted(request_id=b"\x02\x02\x00\x05"),
        "a value that is not NULL": crafted(value=b"\x02\x01\x00"),
        "a sub-identifier padded with 0x80": crafted(
            name=long[:1] + bytes((long[1] + 1,)) + long[2:5] + b"\x80" + long[5:]
        ),
        "lengths in the long form": crafted(length=lambda size: bytes((0x81, size))),
        "bytes after the message": crafted() + b"\x00",
        "a GET whose answer would not fit one datagram": request(GET, [SYSTEM + (1, 0)] * 600),  # sysDescr
    }
    for what, datagram in unusual.items():
        assert not client.answers_fast(datagram), what
    # Answered by pysnmp: the same answer with the fast path on or set aside.
    for what in (
        "a GETBULK with nothing to answer",
        "SNMPv1",
        "lengths in the long form",
        "a SET",
        "a GET whose answer would not fit one datagram",
    ):
        fast, slow = await client.both(unusual[what])
        assert fast == slow, what


@pytest.mark.parametrize("version", ["v2c", "v3 authPriv"])
async def test_net_snmp_walks_print_the_same_from_either_path(still_agent, version: str) -> None:
    transport = still_agent.face.transport
    assert transport is not None and transport.fast is not None
    nodes = dotted(Branch.NODES.oid)  # whose poll ages move
    ask = still_agent.tool if version == "v2c" else still_agent.v3

    # pysnmp takes some 10 ms a v3 GETNEXT: its walk is of one table (552 instances), not of all
    getnext = dotted(BASE) if version == "v2c" else dotted(BASE + (1, 2, 2))

    async def walks() -> list[list[str]]:
        printed = []
        for command, subtree in ((("snmpbulkwalk", "-Cr25"), dotted(BASE)), (("snmpwalk",), getnext)):
            result = await ask(*command, subtree)
            assert result.returncode == 0 and result.stderr == "", result.stderr
            printed.append([line for line in result.stdout.splitlines() if not line.startswith(nodes + ".1.1.3.")])
        return printed

    usm, sealed = transport.fast.usm, 0
    seal = usm.seal

    def counted(*args: object) -> bytes:  # answers the fast path sealed, once per v3 response
        nonlocal sealed
        sealed += 1
        return seal(*args)

    usm.seal = counted  # type: ignore[method-assign]
    fast = await walks()
    assert sealed > 100 if version != "v2c" else sealed == 0
    transport.fast, kept = None, transport.fast
    try:
        slow = await walks()  # pysnmp's USM and responders
    finally:
        transport.fast = kept
    assert fast == slow and len(fast[0]) > 1000
