"""A virtual RS-485 line with simulated BCPM boards on it, behind a pty.

A Modbus RTU master opens `line.path` (or the `link` symlink) like a serial port. The responder
thread plays every board on the bus: it frames requests with pymodbus's `FramerRTU`, stays silent
for addresses nobody serves, and answers as a meter would, including the time the bytes would
take on a real wire at the line's baud rate. Faults are injected on demand: by chance at set
rates (`faults`), scripted reply by reply (`script`, see gateway.sim.faults), nodes that vanish
or flap, garbage between transactions.

    with SimulatedLine([Board(1), Board(5, model="C")], link="/tmp/ttyBCPM", seed=7) as line:
        line.panel(2).set_current(12, 17.5)
        line.faults = Faults(crc_error=0.1)
        line.script.add(Fault(unit=9), address=5)   # node 5's next reply claims to be from 9
        line.flap(5, period=2.0)
        ...                                   # a master polls addresses 1, 2, 5 and 6
        print(line.stats.gap_violations, line.requests[-1])
"""

from __future__ import annotations

import os
import random
import select
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterResponse,
)

from gateway.modbus import (
    EXCEPTION_BIT,
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    REPORT_SERVER_ID,
    WRITE_MULTIPLE_REGISTERS,
    WRITE_SINGLE_REGISTER,
)
from gateway.sim.faults import Faults, FaultScript
from gateway.sim.meter import Board, IllegalFunction, IllegalValue, MeterRefusal, Panel

TICK_PERIOD = 0.1  # seconds between physics updates while the line is idle
CHUNK = 16  # bytes written at a time when pacing a frame at wire speed
BUSY_WAIT = 0.0003  # the last stretch before a due time is spun, not slept, for precision
WRITE_STALL = 1.0  # seconds a write waits for the pty to drain before the bytes are dropped
SILENCES_KEPT = 4096
REQUESTS_KEPT = 4096

# Modbus RTU counts 11 bits a character for t3.5 whatever the framing, and fixes it above 19200
# baud. The bus master has the same rule; the simulator keeps its own copy on purpose, so that a
# mistake in the master's timing cannot hide behind an identical mistake here.
_RTU_CHAR_BITS = 11
_FAST_BAUD = 19200
_FAST_SILENCE = 0.00175
_request_decoder = DecodePDU(is_server=True)


@dataclass(frozen=True, slots=True)
class LineStats:
    """What crossed the line so far, and what the line did to it."""

    requests: int = 0  # well-formed request frames, for any address
    replies: int = 0
    unserved: int = 0  # requests for addresses no board serves (silence)
    bad_frames: int = 0  # garbage or CRC-failed input, discarded
    gap_violations: int = 0  # requests that started less than t3.5 after our last byte
    min_silence: float | None = None  # shortest gap the master left after our last byte
    silences: tuple[float, ...] = ()  # the latest gaps, oldest first
    # injected faults
    dropped: int = 0
    corrupted: int = 0
    exceptions: int = 0
    slowed: int = 0
    vanished: int = 0  # requests a vanished or flapping node left unanswered
    scripted: int = 0  # replies a scripted fault was played on
    garbage_bursts: int = 0
    mismatched: int = 0  # bytes from a master at another baud rate or parity, ignored


class Serving:
    """A line served from a thread between `start()` and `stop()` (or in a `with` block), whose
    counters are one frozen dataclass replaced under a lock."""

    _lock: threading.Lock
    _stats: Any
    _thread: threading.Thread | None
    _stopping: threading.Event
    _wake_write: int  # a byte written here wakes the thread

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, target: Callable[[], None], name: str) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def _end(self) -> bool:
        """Stop the thread and wait for it; False when it was not running."""
        if self._thread is None:
            return False
        self._stopping.set()
        os.write(self._wake_write, b"\0")
        self._thread.join()
        self._thread = None
        return True

    def _count(self, **increments: int) -> None:
        with self._lock:
            self._stats = replace(self._stats, **{k: getattr(self._stats, k) + v for k, v in increments.items()})


