"""Scripted faults: queued per node or for the line, played on the next reply, over the pty and on
the memory line (which plays only those that need no frame)."""

from __future__ import annotations

import pytest
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

from gateway.sim import Board, Fault, Faults, MemoryLine, SimulatedLine

from .master import CrcFailure, Master

READ_SERIAL = bytes.fromhex("0300000002")
CT_SIZE_CH1 = 73


def test_a_nodes_own_fault_goes_before_the_lines(line: SimulatedLine, master: Master) -> None:
    line.script.add(Fault(crc_error=True))  # the next reply of any node
    line.script.add(Fault(exception=0x06), address=2)
    reply = master.read(2, 1, 2)
    assert isinstance(reply, ExceptionResponse) and reply.exception_code == 0x06
    with pytest.raises(CrcFailure):  # the line's fault waited for the next reply: node 1's
        master.read(1, 1, 2)
    assert master.registers(2, 1, 2) == master.registers(1, 1, 2), "each fault is played once"
    assert (line.stats.scripted, line.script.pending) == (2, 0)


def test_faults_of_a_queue_are_played_in_order(line: SimulatedLine, master: Master) -> None:
    for code in (0x05, 0x06):
        line.script.add(Fault(exception=code), address=1)
    replies = [master.read(1, 1) for _ in range(3)]
    assert [reply.exception_code if reply.isError() else None for reply in replies] == [0x05, 0x06, None]


def test_a_scripted_fault_is_played_instead_of_a_drawn_one(line: SimulatedLine, master: Master) -> None:
    line.faults = Faults(crc_error=1.0)
    line.script.add(Fault())  # a good reply, whatever the rates say
    assert master.registers(1, 1, 2)
    with pytest.raises(CrcFailure):
        master.read(1, 1, 2)


def test_an_exception_fault_does_not_execute_the_request(line: SimulatedLine, master: Master) -> None:
    line.script.add(Fault(exception=0x04))
    assert isinstance(master.write(1, CT_SIZE_CH1, 30), ExceptionResponse)
    assert master.registers(1, CT_SIZE_CH1) == [100]
    assert line.stats.exceptions == 1


def test_a_silent_fault_executes_the_request_but_drops_the_reply(line: SimulatedLine, master: Master) -> None:
    line.script.add(Fault(silent=True))
    assert master.transact(ReadHoldingRegistersRequest(address=CT_SIZE_CH1 - 1, count=1, dev_id=1)) is None
    line.script.add(Fault(silent=True))
    assert master.exchange(master.framer.encode(bytes.fromhex("0600480021"), 1, 0)) == b""  # CT size 33
    assert master.registers(1, CT_SIZE_CH1) == [33]
    assert line.stats.dropped == 2


def test_the_reply_frame_can_lie_about_its_unit_and_lose_its_tail(line: SimulatedLine, master: Master) -> None:
    line.script.add(Fault(unit=9, truncate=6))
    heard = master.exchange(master.framer.encode(READ_SERIAL, 1, 0))
    assert len(heard) == 6 and heard[0] == 9


def test_the_requests_heard_are_kept_for_any_address(line: SimulatedLine, master: Master) -> None:
    assert master.exchange(master.framer.encode(READ_SERIAL, 42, 0)) == b""  # nobody serves 42
    master.registers(1, 1, 2)
    assert line.requests == [(42, READ_SERIAL), (1, READ_SERIAL)]


def test_impossible_faults_are_refused(line: SimulatedLine) -> None:
    with pytest.raises(ValueError, match="not both"):
        Fault(exception=0x02, reply=b"\x03")
    with pytest.raises(ValueError, match="1-255"):
        Fault(exception=0)
    with pytest.raises(ValueError, match="reply PDU"):
        Fault(reply=b"")
    with pytest.raises(ValueError, match="negative"):
        Fault(delay=-1)
    with pytest.raises(KeyError, match="address 9"):
        line.script.add(Fault(), address=9)


def test_the_memory_line_plays_what_needs_no_frame_and_refuses_the_rest() -> None:
    line = MemoryLine([Board(1)])
    for fault in (Fault(crc_error=True), Fault(noise=b"\x00"), Fault(delay=0.1), Fault(unit=2)):
        with pytest.raises(ValueError, match="PDUs, not frames"):
            line.script.add(fault)
    line.script.add(Fault(exception=0x06), address=2)
    line.script.add(Fault(reply=b"\x41\x01"))
    line.script.add(Fault(silent=True))
    assert line.answer(2, READ_SERIAL) == b"\x83\x06"
    assert line.answer(1, b"\x41\x01") == b"\x41\x01"
    assert line.answer(1, bytes.fromhex("0600480021")) is None  # executed, not answered
    assert line.panel(1).read(CT_SIZE_CH1, 1) == [33]
    assert line.script.pending == 0
