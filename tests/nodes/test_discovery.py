"""Discovery on the simulated bus: BCPM identification, board pairing (by the DIP address, when it
fits and when the meter refuses it), a second chance for a panel."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from gateway.bus import Bus, LineSettings
from gateway.modbus import ILLEGAL_DATA_ADDRESS, ILLEGAL_FUNCTION
from gateway.nodes.discovery import DIP_ADDRESS, boards, scan
from gateway.nodes.modbus import read_registers
from gateway.sim import Fault, SimulatedLine
from tests.support import TEST_BAUDRATE, eventually

DIP_READ = read_registers(DIP_ADDRESS.register, DIP_ADDRESS.count)


@pytest.fixture
async def bus_on(make_line) -> AsyncIterator:
    buses = []

    async def start(line) -> Bus:
        bus = Bus(LineSettings(line.path, baudrate=TEST_BAUDRATE))
        buses.append(asyncio.create_task(bus.serve()))
        await asyncio.to_thread(bus.wait_ready, 5)
        return bus

    yield start
    for task in buses:
        task.cancel()
    await asyncio.gather(*buses, return_exceptions=True)


async def test_scan_identifies_models_and_pairs_the_panels_of_each_board(make_line, bus_on) -> None:
    line = make_line(3, 7, model="B")
    found = await scan(await bus_on(line), range(1, 11), timeout=0.02)
    assert [f.address for f in found] == [3, 4, 7, 8]
    assert all(f.profile.model == "B" and f.profile.device_id == 15171 for f in found)
    assert "Branch Circuit Monitor" in found[0].detail
    assert boards(f.profile for f in found) == {3: [3, 4], 7: [7, 8]}


async def test_a_panel_missed_on_the_first_pass_is_asked_again(make_line, bus_on) -> None:
    line = make_line(1)
    bus = await bus_on(line)
    line.vanish(1)  # slow to wake up: panel 1 misses its first probe

    async def wake_after_first_probe() -> None:
        await eventually(lambda: line.stats.vanished >= 1, what="panel 1's first probe")
        line.restore(1)

    waking = asyncio.create_task(wake_after_first_probe())
    found = await scan(bus, range(1, 6), timeout=0.02, patient_timeout=0.1)
    await waking
    assert [f.address for f in found] == [1, 2]


def answer_the_dip_read_of(line: SimulatedLine, address: int, fault: Fault) -> None:
    """Script `fault` for the DIP address read of `address` during a scan: its identity read and
    Report Slave ID come first and are answered as they are."""
    for _ in range(2):
        line.script.add(Fault(), address=address)
    line.script.add(fault, address=address)


def dip_reads_of(line: SimulatedLine, address: int) -> int:
    return sum(1 for unit, pdu in line.requests if unit == address and pdu == DIP_READ)


async def test_a_panel_whose_meter_refuses_the_dip_read_is_still_found_as_a_board_of_its_own(make_line, bus_on) -> None:
    line = make_line(1)
    answer_the_dip_read_of(line, 2, Fault(exception=ILLEGAL_DATA_ADDRESS))
    found = await scan(await bus_on(line), range(1, 4), timeout=0.5)
    assert dip_reads_of(line, 2) == 1  # the scripted refusal answered the DIP read
    assert [(f.address, f.is_bcpm) for f in found] == [(1, True), (2, True)]
    assert found[1].profile.primary_address == 2
    assert boards(f.profile for f in found) == {1: [1], 2: [2]}


async def test_a_dip_address_that_fits_neither_n_nor_n_plus_1_pairs_nothing(make_line, bus_on) -> None:
    line = make_line(1)
    answer_the_dip_read_of(line, 2, Fault(reply=bytes([0x03, 0x02, 0x00, 0x09])))  # says DIP 9, answers at 2
    found = await scan(await bus_on(line), range(1, 4), timeout=0.5)
    assert dip_reads_of(line, 2) == 1
    assert found[1].profile.primary_address == 2  # its own board, not one at 9 and 10
    assert boards(f.profile for f in found) == {1: [1], 2: [2]}


async def test_a_device_that_is_not_a_bcpm_is_reported_with_its_device_id_and_left_alone(make_line, bus_on) -> None:
    line = make_line(1)
    identity = struct.pack(">BB5H", 0x03, 10, 0, 7, 100, 200, 1234)  # serial 7, firmware, device ID 1234
    line.script.add(Fault(reply=identity), address=1)
    line.script.add(Fault(exception=ILLEGAL_FUNCTION), address=1)  # and no Report Slave ID
    found = await scan(await bus_on(line), range(1, 2), timeout=0.5)
    assert [(f.address, f.is_bcpm, f.detail) for f in found] == [(1, False, "device ID 1234 is not a BCPM")]
    assert not any(pdu == DIP_READ for _, pdu in line.requests)  # nothing more asked of it
