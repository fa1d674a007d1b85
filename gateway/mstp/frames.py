"""MS/TP frames (ASHRAE 135 clause 9.3): their types, their encoding, and the two CRCs.

A frame is a preamble (0x55 0xFF), a header (frame type, destination, source, data length, most
significant octet first) closed by the header CRC, and, when the length is not 0, the data closed
by the data CRC, least significant octet first.

The header CRC is the 8-bit CRC of clause 9.5.2 / Annex G.1 (x^8 + x^7 + 1), table-driven, the table
made from the standard's own formula; the data CRC is the CRC-CCITT of Annex G.2, which is the
standard library's `binascii.crc_hqx` run on the octets' bits in the order MS/TP sends them
(least significant first). Both are checked against the standard's worked examples in the tests.

    encode(Frame(FrameType.TOKEN, destination=0x10, source=0x05))   # 55ff 00 10 05 0000 8c
    header_crc(bytes([0x00, 0x10, 0x05, 0x00, 0x00]))               # 0x8c (Annex G.1)
    data_crc(bytes([0x01, 0x22, 0x30]))                             # 0xbd10, sent as 10 bd (Annex G.2)
"""

from __future__ import annotations

import binascii
import enum
from dataclasses import dataclass

PREAMBLE = b"\x55\xff"
HEADER_LENGTH = 8  # preamble, five header octets, header CRC
BROADCAST = 255
MAX_DATA = 501  # octets of data in a frame (an NPDU of up to 501 octets)
HEADER_RESIDUE = 0x55  # the header CRC register after the header and its CRC octet, when both are intact
DATA_RESIDUE = 0xF0B8  # the data CRC register after the data and its two CRC octets, when all are intact


class FrameType(enum.IntEnum):
    TOKEN = 0
    POLL_FOR_MASTER = 1
    REPLY_TO_POLL_FOR_MASTER = 2
    TEST_REQUEST = 3
    TEST_RESPONSE = 4
    DATA_EXPECTING_REPLY = 5
    DATA_NOT_EXPECTING_REPLY = 6
    REPLY_POSTPONED = 7


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame as received or to be sent; `kind` is the raw frame type octet (a FrameType or another)."""

    kind: int
    destination: int
    source: int
    data: bytes = b""

    def __str__(self) -> str:
        name = FrameType(self.kind).name if self.kind in FrameType._value2member_map_ else f"type {self.kind}"
        return f"{name} {self.source}->{self.destination} ({len(self.data)} octets)"


def _header_step(value: int) -> int:
    """One step of the header CRC (clause 9.5.2), as the standard writes it, for `crc ^ octet`."""
    crc = value ^ (value << 1) ^ (value << 2) ^ (value << 3) ^ (value << 4) ^ (value << 5) ^ (value << 6) ^ (value << 7)
    return (crc & 0xFE) ^ ((crc >> 8) & 1)


_HEADER_TABLE = bytes(_header_step(value) for value in range(256))
_REVERSED = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))  # each octet's bits in the other order


def header_register(octets: bytes, register: int = 0xFF) -> int:
    """The header CRC register after `octets` (HEADER_RESIDUE after a header and its intact CRC)."""
    for octet in octets:
        register = _HEADER_TABLE[register ^ octet]
    return register


def header_crc(header: bytes) -> int:
    """The CRC octet sent after the five header octets."""
    return ~header_register(header) & 0xFF


def data_register(octets: bytes) -> int:
    """The data CRC register after `octets` (DATA_RESIDUE after data and its intact CRC).

    MS/TP's CRC-CCITT shifts octets in least significant bit first; crc_hqx shifts them in most
    significant bit first: run on the octets with their bits reversed, its register is ours reversed.
    """
    register = binascii.crc_hqx(octets.translate(_REVERSED), 0xFFFF)
    return _REVERSED[register & 0xFF] << 8 | _REVERSED[register >> 8]


def data_crc(data: bytes) -> int:
    """The data CRC sent after the data, least significant octet first."""
    return ~data_register(data) & 0xFFFF


def encode(frame: Frame) -> bytes:
    """The frame's octets on the wire."""
    if len(frame.data) > MAX_DATA:
        raise ValueError(f"{len(frame.data)} octets of data: an MS/TP frame carries at most {MAX_DATA}")
    header = bytes([frame.kind, frame.destination, frame.source]) + len(frame.data).to_bytes(2, "big")
    wire = PREAMBLE + header + bytes([header_crc(header)])
    if frame.data:
        wire += frame.data + data_crc(frame.data).to_bytes(2, "little")
    return wire
