"""One RTU transaction against the simulator on a real pty: framing, typed failures, timing, stale
and late bytes (the faults scripted in the simulator, reply by reply). The outcomes that do not
depend on framing are checked on a memory line too."""

from __future__ import annotations

import struct
import time

import pytest

from gateway.bus import (
    Bus,
    BusClosed,
    CorruptReply,
    ExceptionReply,
    LineSettings,
    NoResponse,
    Priority,
    RtuTransport,
)
from gateway.sim import Board, Fault, MemoryLine, SimulatedLine
from tests.support import eventually

from .conftest import CT_SIZE, TURNAROUND, StartBus, serve_on_a_thread

ON_BOTH_LINES = pytest.mark.parametrize("line", ["pty", "memory"], indirect=True)


def read(address: int, count: int, function: int = 0x03) -> bytes:
    return struct.pack(">BHH", function, address, count)


def registers_of(reply: bytes) -> list[int]:
    assert reply[1] == len(reply) - 2
    return list(struct.unpack(f">{reply[1] // 2}H", reply[2:]))


def held(line: SimulatedLine | MemoryLine, unit: int, address: int, count: int) -> list[int]:
    """What the simulated meter at `unit` holds at these (0-based) addresses."""
    return line.panel(unit).read(address + 1, count)


@ON_BOTH_LINES
async def test_reads_registers_from_two_units(start_bus: StartBus, line: SimulatedLine | MemoryLine) -> None:
    line.panel(2).write(CT_SIZE + 1, [5, 6, 7])
    bus = start_bus()
    first = await bus.transact(1, read(CT_SIZE, 5), Priority.POLL)
    second = await bus.transact(2, read(CT_SIZE, 3, function=0x04), Priority.POLL)
    assert first[0] == 0x03 and registers_of(first) == [100] * 5
    assert second[0] == 0x04 and registers_of(second) == [5, 6, 7]
    assert bus.stats.replies == 2


