"""Modbus requests and replies the node layer uses, built and parsed with pymodbus's PDU classes
(but for the registers of a read reply, see `registers_of`).

Register numbers here are the vendor's (1-based); the PDU address is ``register - 1``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence

from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from gateway.bus import CorruptReply
from gateway.modbus import (
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    REPORT_SERVER_ID,
    WRITE_MULTIPLE_REGISTERS,
    WRITE_SINGLE_REGISTER,
)

REPORT_SLAVE_ID = bytes([REPORT_SERVER_ID])
WRITE_FUNCTIONS = frozenset({WRITE_SINGLE_REGISTER, WRITE_MULTIPLE_REGISTERS})  # the register writes
READ_FUNCTIONS = frozenset({READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS})
_request_decoder = DecodePDU(is_server=True)


def _encode(pdu: ModbusPDU) -> bytes:
    return pdu.function_code.to_bytes(1, "big") + pdu.encode()


@functools.lru_cache(maxsize=1024)  # the same few dozen requests, every poll cycle
def read_registers(register: int, count: int) -> bytes:
    return _encode(ReadHoldingRegistersRequest(address=register - 1, count=count))


def write_registers(register: int, words: Sequence[int]) -> bytes:
    if len(words) == 1:
        return _encode(WriteSingleRegisterRequest(address=register - 1, registers=[words[0]]))
    return _encode(WriteMultipleRegistersRequest(address=register - 1, registers=list(words)))


def registers_of(reply: bytes, count: int) -> list[int]:
    """The register values of a read reply (function 3 or 4); a reply of the wrong size is corrupt.

    Unpacked at once: pymodbus's response class unpacks one register at a time, which cost a poll
    read more than anything else between the line and the cache."""
    if len(reply) != 2 + 2 * count or reply[0] not in READ_FUNCTIONS or reply[1] != 2 * count:
        raise CorruptReply(f"expected {count} registers, got {reply.hex()}")
    return list(struct.unpack(f">{count}H", reply[2:]))


def slave_id_text(reply: bytes) -> str:
    """The text of a Report Slave ID reply: function, byte count, slave id, run indicator, text."""
    if len(reply) < 4 or reply[0] != REPORT_SERVER_ID or reply[1] != len(reply) - 2:
        raise CorruptReply(f"malformed report slave id reply {reply.hex()}")
    return reply[4:].decode("ascii", "replace")


def written_registers(request: bytes) -> range | None:
    """The registers a write request (FC06 / FC16) sets, in vendor numbering; None for anything else."""
    if not request or request[0] not in WRITE_FUNCTIONS:
        return None
    pdu = _request_decoder.decode(request)
    if pdu is None or not pdu.registers:
        return None
    return range(pdu.address + 1, pdu.address + 1 + len(pdu.registers))


def malformed(request: bytes) -> bool:
    """A request of a standard function code that does not parse (wrong length, count out of range).

    Such a request is answered with exception 03 at once: sent on, it would only cost bus time.
    Function codes pymodbus does not know go to the meter as they are.
    """
    known = request[0] in _request_decoder.pdu_table
    return known and _request_decoder.decode(request) is None
