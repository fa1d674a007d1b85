"""Field acceptance: a board powered up 20 s after the gateway, with the shipped defaults (scan 1-247,
rescan every 60 s, poll every 1 s, 0.2 s timeout, 15 ms probes) on a line that polling keeps busy:
it must be served on every face within rescan_interval + 15 s of coming up.
"""

from __future__ import annotations

import pytest

from tests.field.site import Site

pytestmark = pytest.mark.timeout(900)  # a case waits for the line as a site does: minutes, not seconds

LATE = 20.0  # seconds the late board stays silent after the simulator starts


async def late_board(site, record_property, boards: int, baudrate: int, **changes) -> None:
    addresses = tuple(range(1, 2 * boards, 2))
    late = addresses[-1]
    built: Site = site(addresses, baudrate, **changes)
    built.simulator.start("--absent", f"{late}:{LATE}", "--absent", f"{late + 1}:{LATE}")
    built.start()
    present = set(range(1, late))
    record_property("ready_seconds", await built.until_served(present, f"the {boards - 1} boards there from the start"))
    found = await built.until_served(present | {late, late + 1}, "the late board on every face") - LATE
    record_property("late_board_served_after_power_up_seconds", round(found, 2))
    scan = built.events("status")[-1]["scan"] if built.events("status") else None
    record_property("rescan", scan)
    # Polling never waited for the rescan to finish, nor the rescan for polling to pause.
    assert [event["address"] for event in built.events("node found")] == [late, late + 1]
    built.stop()
    assert built.errors() == []


async def test_a_third_board_powered_up_later_on_a_busy_19200_line_is_found_by_the_rescan(
    site, record_property
) -> None:
    await late_board(site, record_property, boards=3, baudrate=19200)


async def test_a_sixteenth_board_powered_up_later_at_115200_is_found_by_the_rescan(site, record_property) -> None:
    await late_board(site, record_property, boards=16, baudrate=115200, serial={"baudrate": 115200})
