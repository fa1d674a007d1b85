"""Discovery on the simulated bus: BCPM identification, board pairing, a second chance for a panel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.bus import Bus, LineSettings
from gateway.nodes.discovery import boards, scan
from tests.support import TEST_BAUDRATE, eventually


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