async def test_a_long_reply_arriving_in_pieces_is_reassembled(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus()
    reply = await bus.transact(1, read(0, 125), Priority.POLL)
    assert registers_of(reply) == held(line, 1, 0, 125)


async def test_crc_error_is_reported_at_frame_end_not_after_timeout(start_bus: StartBus, line: SimulatedLine) -> None:
    timeout = 3.0
    bus = start_bus(timeout=timeout)
    line.script.add(Fault(crc_error=True))
    # Noticed only when the 3 s are up, it would be a NoResponse.
    with pytest.raises(CorruptReply, match="CRC"):
        await bus.transact(1, read(0, 2), Priority.POLL)
    assert bus.stats.corrupt == 1


@ON_BOTH_LINES
async def test_exception_reply_is_typed(start_bus: StartBus, line: SimulatedLine | MemoryLine) -> None:
    bus = start_bus()
    with pytest.raises(ExceptionReply) as raised:
        await bus.transact(1, read(543, 1), Priority.POLL)  # register 544 is not in the meter's map
    assert raised.value.code == 0x02
    assert str(raised.value) == "exception 02 illegal data address"
    line.script.add(Fault(exception=0x06))
    with pytest.raises(ExceptionReply) as raised:
        await bus.transact(1, read(0, 1), Priority.POLL)
    assert raised.value.code == 0x06
    assert bus.stats.exceptions == 2


@ON_BOTH_LINES
async def test_silent_unit_times_out(start_bus: StartBus, line: SimulatedLine | MemoryLine) -> None:
    bus = start_bus(timeout=0.1)
    with pytest.raises(NoResponse, match="unit 9"):
        await bus.transact(9, read(0, 1), Priority.DISCOVERY)
    line.script.add(Fault(silent=True))
    with pytest.raises(NoResponse, match="unit 1"):
        await bus.transact(1, read(0, 1), Priority.POLL)
    assert bus.stats.timeouts == 2
    assert registers_of(await bus.transact(1, read(0, 1), Priority.POLL)) == held(line, 1, 0, 1)


async def test_a_truncated_reply_times_out_with_what_was_heard(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus(timeout=0.1)
    line.script.add(Fault(truncate=5))
    with pytest.raises(NoResponse, match="5 bytes of an incomplete frame"):
        await bus.transact(1, read(0, 2), Priority.POLL)
    assert registers_of(await bus.transact(1, read(0, 2), Priority.POLL)) == held(line, 1, 0, 2)


async def test_late_reply_is_never_taken_for_the_next_request(
    start_bus: StartBus, line: SimulatedLine, transports: list[RtuTransport]
) -> None:
    bus = start_bus(timeout=0.1)
    line.script.add(Fault(delay=0.4))
    with pytest.raises(NoResponse):
        await bus.transact(1, read(0, 2), Priority.POLL)
    # The late reply to the read above (same unit and function) lands while this one waits.
    with pytest.raises(CorruptReply, match="does not answer"):
        await bus.transact(1, read(100, 4), Priority.POLL, timeout=2.0)
    # The reply to that second read comes after it failed: 13 bytes nobody waits for.
    await eventually(lambda: transports[-1].stale_bytes >= 13, what="the second reply set aside")
    reply = await bus.transact(1, read(100, 4), Priority.POLL)
    assert registers_of(reply) == held(line, 1, 100, 4)


async def test_late_reply_between_requests_is_dropped_as_stale(
    start_bus: StartBus, line: SimulatedLine, transports: list[RtuTransport]
) -> None:
    bus = start_bus(timeout=0.05)
    line.script.add(Fault(delay=0.2))
    with pytest.raises(NoResponse):
        await bus.transact(1, read(0, 2), Priority.POLL)
    await eventually(lambda: transports[-1].stale_bytes >= 9, what="the late reply heard")
    reply = await bus.transact(1, read(0, 2), Priority.POLL)
    assert registers_of(reply) == held(line, 1, 0, 2)
    assert bus.stats.stale_bytes >= 9


async def test_stale_bytes_before_a_request_are_dropped(
    start_bus: StartBus, line: SimulatedLine, transports: list[RtuTransport]
) -> None:
    bus = start_bus()
    junk = bytes.fromhex("0103020001") * 4  # looks like the start of a reply
    line.send_garbage(junk)
    await eventually(lambda: transports[-1].stale_bytes >= len(junk), what="the junk heard")
    reply = await bus.transact(1, read(5, 1), Priority.POLL)
    assert registers_of(reply) == held(line, 1, 5, 1)
    assert bus.stats.stale_bytes >= len(junk)


async def test_bytes_before_our_request_has_left_the_wire_are_not_the_reply() -> None:
    # 1200 baud: the request is 67 ms on the wire, far longer than the simulator needs to
    # notice it and write its noise, so the noise really does arrive early.
    with SimulatedLine([Board(1, baudrate=1200)], baudrate=1200, turnaround=TURNAROUND) as line:
        bus = Bus(LineSettings(line.path, baudrate=1200))
        thread = serve_on_a_thread(bus)
        try:
            line.script.add(Fault(noise=bytes.fromhex("01830299")))
            reply = await bus.transact(1, read(0, 1), Priority.POLL)
            assert registers_of(reply) == held(line, 1, 0, 1)
            assert bus.stats.stale_bytes == 4
        finally:
            thread.stop()


async def test_a_line_that_never_goes_quiet_is_reported_instead_of_waited_on(
    start_bus: StartBus, line: SimulatedLine, transports: list[RtuTransport]
) -> None:
    bus = start_bus(timeout=0.2)
    line.send_garbage(b"\xff" * int(1.5 * bus.settings.baudrate / bus.settings.bits_per_char))  # 1.5 s of babble
    await eventually(lambda: transports[-1].stale_bytes > 0, what="the babble started")
    # Usually t3.5 never comes; on a loaded machine a gap may let the request out, and
    # then the babble garbles the reply. Either way it is reported, not waited out.
    with pytest.raises(CorruptReply):
        await bus.transact(1, read(0, 1), Priority.POLL)
    assert line.stats.garbage_bursts == 0, "reported while the line still babbled"
    await eventually(lambda: line.stats.garbage_bursts == 1, what="the babble over")
    assert registers_of(await bus.transact(1, read(0, 1), Priority.POLL)) == held(line, 1, 0, 1)


async def test_garbage_before_a_reply_is_corrupt_and_the_line_recovers(
    start_bus: StartBus, line: SimulatedLine
) -> None:
    bus = start_bus(timeout=2.0)
    line.script.add(Fault(garbage=b"\x00\x99"))
    with pytest.raises(CorruptReply):  # at the garbled frame: after the timeout it would be a NoResponse
        await bus.transact(1, read(0, 2), Priority.POLL)
    assert registers_of(await bus.transact(1, read(0, 2), Priority.POLL)) == held(line, 1, 0, 2)


async def test_reply_from_the_wrong_unit_is_corrupt(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus()
    line.script.add(Fault(unit=2))
    with pytest.raises(CorruptReply, match="unit 2"):
        await bus.transact(1, read(0, 2), Priority.POLL)


@ON_BOTH_LINES
async def test_write_reply_must_echo_the_write(start_bus: StartBus, line: SimulatedLine | MemoryLine) -> None:
    bus = start_bus()
    write = bytes.fromhex("0600070102")
    assert await bus.transact(1, write, Priority.WRITE) == write
    assert held(line, 1, 7, 1) == [0x0102]


async def test_report_slave_id_reply_is_framed_by_its_byte_count(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus()
    reply = await bus.transact(1, b"\x11", Priority.DISCOVERY)
    assert reply[0] == 0x11 and line.panel(1).report_slave_id().encode() in reply


async def test_unknown_function_reply_is_framed_by_silence(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus()
    custom = bytes.fromhex("41deadbeef00")
    line.script.add(Fault(reply=custom))  # a slave with a function of its own, which echoes
    assert await bus.transact(1, custom, Priority.PASSTHROUGH) == custom


async def test_broadcast_returns_without_waiting_for_a_reply(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus(timeout=5.0)
    started = time.monotonic()
    assert await bus.transact(0, bytes.fromhex("0600070001"), Priority.WRITE) == b""
    assert time.monotonic() - started < 2.5
    await eventually(lambda: line.stats.requests == 1, what="the broadcast on the line")
    assert line.requests == [(0, bytes.fromhex("0600070001"))]


async def test_keeps_the_inter_frame_silence(start_bus: StartBus, line: SimulatedLine) -> None:
    bus = start_bus()
    for unit in (1, 2) * 10:
        await bus.transact(unit, read(0, 10), Priority.POLL)
    stats = line.stats
    assert len(stats.silences) == 19
    assert min(stats.silences) >= bus.settings.silence and stats.gap_violations == 0


async def test_port_failure_fails_requests_with_bus_closed_and_the_bus_keeps_serving(
    start_bus: StartBus, line: SimulatedLine
) -> None:
    bus = start_bus()
    line.stop()  # the adapter is gone
    await eventually(lambda: not bus.ready.is_set(), what="the port failure noticed")
    with pytest.raises(BusClosed, match="failed|cannot open"):
        await bus.transact(1, read(0, 1), Priority.POLL)
    assert bus.closed_reason  # and it goes on trying to open the port again
