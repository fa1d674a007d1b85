"""Field acceptance: a first start, restarts, and a restart with a board unplugged, with the shipped
defaults on two boards at 19200 baud (scan 1-247, rescan every 60 s, poll every 1 s).

Each case records the seconds it measured to ready (`record_property`); the run's summary lists
them and the README says what a site can expect.
"""

from __future__ import annotations

import statistics

import pytest

from tests.field.site import Site

pytestmark = pytest.mark.timeout(900)  # a case waits for the line as a site does: minutes, not seconds

NODES = {1, 2, 3, 4}


async def test_a_first_start_serves_both_boards_on_every_face_after_one_scan(site, record_property) -> None:
    built: Site = site()
    built.simulator.start()
    built.start()
    record_property("ready_seconds", await built.until_served(NODES, "four nodes on every face"))
    assert [event["addresses"] for event in built.events("nodes ready")] == [[1, 2, 3, 4]]
    assert built.events("discovery done")[0]["found"] == 4
    built.stop()
    assert built.errors() == []


async def test_ten_restarts_in_a_row_each_serve_the_known_meters_at_once(site, record_property) -> None:
    built: Site = site()
    built.simulator.start()
    built.start()
    await built.until_served(NODES, "four nodes after the first start")
    built.stop()
    times, logged = [], []
    for _ in range(10):
        built.start()
        times.append(await built.until_served(NODES, "four nodes after a restart"))
        logged.append(built.logged_ready())
        ready = built.events("nodes ready")
        # Ready with the known meters before the scan of the 243 unused addresses (75 s at a tenth of the line).
        assert ready[0]["addresses"] == [1, 2, 3, 4] and built.events("discovery done") == []
        built.stop()
        assert built.errors() == []
    record_property("ready_seconds", f"median {statistics.median(times):.2f}, max {max(times)} (10 restarts)")
    record_property("logged_ready_seconds", f"median {statistics.median(logged):.2f}, max {max(logged)}")


async def test_a_restart_with_a_board_unplugged_serves_it_offline_at_once_and_online_when_it_answers(
    site, record_property
) -> None:
    built: Site = site()
    built.simulator.start()
    built.start()
    await built.until_served(NODES, "four nodes after the first start")
    built.stop()
    built.simulator.stop()
    built.simulator.start("--absent", "3:40", "--absent", "4:40")  # the second board is off for 40 s
    built.start()
    # Its device and rows are there at once; Modbus TCP answers 0x0B for it while it is offline.
    record_property("ready_seconds", await built.until_served(NODES, "board 3 served offline", polled={1, 2}))
    faces = await built.faces(NODES)
    assert faces.modbus == {1, 2}
    record_property("back_online_seconds", await built.until_served(NODES, "board 3 online by itself"))
    built.stop()
