"""Modbus protocol constants (Modbus Application Protocol Specification V1.1b3, Modbus over
Serial Line V1.02): the limits, function codes and exception codes, stated here once for the bus,
the node layer, the Modbus faces and the simulator.

    MAX_PDU                      # 253: bytes of function code and data in one frame
    MAX_READ_REGISTERS           # 125: registers one FC03/FC04 read may ask for
    UNIT_ADDRESSES               # range(1, 248): the addresses a serial slave may have
    EXCEPTION_NAMES[0x0B]        # "gateway target device failed to respond"
    rtu_silence(19200)           # 0.002005: t3.5, the silence that ends an RTU frame
    crc_holds(bytes.fromhex("010300000001840a"))   # True: the frame ends with the CRC of the rest
"""

from __future__ import annotations

import fastcrc

BROADCAST = 0
UNIT_ADDRESSES = range(1, 248)
MAX_UNIT = 255  # the unit byte itself; 248-255 are reserved on a serial line
MAX_PDU = 253
MAX_FRAME = 256  # unit, PDU and CRC
MIN_FRAME = 4  # unit, function code, CRC
MAX_READ_REGISTERS = 125

# Function codes (Application Protocol 6).
READ_COILS = 0x01
READ_DISCRETE_INPUTS = 0x02
READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
WRITE_SINGLE_COIL = 0x05
WRITE_SINGLE_REGISTER = 0x06
READ_EXCEPTION_STATUS = 0x07
DIAGNOSTICS = 0x08
GET_COMM_EVENT_COUNTER = 0x0B
GET_COMM_EVENT_LOG = 0x0C
WRITE_MULTIPLE_COILS = 0x0F
WRITE_MULTIPLE_REGISTERS = 0x10
REPORT_SERVER_ID = 0x11
READ_FILE_RECORD = 0x14
WRITE_FILE_RECORD = 0x15
MASK_WRITE_REGISTER = 0x16
READ_WRITE_MULTIPLE_REGISTERS = 0x17
READ_FIFO_QUEUE = 0x18
ENCAPSULATED_INTERFACE = 0x2B  # 0x2B/0x0E: Read Device Identification
EXCEPTION_BIT = 0x80  # set in the function code of an exception reply

#: The writes of single and multiple coils and registers: what a broadcast may ask (Serial Line 2.1).
WRITE_FUNCTIONS = frozenset({WRITE_SINGLE_COIL, WRITE_SINGLE_REGISTER, WRITE_MULTIPLE_COILS, WRITE_MULTIPLE_REGISTERS})

# Exception codes (Application Protocol 7).
ILLEGAL_FUNCTION = 0x01
ILLEGAL_DATA_ADDRESS = 0x02
ILLEGAL_DATA_VALUE = 0x03
SERVER_DEVICE_FAILURE = 0x04
GATEWAY_PATH_UNAVAILABLE = 0x0A
GATEWAY_TARGET_FAILED = 0x0B

EXCEPTION_NAMES: dict[int, str] = {
    ILLEGAL_FUNCTION: "illegal function",
    ILLEGAL_DATA_ADDRESS: "illegal data address",
    ILLEGAL_DATA_VALUE: "illegal data value",
    SERVER_DEVICE_FAILURE: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x07: "negative acknowledge",
    0x08: "memory parity error",
    GATEWAY_PATH_UNAVAILABLE: "gateway path unavailable",
    GATEWAY_TARGET_FAILED: "gateway target device failed to respond",
}


# Modbus RTU counts a character as 11 bits for t3.5 whatever the framing, and fixes t3.5 above
# 19200 baud because the computed value becomes too short for UARTs to honour.
_RTU_CHAR_BITS = 11
_FAST_BAUD = 19200
_FAST_SILENCE = 0.00175


def crc_holds(frame: bytes | bytearray) -> bool:
    """Whether an RTU frame (unit, PDU, CRC low byte first) ends with the CRC of the rest.

    The CRC is fastcrc's, in compiled code: pymodbus's, in Python, takes some 40 us for a long
    read's reply, a tenth of what the gateway spends on a transaction.
    """
    return len(frame) >= MIN_FRAME and fastcrc.crc16.modbus(bytes(frame[:-2])) == int.from_bytes(frame[-2:], "little")


def rtu_silence(baudrate: int) -> float:
    """The inter-frame gap t3.5 of Modbus RTU in seconds at a baud rate (Modbus over Serial Line 2.5.1.1)."""
    if baudrate > _FAST_BAUD:
        return _FAST_SILENCE
    return 3.5 * _RTU_CHAR_BITS / baudrate
