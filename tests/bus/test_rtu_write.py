"""How a request gets onto a real pty: written at once, and whole and in order when the port is full."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
import tty

import pytest
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from gateway.bus import Bus, LineSettings, NoResponse, Priority

from .conftest import serve_on_a_thread

FRAMER = FramerRTU(DecodePDU(is_server=False))
TURNAROUND = 0.01  # the meter's, longer than a request's wire time


async def test_requests_the_port_cannot_take_at_once_go_out_whole_and_in_order() -> None:
    meter, port = os.openpty()
    tty.setraw(port)
    path = os.ttyname(port)
    bus = Bus(LineSettings(path, timeout=5.0))
    thread = serve_on_a_thread(bus)
    filler = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        # Another writer fills the line's output until the port refuses more.
        backlog = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                backlog += os.write(filler, bytes(512))
        # The first request waits in the transport and times out there; the second must follow it.
        with pytest.raises(NoResponse):
            await bus.transact(1, bytes.fromhex("0300000001"), Priority.POLL, timeout=0.05)
        reply = asyncio.wrap_future(bus.submit(1, bytes.fromhex("0300010001"), Priority.POLL))
        heard = bytearray()
        requests = FRAMER.encode(bytes.fromhex("0300000001"), 1, 0) + FRAMER.encode(bytes.fromhex("0300010001"), 1, 0)
        while len(heard) < backlog + len(requests) and select.select([meter], [], [], 5)[0]:
            heard += os.read(meter, 65536)
        assert bytes(heard) == bytes(backlog) + requests
        time.sleep(TURNAROUND)
        os.write(meter, FRAMER.encode(bytes.fromhex("03020007"), 1, 0))
        assert await reply == bytes.fromhex("03020007")
    finally:
        thread.stop()
        for fd in (filler, meter, port):
            os.close(fd)
