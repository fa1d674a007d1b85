"""The node service through the in-memory transport: known nodes kept, late meters, a vanishing port.

No pty here: the bus drives simulated panels through a memory transport (gateway.bus.memory), so these run at
memory speed. The same points are checked end to end, on a pty with the gateway as a process,
in tests/test_lifecycle.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.bus import BusClosed, MemoryPort, Priority
from gateway.config import parse_config
from gateway.hub import EventHub
from gateway.nodes.cache import Quality
from gateway.nodes.events import NodeAdded, NodeOffline, NodeOnline
from gateway.nodes.modbus import REPORT_SLAVE_ID, read_registers
from gateway.nodes.service import NodeService
from gateway.pointmap import load
from gateway.sim import Board, MemoryLine
from gateway.state import IdentityStore, SavedLine, StateStore
from tests.support import eventually

PM = load()
CURRENT_1 = PM.find("current", group="branch", channel=1)


def line_of(*primaries: int) -> MemoryLine:
    return MemoryLine(Board(primary) for primary in primaries)


class Services:
    """Node services run on the test's loop against memory lines."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.tasks: dict[NodeService, asyncio.Task[None]] = {}
        self.ports: dict[NodeService, MemoryPort] = {}

    async def start(
        self,
        line: MemoryLine,
        mode: str = "discovery",
        *,
        wait: bool = True,
        hub: EventHub | None = None,
        rescan_interval: float = 0,
        emulate_wire: bool = False,
        **serial: object,
    ) -> NodeService:
        config = parse_config(
            {
                "gateway": {"state_file": str(self.tmp_path / "state.json"), "operating_mode": mode},
                "serial": {
                    "port": "memory",
                    "scan": "1-10",
                    "poll_interval": 0.1,
                    "timeout": 0.05,
                    "probe_timeout": 0.02,
                    "slow_every": 2,
                    "rescan_interval": rescan_interval,
                    **serial,
                },
            }
        )
        hub = hub or EventHub(asyncio.get_running_loop())
        port = MemoryPort(line, emulate_wire=emulate_wire)
        service = NodeService(config, IdentityStore(StateStore(config.gateway.state_file)), hub, PM, port)
        self.ports[service] = port
        task = self.tasks[service] = asyncio.create_task(service.run())
        if wait:
            await eventually(lambda: service.ready.is_set() or task.done(), what="the nodes known")
            if task.done():
                task.result()
        return service

    async def stop(self, service: NodeService) -> None:
        task = self.tasks.pop(service)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    running = Services(tmp_path)
    yield running
    for service in list(running.tasks):
        await running.stop(service)


def online(service: NodeService) -> list[int]:
    return sorted(a for a, node in service.nodes.items() if node.health.online)


def saved(tmp_path: Path) -> list[int]:
    return sorted(StateStore(tmp_path / "state.json").load().profiles)


async def test_a_known_node_that_is_silent_at_start_is_served_offline_and_kept(services, tmp_path) -> None:
    first = await services.start(line_of(1, 5))
    assert saved(tmp_path) == [1, 2, 5, 6]
    await services.stop(first)
    line = line_of(1, 5)
    line.vanish(5)
    line.vanish(6)
    service = await services.start(line)
    assert sorted(service.nodes) == [1, 2, 5, 6]
    await eventually(lambda: online(service) == [1, 2], what="nodes 5 and 6 offline")
    assert saved(tmp_path) == [1, 2, 5, 6]  # a restart never saves fewer nodes
    assert service.nodes[5].profile == StateStore(tmp_path / "state.json").load().profiles[5]
    line.restore(5)
    line.restore(6)
    await eventually(lambda: online(service) == [1, 2, 5, 6], what="nodes 5 and 6 back by themselves")
    await eventually(lambda: service.nodes[6].cache.reading(CURRENT_1).quality is Quality.GOOD, what="node 6 polled")


async def test_known_nodes_are_served_at_once_and_the_rest_of_the_scan_runs_beside_them(services, tmp_path) -> None:
    await services.stop(await services.start(line_of(1)))
    line = line_of(1, 3)
    hub = EventHub(asyncio.get_running_loop())
    added = hub.subscribe(NodeAdded)
    service = await services.start(line, hub=hub)
    # Announced as added, so found after the faces were told the nodes were ready.
    assert {(await added.get()).address, (await added.get()).address} == {3, 4}
    assert sorted(service.nodes) == [1, 2, 3, 4]
    assert saved(tmp_path) == [1, 2, 3, 4]
    identified = {unit for unit, pdu in line.requests if pdu == REPORT_SLAVE_ID}
    assert identified == {3, 4}  # the known nodes were not scanned again


