"""A scriptable Modbus RTU slave on a pty, for the bus tests only (gateway/sim is the real one).

The responder holds the pty's master side; the bus opens `responder.path`. It answers FC3/FC4
from a register dict per unit, FC6/FC16 by writing into it, FC 0x11 with an identifier, and
echoes any function code pymodbus does not know; other units get silence. It behaves like a
slave on a real line: a request ends after t3.5 of silence, the reply starts after the request's
wire time plus a turnaround, and goes out in chunks paced at wire speed.

    with Responder({1: {0: 17, 1: 42}}) as slave:
        slave.corrupt_next()                # the next reply has a bad CRC
        ...
        assert min(slave.gaps) >= silence   # the line was quiet between frames
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.other_message import ReportDeviceIdRequest, ReportDeviceIdResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from gateway.bus import LineSettings

IDENTIFIER = b"Veris BCPM Branch Circuit Monitor"
CHUNK = 32


@dataclass(frozen=True, slots=True)
class Plan:
    """How to treat the next request from a unit the responder serves."""

    corrupt: bool = False
    exception: int | None = None
    silent: bool = False
    delay: float = 0.0
    garbage: bytes = b""
    early_noise: bytes = b""
    reply_unit: int | None = None


class Responder:
    """A thread answering RTU requests on a pty; see the module docstring."""

    def __init__(
        self,
        units: dict[int, dict[int, int]],
        *,
        baudrate: int = 19200,
        turnaround: float = 0.002,
    ) -> None:
        self.units = units
        self.line = LineSettings("pty", baudrate=baudrate)
        self.turnaround = turnaround
        self.requests: list[tuple[int, bytes]] = []
        self.gaps: list[float] = []
        self.replies_sent = 0
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        # Kept open so the master never reads EIO when the bus closes its end.
        self.path = os.ttyname(self._slave)
        self._framer = FramerRTU(DecodePDU(is_server=True))
        self._plans: deque[Plan] = deque()
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()
        self._line_quiet_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rtu-responder", daemon=True)
        self._thread.start()

    def __enter__(self) -> Responder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # scripting

    def plan(self, plan: Plan) -> None:
        """Treat the next request from a served unit as `plan` says."""
        self._plans.append(plan)

    def corrupt_next(self) -> None:
        self.plan(Plan(corrupt=True))

    def exception_next(self, code: int) -> None:
        self.plan(Plan(exception=code))

    def silent_next(self) -> None:
        self.plan(Plan(silent=True))

    def late_next(self, delay: float) -> None:
        self.plan(Plan(delay=delay))

    def garbage_next(self, garbage: bytes) -> None:
        self.plan(Plan(garbage=garbage))

    def inject(self, data: bytes) -> None:
        """Put bytes on the line now, unasked."""
        self._line_quiet_since = self._write(data)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"saw {len(self.requests)} requests, expected {count}")

    def wait_for_replies(self, count: int, timeout: float = 5.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.replies_sent >= count, timeout):
                raise TimeoutError(f"sent {self.replies_sent} replies, expected {count}")

    def hang_up(self) -> None:
        """Stop answering and close the master side, as if the adapter were unplugged."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        os.close(self._master)

    def close(self) -> None:
        self.hang_up()
        os.close(self._slave)

    # the slave

    def _serve(self) -> None:
        silence = self.line.silence
        frame = bytearray()
        first = last = 0.0
        while not self._stop.is_set():
            wait = max(0.0, last + silence - time.monotonic()) if frame else 0.05
            readable, _, _ = select.select([self._master], [], [], wait)
            if readable:
                data = os.read(self._master, 4096)
                last = time.monotonic()
                if not frame:
                    first = last
                frame += data
            elif frame and time.monotonic() - last >= silence:
                self._handle(bytes(frame), first, last)
                frame.clear()

    def _handle(self, frame: bytes, first: float, last: float) -> None:
        if self._line_quiet_since is not None:
            self.gaps.append(first - self._line_quiet_since)
        self._line_quiet_since = last
        used, unit, _, pdu_bytes = self._framer.decode(frame)
        if used and pdu_bytes:
            request = self._framer.decoder.decode(pdu_bytes)
        elif len(frame) >= 4 and FramerRTU.check_CRC(frame[:-2], int.from_bytes(frame[-2:], "big")):
            unit, pdu_bytes, request = frame[0], frame[1:-2], None
        else:
            return  # a real slave ignores a frame with a bad CRC
        with self._changed:
            self.requests.append((unit, pdu_bytes))
            self._changed.notify_all()
        if unit not in self.units:
            return
        plan = self._plans.popleft() if self._plans else Plan()
        if plan.early_noise:
            self._write(plan.early_noise)
        if plan.silent:
            return
        reply = self._reply(unit, pdu_bytes, request, plan)
        start = last + self.line.wire_time(len(frame)) + self.turnaround + plan.delay
        self._line_quiet_since = self._send_paced(plan.garbage + reply, start)
        with self._changed:
            self.replies_sent += 1
            self._changed.notify_all()

    def _reply(self, unit: int, pdu: bytes, request: ModbusPDU | None, plan: Plan) -> bytes:
        answer_as = unit if plan.reply_unit is None else plan.reply_unit
        if plan.exception is not None:
            frame = self._framer.buildFrame(ExceptionResponse(pdu[0], plan.exception, answer_as))
        elif request is None:
            frame = self._framer.encode(pdu, answer_as, 0)  # unknown function: echo it
        else:
            response = self._respond(unit, request)
            response.dev_id = answer_as
            frame = self._framer.buildFrame(response)
        if plan.corrupt:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame

    def _respond(self, unit: int, request: ModbusPDU) -> ModbusPDU:
        registers = self.units[unit]
        match request:
            case ReadHoldingRegistersRequest() | ReadInputRegistersRequest():
                addresses = range(request.address, request.address + request.count)
                if not all(address in registers for address in addresses):
                    return ExceptionResponse(request.function_code, 0x02)
                values = [registers[address] for address in addresses]
                if isinstance(request, ReadInputRegistersRequest):
                    return ReadInputRegistersResponse(registers=values)
                return ReadHoldingRegistersResponse(registers=values)
            case WriteSingleRegisterRequest():
                registers[request.address] = request.registers[0]
                return WriteSingleRegisterResponse(
                    address=request.address, registers=request.registers
                )
            case WriteMultipleRegistersRequest():
                for offset, value in enumerate(request.registers):
                    registers[request.address + offset] = value
                return WriteMultipleRegistersResponse(address=request.address, count=request.count)
            case ReportDeviceIdRequest():
                return ReportDeviceIdResponse(identifier=IDENTIFIER)
            case _:
                return ExceptionResponse(request.function_code, 0x01)

    def _send_paced(self, data: bytes, start: float) -> float:
        """Write `data` so each chunk appears when its last byte would arrive on a real line.

        Returns when the last chunk started to be written: the master cannot have seen the
        reply end earlier, so gaps measured from here are never longer than the real ones.
        """
        due = written = start
        for offset in range(0, len(data), CHUNK):
            chunk = data[offset : offset + CHUNK]
            due += self.line.wire_time(len(chunk))
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            written = self._write(chunk)
        return written

    def _write(self, data: bytes) -> float:
        """Write `data` and return the time just before the write."""
        with self._write_lock:
            before = time.monotonic()
            os.write(self._master, data)
        return before
