"""Poll cycle against the wire-time floor, on the simulated line with wire time emulated.

For 2 boards (4 model-A nodes) at 19200 8N1 and at 115200 8N1, each with a 5 ms meter
turnaround: the gateway scans 1-247, then polls back to back. The simulator runs as a process
of its own (a meter is another device), at real-time priority when allowed, so its own wake-up
latency on the pty disturbs the figures as little as possible.

Then again under load (`--loaded` alone): the BACnet and SNMP faces on, 8 BACnet clients (each
keeping one ReadPropertyMultiple of 40 objects x (Present_Value, Status_Flags) in flight, to
either node) and 4 `snmpbulkwalk` loops hammering the gateway from other processes, so that the
bus thread has to keep its clock while the main loop is busy. The clients stand for other machines:
they run niced, so they do not take the gateway's share of the two cores.

Per cycle, the floor is what the line cannot go below for the same transactions: each request
frame with the 3.5-character silence that opens every RTU frame, the meter's turnaround, and
the reply frame, at the line's baud rate. `cycle_to_floor` is the cycle time over that floor
(`beyond_floor_ms_per_transaction`: the difference, per transaction);
`cycle_to_frames_and_turnarounds` leaves the silence out of the floor, so it shows the silence
as overhead too. These runs leave the background rescan off. A node that goes offline during a
run stops it with an error (its short cycles would be no figure of the clock).

The rescan runs (`rescan`) keep the shipped settings of `serial` (scan 1-247, rescan every 60 s,
poll every 1 s, 0.2 s timeout, 15 ms probes), on 3 boards at 19200 and on 16 at 115200, the last
board powered up LATE seconds after the gateway: they report how long after its power-up the
gateway polled it, and the poll rate the rescan left the boards already there (their median
cycle while the pass ran, against a run of the same boards with the rescan off). Prints one JSON
object.

    python bench/poll.py            # quiet, the rescan runs, then loaded; about 8 minutes
    python bench/poll.py --loaded   # loaded only
    python bench/poll.py --rescan   # the rescan runs only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from common import TURNAROUND, free_port, simulator
from traffic import PRESENT_VALUE, STATUS_FLAGS, bvll, invoke_id_of, read_property_multiple, routed

from gateway.app import running
from gateway.bus import LineSettings
from gateway.config import parse_config
from gateway.logging import configure_logging

BOARDS = 2
CYCLES = 5  # measured, after the start-up sweep
BACNET_CLIENTS = 8
SNMP_WALKERS = 4
ENTERPRISE = ".1.3.6.1.4.1.3833.1.30"
# The clients stand for other machines on the network, whose work is not the gateway's: they run
# at a lower priority, so that on the bench's two cores they take what the gateway leaves, as the
# simulator (another device too) takes a real-time priority.
CLIENT_NICENESS = 10
LATE = 20.0  # seconds after the gateway's start that the rescan runs' last board powers up


async def measure(baudrate: int, rescan_interval: float = 0, loaded: bool = False) -> dict[str, Any]:
    bacnet, snmp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    # Every client is 127.0.0.1: the faces' rate limits are raised out of the way, so the whole
    # load is served rather than mostly refused.
    faces = (
        {
            "bacnet": {"address": "127.0.0.1/8", "port": bacnet, "rate_limit": 1000000},
            "snmp": {"address": "127.0.0.1", "port": snmp, "rate_limit": 1000000},
        }
        if loaded
        else {"bacnet": {"enabled": False}, "snmp": {"enabled": False}}
    )
    with tempfile.TemporaryDirectory() as folder, simulator(baudrate, Path(folder), BOARDS) as port:
        config = parse_config(
            {
                "gateway": {"state_file": str(Path(folder) / "state.json")},
                "serial": {
                    "port": port,
                    "baudrate": baudrate,
                    "scan": "1-247",
                    "poll_interval": 0.1,
                    "rescan_interval": rescan_interval,
                },
                "modbus_tcp": {"enabled": False},
                **faces,
            }
        )
        started = time.monotonic()
        async with running(config) as gateway, contextlib.AsyncExitStack() as stack:
            service = gateway.nodes
            while not service.ready.is_set():
                await asyncio.sleep(0.01)
            scan_seconds = time.monotonic() - started
            if loaded:
                load = stack.enter_context(_hammering(bacnet, snmp))
            # The first cycle reads every slow block (start-up sweep); measure the steady cycles after
            # it, and under load only whole cycles with the load on.
            first = max(2, service.poller.cycles + 1)
            while service.poller.cycles < first:
                await asyncio.sleep(0.01)
            before = service.bus.stats
            while service.poller.cycles < first + CYCLES:
                await asyncio.sleep(0.05)
            cycles = list(service.poller.reports)[-CYCLES:]
            after = service.bus.stats
            plans = [node.plan for node in service.nodes.values()]
            went_offline = sum(node.health.went_offline for node in service.nodes.values())
    if went_offline:  # a lost node's cycle is short of transactions: not a figure of the clock
        raise RuntimeError(f"nodes went offline {went_offline} times during the run")
    silence = LineSettings(port, baudrate=baudrate).silence
    frames = [c.wire_time + c.transactions * TURNAROUND for c in cycles]
    floors = [f + c.transactions * silence for c, f in zip(cycles, frames)]
    ratios = [c.duration / f for c, f in zip(cycles, floors)]
    return {
        "baudrate": baudrate,
        **({"load": load.summary()} if loaded else {}),
        "framing": "8N1",
        "rescan_interval_s": rescan_interval,
        "turnaround_ms": TURNAROUND * 1000,
        "nodes": len(plans),
        "scan_1_247_seconds": round(scan_seconds, 2),
        "cycle_seconds_median": round(statistics.median(c.duration for c in cycles), 4),
        "floor_seconds_median": round(statistics.median(floors), 4),
        "cycle_to_floor_median": round(statistics.median(ratios), 3),
        "cycle_to_floor_max": round(max(ratios), 3),
        "beyond_floor_ms_per_transaction_median": round(
            statistics.median((c.duration - f) / c.transactions for c, f in zip(cycles, floors)) * 1000, 2
        ),
        "cycle_to_frames_and_turnarounds_median": round(
            statistics.median(c.duration / f for c, f in zip(cycles, frames)), 3
        ),
        # Replies that did not come in time or did not fit their request: each costs the slave's
        # allowance (`serial.timeout`), so a few of them stretch a cycle more than any jitter.
        "bus_timeouts": after.timeouts - before.timeouts,
        "bus_corrupt_replies": after.corrupt - before.corrupt,
        "transactions_per_cycle": round(statistics.mean(c.transactions for c in cycles), 1),
        "registers_read_per_cycle": round(statistics.mean(c.registers for c in cycles), 1),
        "registers_needed_per_node": len(plans[0].needed),
        "registers_read_per_node_sweep": plans[0].registers_read,
        "registers_read_twice_per_cycle": _read_twice(plans[0]),
    }


async def measure_rescan(baudrate: int, boards: int) -> dict[str, Any]:
    """The shipped serial settings, the last of `boards` powered up LATE s after the gateway; see the module."""
    late = 1 + 2 * (boards - 1)
    with_rescan = await _cycles_until_the_late_board(baudrate, boards, late, rescan=True)
    without = await _cycles_until_the_late_board(baudrate, boards - 1, late, rescan=False)
    return {
        "baudrate": baudrate,
        "boards": boards,
        "late_board": f"{late}/{late + 1}, powered up {LATE:g} s after the gateway",
        "settings": "config/gateway.toml as shipped (scan 1-247, rescan_interval 60, poll_interval 1.0)",
        "ready_seconds": with_rescan["ready_seconds"],
        "late_board_polled_after_power_up_seconds": with_rescan["late_polled"],
        "cycle_seconds_median_during_the_pass": with_rescan["cycle"],
        "cycle_seconds_median_without_rescan": without["cycle"],
        "poll_rate_kept": round(without["cycle"] / with_rescan["cycle"], 3),
        "nodes_before": f"1-{late - 1}",
    }


async def _cycles_until_the_late_board(baudrate: int, boards: int, late: int, *, rescan: bool) -> dict[str, Any]:
    """Start from nothing with the shipped serial settings; the median poll cycle of the boards there
    before the late one (rescan: until it is polled; else over as long), and when it was polled."""
    options = ("--absent", f"{late}:{LATE}", "--absent", f"{late + 1}:{LATE}") if rescan else ()
    with tempfile.TemporaryDirectory() as folder, simulator(baudrate, Path(folder), boards, *options) as port:
        powered = time.monotonic() + LATE
        config = parse_config(
            {
                "gateway": {"state_file": str(Path(folder) / "state.json")},
                "serial": {"port": port, "baudrate": baudrate, "rescan_interval": 60 if rescan else 0},
                "bacnet": {"enabled": False},
                "snmp": {"enabled": False},
                "modbus_tcp": {"enabled": False},
            }
        )
        started = time.monotonic()
        async with running(config) as gateway:
            service = gateway.nodes
            while not service.ready.is_set():
                await asyncio.sleep(0.01)
            ready = time.monotonic() - started
            polled = None
            deadline = powered + 180
            while time.monotonic() < deadline:
                nodes = [service.nodes.get(address) for address in (late, late + 1)]
                if rescan and all(node is not None and node.health.last_success for node in nodes):
                    polled = time.monotonic() - powered
                    break
                if not rescan and time.monotonic() > powered + 60:
                    break
                await asyncio.sleep(0.1)
            cycles = [report.duration for report in list(service.poller.reports)[1:]]  # after the start-up sweep
    if rescan and polled is None:
        raise RuntimeError(f"the late board was not polled within {deadline - powered:.0f} s of its power-up")
    return {
        "ready_seconds": round(ready, 2),
        "late_polled": None if polled is None else round(polled, 1),
        "cycle": round(statistics.median(cycles), 4),
    }


class _Load:
    """The hammering processes, and what they got done."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.bacnet_requests = multiprocessing.get_context("spawn").Value("q", 0)
        self.walks = 0

    def summary(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        return {
            "bacnet_clients": BACNET_CLIENTS,
            "snmp_walkers": SNMP_WALKERS,
            "bacnet_rpm_per_s": round(self.bacnet_requests.value / seconds, 1),
            "snmp_walks_per_s": round(self.walks / seconds, 2),
        }


@contextlib.contextmanager
def _hammering(bacnet: int, snmp: int) -> Any:
    load = _Load()
    stop = multiprocessing.get_context("spawn").Event()
    clients = multiprocessing.get_context("spawn").Process(
        target=_bacnet_clients, args=(bacnet, stop, load.bacnet_requests), daemon=True
    )
    clients.start()
    walk = [
        "nice",
        "-n",
        str(CLIENT_NICENESS),
        "snmpbulkwalk",
        "-v2c",
        "-c",
        "public",
        "-Cr25",
        "-t",
        "5",
        "-r",
        "0",
        "-On",
        "-Oq",
        f"127.0.0.1:{snmp}",
        ENTERPRISE,
    ]
    walkers: list[subprocess.Popen[bytes]] = []

    def keep_walking() -> None:
        for index, walker in enumerate(walkers):
            if walker.poll() is not None:
                load.walks += 1
                walkers[index] = subprocess.Popen(walk, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    walkers.extend(
        subprocess.Popen(walk, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(SNMP_WALKERS)
    )
    watcher = asyncio.get_running_loop().create_task(_every(0.05, keep_walking))
    try:
        yield load
    finally:
        watcher.cancel()
        stop.set()
        clients.join(5)
        for walker in walkers:
            walker.terminate()
            walker.wait()


async def _every(seconds: float, call: Any) -> None:
    while True:
        call()
        await asyncio.sleep(seconds)


def _bacnet_clients(port: int, stop: Any, done: Any) -> None:
    """BACNET_CLIENTS sockets, each keeping one ReadPropertyMultiple of 40 analog inputs in
    flight (a new one on each answer, or after 1 s without), to nodes 1 and 2 in turn."""
    os.nice(CLIENT_NICENESS)
    objects = [("analog-input", instance) for instance in range(1336, 1376)]
    socks = []
    for _ in range(BACNET_CLIENTS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    sent_at = dict.fromkeys(socks, 0.0)
    number = 0

    def send(sock: socket.socket) -> None:
        nonlocal number
        number += 1
        sock.sendto(
            bvll(routed(50, 1 + number % 2, read_property_multiple(number, objects, [PRESENT_VALUE, STATUS_FLAGS]))),
            ("127.0.0.1", port),
        )
        sent_at[sock] = time.monotonic()

    for sock in socks:
        send(sock)
    while not stop.is_set():
        ready, _, _ = select.select(socks, [], [], 0.1)
        for sock in ready:
            with contextlib.suppress(BlockingIOError):
                if (invoke_id_of(sock.recv(65536)) or (None,))[0] == 3:
                    done.value += 1
                send(sock)
        for sock in socks:
            if time.monotonic() - sent_at[sock] > 1.0:
                send(sock)
    for sock in socks:
        sock.close()


def _read_twice(plan: Any) -> int:
    seen = [r for read in plan.reads for r in read.registers]
    return len(seen) - len(set(seen))


def _run(line: tuple[int, float, bool]) -> dict[str, Any]:
    configure_logging("warning", "console")
    return asyncio.run(measure(*line))


def _run_rescan(line: tuple[int, int]) -> dict[str, Any]:
    configure_logging("warning", "console")
    return asyncio.run(measure_rescan(*line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loaded", action="store_true", help="only the runs under load")
    parser.add_argument("--rescan", action="store_true", help="only the rescan runs")
    args = parser.parse_args()
    result: dict[str, Any] = {"benchmark": "poll", "boards": BOARDS}
    # One process per line: two runs at once do not share a GIL, so neither disturbs the other's timing.
    with ProcessPoolExecutor(max_workers=2) as pool:
        if not (args.loaded or args.rescan):
            result["lines"] = list(pool.map(_run, ((19200, 0, False), (115200, 0, False))))
        if not args.loaded:
            result["rescan"] = list(pool.map(_run_rescan, ((19200, 3), (115200, 16))))
    if not args.rescan:
        # Under load one line at a time: the clients need the other core.
        result["lines_loaded"] = [_run((baudrate, 0, True)) for baudrate in (19200, 115200)]
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
