"""The serial line's settings and the RTU timing derived from them.

line = LineSettings("/dev/ttyUSB0", baudrate=19200, parity="E")
line.silence                 # 0.002005: t3.5 before every frame
line.wire_time(8)            # 0.004583: an 8-byte request at 11 bits per character
expected_reply_length(bytes.fromhex("0300000002"))   # 9: unit, fc, count, 4 data, CRC
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import modbus
from gateway.modbus import MAX_FRAME, rtu_silence
from gateway.serialport import PARITIES, RS485_MODES, STOPBITS, PortSettings

__all__ = ["PARITIES", "QUIET_MAX", "RS485_MODES", "STOPBITS", "LineSettings", "expected_reply_length"]

QUIET_MAX = 0.5  # seconds of quiet after opening the port that satisfy the bus, whatever the allowance


@dataclass(frozen=True, slots=True)
class LineSettings(PortSettings):
    """How to open the RS-485 port, and how long a slave may think before answering.

    `timeout` is the slave's allowance beyond the wire time of request and reply, so one
    value fits short and long reads alike.
    """

    timeout: float = 0.2
    max_queue: int = 1024

    def __post_init__(self) -> None:
        PortSettings.__post_init__(self)  # zero-argument super() fails in a slotted dataclass
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {self.max_queue}")

    @property
    def quiet_after_open(self) -> float:
        """Seconds of quiet that tell a freshly opened line carries nothing of an earlier request:
        a slave's allowance and the longest frame, at most QUIET_MAX."""
        return min(self.timeout + self.wire_time(MAX_FRAME), QUIET_MAX)

    @property
    def silence(self) -> float:
        """The inter-frame gap t3.5 in seconds."""
        return rtu_silence(self.baudrate)


def expected_reply_length(pdu: bytes) -> int | None:
    """Length of the normal RTU reply frame (unit + PDU + CRC) to the request `pdu`.

    None when the function code is not one whose reply length follows from the request
    (for example 0x11 Report Slave ID), or when the request is too short to tell.
    """
    if not pdu:
        return None
    match pdu[0]:
        case modbus.READ_COILS | modbus.READ_DISCRETE_INPUTS if len(pdu) >= 5:
            count = int.from_bytes(pdu[3:5], "big")
            return 5 + (count + 7) // 8
        case modbus.READ_HOLDING_REGISTERS | modbus.READ_INPUT_REGISTERS if len(pdu) >= 5:
            count = int.from_bytes(pdu[3:5], "big")
            return 5 + 2 * count
        case (
            modbus.WRITE_SINGLE_COIL
            | modbus.WRITE_SINGLE_REGISTER
            | modbus.WRITE_MULTIPLE_COILS
            | modbus.WRITE_MULTIPLE_REGISTERS
        ):
            return 8
        case _:
            return None
