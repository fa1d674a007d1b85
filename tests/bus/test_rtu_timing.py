"""When requests go onto a real pty, against a meter the test plays byte by byte: written at once,
whole and in order when the port is full, and never one reply behind after a late reply."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
import tty
from collections.abc import Iterator

import pytest
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from gateway.bus import Bus, CorruptReply, ExceptionReply, LineSettings, NoResponse, Priority

from .conftest import serve_on_a_thread

FRAMER = FramerRTU(DecodePDU(is_server=False))
TURNAROUND = 0.01  # the meter's, longer than a request's wire time
FIRST, SECOND = bytes.fromhex("0300000001"), bytes.fromhex("0300010001")  # reads of one register


def frame(unit: int, pdu: bytes) -> bytes:
    return FRAMER.encode(pdu, unit, 0)


@contextlib.contextmanager
def meter_and_bus(timeout: float) -> Iterator[tuple[int, str, Bus]]:
    """The meter's end of a pty, the port's path, and a bus serving the port on its own thread."""
    meter, port = os.openpty()
    tty.setraw(port)
    path = os.ttyname(port)
    bus = Bus(LineSettings(path, timeout=timeout))
    thread = serve_on_a_thread(bus)
    try:
        yield meter, path, bus
    finally:
        thread.stop()
        os.close(meter)
        os.close(port)


def hear(meter: int, expected: bytes) -> None:
    """Read from the line what the master sends until `expected`'s length; it must be `expected`."""
    heard = bytearray()
    while len(heard) < len(expected) and select.select([meter], [], [], 5)[0]:
        heard += os.read(meter, len(expected) - len(heard))
    assert bytes(heard) == expected


def answer(meter: int, unit: int, pdu: bytes) -> None:
    time.sleep(TURNAROUND)
    os.write(meter, frame(unit, pdu))


async def test_requests_the_port_cannot_take_at_once_go_out_whole_and_in_order() -> None:
    with meter_and_bus(timeout=5.0) as (meter, path, bus):
        # Another writer fills the line's output until the port refuses more.
        filler = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        backlog = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                backlog += os.write(filler, bytes(512))
        os.close(filler)
        # The first request waits in the transport and times out there; the second must follow it.
        with pytest.raises(NoResponse):
            await bus.transact(1, FIRST, Priority.POLL, timeout=0.05)
        reply = asyncio.wrap_future(bus.submit(1, SECOND, Priority.POLL))
        hear(meter, bytes(backlog) + frame(1, FIRST) + frame(1, SECOND))
        answer(meter, 1, bytes.fromhex("03020007"))
        assert await reply == bytes.fromhex("03020007")


async def test_after_a_reply_to_another_request_the_line_settles_before_the_next_request() -> None:
    # A meter answers so late that the master has gone on: its reply to request 1 comes during
    # request 2, and its reply to request 2 after that. Sent t3.5 after the stray reply, request 3
    # would get the reply to 2 (same unit, function and length), and every later request the reply
    # to the one before.
    with meter_and_bus(timeout=0.05) as (meter, _, bus):
        first = asyncio.wrap_future(bus.submit(1, FIRST, Priority.POLL))
        hear(meter, frame(1, FIRST))
        with pytest.raises(NoResponse):
            await first
        second = asyncio.wrap_future(bus.submit(2, FIRST, Priority.POLL))
        hear(meter, frame(2, FIRST))
        answer(meter, 1, bytes.fromhex("03020001"))
        with pytest.raises(CorruptReply, match="from unit 1 to a request to unit 2"):
            await second
        third = asyncio.wrap_future(bus.submit(2, SECOND, Priority.POLL))
        answer(meter, 2, bytes.fromhex("03020002"))  # the late reply to the second request
        hear(meter, frame(2, SECOND))
        answer(meter, 2, bytes.fromhex("03020003"))
        assert await third == bytes.fromhex("03020003")
        assert bus.stats.stale_bytes == len(frame(2, bytes.fromhex("03020002")))


async def test_a_reply_whose_rest_comes_later_than_its_wire_time_is_still_taken() -> None:
    # A USB adapter holds bytes back (its latency timer): the rest of the frame is not there when
    # its wire time is up, and is read when it comes.
    with meter_and_bus(timeout=1.0) as (meter, _, bus):
        reply = asyncio.wrap_future(bus.submit(1, bytes.fromhex("0300000040"), Priority.POLL))  # 64 registers
        hear(meter, frame(1, bytes.fromhex("0300000040")))
        whole = frame(1, bytes([0x03, 128, *range(128)]))
        time.sleep(TURNAROUND)
        os.write(meter, whole[:20])
        time.sleep(0.1)  # the rest takes some 40 ms on the wire at 19200 baud
        os.write(meter, whole[20:100])
        time.sleep(0.05)
        os.write(meter, whole[100:])
        assert await reply == bytes([0x03, 128, *range(128)])
        assert bus.stats.replies == 1 and bus.stats.stale_bytes == 0


async def test_an_exception_reply_is_taken_at_once_though_a_long_reply_was_expected() -> None:
    # Waited for as long as the 255 bytes asked for, it would be no reply (an incomplete frame).
    with meter_and_bus(timeout=0.05) as (meter, _, bus):
        reply = asyncio.wrap_future(bus.submit(1, bytes.fromhex("030000007d"), Priority.POLL))  # 125 registers
        hear(meter, frame(1, bytes.fromhex("030000007d")))
        answer(meter, 1, bytes.fromhex("8302"))
        with pytest.raises(ExceptionReply):
            await reply
