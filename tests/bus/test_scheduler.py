"""The Bus scheduler: priorities, threads and loops, queue limits, stopping, and stats."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from gateway.bus import (
    Bus,
    BusClosed,
    BusOverloaded,
    CorruptReply,
    LineSettings,
    NoResponse,
    Priority,
)

from .conftest import BusThread
from .responder import Responder

StartBus = Callable[..., BusThread]


def read(address: int, count: int = 1) -> bytes:
    return struct.pack(">BHH", 0x03, address, count)


def write(address: int, value: int) -> bytes:
    return struct.pack(">BHH", 0x06, address, value)


async def test_writes_jump_ahead_of_queued_polls(start_bus: StartBus, responder: Responder) -> None:
    bus = start_bus(timeout=1.0).bus
    responder.late_next(0.2)  # hold the line while the queue fills
    first = bus.submit(1, read(0), Priority.POLL)
    responder.wait_for_requests(1)
    polls = [bus.submit(1, read(address), Priority.POLL) for address in range(1, 11)]
    written = bus.submit(1, write(50, 7), Priority.WRITE)
    await asyncio.wrap_future(polls[-1])
    assert first.result() and written.result() == write(50, 7)
    functions = [pdu[0] for _, pdu in responder.requests]
    assert functions[:2] == [0x03, 0x06] and functions[2:] == [0x03] * 10
    addresses = [struct.unpack(">H", pdu[1:3])[0] for _, pdu in responder.requests[2:]]
    assert addresses == list(range(1, 11)), "first come, first served within a priority"


async def test_priorities_run_writes_then_passthrough_then_polls_then_discovery(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(timeout=1.0).bus
    responder.late_next(0.2)
    bus.submit(1, read(0), Priority.POLL)
    responder.wait_for_requests(1)
    order = [Priority.DISCOVERY, Priority.POLL, Priority.PASSTHROUGH, Priority.WRITE]
    futures = [bus.submit(1, read(10 + priority), priority) for priority in order]
    for future in futures:
        await asyncio.wrap_future(future)
    served = [struct.unpack(">H", pdu[1:3])[0] - 10 for _, pdu in responder.requests[1:]]
    assert served == [Priority.WRITE, Priority.PASSTHROUGH, Priority.POLL, Priority.DISCOVERY]


async def test_submit_from_another_thread_and_loop(start_bus: StartBus) -> None:
    bus = start_bus().bus
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
        "thread": bytes.fromhex("030203e9"),
        "loop": bytes.fromhex("030207d2"),
        "test loop": bytes.fromhex("030203eb"),
    }


async def test_queue_full_is_refused_with_bus_overloaded(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(max_queue=3, timeout=1.0).bus
    responder.late_next(0.2)
    bus.submit(1, read(0), Priority.POLL)
    responder.wait_for_requests(1)
    queued = [bus.submit(1, read(address), Priority.POLL) for address in (1, 2, 3)]
    refused = bus.submit(1, write(0, 1), Priority.WRITE)
    assert refused.done() and isinstance(refused.exception(), BusOverloaded)
    for future in queued:
        await asyncio.wrap_future(future)


async def test_stop_fails_pending_requests_with_bus_closed(
    start_bus: StartBus, responder: Responder
) -> None:
    runner = start_bus()
    bus = runner.bus
    responder.late_next(1.0)
    on_the_wire = bus.submit(1, read(0), Priority.POLL)
    responder.wait_for_requests(1)
    queued = [bus.submit(1, read(address), Priority.POLL) for address in (1, 2, 3)]
    runner.stop()
    for future in [on_the_wire, *queued]:
        assert isinstance(future.exception(timeout=5), BusClosed)
    assert not bus.ready.is_set()
    with pytest.raises(BusClosed, match="stopped"):
        await bus.transact(1, read(0), Priority.POLL)
    assert len(responder.requests) == 1


async def test_a_cancelled_caller_does_not_break_the_scheduler(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(timeout=1.0).bus
    responder.late_next(0.2)
    waiting = asyncio.ensure_future(bus.transact(1, read(0), Priority.POLL))
    await asyncio.to_thread(responder.wait_for_requests, 1)
    never_sent = bus.submit(1, read(1), Priority.POLL)
    assert never_sent.cancel()
    waiting.cancel()  # already on the wire: it finishes and the reply is dropped
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await bus.transact(1, read(2), Priority.POLL) == bytes.fromhex("030203ea")
    assert [pdu for _, pdu in responder.requests] == [read(0), read(2)]
    assert bus.stats.transactions == 2 and bus.stats.replies == 2


async def test_missing_port_gives_bus_closed_with_the_os_error() -> None:
    bus = Bus(LineSettings("/dev/ttyUSB9"))
    with pytest.raises(BusClosed) as raised:
        await bus.serve()
    assert str(raised.value) == "cannot open /dev/ttyUSB9: No such file or directory"
    with pytest.raises(BusClosed, match="No such file"):
        bus.wait_ready(timeout=1)
    refused = bus.submit(1, read(0), Priority.POLL)
    assert isinstance(refused.exception(), BusClosed)


def test_requests_before_serve_are_refused() -> None:
    refused: Future[bytes] = Bus(LineSettings("/dev/null")).submit(1, read(0), Priority.POLL)
    assert isinstance(refused.exception(), BusClosed)


async def test_serve_runs_on_the_callers_loop_too(responder: Responder) -> None:
    bus = Bus(LineSettings(responder.path))
    serving = asyncio.create_task(bus.serve())
    await asyncio.to_thread(bus.wait_ready, 5)
    assert await bus.transact(2, read(0), Priority.POLL) == bytes.fromhex("030207d0")
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving


async def test_stats_count_outcomes_and_busy_time(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(timeout=0.05).bus
    await bus.transact(1, read(0), Priority.POLL)
    responder.corrupt_next()
    with pytest.raises(CorruptReply):
        await bus.transact(1, read(0), Priority.POLL)
    with pytest.raises(NoResponse):
        await bus.transact(9, read(0), Priority.POLL)
    stats = bus.stats
    assert (stats.transactions, stats.replies, stats.corrupt, stats.timeouts) == (3, 1, 1, 1)
    assert stats.busy_seconds > 3 * bus.settings.wire_time(8)
