"""The serial line's settings and the RTU timing derived from them.

line = LineSettings("/dev/ttyUSB0", baudrate=19200, parity="E")
line.silence                 # 0.002005: t3.5 before every frame
line.wire_time(8)            # 0.004583: an 8-byte request at 11 bits per character
expected_reply_length(bytes.fromhex("0300000002"))   # 9: unit, fc, count, 4 data, CRC
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.modbus import MAX_FRAME

PARITIES = ("N", "E", "O")
STOPBITS = (1, 2)
QUIET_MAX = 0.5  # seconds of quiet after opening the port that satisfy the bus, whatever the allowance
RS485_MODES = ("none", "kernel", "rts")  # the adapter switches; the UART's RS-485 mode; we drive RTS

# Modbus RTU counts a character as 11 bits for t3.5 whatever the framing, and fixes t3.5 above
# 19200 baud because the computed value becomes too short for UARTs to honour.
_RTU_CHAR_BITS = 11
_FAST_BAUD = 19200
_FAST_SILENCE = 0.00175


@dataclass(frozen=True, slots=True)
class LineSettings:
    """How to open the RS-485 port, and how long a slave may think before answering.

    `timeout` is the slave's allowance beyond the wire time of request and reply, so one
    value fits short and long reads alike.
    """

    port: str
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    timeout: float = 0.2
    max_queue: int = 1024
    rs485: str = "none"  # who switches the driver's direction: see RS485_MODES
    rts_delay_before: float = 0.0  # seconds RTS is raised before a frame ("kernel", "rts")
    rts_delay_after: float = 0.0  # and kept after its last bit
    echo: bool = False  # the receiver hears our own transmission first

    def __post_init__(self) -> None:
        if self.baudrate <= 0:
            raise ValueError(f"baudrate must be positive, not {self.baudrate}")
        if self.parity not in PARITIES:
            raise ValueError(f"parity must be one of {PARITIES}, not {self.parity!r}")
        if self.stopbits not in STOPBITS:
            raise ValueError(f"stopbits must be one of {STOPBITS}, not {self.stopbits}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {self.max_queue}")
        if self.rs485 not in RS485_MODES:
            raise ValueError(f"rs485 must be one of {RS485_MODES}, not {self.rs485!r}")
        if self.rts_delay_before < 0 or self.rts_delay_after < 0:
            raise ValueError("RTS delays must not be negative")

    @property
    def bits_per_char(self) -> int:
        """Bits one byte takes on the wire: start, 8 data, parity if any, stop bits."""
        return 1 + 8 + (self.parity != "N") + self.stopbits

    def wire_time(self, nbytes: int) -> float:
        """Seconds that `nbytes` bytes take on the wire at this baud rate."""
        return nbytes * self.bits_per_char / self.baudrate

    @property
    def quiet_after_open(self) -> float:
        """Seconds of quiet that tell a freshly opened line carries nothing of an earlier request:
        a slave's allowance and the longest frame, at most QUIET_MAX."""
        return min(self.timeout + self.wire_time(MAX_FRAME), QUIET_MAX)

    @property
    def silence(self) -> float:
        """The inter-frame gap t3.5 in seconds."""
        if self.baudrate > _FAST_BAUD:
            return _FAST_SILENCE
        return 3.5 * _RTU_CHAR_BITS / self.baudrate


def expected_reply_length(pdu: bytes) -> int | None:
    """Length of the normal RTU reply frame (unit + PDU + CRC) to the request `pdu`.

    None when the function code is not one whose reply length follows from the request
    (for example 0x11 Report Slave ID), or when the request is too short to tell.
    """
    if not pdu:
        return None
    match pdu[0]:
        case 0x01 | 0x02 if len(pdu) >= 5:
            count = int.from_bytes(pdu[3:5], "big")
            return 5 + (count + 7) // 8
        case 0x03 | 0x04 if len(pdu) >= 5:
            count = int.from_bytes(pdu[3:5], "big")
            return 5 + 2 * count
        case 0x05 | 0x06 | 0x0F | 0x10:
            return 8
        case _:
            return None
