"""A test master for the simulated line: blocking pyserial for the bytes, pymodbus for the frames."""

from __future__ import annotations

import time

import serial
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

SILENCE = 0.25  # how long the test master waits for a reply that may never come


class CrcFailure(Exception):
    """The reply arrived whole but its CRC does not match."""


class Master:
    """A Modbus RTU master on a serial path; registers are 1-based, as in the vendor map."""

    def __init__(self, path: str, baudrate: int = 19200) -> None:
        self.port = serial.Serial(path, baudrate, timeout=0.005)
        self.framer = FramerRTU(DecodePDU(is_server=False))

    def close(self) -> None:
        self.port.close()

    def exchange(self, frame: bytes, timeout: float = SILENCE) -> bytes:
        """Send a frame; return what came back once a whole frame (or nothing) arrived."""
        self.port.reset_input_buffer()
        self.port.write(frame)
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received += self.port.read(self.port.in_waiting or 1)
            if received and self.framer.decode(received)[0]:
                break
        return received

    def transact(self, request: ModbusPDU, timeout: float = SILENCE) -> ModbusPDU | None:
        """The decoded reply, or None on silence."""
        received = self.exchange(self.framer.buildFrame(request), timeout)
        if not received:
            return None
        _, unit, _, frame = self.framer.decode(received)
        if not frame:
            raise CrcFailure(received.hex())
        reply = self.framer.decoder.decode(frame)
        assert reply is not None, received.hex()
        reply.dev_id = unit
        return reply

    def read(self, unit: int, register: int, count: int = 1, function: int = 3) -> ModbusPDU:
        kind = ReadHoldingRegistersRequest if function == 3 else ReadInputRegistersRequest
        reply = self.transact(kind(address=register - 1, count=count, dev_id=unit))
        assert reply is not None, f"no reply from {unit}"
        return reply

    def registers(self, unit: int, register: int, count: int = 1) -> list[int]:
        reply = self.read(unit, register, count)
        assert not reply.isError(), f"exception {reply.exception_code:#04x}"
        return list(reply.registers)

    def write(self, unit: int, register: int, *values: int) -> ModbusPDU:
        if len(values) == 1:
            request: ModbusPDU = WriteSingleRegisterRequest(address=register - 1, registers=list(values), dev_id=unit)
        else:
            request = WriteMultipleRegistersRequest(address=register - 1, registers=list(values), dev_id=unit)
        reply = self.transact(request)
        assert reply is not None, f"no reply from {unit}"
        return reply
