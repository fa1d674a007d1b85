"""The simulated line over a real pty: what a Modbus RTU master sees, byte for byte."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

from gateway.pointmap import INVALID_WORD, ResetCode
from gateway.sim import Board, Faults, SimulatedLine

from .master import CrcFailure, Master

CURRENT_CH12 = 1347
FLOAT_CURRENT_CH12 = 2274
KW_CH1 = 1252
FLOAT_KW_CH1 = 2084
KWH_CH1 = 1168
GLOBAL_RESET = 295


def exception_code(reply: object) -> int | None:
    return reply.exception_code if isinstance(reply, ExceptionResponse) else None


def test_board_answers_at_both_addresses_with_the_same_serial(line: SimulatedLine, master: Master) -> None:
    first, second = master.registers(1, 1, 2), master.registers(2, 1, 2)
    assert first == second
    assert first[0] << 16 | first[1] == line.boards[0].serial


def test_register_60000_reads_the_dip_address_on_both_panels(master: Master) -> None:
    assert master.registers(1, 60000, 2) == master.registers(2, 60000, 2) == [1, 192]


def test_panels_are_separate_nodes(line: SimulatedLine, master: Master) -> None:
    line.panel(2).set_current(12, 17.5)
    assert master.registers(1, CURRENT_CH12) == [0]
    assert master.registers(2, CURRENT_CH12) == [175]


def test_fc03_and_fc04_return_the_same_registers(line: SimulatedLine) -> None:
    line.panel(1).set_current(12, 17.5)
    client = ModbusSerialClient(line.path, baudrate=19200, timeout=1, retries=0)
    assert client.connect()
    try:
        holding = client.read_holding_registers(CURRENT_CH12 - 1, count=2, device_id=1)
        inputs = client.read_input_registers(CURRENT_CH12 - 1, count=2, device_id=1)
    finally:
        client.close()
    assert holding.registers == inputs.registers == [175, 0]


def test_float_copy_equals_integer_times_scale(line: SimulatedLine, master: Master) -> None:
    line.panel(1).set_current(12, 17.5)
    line.panel(1).set_current(1, 12.0)
    assert master.registers(1, 1000) == [0xFFFF]  # current scale -1
    msw, lsw = master.registers(1, FLOAT_CURRENT_CH12, 2)
    assert struct.unpack(">f", struct.pack(">HH", msw, lsw))[0] == 17.5
    kw = master.registers(1, KW_CH1)[0] * 10**-3
    msw, lsw = master.registers(1, FLOAT_KW_CH1, 2)
    assert struct.unpack(">f", struct.pack(">HH", msw, lsw))[0] == pytest.approx(kw, rel=1e-6)


def test_model_c_reads_0x8000_and_nan_for_power() -> None:
    with SimulatedLine([Board(7, model="C")], turnaround=0, emulate_wire=False) as line:
        line.panel(7).set_current(1, 10.0)
        master = Master(line.path)
        try:
            assert master.registers(7, KW_CH1) == [INVALID_WORD]
            assert master.registers(7, FLOAT_KW_CH1, 2) == [0x7FC0, 0x0000]
            assert master.registers(7, KWH_CH1, 2) == [INVALID_WORD, INVALID_WORD]
            assert master.registers(7, 248) == [INVALID_WORD]  # no voltage on model C
            assert master.registers(7, 1336) == [100]  # current is measured on every model
            assert master.registers(7, 5) == [15170]
        finally:
            master.close()


def test_write_is_read_back(master: Master) -> None:
    assert not master.write(1, 119, 30).isError()  # breaker size of channel 1
    assert master.registers(1, 119) == [30]
    assert master.registers(2, 119) == [20], "the other panel keeps its own setup"


def test_write_to_read_only_register_is_exception_02(master: Master) -> None:
    assert exception_code(master.write(1, 5, 15171)) == 0x02  # device ID
    assert exception_code(master.write(1, CURRENT_CH12, 1)) == 0x02
    assert exception_code(master.write(1, FLOAT_CURRENT_CH12, 0, 0)) == 0x02  # float copies are read-only
    assert exception_code(master.write(1, 544, 1)) == 0x02  # unmapped
    assert exception_code(master.write(1, 240, 30, 0, 0, 0, 0)) == 0x02, "a block reaching read-only 244"
    assert master.registers(1, 240) == [20], "a refused block writes nothing"


def test_out_of_range_write_is_exception_03(master: Master) -> None:
    assert exception_code(master.write(1, 6, 4)) == 0x03  # CT numbering is 0-3
    assert exception_code(master.write(1, 72, 5)) == 0x03  # sub-interval: 0 or 10-32767
    assert exception_code(master.write(1, GLOBAL_RESET, 1)) == 0x03
    assert master.registers(1, 72) == [900]


def test_location_is_written_with_fc16_and_shows_in_report_slave_id(line: SimulatedLine, master: Master) -> None:
    words = [int.from_bytes(b"PD", "big"), int.from_bytes(b"U#", "big"), int.from_bytes(b"3\0", "big"), 0]
    assert not master.write(1, 7, *words).isError()
    assert master.registers(1, 7, 4) == [0x5044, 0x5523, 0x3300, 0]
    assert line.panel(1).report_slave_id().endswith('Location="PDU#3"')


def test_report_slave_id_string(line: SimulatedLine, master: Master) -> None:
    reply = master.exchange(master.framer.encode(b"\x11", 2, 0))
    serial = line.boards[0].serial
    text = f'Veris Model E31A Branch Circuit Monitor, S/N=0x{serial:08X}, Location="NOT_ASSIGNED"'
    _, unit, _, pdu = master.framer.decode(reply)
    assert unit == 2
    assert pdu == bytes([0x11, len(text) + 2, 0xFF, 0xFF]) + text.encode()


def test_unserved_address_is_silent(line: SimulatedLine, master: Master) -> None:
    assert master.transact(ReadHoldingRegistersRequest(address=0, count=1, dev_id=3)) is None
    assert line.stats.unserved == 1
    assert master.registers(1, 1, 1), "the bus still works after a silent request"


def test_read_across_an_unmapped_gap_is_exception_02(master: Master) -> None:
    assert exception_code(master.read(1, 540, 5)) == 0x02  # 544 is not in the map
    assert exception_code(master.read(1, 1671, 2)) == 0x02
    assert master.registers(1, 540, 4)


def test_read_count_outside_1_125_is_exception_03(master: Master) -> None:
    frame = master.framer.encode(bytes([3]) + struct.pack(">HH", 999, 126), 1, 0)
    _, _, _, pdu = master.framer.decode(master.exchange(frame))
    assert pdu == bytes([0x83, 0x03])


def test_unsupported_function_is_exception_01(master: Master) -> None:
    frame = master.framer.encode(bytes([1]) + struct.pack(">HH", 0, 8), 1, 0)  # read coils
    _, _, _, pdu = master.framer.decode(master.exchange(frame))
    assert pdu == bytes([0x81, 0x01])


def test_reset_10203_clears_energy(line: SimulatedLine, master: Master) -> None:
    board = line.boards[0]
    line.panel(1).set_current(1, 50.0)
    now = time.monotonic()
    board.tick(now)
    board.tick(now + 3600)
    assert master.registers(1, KWH_CH1, 2) == [0, 57]  # 120 V * 50 A * 0.95 for an hour, scale -1
    assert not master.write(1, GLOBAL_RESET, ResetCode.CLEAR_ENERGY).isError()
    assert master.registers(1, KWH_CH1, 2) == [0, 0]


def test_high_latching_alarm_latches_and_clears_over_the_wire(line: SimulatedLine, master: Master) -> None:
    for register in range(165, 170):  # delays and ON time 0
        assert not master.write(1, register, 0).isError()
    line.panel(1).set_current(3, 13.0)  # 65 % of the 20 A breaker: High
    line.boards[0].tick(time.monotonic())
    assert master.registers(1, 180) == [0b10 | 1 << 8]
    line.panel(1).set_current(3, 5.0)
    assert not master.write(1, 180, 0).isError()
    assert master.registers(1, 180) == [0]
    assert master.registers(1, 347 + 2) == [1]


def test_crc_fault_corrupts_the_reply(line: SimulatedLine, master: Master) -> None:
    line.faults = Faults(crc_error=1.0)
    with pytest.raises(CrcFailure):
        master.read(1, 1, 2)
    line.faults = Faults()
    assert master.registers(1, 1, 2)
    assert line.stats.corrupted == 1


def test_exception_fault_answers_04(line: SimulatedLine, master: Master) -> None:
    line.faults = Faults(exception=1.0)
    assert exception_code(master.write(1, 119, 30)) == 0x04
    line.faults = Faults()
    assert master.registers(1, 119) == [20], "a failed request is not executed"


def test_silence_fault_drops_the_reply(line: SimulatedLine, master: Master) -> None:
    line.faults = Faults(silence=1.0)
    assert master.transact(ReadHoldingRegistersRequest(address=0, count=1, dev_id=1)) is None
    assert line.stats.dropped == 1


def test_slow_fault_delays_the_reply(line: SimulatedLine, master: Master) -> None:
    line.faults = Faults(slow=1.0, slow_delay=0.3)
    request = ReadHoldingRegistersRequest(address=0, count=1, dev_id=1)
    assert master.transact(request, timeout=0.1) is None
    time.sleep(0.5)  # let the late reply go by: the next request flushes it
    line.faults = Faults()
    assert master.registers(1, 1), "the line answers in time again"
    assert line.stats.slowed == 1


def test_faults_are_deterministic_with_a_seed() -> None:
    def pattern() -> list[bool]:
        with SimulatedLine([Board(1)], turnaround=0, emulate_wire=False, seed=42) as line:
            line.faults = Faults(crc_error=0.5)
            master = Master(line.path)
            try:
                outcomes = []
                for _ in range(12):
                    try:
                        master.read(1, 1)
                        outcomes.append(True)
                    except CrcFailure:
                        outcomes.append(False)
                return outcomes
            finally:
                master.close()

    first = pattern()
    assert first == pattern()
    assert True in first and False in first


def test_vanished_node_is_silent_and_returns(line: SimulatedLine, master: Master) -> None:
    line.vanish(2)
    assert master.transact(ReadHoldingRegistersRequest(address=0, count=1, dev_id=2)) is None
    assert master.registers(1, 1), "its board's other panel still answers"
    line.restore(2)
    assert master.registers(2, 1)
    assert line.stats.vanished == 1


def test_flapping_node_comes_and_goes(line: SimulatedLine, master: Master) -> None:
    line.flap(1, period=0.5)
    request = ReadHoldingRegistersRequest(address=0, count=1, dev_id=1)
    assert master.transact(request, timeout=0.1) is None
    time.sleep(0.55)
    assert master.transact(request, timeout=0.1) is not None
    line.restore(1)


def test_garbage_is_sent_between_transactions(line: SimulatedLine, master: Master) -> None:
    def receive(nbytes: int) -> bytes:
        deadline = time.monotonic() + 1
        received = b""
        while len(received) < nbytes and time.monotonic() < deadline:
            received += master.port.read(nbytes - len(received))
        return received

    line.send_garbage(40)
    assert len(receive(40)) == 40
    line.send_garbage(b"\x01\x03\x02")  # chosen bytes, e.g. what looks like the start of a reply
    assert receive(3) == b"\x01\x03\x02"
    assert master.registers(1, 1), "the line answers after the garbage"
    assert line.stats.garbage_bursts == 2


def test_wire_time_is_emulated() -> None:
    with SimulatedLine([Board(1)], baudrate=19200, turnaround=0.005) as line:
        master = Master(line.path)
        try:
            request = master.framer.buildFrame(ReadHoldingRegistersRequest(address=999, count=125, dev_id=1))
            start = time.monotonic()
            reply = master.exchange(request, timeout=1)
            elapsed = time.monotonic() - start
        finally:
            master.close()
    assert len(reply) == 5 + 250
    assert elapsed >= line.wire_time(len(request) + len(reply)) + 0.005


def test_gap_violations_count_requests_sent_too_soon_after_a_reply() -> None:
    with SimulatedLine([Board(1, baudrate=1200)], baudrate=1200, turnaround=0) as line:  # t3.5 = 32 ms
        master = Master(line.path, baudrate=1200)
        try:
            master.registers(1, 1)
            master.registers(1, 1)  # at once
            time.sleep(0.1)
            master.registers(1, 1)
        finally:
            master.close()
        stats = line.stats
    assert stats.gap_violations == 1
    assert len(stats.silences) == 2
    assert stats.min_silence is not None and stats.min_silence < line.silence


def test_client_closing_does_not_stop_the_line(line: SimulatedLine) -> None:
    for _ in range(2):
        master = Master(line.path)
        assert master.registers(1, 1)
        master.close()


def test_link_symlink_is_created_and_removed(tmp_path: Path) -> None:
    link = tmp_path / "ttyBCPM"
    link.symlink_to("/nonexistent")  # a stale link from an earlier run is replaced
    with SimulatedLine([Board(1)], emulate_wire=False, link=str(link)) as line:
        assert os.readlink(link) == line.path
        master = Master(str(link))
        assert master.registers(1, 1)
        master.close()
    assert not os.path.lexists(link)


def test_link_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    link = tmp_path / "ttyBCPM"
    link.write_text("keep me")
    with pytest.raises(FileExistsError):
        SimulatedLine([Board(1)], link=str(link)).start()
    assert link.read_text() == "keep me"


def test_boards_must_not_share_an_address() -> None:
    with pytest.raises(ValueError, match="address 2"):
        SimulatedLine([Board(1), Board(2)])
