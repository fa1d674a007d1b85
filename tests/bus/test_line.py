"""LineSettings timing and reply lengths: pure arithmetic, no port."""

from __future__ import annotations

import pytest

from gateway.bus import LineSettings, expected_reply_length


def test_a_character_counts_start_data_parity_and_stop_bits() -> None:
    assert LineSettings("p").bits_per_char == 10
    assert LineSettings("p", parity="E").bits_per_char == 11
    assert LineSettings("p", parity="N", stopbits=2).bits_per_char == 11
    assert LineSettings("p", parity="O", stopbits=2).bits_per_char == 12


def test_wire_time_follows_baud_rate_and_framing() -> None:
    assert LineSettings("p", baudrate=19200, parity="E").wire_time(8) == pytest.approx(88 / 19200)
    assert LineSettings("p", baudrate=9600).wire_time(255) == pytest.approx(2550 / 9600)


def test_silence_is_three_and_a_half_11_bit_characters_up_to_19200_baud() -> None:
    assert LineSettings("p", baudrate=19200).silence == pytest.approx(3.5 * 11 / 19200)
    assert LineSettings("p", baudrate=9600, parity="E").silence == pytest.approx(3.5 * 11 / 9600)


def test_silence_is_fixed_at_1_75_ms_above_19200_baud() -> None:
    assert LineSettings("p", baudrate=38400).silence == 0.00175
    assert LineSettings("p", baudrate=115200).silence == 0.00175


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"parity": "X"}, "parity"),
        ({"stopbits": 3}, "stopbits"),
        ({"baudrate": 0}, "baudrate"),
        ({"timeout": 0}, "timeout"),
        ({"max_queue": 0}, "max_queue"),
    ],
)
def test_impossible_settings_are_refused(settings: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        LineSettings("p", **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_pdu", "length"),
    [
        ("0100000013", 5 + 3),  # 19 coils: 3 data bytes
        ("0200000008", 5 + 1),
        ("030000007d", 5 + 250),  # 125 registers: the longest read
        ("0400100002", 5 + 4),
        ("050001ff00", 8),
        ("0600010003", 8),
        ("0f0000000a0201ff", 8),
        ("1000000002040001000a", 8),
    ],
)
def test_reply_length_follows_from_the_request(request_pdu: str, length: int) -> None:
    assert expected_reply_length(bytes.fromhex(request_pdu)) == length


@pytest.mark.parametrize("request_pdu", ["11", "2b0e0100", "41abcd", "03", ""])
def test_reply_length_is_unknown_for_other_functions_and_short_requests(request_pdu: str) -> None:
    assert expected_reply_length(bytes.fromhex(request_pdu)) is None
