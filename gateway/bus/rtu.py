"""The Modbus RTU transport: one request, one reply, with RTU timing, over a pyserial-asyncio port.

`RtuTransport` is an asyncio Protocol on the serial transport. It keeps the line's clock (when the
last byte was seen in either direction), so every request starts after t3.5 of silence, and it
makes sure a reply belongs to the request just sent: stale input is flushed before sending,
bytes that arrive before our frame can have left the wire are dropped, and the reply's unit,
function code and length (and a write's echo) must match the request. A reply to another request
means a slave answered after its allowance: the reply to the request it displaced may still come,
so the next request waits until the line has been quiet for that allowance (the late reply passes
as stale), or every later reply would arrive one request behind. Frames, CRC and reply
lengths come from pymodbus's `FramerRTU`. For RS-485 hardware it can switch the driver's direction
(the UART's RS-485 mode, or RTS raised around each frame) and check the echo of each request from
a transceiver that hears itself (`gateway.serialport`, shared with the upstream port).

    transport = await RtuTransport.open(LineSettings("/dev/ttyUSB0"), on_lost=print)
    reply = await transport.transact(1, bytes.fromhex("0300000002"), timeout=0.2)   # b"\\x03\\x04..."
    await transport.close()

One transaction at a time: the scheduler in `gateway.bus.scheduler` guarantees that.
"""

from __future__ import annotations

import asyncio
import functools
import os
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import serial_asyncio
import structlog
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from gateway.bus.errors import BusClosed, CorruptReply, ExceptionReply, NoResponse
from gateway.bus.line import LineSettings, expected_reply_length
from gateway.modbus import (
    BROADCAST,
    EXCEPTION_BIT,
    GET_COMM_EVENT_COUNTER,
    GET_COMM_EVENT_LOG,
    MASK_WRITE_REGISTER,
    MAX_FRAME,
    READ_COILS,
    READ_DISCRETE_INPUTS,
    READ_EXCEPTION_STATUS,
    READ_FILE_RECORD,
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    READ_WRITE_MULTIPLE_REGISTERS,
    REPORT_SERVER_ID,
    WRITE_FILE_RECORD,
    WRITE_MULTIPLE_COILS,
    WRITE_MULTIPLE_REGISTERS,
    WRITE_SINGLE_COIL,
    WRITE_SINGLE_REGISTER,
    crc_holds,
)
from gateway.serialport import Echo, EchoMismatch, PortUnavailable, open_serial, set_direction, transmit

QUIET_ATTEMPTS = 5  # waits for a quiet line after opening the port before going ahead anyway
PRECISE_WAIT = 0.0025  # the part of the inter-frame silence slept outside the event loop
EXCEPTION_FRAME = 5  # unit, function | 0x80, exception code, CRC
MAX_READ = 4096  # bytes read from the port at a time

# Replies whose end pymodbus 3.16 finds from a fixed size or a byte count. It sizes others
# (0x08, 0x18, 0x2B, custom codes) wrongly or not at all, so those replies are framed by silence.
LENGTH_FRAMED = frozenset(
    {
        READ_COILS,
        READ_DISCRETE_INPUTS,
        READ_HOLDING_REGISTERS,
        READ_INPUT_REGISTERS,
        WRITE_SINGLE_COIL,
        WRITE_SINGLE_REGISTER,
        READ_EXCEPTION_STATUS,
        GET_COMM_EVENT_COUNTER,
        GET_COMM_EVENT_LOG,
        WRITE_MULTIPLE_COILS,
        WRITE_MULTIPLE_REGISTERS,
        REPORT_SERVER_ID,
        READ_FILE_RECORD,
        WRITE_FILE_RECORD,
        MASK_WRITE_REGISTER,
        READ_WRITE_MULTIPLE_REGISTERS,
    }
)

_log = structlog.get_logger("gateway.bus")


@dataclass(frozen=True, slots=True)
class _Expected:
    unit: int
    request: bytes
    allowance: float  # the slave's time to answer, beyond the wire time
    reply_length: int  # of a normal reply frame (MAX_FRAME when the request does not tell)

    @property
    def function(self) -> int:
        return self.request[0]