async def test_a_restart_on_a_wide_scan_is_ready_before_the_scan_of_the_unused_addresses(services, tmp_path) -> None:
    wide = {"scan": "1-247", "baudrate": 19200, "poll_interval": 1.0, "timeout": 0.2, "probe_timeout": 0.015}
    await services.stop(await services.start(line_of(1, 3), **wide))
    line = line_of(1, 3)
    service = await services.start(line, emulate_wire=True, rescan_interval=60, **wide)
    assert sorted(service.nodes) == [1, 2, 3, 4]
    progress = service.scanner.progress
    assert progress.running and progress.left > 200 and progress.passes == 0
    await eventually(lambda: online(service) == [1, 2, 3, 4] and service.poller.cycles >= 1, what="a poll cycle")
    assert service.scanner.progress.running, "the scan of the rest goes on beside polling"


async def test_a_pass_probes_the_next_boards_first_and_again_while_it_lasts_and_polling_never_pauses(
    services, tmp_path
) -> None:
    await services.stop(await services.start(line_of(1, 3)))
    line = line_of(1, 3, 5)
    for address in (5, 6):
        line.vanish(address)
    hub = EventHub(asyncio.get_running_loop())
    added = hub.subscribe(NodeAdded)
    # Four nodes at 19200 baud with wire time: a cycle takes longer than the poll interval. A probe
    # holds the line ~38 ms, so at a tenth of the line 20 addresses take ~8 s: longer than the interval.
    service = await services.start(line, hub=hub, emulate_wire=True, rescan_interval=5, scan="1-24", baudrate=19200)
    await eventually(lambda: service.scanner.progress.passes >= 1, what="a first pass")
    probed = [unit for unit, pdu in line.requests if pdu == read_registers(1, 5) and unit not in (1, 2, 3, 4)]
    assert probed[:4] == [5, 6, 7, 8], "the next two boards first"
    assert sorted(probed) == sorted([*range(5, 25), 5, 6, 7, 8]), "and again once the pass outlasted the interval"
    await eventually(lambda: service.poller.cycles >= 2, what="two poll cycles")
    assert min(report.duration for report in service.poller.reports) > service.poller.interval, "polling never paused"
    line.restore(5)
    line.restore(6)
    assert {(await added.get()).address, (await added.get()).address} == {5, 6}
    await eventually(lambda: online(service) == [1, 2, 3, 4, 5, 6], what="the late board polled")


async def test_a_vanishing_port_takes_every_node_offline_and_back(services) -> None:
    line = line_of(1)
    hub = EventHub(asyncio.get_running_loop())
    service = await services.start(line, hub=hub)
    await eventually(lambda: service.nodes[2].cache.reading(CURRENT_1).quality is Quality.GOOD, what="polled")
    events = hub.subscribe(NodeOffline, NodeOnline)
    line.unplug()
    lost = [await events.get(), await events.get()]
    assert {event.address for event in lost if isinstance(event, NodeOffline)} == {1, 2}
    assert all(event.reason.startswith("line unavailable: ") for event in lost)
    assert service.nodes[1].cache.reading(CURRENT_1).quality is Quality.STALE
    with pytest.raises(BusClosed):
        await service.bus.transact(1, read_registers(1, 5), Priority.POLL)
    line.plug()
    assert {await events.get(), await events.get()} == {NodeOnline(1), NodeOnline(2)}
    await eventually(lambda: service.nodes[1].cache.reading(CURRENT_1).quality is Quality.GOOD, what="fresh again")
    assert services.ports[service].opened == 2


async def test_a_port_missing_at_start_is_the_same_case(services, tmp_path) -> None:
    await services.stop(await services.start(line_of(1)))
    line = line_of(1)
    line.unplug()
    service = await services.start(line, "locked")
    await eventually(lambda: online(service) == [], what="every node offline")
    line.plug()
    await eventually(lambda: online(service) == [1, 2], timeout=5, what="every node online once the port opens")
    assert saved(tmp_path) == [1, 2]


async def test_discovery_waits_for_a_port_missing_at_start(services, tmp_path) -> None:
    line = line_of(1)
    line.unplug()
    service = await services.start(line, wait=False)
    await asyncio.sleep(0.2)
    assert not service.ready.is_set() and services.ports[service].opened == 0
    line.plug()
    await eventually(service.ready.is_set, timeout=5, what="discovery once the port opens")
    assert sorted(service.nodes) == [1, 2]


