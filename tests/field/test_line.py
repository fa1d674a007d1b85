"""Field acceptance: the RS-485 adapter unplugged for 30 s, with the shipped defaults on two boards at
19200 baud. Every face goes on answering meanwhile (the nodes offline, their values stale), and every
node is back on every face once the adapter is plugged in again under the same name.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.field.site import Site

pytestmark = pytest.mark.timeout(900)  # a case waits for the line as a site does: minutes, not seconds

NODES = {1, 2, 3, 4}
UNPLUGGED = 30.0


async def test_the_adapter_unplugged_for_thirty_seconds_leaves_every_face_up_and_every_node_comes_back(
    site, record_property
) -> None:
    built: Site = site()
    built.simulator.start()
    built.start()
    await built.until_served(NODES, "four nodes")
    built.simulator.stop()  # the pty and its link are gone, as a USB adapter pulled out
    unplugged = time.monotonic()
    await asyncio.sleep(UNPLUGGED)
    faces = await built.faces(NODES)
    # Every face still answers: BACnet devices and SNMP rows stay (offline), Modbus TCP answers 0x0B.
    assert faces.serve(NODES, polled=set()) and faces.modbus == set()
    built.simulator.start()
    plugged = time.monotonic()
    built.started = plugged  # measure from the moment the adapter is back
    record_property("back_after_replug_seconds", await built.until_served(NODES, "every node back on every face"))
    record_property("unplugged_seconds", round(plugged - unplugged, 1))
    assert len(built.events("bus port lost")) == 1 and len(built.events("bus port unavailable")) <= 1
    built.stop()