class SimulatedLine(Serving):
    """Boards on a pty; `start()` serves them from a daemon thread until `stop()`."""

    def __init__(
        self,
        boards: Iterable[Board],
        *,
        baudrate: int = 19200,
        parity: str = "N",
        stopbits: int = 1,
        turnaround: float = 0.005,
        emulate_wire: bool = True,
        link: str | None = None,
        seed: int | None = None,
        echo: bool = False,
    ) -> None:
        self.boards = tuple(boards)
        self._panels: dict[int, Panel] = {}
        for board in self.boards:
            if board.baudrate != baudrate:
                raise ValueError(
                    f"board {board.primary_address} is set to {board.baudrate} baud, the line runs {baudrate}"
                )
            for panel in board.panels:
                if panel.address in self._panels:
                    raise ValueError(f"two boards answer address {panel.address}")
                self._panels[panel.address] = panel
        if baudrate <= 0:
            raise ValueError(f"baudrate must be positive, not {baudrate}")
        if parity not in ("N", "E", "O"):
            raise ValueError(f"parity must be N, E or O, not {parity!r}")
        if stopbits not in (1, 2):
            raise ValueError(f"stopbits must be 1 or 2, not {stopbits}")
        if turnaround < 0:
            raise ValueError(f"turnaround must not be negative, not {turnaround}")
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.turnaround = turnaround
        self.emulate_wire = emulate_wire
        self.echo = echo  # the master hears its own transmission, as through some transceivers
        self.link = link
        self._bits_per_char = 1 + 8 + (parity != "N") + stopbits
        self._speed = getattr(termios, f"B{baudrate}", None)  # None: a rate termios cannot name
        self.silence = _FAST_SILENCE if baudrate > _FAST_BAUD else 3.5 * _RTU_CHAR_BITS / baudrate
        self._framer = FramerRTU(DecodePDU(is_server=True))
        self._rng = random.Random(seed)  # used by the responder thread only
        self._lock = threading.Lock()
        self._faults = Faults()
        self.script = FaultScript(self._panels)
        self._absent: set[int] = set()
        self._flapping: dict[int, tuple[float, float]] = {}  # address -> (since, period)
        self._absent_until: dict[int, float] = {}  # address -> monotonic time it starts answering
        self._garbage: deque[int | bytes] = deque()
        self._requests: deque[tuple[int, bytes]] = deque(maxlen=REQUESTS_KEPT)
        self._stats = LineStats()
        self._silences: deque[float] = deque(maxlen=SILENCES_KEPT)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = self._slave = self._wake_read = self._wake_write = -1
        self._path: str | None = None
        self._last_byte_out: float | None = None  # when our last transmitted byte left the wire

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the line is already running")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        # The slave stays open here so the master side never sees EIO when a client closes.
        os.set_blocking(self._master, False)
        self._wake_read, self._wake_write = os.pipe()
        self._path = os.ttyname(self._slave)
        if self.link:
            try:
                _replace_link(self.link, self._path)
            except OSError:
                self._close_fds()
                raise
        self._run(self._serve, f"bcpm-sim {self._path}")

    def stop(self) -> None:
        if not self._end():
            return
        if self.link and os.path.islink(self.link) and os.readlink(self.link) == self._path:
            os.unlink(self.link)
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._master, self._slave, self._wake_read, self._wake_write):
            os.close(fd)
        self._master = self._slave = self._wake_read = self._wake_write = -1
        self._path = None

    # -- what tests and the demo use ----------------------------------------------------------

    @property
    def path(self) -> str:
        """The serial device a master opens (the pty's slave side)."""
        if self._path is None:
            raise RuntimeError("the line is not running: call start() first")
        return self._path

    @property
    def addresses(self) -> tuple[int, ...]:
        return tuple(sorted(self._panels))

    def panel(self, address: int) -> Panel:
        try:
            return self._panels[address]
        except KeyError:
            raise KeyError(f"no board on this line serves address {address}") from None

    def wire_time(self, nbytes: int) -> float:
        """Seconds `nbytes` take on the wire: start bit, 8 data bits, parity, stop bits each."""
        return nbytes * self._bits_per_char / self.baudrate

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults  # one reference swap: the responder reads a consistent set

    @property
    def stats(self) -> LineStats:
        with self._lock:
            return replace(self._stats, silences=tuple(self._silences))

    @property
    def requests(self) -> list[tuple[int, bytes]]:
        """The latest well-formed requests heard (unit, PDU), for any address, oldest first."""
        with self._lock:
            return list(self._requests)

    def vanish(self, address: int) -> None:
        """The node stops answering until `restore`."""
        self.panel(address)
        with self._lock:
            self._absent.add(address)

    def restore(self, address: int) -> None:
        """The node answers again (ends `vanish`, `absent_for` and `flap`)."""
        with self._lock:
            self._absent.discard(address)
            self._absent_until.pop(address, None)
            self._flapping.pop(address, None)

    def absent_for(self, address: int, seconds: float) -> None:
        """The node is silent for the next `seconds` (a meter still booting), then answers."""
        self.panel(address)
        with self._lock:
            self._absent_until[address] = time.monotonic() + seconds

    def flap(self, address: int, period: float) -> None:
        """The node vanishes for `period` seconds, returns for `period`, and so on, from now."""
        self.panel(address)
        if period <= 0:
            raise ValueError(f"flap period must be positive, not {period}")
        with self._lock:
            self._flapping[address] = (time.monotonic(), period)

    def send_garbage(self, garbage: int | bytes) -> None:
        """Put garbage on the line once, between transactions: that many random bytes, or these.

        The burst keeps the line busy from its first byte to its last, as on a wire: no master
        hears the silence that ends a frame inside it.
        """
        if (len(garbage) if isinstance(garbage, bytes) else garbage) <= 0:
            raise ValueError(f"garbage must be a positive length or some bytes, not {garbage!r}")
        with self._lock:
            self._garbage.append(garbage)
        if self._thread is not None:
            os.write(self._wake_write, b"\0")

    # -- the responder thread -----------------------------------------------------------------

    def _serve(self) -> None:
        buffer = bytearray()
        first_byte_at = last_byte_at = last_tick = 0.0
        while not self._stopping.is_set():
            timeout = self.silence if buffer else TICK_PERIOD
            ready, _, _ = select.select([self._master, self._wake_read], [], [], timeout)
            now = time.monotonic()
            if self._wake_read in ready:
                os.read(self._wake_read, 64)
            if self._master in ready:
                data = _read_available(self._master)
                if data and not self._master_matches():
                    self._count(mismatched=len(data))  # what the meters hear is noise
                    continue
                if self.echo and data:
                    self._echo(data)
                if buffer and now - last_byte_at >= self.silence:
                    self._end_of_frame(buffer, first_byte_at)  # t3.5 of silence ended it
                if not buffer:
                    first_byte_at = now
                buffer += data
                last_byte_at = now
                self._try_request(buffer, first_byte_at, last_byte_at)
            elif buffer and now - last_byte_at >= self.silence:
                self._end_of_frame(buffer, first_byte_at)
            if not buffer:
                self._emit_garbage()
            if now - last_tick >= TICK_PERIOD:
                for board in self.boards:
                    board.tick(now)
                last_tick = now

    def _try_request(self, buffer: bytearray, first_byte_at: float, last_byte_at: float) -> None:
        _, unit, _, pdu_bytes = self._framer.decode(bytes(buffer))
        if not pdu_bytes:
            # Incomplete, or a function pymodbus cannot size (or garbage): the silence that ends
            # the frame decides.
            return
        buffer.clear()
        self._request(unit, pdu_bytes, first_byte_at, last_byte_at)

    def _end_of_frame(self, buffer: bytearray, first_byte_at: float) -> None:
        """A frame the framer could not delimit ended by silence: an unknown function, or garbage."""
        frame = bytes(buffer)
        buffer.clear()
        if len(frame) >= 4 and FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big")):
            self._request(frame[0], frame[1:-2], first_byte_at, first_byte_at)
        else:
            self._count(bad_frames=1)

    def _request(self, unit: int, pdu_bytes: bytes, first_byte_at: float, last_byte_at: float) -> None:
        self._count(requests=1)
        with self._lock:
            self._requests.append((unit, pdu_bytes))
        self._note_silence(first_byte_at)
        frame_end = last_byte_at
        if self.emulate_wire:
            frame_end = max(last_byte_at, first_byte_at + self.wire_time(len(pdu_bytes) + 3))
        self._last_byte_out = None  # the master spoke: measure the next gap from our next reply
        panel = self._panels.get(unit)
        if panel is None:
            self._count(unserved=1)
            return
        if self._is_absent(unit, last_byte_at):
            self._count(vanished=1)
            return
        scripted = self.script.take(unit)
        fault = scripted or self._faults.draw(self._rng)
        self._count(scripted=scripted is not None)
        if fault.noise:  # it starts with the request, so it reaches the master before the request ends
            self._transmit(fault.noise, first_byte_at)
        answer = fault.answer(pdu_bytes)
        if answer is None:
            answer = reply_pdu(panel, pdu_bytes)
        self._count(exceptions=fault.exception is not None)
        if fault.silent:
            self._count(dropped=1)
            return
        reply = self._framer.encode(answer, unit if fault.unit is None else fault.unit, 0)
        if fault.crc_error:
            self._count(corrupted=1)
            reply = reply[:-1] + bytes([reply[-1] ^ 0xFF])
        if fault.truncate is not None:
            reply = reply[: fault.truncate]
        self._count(slowed=fault.delay > 0)
        if self._transmit(fault.garbage + reply, frame_end + self.turnaround + fault.delay):
            self._count(replies=1)

    def _master_matches(self) -> bool:
        """Whether the master's port runs at the line's baud rate and parity.

        A pty carries bytes whatever its settings, but the master's settings are the pty's own
        (both ends share one termios), so the simulator can play the meters of a real line, which
        hear only noise from a master at the wrong rate or parity.
        """
        try:
            _, _, cflag, _, _, ospeed, _ = termios.tcgetattr(self._slave)
        except termios.error:
            return True
        parity = "N" if not cflag & termios.PARENB else "O" if cflag & termios.PARODD else "E"
        return (self._speed is None or ospeed == self._speed) and parity == self.parity

    def _echo(self, data: bytes) -> None:
        if self._rng.random() < self._faults.echo_error:
            self._count(corrupted=1)
            data = bytes([data[0] ^ 0x01]) + data[1:]
        _write_all(self._master, data)

    def _emit_garbage(self) -> None:
        with self._lock:
            garbage = self._garbage.popleft() if self._garbage else b""
        if isinstance(garbage, int):
            garbage = self._rng.randbytes(garbage)
        if garbage:
            # Pieces shorter than t3.5, so the master never hears a gap inside the burst.
            unbroken = max(1, int(self.silence * self.baudrate / self._bits_per_char) - 1)
            self._transmit(garbage, time.monotonic(), chunk=min(CHUNK, unbroken))
            self._count(garbage_bursts=1)

    def _transmit(self, data: bytes, start: float, chunk: int = CHUNK) -> bool:
        """Write `data` so each byte appears when it would on the wire (in pieces of `chunk`
        bytes, each when its last byte would arrive); False if stopped meanwhile.

        The silence after it is measured from the start of the last write: the master cannot have
        heard the last byte earlier (however late this thread runs after the write).
        """
        if not self.emulate_wire:
            if not self._sleep_until(start):
                return False
            self._last_byte_out = _write_all(self._master, data)
            return True
        for offset in range(0, len(data), chunk):
            piece = data[offset : offset + chunk]
            if not self._sleep_until(start + self.wire_time(offset + len(piece))):
                return False
            self._last_byte_out = _write_all(self._master, piece)
        return True

    def _sleep_until(self, due: float) -> bool:
        if (wait := due - time.monotonic() - BUSY_WAIT) > 0 and self._stopping.wait(wait):
            return False
        while time.monotonic() < due:
            pass
        return not self._stopping.is_set()

    def _note_silence(self, request_start: float) -> None:
        if self._last_byte_out is None:
            return
        gap = request_start - self._last_byte_out
        with self._lock:
            self._silences.append(gap)
            least = gap if self._stats.min_silence is None else min(gap, self._stats.min_silence)
            self._stats = replace(
                self._stats,
                min_silence=least,
                gap_violations=self._stats.gap_violations + (gap < self.silence),
            )

    def is_absent(self, address: int, now: float | None = None) -> bool:
        """Whether a node is vanished (or in the down half of its flapping) at ``now``."""
        return self._is_absent(address, time.monotonic() if now is None else now)

    def _is_absent(self, address: int, now: float) -> bool:
        with self._lock:
            if address in self._absent or now < self._absent_until.get(address, now):
                return True
            if address in self._flapping:
                since, period = self._flapping[address]
                return int((now - since) // period) % 2 == 0
        return False


def reply_pdu(panel: Panel, pdu_bytes: bytes) -> bytes:
    """The reply PDU (function code and data, or an exception) of a meter to a request PDU, from
    its board's state now."""
    panel.board.tick(time.monotonic())
    try:
        return _execute(panel, pdu_bytes)
    except MeterRefusal as refusal:
        return bytes([pdu_bytes[0] | EXCEPTION_BIT, refusal.code])


def _execute(panel: Panel, pdu_bytes: bytes) -> bytes:
    function = pdu_bytes[0]
    if function not in (
        READ_HOLDING_REGISTERS,
        READ_INPUT_REGISTERS,
        WRITE_SINGLE_REGISTER,
        WRITE_MULTIPLE_REGISTERS,
        REPORT_SERVER_ID,
    ):
        raise IllegalFunction(f"function {function:#04x}")
    if function == REPORT_SERVER_ID:
        text = panel.report_slave_id().encode("ascii")
        # byte count, slave ID 0xFF, run indicator 0xFF (ON), then the text
        return bytes([REPORT_SERVER_ID, len(text) + 2, 0xFF, 0xFF]) + text
    request = _request_decoder.decode(pdu_bytes)
    if request is None:
        raise IllegalValue("malformed request (a count out of range)")
    response: ModbusPDU
    if function in (READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS):
        registers = panel.read(request.address + 1, request.count)
        kind = ReadHoldingRegistersResponse if function == READ_HOLDING_REGISTERS else ReadInputRegistersResponse
        response = kind(registers=registers)
    elif function == WRITE_SINGLE_REGISTER:
        panel.write(request.address + 1, request.registers)
        response = WriteSingleRegisterResponse(address=request.address, registers=request.registers)
    else:
        if not isinstance(request, WriteMultipleRegistersRequest) or request.byte_count != 2 * request.count:
            raise IllegalValue("byte count does not match the register count")
        if len(request.registers) != request.count:
            raise IllegalValue("fewer register values than the count")
        panel.write(request.address + 1, request.registers)
        response = WriteMultipleRegistersResponse(address=request.address, count=request.count)
    return bytes([response.function_code]) + response.encode()


def _replace_link(link: str, target: str) -> None:
    """Point `link` at `target`, replacing a stale symlink but never a real file."""
    if os.path.islink(link):
        os.unlink(link)
    elif os.path.lexists(link):
        raise FileExistsError(f"{link} exists and is not a symlink: refusing to replace it")
    os.symlink(target, link)


def _read_available(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


def _write_all(fd: int, data: bytes) -> float:
    """Write `data` (dropping it if nobody drains the line); returns the time the write began."""
    began = time.monotonic()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            if not select.select([], [fd], [], WRITE_STALL)[1]:
                break  # nobody drains the line: the bytes are lost, as on a wire nobody listens to
    return began
