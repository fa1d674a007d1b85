"""The Bus scheduler: priorities and the poll share, threads and loops, queue limits, stats."""

from __future__ import annotations

import asyncio
import struct
import threading
from concurrent.futures import Future
from dataclasses import astuple
from itertools import pairwise

import pytest

from gateway.bus import (
    POLL_SHARE,
    Bus,
    BusClosed,
    BusOverloaded,
    CorruptReply,
    ExceptionReply,
    LineSettings,
    NoResponse,
    Priority,
)
from gateway.sim import Fault, SimulatedLine
from tests.support import eventually

from .conftest import CT_SIZE, StartBus


def read(address: int, count: int = 1) -> bytes:
    return struct.pack(">BHH", 0x03, address, count)


def write(address: int, value: int) -> bytes:
    return struct.pack(">BHH", 0x06, address, value)


def read_reply(line: SimulatedLine, unit: int, address: int) -> bytes:
    """The reply of the meter at `unit` to `read(address)`."""
    return struct.pack(">BBH", 0x03, 2, *line.panel(unit).read(address + 1, 1))


async def heard(line: SimulatedLine, count: int) -> None:
    """Wait until the simulator has heard `count` requests (a short step: the line is held briefly)."""
    await eventually(lambda: line.stats.requests >= count, what=f"{count} requests on the line", step=0.005)


POLLED, PASSED_THROUGH = 1, 2  # the unit each kind of client asks, to tell them apart on the line


def keep_asking(bus: Bus, unit: int, pdus: list[bytes], priority: Priority) -> Future[None]:
    """Send `pdus` one after another, like a busy master or the poller; done after the last reply.

    Each next request is queued from the reply's callback, on the bus thread, before the bus picks
    its next transaction: the client always has a request waiting, so the order served is exact.
    """
    finished: Future[None] = Future()

    def ask(index: int) -> None:
        if index == len(pdus):
            finished.set_result(None)
            return

        def answered(reply: Future[bytes]) -> None:
            if (error := reply.exception()) is not None:
                finished.set_exception(error)
            else:
                ask(index + 1)

        bus.submit(unit, pdus[index], priority).add_done_callback(answered)

    ask(0)
    return finished


async def serve_under_load(
    bus: Bus, line: SimulatedLine, *, masters: int, rounds: int, pollers: int, polls: int
) -> list[tuple[int, int]]:
    """Masters (on threads of their own) and pollers keep asking while a write holds the line.

    Returns (unit, address) of every transaction after that write, in the order served. Master m
    reads address 100 + m; poller p reads address p.
    """
    # The write holds the line while every client queues its first request.
    line.script.add(Fault(delay=0.3))
    bus.submit(POLLED, write(CT_SIZE, 7), Priority.WRITE)
    await heard(line, 1)
    clients: list[Future[None]] = []
    start = threading.Barrier(masters)

    def master(index: int) -> None:
        start.wait()
        pdus = [read(100 + index, count) for count in range(1, rounds + 1)]
        clients.append(keep_asking(bus, PASSED_THROUGH, pdus, Priority.PASSTHROUGH))

    threads = [threading.Thread(target=master, args=(index,)) for index in range(masters)]
    for thread in threads:
        thread.start()
    for index in range(pollers):
        clients.append(keep_asking(bus, POLLED, [read(index)] * polls, Priority.POLL))
    for thread in threads:
        thread.join(5)
    for client in clients:
        await asyncio.wrap_future(client)
    return [(unit, struct.unpack(">H", pdu[1:3])[0]) for unit, pdu in line.requests[1:]]


