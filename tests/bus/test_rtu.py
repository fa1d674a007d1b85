"""One RTU transaction on a real pty: framing, typed failures, timing, stale and late bytes."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable

import pytest

from gateway.bus import (
    Bus,
    BusClosed,
    CorruptReply,
    ExceptionReply,
    LineSettings,
    NoResponse,
    Priority,
)
from tests.support import eventually

from .conftest import serve_on_a_thread
from .responder import IDENTIFIER, Plan, Responder

StartBus = Callable[..., Bus]


def read(address: int, count: int, function: int = 0x03) -> bytes:
    return struct.pack(">BHH", function, address, count)


def registers_of(reply: bytes) -> list[int]:
    assert reply[1] == len(reply) - 2
    return list(struct.unpack(f">{reply[1] // 2}H", reply[2:]))


async def test_reads_registers_from_two_units(start_bus: StartBus) -> None:
    bus = start_bus()
    first = await bus.transact(1, read(0, 5), Priority.POLL)
    second = await bus.transact(2, read(10, 3, function=0x04), Priority.POLL)
    assert first[0] == 0x03 and registers_of(first) == [1000, 1001, 1002, 1003, 1004]
    assert second[0] == 0x04 and registers_of(second) == [2010, 2011, 2012]
    assert bus.stats.replies == 2


async def test_a_long_reply_arriving_in_pieces_is_reassembled(start_bus: StartBus) -> None:
    bus = start_bus()
    reply = await bus.transact(1, read(0, 125), Priority.POLL)
    assert registers_of(reply) == [1000 + address for address in range(125)]


async def test_crc_error_is_reported_at_frame_end_not_after_timeout(
    start_bus: StartBus, responder: Responder
) -> None:
    timeout = 3.0
    bus = start_bus(timeout=timeout)
    responder.corrupt_next()
    started = time.monotonic()
    with pytest.raises(CorruptReply, match="CRC"):
        await bus.transact(1, read(0, 2), Priority.POLL)
    assert time.monotonic() - started < timeout / 2
    assert bus.stats.corrupt == 1


async def test_exception_reply_is_typed(start_bus: StartBus, responder: Responder) -> None:
    bus = start_bus()
    with pytest.raises(ExceptionReply) as raised:
        await bus.transact(1, read(299, 2), Priority.POLL)  # 300 is past the register file
    assert raised.value.code == 0x02
    assert str(raised.value) == "exception 02 illegal data address"
    responder.exception_next(0x06)
    with pytest.raises(ExceptionReply) as raised:
        await bus.transact(1, read(0, 1), Priority.POLL)
    assert raised.value.code == 0x06
    assert bus.stats.exceptions == 2


async def test_silent_unit_times_out(start_bus: StartBus, responder: Responder) -> None:
    bus = start_bus(timeout=0.1)
    with pytest.raises(NoResponse, match="unit 9"):
        await bus.transact(9, read(0, 1), Priority.DISCOVERY)
    responder.silent_next()
    with pytest.raises(NoResponse, match="unit 1"):
        await bus.transact(1, read(0, 1), Priority.POLL)
    assert bus.stats.timeouts == 2
    assert await bus.transact(1, read(0, 1), Priority.POLL) == bytes.fromhex("030203e8")


async def test_late_reply_is_never_taken_for_the_next_request(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(timeout=0.1)
    responder.late_next(0.4)
    with pytest.raises(NoResponse):
        await bus.transact(1, read(0, 2), Priority.POLL)
    # The late reply to the read above (same unit and function) lands while this one waits.
    with pytest.raises(CorruptReply, match="does not answer"):
        await bus.transact(1, read(100, 4), Priority.POLL, timeout=2.0)
    responder.wait_for_replies(2)
    reply = await bus.transact(1, read(100, 4), Priority.POLL)
    assert registers_of(reply) == [1100, 1101, 1102, 1103]


async def test_late_reply_between_requests_is_dropped_as_stale(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(timeout=0.05)
    responder.late_next(0.2)
    with pytest.raises(NoResponse):
        await bus.transact(1, read(0, 2), Priority.POLL)
    responder.wait_for_replies(1)
    await asyncio.sleep(0.05)  # the pty hands bytes over from a kernel work queue: let them arrive first
    reply = await bus.transact(1, read(0, 2), Priority.POLL)
    assert registers_of(reply) == [1000, 1001]
    assert bus.stats.stale_bytes >= 9


async def test_stale_bytes_before_request_are_flushed(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus()
    junk = bytes.fromhex("0103020001") * 4  # looks like the start of a reply
    responder.inject(junk)
    await asyncio.sleep(0.05)  # the pty hands bytes over from a kernel work queue: let them arrive first
    reply = await bus.transact(1, read(5, 1), Priority.POLL)
    assert registers_of(reply) == [1005]
    assert bus.stats.stale_bytes >= len(junk)


async def test_bytes_before_our_request_has_left_the_wire_are_not_the_reply() -> None:
    # 1200 baud: the request is 73 ms on the wire, far longer than the responder needs to
    # notice it and write its noise, so the noise really does arrive early.
    with Responder({1: {0: 7}}, baudrate=1200) as slave:
        bus = Bus(LineSettings(slave.path, baudrate=1200))
        thread = serve_on_a_thread(bus)
        try:
            slave.plan(Plan(early_noise=bytes.fromhex("01830299")))
            assert await bus.transact(1, read(0, 1), Priority.POLL) == bytes.fromhex(
                "03020007"
            )
            assert bus.stats.stale_bytes == 4
        finally:
            thread.stop()


async def test_a_line_that_never_goes_quiet_is_reported_instead_of_waited_on(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(timeout=0.2)
    babbling_for = 3.0
    quiet = threading.Event()

    def babble() -> None:
        until = time.monotonic() + babbling_for
        while not quiet.is_set() and time.monotonic() < until:
            responder.inject(b"\xff" * 16)
            time.sleep(0.0005)

    babbler = threading.Thread(target=babble)
    babbler.start()
    try:
        started = time.monotonic()
        # Usually t3.5 never comes; on a loaded machine a gap may let the request out, and
        # then the babble garbles the reply. Either way it is reported, not waited out.
        with pytest.raises(CorruptReply):
            await bus.transact(1, read(0, 1), Priority.POLL)
        assert time.monotonic() - started < babbling_for / 2
    finally:
        quiet.set()
        babbler.join()
    assert registers_of(await bus.transact(1, read(0, 1), Priority.POLL)) == [1000]


async def test_garbage_before_a_reply_is_corrupt_and_the_line_recovers(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(timeout=2.0)
    responder.garbage_next(b"\x00\x99")
    started = time.monotonic()
    with pytest.raises(CorruptReply):
        await bus.transact(1, read(0, 2), Priority.POLL)
    assert time.monotonic() - started < 1.0
    assert registers_of(await bus.transact(1, read(0, 2), Priority.POLL)) == [1000, 1001]


async def test_reply_from_the_wrong_unit_is_corrupt(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus()
    responder.plan(Plan(reply_unit=2))
    with pytest.raises(CorruptReply, match="unit 2"):
        await bus.transact(1, read(0, 2), Priority.POLL)


async def test_write_reply_must_echo_the_write(start_bus: StartBus, responder: Responder) -> None:
    bus = start_bus()
    write = bytes.fromhex("0600070102")
    assert await bus.transact(1, write, Priority.WRITE) == write
    assert responder.units[1][7] == 0x0102


async def test_report_slave_id_reply_is_framed_by_its_byte_count(start_bus: StartBus) -> None:
    bus = start_bus()
    reply = await bus.transact(1, b"\x11", Priority.DISCOVERY)
    assert reply[0] == 0x11 and IDENTIFIER in reply


async def test_unknown_function_reply_is_framed_by_silence(start_bus: StartBus) -> None:
    bus = start_bus()
    custom = bytes.fromhex("41deadbeef00")
    assert await bus.transact(1, custom, Priority.PASSTHROUGH) == custom


async def test_broadcast_returns_without_waiting_for_a_reply(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus(timeout=5.0)
    started = time.monotonic()
    assert await bus.transact(0, bytes.fromhex("0600070001"), Priority.WRITE) == b""
    assert time.monotonic() - started < 2.5
    responder.wait_for_requests(1)
    assert responder.requests == [(0, bytes.fromhex("0600070001"))]


async def test_keeps_the_inter_frame_silence(start_bus: StartBus, responder: Responder) -> None:
    bus = start_bus()
    for unit in (1, 2) * 10:
        await bus.transact(unit, read(0, 10), Priority.POLL)
    assert len(responder.gaps) == 19
    assert min(responder.gaps) >= bus.settings.silence


async def test_port_failure_fails_requests_with_bus_closed_and_the_bus_keeps_serving(
    start_bus: StartBus, responder: Responder
) -> None:
    bus = start_bus()
    responder.hang_up()
    await eventually(lambda: not bus.ready.is_set(), what="the port failure noticed")
    with pytest.raises(BusClosed, match="failed|cannot open"):
        await bus.transact(1, read(0, 1), Priority.POLL)
    assert bus.closed_reason  # and it goes on trying to open the port again
