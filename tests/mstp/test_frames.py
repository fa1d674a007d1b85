"""MS/TP frames and their CRCs against the standard's worked examples (ASHRAE 135 Annex G), and the
receive state machine on whole, split, broken and noisy input."""

from __future__ import annotations

import random

import pytest

from gateway.mstp import Frame, FrameType, Invalid, Receiver, encode
from gateway.mstp.frames import DATA_RESIDUE, HEADER_RESIDUE, data_crc, data_register, header_crc, header_register


def test_the_header_crc_of_annex_g1_token_from_5_to_16() -> None:
    header = bytes([FrameType.TOKEN, 0x10, 0x05, 0x00, 0x00])
    assert header_register(header) == 0x73  # the register after the header, as Annex G.1 shows it
    assert header_crc(header) == 0x8C  # sent as its ones' complement
    assert header_register(header + b"\x8c") == HEADER_RESIDUE == 0x55


def test_the_data_crc_of_annex_g2() -> None:
    data = bytes([0x01, 0x22, 0x30])
    assert data_register(data) == 0x42EF
    assert data_crc(data) == 0xBD10  # sent least significant octet first: 10 BD
    assert encode(Frame(FrameType.DATA_NOT_EXPECTING_REPLY, 1, 2, data))[-2:] == b"\x10\xbd"
    assert data_register(data + b"\x10\xbd") == DATA_RESIDUE == 0xF0B8


def test_the_data_crc_is_the_standards_bitwise_algorithm_for_any_data() -> None:
    def standard(data: bytes) -> int:  # clause 9.5.2 / Annex G.2, octet by octet as printed
        crc = 0xFFFF
        for octet in data:
            low = (crc & 0xFF) ^ octet
            crc = (
                (crc >> 8) ^ (low << 8) ^ (low << 3) ^ (low << 12) ^ (low >> 4) ^ (low & 0x0F) ^ ((low & 0x0F) << 7)
            ) & 0xFFFF
        return crc

    rng = random.Random(1)
    for size in (1, 2, 17, 501):
        data = rng.randbytes(size)
        assert data_register(data) == standard(data)


def test_a_frame_is_preamble_header_crc_data_and_data_crc() -> None:
    assert encode(Frame(FrameType.TOKEN, 0x10, 0x05)).hex() == "55ff00100500008c"
    wire = encode(Frame(FrameType.DATA_EXPECTING_REPLY, 7, 3, b"hello"))
    assert wire[:8] == bytes([0x55, 0xFF, 5, 7, 3, 0, 5, header_crc(bytes([5, 7, 3, 0, 5]))])
    assert wire[8:13] == b"hello" and len(wire) == 15
    with pytest.raises(ValueError, match="at most 501"):
        encode(Frame(FrameType.DATA_NOT_EXPECTING_REPLY, 7, 3, bytes(502)))


def test_the_receiver_finds_frames_whole_split_octet_by_octet_and_after_noise() -> None:
    frames = [Frame(FrameType.TOKEN, 1, 3), Frame(FrameType.DATA_NOT_EXPECTING_REPLY, 255, 1, bytes(range(200)))]
    wire = b"\x00\x55\x12\xff" + encode(frames[0]) + b"\x55\x55" + encode(frames[1])
    assert Receiver(0.06).feed(wire, 0.0) == frames
    one_by_one = Receiver(0.06)
    found = [frame for octet in wire for frame in one_by_one.feed(bytes([octet]), 0.0)]
    assert found == frames


def test_bad_crcs_a_frame_cut_short_and_one_too_long_are_invalid() -> None:
    receiver = Receiver(0.06)
    wire = bytearray(encode(Frame(FrameType.DATA_NOT_EXPECTING_REPLY, 1, 2, b"payload")))
    bad_data = bytes(wire[:-1]) + bytes([wire[-1] ^ 0x01])
    bad_header = bytes(wire[:7]) + bytes([wire[7] ^ 0x80])
    assert receiver.feed(bad_data, 0.0) == [Invalid("bad data CRC")]
    assert receiver.feed(bad_header, 1.0) == [Invalid("bad header CRC")]
    # The rest of a frame whose header was bad is noise until the next preamble.
    token = encode(Frame(FrameType.TOKEN, 2, 1))
    assert receiver.feed(bytes(wire[8:]) + token, 1.0) == [Frame(FrameType.TOKEN, 2, 1)]
    assert receiver.feed(bytes(wire[:10]), 2.0) == []
    assert receiver.deadline == pytest.approx(2.06)
    assert receiver.expire(2.05) is None and receiver.expire(2.07) == Invalid("frame cut short")
    header = bytes([FrameType.DATA_NOT_EXPECTING_REPLY, 1, 2, 0x02, 0x00])  # 512 octets of data
    too_long = b"\x55\xff" + header + bytes([header_crc(header)]) + bytes(514)
    assert receiver.feed(too_long + token, 3.0) == [
        Invalid("frame too long (over 501 octets of data)"),
        Frame(FrameType.TOKEN, 2, 1),
    ]


def test_a_preamble_then_silence_is_not_an_invalid_frame() -> None:
    receiver = Receiver(0.06)
    assert receiver.feed(b"\x55", 0.0) == [] and receiver.expire(1.0) is None