class RtuTransport(asyncio.Protocol):
    """The RTU master's end of the serial line. Create it with `RtuTransport.open`."""

    def __init__(self, settings: LineSettings, on_lost: Callable[[BusClosed], None]) -> None:
        loop = asyncio.get_running_loop()
        self._settings = settings
        self._on_lost = on_lost
        self._framer = FramerRTU(DecodePDU(is_server=False))
        self._transport: serial_asyncio.SerialTransport | None = None
        self._made: asyncio.Future[None] = loop.create_future()
        self._lost: asyncio.Future[None] = loop.create_future()
        self._last_rx = 0.0
        self._tx_end = 0.0
        self._buf = bytearray()
        self._frame_size = 0  # bytes the frame begun in _buf takes, once pymodbus can tell (see _decode_by_length)
        self._echo = Echo()  # our request's echo, still to be heard back (LineSettings.echo)
        self._expected: _Expected | None = None
        self._waiter: asyncio.Future[bytes] | None = None
        self._silence_timer: asyncio.TimerHandle | None = None
        self._settling = 0.0  # quiet the line needs before the next request, if longer than t3.5 (_out_of_step)
        self.failure: BusClosed | None = None
        self.stale_bytes = 0

    @classmethod
    async def open(cls, settings: LineSettings, on_lost: Callable[[BusClosed], None]) -> RtuTransport:
        """Open the port on the running loop; `on_lost` hears when the port fails or closes.

        Raises BusClosed with the operating system's reason when the port cannot be opened.
        """
        rtu = cls(settings, on_lost)
        try:
            transport = await open_serial(settings, rtu)
            # open_serial only schedules connection_made.
            await rtu._made
            set_direction(transport, settings)
        except PortUnavailable as exc:
            raise BusClosed(str(exc)) from exc
        await rtu._quiet_line()
        _log.info("bus port open", port=settings.port, baudrate=settings.baudrate)
        return rtu

    async def close(self) -> None:
        """Close the port, dropping anything not yet sent, and wait until it is closed."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()
        await self._lost

    async def _quiet_line(self) -> None:
        """Before the first request: drop what is waiting and wait until the line stays quiet.

        A reply to a request sent before the port was opened (by the last life of the gateway, or
        another master) may still be on its way; taken for the reply to our first request it would
        cost that node its discovery. A line that never quiets is left to the transactions, which
        count what they hear.
        """
        quiet = self._settings.quiet_after_open
        for _ in range(QUIET_ATTEMPTS):
            self._flush()
            heard = self.stale_bytes
            await asyncio.sleep(quiet)
            if self.stale_bytes == heard and not self._waiting():
                return

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(serial_asyncio.SerialTransport, transport)
        self._made.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        port = self._settings.port
        if exc is None:
            self.failure = BusClosed(f"port {port} closed")
        else:
            self.failure = BusClosed(f"port {port} failed: {exc}")
        self._settle(self.failure)
        self._lost.set_result(None)
        self._on_lost(self.failure)

    def data_received(self, data: bytes) -> None:
        self._take(data)
        self._read_rest()

    def _take(self, data: bytes) -> None:
        """Bytes from the line: stale, our own echo, or part of the reply awaited."""
        now = time.monotonic()
        self._last_rx = now
        if self._waiter is None or self._waiter.done():
            self.stale_bytes += len(data)  # nothing is waiting
            return
        if self._echo.due:  # our own request, heard back first: it must be exactly what we sent
            try:
                data = self._echo.strip(data)
            except EchoMismatch as exc:
                self._settle(CorruptReply(str(exc)))
                return
            if not data:
                return
        elif now < self._tx_end:
            # The slave cannot have heard our whole request yet.
            self.stale_bytes += len(data)
            return
        self._buf += data
        assert self._expected is not None
        if self._expected.function in LENGTH_FRAMED:
            self._decode_by_length()
        else:
            if self._silence_timer is not None:
                self._silence_timer.cancel()
            self._silence_timer = asyncio.get_running_loop().call_later(self._settings.silence, self._decode_by_silence)

    # the transaction

    async def transact(self, unit: int, pdu: bytes, timeout: float) -> bytes:
        """Send `pdu` to `unit` and return the reply PDU (function code and data).

        `timeout` is the slave's allowance beyond the wire time of request and reply. Unit 0
        is a broadcast: no reply is awaited and the result is b"". Raises NoResponse,
        CorruptReply, ExceptionReply or BusClosed.
        """
        await self._wait_for_silence(timeout)
        transport = self._flush()
        loop = asyncio.get_running_loop()
        frame = _frame(unit, pdu)
        wire = self._settings.wire_time
        try:
            # A reply that comes before this can have left the wire is dropped as stale.
            self._tx_end = transmit(transport, self._settings, frame)
        except PortUnavailable as exc:
            raise BusClosed(str(exc)) from exc
        if unit == BROADCAST:
            await asyncio.sleep(self._tx_end + self._settings.silence - time.monotonic())
            return b""
        reply_length = expected_reply_length(pdu) or MAX_FRAME
        self._expected = _Expected(unit, pdu, timeout, reply_length)
        if self._settings.echo:
            self._echo.expect(frame)
        self._waiter = loop.create_future()
        patience = wire(len(frame)) + timeout + wire(reply_length)
        deadline = loop.call_later(patience, self._expire, patience)
        try:
            return await self._waiter
        finally:
            deadline.cancel()
            if self._silence_timer is not None:
                self._silence_timer.cancel()
                self._silence_timer = None
            self._waiter = None
            self._expected = None
            self._echo.clear()
            self._buf.clear()  # what is left belongs to no request: never carry it over
            self._frame_size = 0

    async def _wait_for_silence(self, limit: float) -> None:
        """Wait until nothing has been on the line for t3.5; a line that never quiets is garbage.

        The event loop's timers round up to whole milliseconds, a large part of a 1.75 ms gap, so
        the last stretch is slept in this thread with the OS's finer clock. The bus thread has
        nothing else to do meanwhile; bytes that arrive during that sleep restart the wait. Bytes
        already waiting before it are stale: the flush before sending drops them. After a reply to
        another request the quiet must last the slave's allowance (see `_out_of_step`).
        """
        silence = max(self._settings.silence, self._settling)
        give_up = time.monotonic() + silence + limit
        while (wait := max(self._last_rx, self._tx_end) + silence - time.monotonic()) > 0:
            if time.monotonic() + wait > give_up:
                raise CorruptReply(f"line never quiet for {silence * 1000:.2f} ms within {limit} s")
            if wait > PRECISE_WAIT:
                await asyncio.sleep(wait - PRECISE_WAIT)
                continue
            waiting = self._waiting()
            time.sleep(wait)
            if self._waiting() > waiting:  # bytes came in meanwhile: the line was not quiet
                self._last_rx = time.monotonic()
        self._settling = 0.0

    def _waiting(self) -> int:
        """Bytes received but not yet read (the event loop reads them when it next runs)."""
        try:
            return self._transport.serial.in_waiting if self._transport is not None else 0
        except (OSError, termios.error):
            return 0  # a failed port is noticed where it is used

    def _flush(self) -> serial_asyncio.SerialTransport:
        """Drop whatever input is waiting (late replies, noise) and return the open transport."""
        if self.failure is not None:
            raise self.failure
        assert self._transport is not None
        port = self._transport.serial
        try:
            if stale := port.in_waiting:
                self.stale_bytes += stale
                port.reset_input_buffer()
        except (OSError, termios.error) as exc:
            raise BusClosed(f"port {self._settings.port} failed: {exc}") from exc
        return self._transport

    # reply framing

    def _decode_by_length(self) -> None:
        # A reply comes in pieces (a UART's FIFO, a USB packet); until the frame is as long as its
        # header says, pymodbus would only find it not ready, so it is not asked on every piece.
        buf = self._buf
        size = self._frame_size = self._frame_size or self._begun_frame_size()
        if len(buf) < size:
            return
        if size and crc_holds(buf[:size]):
            # What pymodbus's decode finds in a frame at the start of the buffer, with a faster CRC;
            # anything else (garbage first, a bad CRC) it judges as before.
            self._accept(buf[0], bytes(buf[1 : size - 2]))
            return
        try:
            used, unit, _, pdu = self._framer.decode(bytes(self._buf))
        except Exception as exc:  # garbage can lead pymodbus's length guess into any error
            self._settle(CorruptReply(f"undecodable reply {self._buf.hex()}: {exc}"))
            return
        if not used:
            self._frame_size = self._begun_frame_size()
            return
        if not pdu:
            self._settle(CorruptReply(f"CRC error or garbage: {self._buf.hex()}"))
            return
        self._accept(unit, pdu)

    def _read_rest(self) -> None:
        """Once a reply has begun, read its rest here, blocking, at the moment it can have come.

        The port hands a reply over in pieces (a UART's FIFO, a USB packet: some 16 for a long
        read), and each would cost a turn of the event loop; the rest of the frame cannot be
        complete before its wire time, and the bus thread has nothing else to do meanwhile. What is
        not there by then (a slow adapter) comes through the loop, as the first piece did.
        """
        assert self._transport is not None
        fd = self._transport.serial.fileno()
        while (missing := self._missing()) > 0:
            time.sleep(self._settings.wire_time(missing))
            try:
                data = os.read(fd, MAX_READ)  # at once: pyserial's port is non-blocking, with VMIN 0
            except OSError:
                return  # the serial transport finds the failure on its next read
            if not data:
                return  # not here yet: it comes through the loop
            self._take(data)

    def _missing(self) -> int:
        """Bytes still to come of a begun reply framed by its length (0: none, or none awaited)."""
        expected = self._expected
        buf = self._buf
        if not buf or expected is None or self._waiter is None or self._waiter.done():
            return 0
        if expected.function not in LENGTH_FRAMED:
            return 0
        size = EXCEPTION_FRAME if len(buf) > 1 and buf[1] & EXCEPTION_BIT else self._frame_size or expected.reply_length
        return size - len(buf)

    def _begun_frame_size(self) -> int:
        """The size pymodbus gives the frame that starts the buffer, as its `decode` finds it
        (which waits for that many bytes once it has a frame's type at the start); 0 while it
        cannot tell, or when the start is no frame (then `decode` looks further on each piece)."""
        frame = bytes(self._buf)
        if len(frame) < FramerRTU.MIN_SIZE:
            return 0
        try:
            kind = self._framer.decoder.lookupPduClass(frame)
            return kind.calculateRtuFrameSize(frame) if kind is not None else 0
        except Exception:  # whatever garbage does to the guess, decode tells on the next piece
            return 0

    def _decode_by_silence(self) -> None:
        self._silence_timer = None
        frame = bytes(self._buf)
        if not crc_holds(frame):
            self._settle(CorruptReply(f"CRC error or garbage: {frame.hex()}"))
            return
        self._accept(frame[0], frame[1:-2])

    def _accept(self, unit: int, pdu: bytes) -> None:
        expected = self._expected
        assert expected is not None
        function = pdu[0]
        if unit != expected.unit:
            self._out_of_step(f"reply from unit {unit} to a request to unit {expected.unit}")
        elif function == expected.function | EXCEPTION_BIT and len(pdu) == 2:
            self._settle(ExceptionReply(pdu[1]))
        elif function != expected.function:
            asked = expected.function
            self._out_of_step(f"reply with function 0x{function:02X} to 0x{asked:02X}")
        elif not _answers(expected.request, pdu):
            self._out_of_step(f"reply {pdu.hex()} does not answer {expected.request.hex()}")
        else:
            self._settle(bytes(pdu))

    def _out_of_step(self, reason: str) -> None:
        """A reply to another request: the one to ours may still come, within its allowance.

        Sent only t3.5 after this stray reply, the next request would get that one, and so on.
        """
        assert self._expected is not None
        self._settling = self._expected.allowance
        self._settle(CorruptReply(reason))

    def _expire(self, patience: float) -> None:
        assert self._expected is not None
        heard = f" ({len(self._buf)} bytes of an incomplete frame)" if self._buf else ""
        self._settle(NoResponse(f"no reply from unit {self._expected.unit} within {patience:.3f} s{heard}"))

    def _settle(self, outcome: bytes | Exception) -> None:
        if self._waiter is None or self._waiter.done():
            return
        if isinstance(outcome, Exception):
            self._waiter.set_exception(outcome)
        else:
            self._waiter.set_result(outcome)


@functools.lru_cache(maxsize=1024)  # polling sends the same requests every cycle: framed (CRC) once
def _frame(unit: int, pdu: bytes) -> bytes:
    return FramerRTU(DecodePDU(is_server=False)).encode(pdu, unit, 0)


def _answers(request: bytes, reply: bytes) -> bool:
    """Whether a normal reply fits its request; RTU has no transaction id, so check what we can."""
    length = expected_reply_length(request)
    if length is not None and len(reply) + 3 != length:
        return False
    if request[0] in (WRITE_SINGLE_COIL, WRITE_SINGLE_REGISTER):
        return reply == request
    if request[0] in (WRITE_MULTIPLE_COILS, WRITE_MULTIPLE_REGISTERS):
        return reply[1:5] == request[1:5]
    return True