async def test_writes_jump_ahead_of_queued_polls(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus(timeout=1.0)
    line.script.add(Fault(delay=0.2))  # hold the line while the queue fills
    first = bus.submit(1, read(0), Priority.POLL)
    await heard(line, 1)
    polls = [bus.submit(1, read(address), Priority.POLL) for address in range(1, 11)]
    written = bus.submit(1, write(CT_SIZE, 7), Priority.WRITE)
    await asyncio.wrap_future(polls[-1])
    assert first.result() and written.result() == write(CT_SIZE, 7)
    functions = [pdu[0] for _, pdu in line.requests]
    assert functions[:2] == [0x03, 0x06] and functions[2:] == [0x03] * 10
    addresses = [struct.unpack(">H", pdu[1:3])[0] for _, pdu in line.requests[2:]]
    assert addresses == list(range(1, 11)), "first come, first served within a priority"


async def test_priorities_run_writes_then_passthrough_then_polls_then_discovery(
    start_bus: StartBus, line: SimulatedLine
) -> None:
    bus = start_bus(timeout=1.0)
    # Discovery that held up a waiting poll owes the line some time before it may go ahead again.
    line.script.add(Fault(delay=0.2))
    bus.submit(1, read(0), Priority.DISCOVERY)
    await heard(line, 1)
    bus.submit(1, read(1), Priority.POLL)
    await heard(line, 2)
    line.script.add(Fault(delay=0.2))
    bus.submit(1, read(2), Priority.POLL)
    await heard(line, 3)
    order = [Priority.DISCOVERY, Priority.POLL, Priority.PASSTHROUGH, Priority.WRITE]
    futures = [bus.submit(1, read(10 + priority), priority) for priority in order]
    for future in futures:
        await asyncio.wrap_future(future)
    served = [struct.unpack(">H", pdu[1:3])[0] - 10 for _, pdu in line.requests[3:]]
    assert served == [Priority.WRITE, Priority.PASSTHROUGH, Priority.POLL, Priority.DISCOVERY]


async def test_discovery_owed_its_share_goes_ahead_of_polls_and_pass_through_but_not_writes(
    start_bus: StartBus, line: SimulatedLine
) -> None:
    bus = start_bus(timeout=1.0)
    line.script.add(Fault(delay=0.2))
    bus.submit(1, read(0), Priority.POLL)
    await heard(line, 1)
    order = [Priority.POLL, Priority.PASSTHROUGH, Priority.DISCOVERY, Priority.WRITE]
    futures = [bus.submit(1, read(10 + priority), priority) for priority in order]
    for future in futures:
        await asyncio.wrap_future(future)
    served = [struct.unpack(">H", pdu[1:3])[0] - 10 for _, pdu in line.requests[1:]]
    assert served == [Priority.WRITE, Priority.DISCOVERY, Priority.PASSTHROUGH, Priority.POLL]


@pytest.mark.parametrize("pollers", [1, 4])
async def test_discovery_keeps_a_tenth_of_the_line_while_polls_never_pause(
    start_bus: StartBus, line: SimulatedLine, pollers: int
) -> None:
    bus = start_bus(timeout=1.0)
    line.script.add(Fault(delay=0.2))  # every client queues its first request meanwhile
    bus.submit(1, read(0), Priority.POLL)
    await heard(line, 1)
    polls = [keep_asking(bus, POLLED, [read(index)] * (400 // pollers), Priority.POLL) for index in range(pollers)]
    scan = keep_asking(bus, PASSED_THROUGH, [read(50)] * 30, Priority.DISCOVERY)
    await asyncio.wrap_future(scan)
    assert not any(future.done() for future in polls), "polling never paused while the scan ran"
    kinds = [unit for unit, _ in line.requests[1:]]
    served = kinds[: len(kinds) - kinds[::-1].index(PASSED_THROUGH)]  # up to the scan's last probe
    # Every transaction reads one register, so their line times are alike: about one in ten is
    # discovery's (the share counts seconds, and a busy machine stretches some transactions).
    assert served.count(PASSED_THROUGH) == 30
    assert 8 * 30 <= len(served) <= 12 * 30
    for future in polls:
        await asyncio.wrap_future(future)


async def test_discovery_on_an_idle_line_owes_nothing(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus(timeout=1.0)
    for index in range(20):  # a first scan, with nothing else to do
        await bus.transact(1, read(index), Priority.DISCOVERY)
    line.script.add(Fault(delay=0.2))
    bus.submit(1, read(0), Priority.POLL)
    await heard(line, 21)
    polled = bus.submit(1, read(1), Priority.POLL)
    probed = bus.submit(1, read(2), Priority.DISCOVERY)
    await asyncio.wrap_future(polled)
    assert probed.done(), "discovery went first: the scan before kept nobody waiting"


async def test_polls_get_their_share_while_sixteen_masters_keep_the_queue_full(
    start_bus: StartBus, line: SimulatedLine
) -> None:
    bus = start_bus(timeout=1.0)
    served = await serve_under_load(bus, line, masters=16, rounds=4, pollers=1, polls=12)
    kinds = ["poll" if unit == POLLED else "pass" for unit, _ in served]
    turn = ["pass"] * (POLL_SHARE - 1) + ["poll"]
    assert kinds == turn * 12 + ["pass"] * (16 * 4 - 12 * (POLL_SHARE - 1))
    masters = [address for unit, address in served if unit == PASSED_THROUGH]
    assert sorted(masters[:16]) == list(range(100, 116))
    assert masters == masters[:16] * 4, "the masters take turns in the order they first asked"
    assert bus.stats.transactions == 1 + 16 * 4 + 12


async def test_passthrough_still_progresses_while_polls_keep_the_queue_full(
    start_bus: StartBus, line: SimulatedLine
) -> None:
    bus = start_bus(timeout=1.0)
    served = await serve_under_load(bus, line, masters=1, rounds=8, pollers=4, polls=6)
    passes = [position for position, (unit, _) in enumerate(served) if unit == PASSED_THROUGH]
    assert len(passes) == 8 and passes[0] == 0
    assert all(later - earlier <= 2 for earlier, later in pairwise(passes)), (
        "a waiting pass-through goes on the line at least every other transaction"
    )
    polls = [address for unit, address in served if unit == POLLED]
    assert polls == [0, 1, 2, 3] * 6, "the pollers take turns, first come first served"


async def test_submit_from_another_thread_and_loop(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus()
    results: dict[str, bytes] = {}

    def plain_thread() -> None:
        results["thread"] = bus.submit(1, read(1), Priority.POLL).result(timeout=5)

    def thread_with_its_own_loop() -> None:
        results["loop"] = asyncio.run(bus.transact(2, read(2), Priority.POLL))

    threads = [
        threading.Thread(target=plain_thread),
        threading.Thread(target=thread_with_its_own_loop),
    ]
    for thread in threads:
        thread.start()
    results["test loop"] = await bus.transact(1, read(3), Priority.POLL)
    for thread in threads:
        thread.join(5)
    assert results == {
        "thread": read_reply(line, 1, 1),
        "loop": read_reply(line, 2, 2),
        "test loop": read_reply(line, 1, 3),
    }


async def test_queue_full_is_refused_with_bus_overloaded(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus(max_queue=3, timeout=1.0)
    line.script.add(Fault(delay=0.2))
    bus.submit(1, read(0), Priority.POLL)
    await heard(line, 1)
    queued = [bus.submit(1, read(address), Priority.POLL) for address in (1, 2, 3)]
    refused = bus.submit(1, write(0, 1), Priority.WRITE)
    assert refused.done() and isinstance(refused.exception(), BusOverloaded)
    for future in queued:
        await asyncio.wrap_future(future)


async def test_stop_fails_pending_requests_with_bus_closed(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus()
    line.script.add(Fault(delay=1.0))
    on_the_wire = bus.submit(1, read(0), Priority.POLL)
    await heard(line, 1)
    queued = [bus.submit(1, read(address), Priority.POLL) for address in (1, 2, 3)]
    bus.stop()
    for future in [on_the_wire, *queued]:
        assert isinstance(future.exception(timeout=5), BusClosed)
    assert not bus.ready.is_set()
    with pytest.raises(BusClosed, match="stopped"):
        await bus.transact(1, read(0), Priority.POLL)
    assert len(line.requests) == 1


async def test_a_cancelled_caller_does_not_break_the_scheduler(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus(timeout=1.0)
    line.script.add(Fault(delay=0.2))
    waiting = asyncio.ensure_future(bus.transact(1, read(0), Priority.POLL))
    await heard(line, 1)
    never_sent = bus.submit(1, read(1), Priority.POLL)
    assert never_sent.cancel()
    waiting.cancel()  # already on the wire: it finishes and the reply is dropped
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await bus.transact(1, read(2), Priority.POLL) == read_reply(line, 1, 2)
    assert [pdu for _, pdu in line.requests] == [read(0), read(2)]
    assert bus.stats.transactions == 2 and bus.stats.replies == 2


async def test_a_cancelled_caller_on_the_serving_loop_does_not_break_the_scheduler(line: SimulatedLine) -> None:
    """The poller asks from the loop that serves the bus, which settles its requests in place."""
    bus = Bus(LineSettings(line.path, timeout=1.0))
    serving = asyncio.create_task(bus.serve())
    await asyncio.to_thread(bus.wait_ready, 5)
    try:
        line.script.add(Fault(delay=0.2))
        on_the_wire = asyncio.ensure_future(bus.transact(1, read(0), Priority.POLL))
        await heard(line, 1)
        never_sent = asyncio.ensure_future(bus.transact(1, read(1), Priority.POLL))
        await asyncio.sleep(0)  # queued behind the one on the wire
        never_sent.cancel()
        on_the_wire.cancel()  # it finishes and the reply is dropped
        for cancelled in (never_sent, on_the_wire):
            with pytest.raises(asyncio.CancelledError):
                await cancelled
        assert await bus.transact(1, read(2), Priority.POLL) == read_reply(line, 1, 2)
        assert [pdu for _, pdu in line.requests] == [read(0), read(2)]
        assert bus.stats.transactions == 2 and bus.stats.replies == 2
    finally:
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving


async def test_missing_port_gives_bus_closed_with_the_os_error() -> None:
    with pytest.raises(BusClosed) as raised:
        async with Bus(LineSettings("/dev/ttyUSB9")):
            pass
    assert str(raised.value) == "cannot open /dev/ttyUSB9: No such file or directory"


async def test_a_missing_port_is_tried_again_while_requests_are_refused() -> None:
    bus = Bus(LineSettings("/dev/ttyUSB9"))
    serving = asyncio.create_task(bus.serve())
    with pytest.raises(BusClosed, match="No such file"):
        await asyncio.to_thread(bus.wait_ready, 5)
    refused = bus.submit(1, read(0), Priority.POLL)
    assert isinstance(refused.exception(), BusClosed)
    assert not serving.done()  # waiting to open the port again
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


def test_requests_before_serve_are_refused() -> None:
    refused: Future[bytes] = Bus(LineSettings("/dev/null")).submit(1, read(0), Priority.POLL)
    assert isinstance(refused.exception(), BusClosed)


async def test_serve_runs_on_the_callers_loop_too(line: SimulatedLine) -> None:
    bus = Bus(LineSettings(line.path))
    serving = asyncio.create_task(bus.serve())
    await asyncio.to_thread(bus.wait_ready, 5)
    assert await bus.transact(2, read(0), Priority.POLL) == read_reply(line, 2, 0)
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


async def test_stats_count_outcomes_and_busy_time(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus(timeout=0.05)
    assert not any(astuple(bus.stats))  # nothing counted before the first transaction
    await bus.transact(1, read(0), Priority.POLL)
    line.script.add(Fault(crc_error=True))
    with pytest.raises(CorruptReply):
        await bus.transact(1, read(0), Priority.POLL)
    with pytest.raises(NoResponse):
        await bus.transact(9, read(0), Priority.POLL)
    line.script.add(Fault(exception=0x02))
    with pytest.raises(ExceptionReply):
        await bus.transact(1, read(0), Priority.POLL)
    stats = bus.stats
    assert (stats.transactions, stats.replies, stats.corrupt, stats.timeouts, stats.exceptions) == (4, 1, 1, 1, 1)
    assert stats.busy_seconds > 4 * bus.settings.wire_time(8)


async def test_a_broadcast_is_sent_and_resolves_to_nothing(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus()
    assert await bus.transact(0, write(CT_SIZE, 100), Priority.WRITE) == b""
    await heard(line, 1)
    assert line.requests[-1] == (0, write(CT_SIZE, 100))


async def test_a_bus_served_in_an_async_with_block_stops_at_its_end(line: SimulatedLine) -> None:
    async with Bus(LineSettings(line.path)) as bus:
        assert await bus.transact(1, read(0), Priority.POLL)
    with pytest.raises(BusClosed):
        await bus.transact(1, read(0), Priority.POLL)