async def test_a_meter_that_appears_later_is_found_by_the_background_rescan(services, tmp_path) -> None:
    line = line_of(1, 3)
    line.vanish(3)
    line.vanish(4)
    hub = EventHub(asyncio.get_running_loop())
    added = hub.subscribe(NodeAdded)
    service = await services.start(line, hub=hub, rescan_interval=0.5)
    assert sorted(service.nodes) == [1, 2]
    line.restore(3)
    line.restore(4)
    found = {(await added.get()).address, (await added.get()).address}
    assert found == {3, 4}
    assert saved(tmp_path) == [1, 2, 3, 4]
    await eventually(lambda: service.nodes[4].cache.reading(CURRENT_1).quality is Quality.GOOD, what="node 4 polled")


async def test_locked_mode_never_scans(services, tmp_path) -> None:
    await services.stop(await services.start(line_of(1)))
    line = line_of(1, 3)
    service = await services.start(line, "locked", rescan_interval=0.1)
    await asyncio.sleep(0.5)
    assert sorted(service.nodes) == [1, 2]
    assert {unit for unit, _ in line.requests} == {1, 2}


async def test_known_nodes_do_not_go_offline_while_the_port_is_being_opened(services) -> None:
    await services.stop(await services.start(line_of(1)))
    hub = EventHub(asyncio.get_running_loop())
    lost = hub.subscribe(NodeOffline)
    service = await services.start(line_of(1), "locked", hub=hub, emulate_wire=True)  # opening takes time
    await eventually(lambda: service.poller.cycles >= 1, timeout=20, what="a poll cycle")
    assert online(service) == [1, 2]
    with pytest.raises(asyncio.QueueEmpty):  # no node-lost notification at a normal start
        lost.get_nowait()


async def test_auto_line_settings_find_the_rate_and_parity_and_try_them_first_next_time(services, tmp_path) -> None:
    line = MemoryLine([Board(3, baudrate=38400)], parity="O")
    service = await services.start(line, baudrate="auto")
    assert sorted(service.nodes) == [3, 4]
    assert (service.line.baudrate, service.line.parity) == (38400, "O")
    assert (service.bus.settings.baudrate, service.bus.settings.parity) == (38400, "O")
    await eventually(lambda: online(service) == [3, 4], what="both panels polled at the settings found")
    assert StateStore(tmp_path / "state.json").load().line == SavedLine(38400, "O")
    await services.stop(service)
    line.requests.clear()
    await services.start(line, baudrate="auto")
    assert line.requests[0] == (3, read_registers(1, 5))  # heard at once: the saved settings went first
    assert StateStore(tmp_path / "state.json").load().line == SavedLine(38400, "O")


async def test_auto_line_settings_wait_for_a_missing_port_and_for_meters(services, tmp_path) -> None:
    await services.stop(await services.start(line_of(1)))  # known nodes 1 and 2, no settings saved yet
    line = MemoryLine([Board(1, baudrate=9600)], parity="E")
    line.unplug()
    service = await services.start(line, "locked", baudrate="auto")
    await eventually(lambda: online(service) == [], what="the known nodes served offline")
    assert service.bus.closed_reason == "cannot open memory: No such file or directory"
    line.plug()
    await eventually(lambda: online(service) == [1, 2], timeout=10, what="found and online once the port opens")
    assert (service.line.baudrate, service.line.parity) == (9600, "E")
    assert StateStore(tmp_path / "state.json").load().line == SavedLine(9600, "E")


async def test_auto_line_settings_no_meter_answers_is_a_line_down_not_a_failure(services, tmp_path) -> None:
    line = MemoryLine([Board(1, baudrate=57600)])  # a rate a BCPM's DIP switches do not offer
    service = await services.start(line, wait=False, baudrate="auto")
    await eventually(lambda: service.bus.line_down, what="the line given up for now")
    assert service.bus.closed_reason == (
        "no meter answers on memory at 19200 8N1, 19200 8E1, 19200 8O1, "
        "9600 8N1, 9600 8E1, 9600 8O1, 38400 8N1, 38400 8E1, 38400 8O1"
    )
    assert not service.ready.is_set() and not services.tasks[service].done()
    assert StateStore(tmp_path / "state.json").load().line is None
