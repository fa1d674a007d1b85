"""Poll cycle against the wire-time floor, on the simulated line with wire time emulated.

For 2 boards (4 model-A nodes) at 19200 8N1 and at 115200 8N1, each with a 5 ms meter
turnaround: the gateway scans 1-247, then polls back to back. The simulator runs as a process
of its own (a meter is another device), at real-time priority when allowed, so its own wake-up
latency on the pty disturbs the figures as little as possible.

Per cycle, the floor is what the line cannot go below for the same transactions: each request
frame with the 3.5-character silence that opens every RTU frame, the meter's turnaround, and
the reply frame, at the line's baud rate. `cycle_to_floor` is the cycle time over that floor;
`cycle_to_frames_and_turnarounds` leaves the silence out of the floor, so it shows the silence
as overhead too. These runs leave the background rescan off; a third run at 19200 keeps it on
(`serial.rescan_interval` 60 s, probing the 243 unused addresses meanwhile) and reports the
share of the poll rate it leaves. Prints one JSON object.

    python bench/poll.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from common import TURNAROUND, simulator

from gateway.app import running
from gateway.bus import LineSettings
from gateway.config import parse_config
from gateway.logging import configure_logging

BOARDS = 2
CYCLES = 5  # measured, after the start-up sweep


async def measure(baudrate: int, rescan_interval: float = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, simulator(baudrate, Path(folder), BOARDS) as port:
        config = parse_config({
            "gateway": {"state_file": str(Path(folder) / "state.json")},
            "serial": {"port": port, "baudrate": baudrate, "scan": "1-247", "poll_interval": 0.1,
                       "rescan_interval": rescan_interval},
            "bacnet": {"enabled": False}, "snmp": {"enabled": False}, "modbus_tcp": {"enabled": False},
        })
        started = time.monotonic()
        async with running(config) as gateway:
            service = gateway.nodes
            while not service.ready.is_set():
                await asyncio.sleep(0.01)
            scan_seconds = time.monotonic() - started
            # The first cycle reads every slow block (start-up sweep); measure the steady cycles after it.
            while service.poller.cycles < 2 + CYCLES:
                await asyncio.sleep(0.05)
            cycles = list(service.poller.reports)[2:2 + CYCLES]
            plans = [node.plan for node in service.nodes.values()]
    silence = LineSettings(port, baudrate=baudrate).silence
    frames = [c.wire_time + c.transactions * TURNAROUND for c in cycles]
    floors = [f + c.transactions * silence for c, f in zip(cycles, frames)]
    ratios = [c.duration / f for c, f in zip(cycles, floors)]
    return {
        "baudrate": baudrate,
        "framing": "8N1",
        "rescan_interval_s": rescan_interval,
        "turnaround_ms": TURNAROUND * 1000,
        "nodes": len(plans),
        "scan_1_247_seconds": round(scan_seconds, 2),
        "cycle_seconds_median": round(statistics.median(c.duration for c in cycles), 4),
        "floor_seconds_median": round(statistics.median(floors), 4),
        "cycle_to_floor_median": round(statistics.median(ratios), 3),
        "cycle_to_floor_max": round(max(ratios), 3),
        "cycle_to_frames_and_turnarounds_median": round(
            statistics.median(c.duration / f for c, f in zip(cycles, frames)), 3),
        "transactions_per_cycle": round(statistics.mean(c.transactions for c in cycles), 1),
        "registers_read_per_cycle": round(statistics.mean(c.registers for c in cycles), 1),
        "registers_needed_per_node": len(plans[0].needed),
        "registers_read_per_node_sweep": plans[0].registers_read,
        "registers_read_twice_per_cycle": _read_twice(plans[0]),
    }


def _read_twice(plan: Any) -> int:
    seen = [r for read in plan.reads for r in read.registers]
    return len(seen) - len(set(seen))


def _run(line: tuple[int, float]) -> dict[str, Any]:
    configure_logging("warning", "console")
    return asyncio.run(measure(*line))


def main() -> None:
    # One process per line: the two runs do not share a GIL, so neither disturbs the other's timing.
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_run, ((19200, 0), (115200, 0))))
        rescanning = pool.submit(_run, (19200, 60)).result()
    kept = results[0]["cycle_seconds_median"] / rescanning["cycle_seconds_median"]
    rescan = {"baudrate": 19200, "rescan_interval_s": 60, "cycle_seconds_median": rescanning["cycle_seconds_median"],
              "poll_rate_kept": round(kept, 3)}
    json.dump({"benchmark": "poll", "boards": BOARDS, "lines": results, "background_rescan": rescan}, sys.stdout,
              indent=2)
    print()


if __name__ == "__main__":
    main()
