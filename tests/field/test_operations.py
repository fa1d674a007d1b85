"""Field acceptance: what an operator does to a running site, with the shipped defaults on two boards
at 19200 baud: `forget` (with the gateway stopped), SIGHUP (`systemctl reload`), and the demo started
twice on the same state file.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.field.site import Site

pytestmark = pytest.mark.timeout(900)  # a case waits for the line as a site does: minutes, not seconds

NODES = {1, 2, 3, 4}


async def test_forgotten_meters_leave_and_are_found_again_by_the_pass_of_the_next_start(site, record_property) -> None:
    built: Site = site()
    built.simulator.start()
    built.start()
    await built.until_served(NODES, "four nodes")
    built.stop()
    forgot = built.command("forget", "3", "4")
    assert forgot.returncode == 0, forgot.stderr
    built.start()
    record_property("ready_seconds", await built.until_served({1, 2}, "the two nodes still known"))
    assert built.events("nodes ready")[0]["addresses"] == [1, 2]
    # Still on the line: the start's pass probes the addresses right after the known board first.
    record_property("found_again_seconds", await built.until_served(NODES, "the forgotten board found again"))
    assert [event["address"] for event in built.events("node found")] == [3, 4]
    built.stop()


async def test_sighup_rereads_what_it_can_and_every_face_keeps_serving(site, record_property) -> None:
    built: Site = site()
    built.simulator.start()
    built.start()
    await built.until_served(NODES, "four nodes")
    pid = built.process.pid
    built.signal(signal.SIGHUP)
    await asyncio.sleep(1)
    faces = await built.faces(NODES)
    assert faces.serve(NODES), faces
    assert built.process.pid == pid and built.alive()
    assert len(built.events("reload")) == 1 and built.events("restarting") == []
    record_property("faces_after_sighup", "all four nodes on every face, no restart")
    built.stop()
    assert built.errors() == []


async def test_the_demo_started_twice_on_one_state_file_serves_at_once_the_second_time(site, record_property) -> None:
    built: Site = site()  # the demo simulates its own boards; the site's file gives it state, addresses and ports
    built.start("demo", "--boards", "2")
    record_property("first_ready_seconds", await built.until_served(NODES, "the demo's four nodes"))
    built.stop()
    built.start("demo", "--boards", "2")
    record_property("second_ready_seconds", await built.until_served(NODES, "the demo's four nodes again"))
    assert built.events("nodes ready")[0]["addresses"] == [1, 2, 3, 4] and built.events("discovery done") == []
    built.stop()
