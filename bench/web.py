"""The web face on the board: what a page load and each live update cost the gateway, with 16 boards.

The gateway runs in a process of its own (every face on, as in service) against simulated model-A
boards (16: 32 nodes, a full segment) at 19200 baud in another. Once every node has been read, its
history of the currents is filled with a day of samples (1,440, taken from the caches as they
stand, each dated a minute after the one before), so the trends cost what they cost after a day.
From this process, one browser's requests over a kept-alive HTTPS connection, one at a time,
measured on the gateway's process: its CPU meanwhile less its idle rate just before (as
`footprint.py` measures /metrics; /proc counts 10 ms ticks, so each figure is a mean over many
requests), and the bytes of HTTP (heads and bodies) it sent:

- the panel page of a node (the HTML, the stylesheet and panel.js, as a first visit loads them);
- its live update (`/api/nodes/1/panel`): when the panel changed (200, the JSON) and when it did
  not (304 to the ETag of the last one); how often the page asks (`refresh_s`, a poll cycle)
  against the poll cycle the bus takes, and how many updates a minute that makes;
- the "All values" page and its update (`/api/nodes/1`), the node page of the first release;
- the trends page (the mains and a circuit, a day each), one chart redrawn, the day's CSV;
- the sampler: one sample of every node, on the faces' loop (the gateway's main thread, measured
  there), and the memory the history takes.

Prints one JSON object.

    python bench/web.py               # about a minute and a half
    python bench/web.py --boards 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common import cpu_seconds, free_port, simulator
from web_client import WebClient

from gateway.web.auth import hash_password

BAUDRATE = 19200
PASSWORD = "bench-password"
REQUESTS = 100  # of each cheap kind (a live update)
PAGES = 20  # of each page, chart and CSV
IDLE_SECONDS = 5.0  # how long the idle rate is measured before each figure


def _serve(raw: dict[str, Any], ready: Any, sample_ms: Any) -> None:
    """The gateway's process: serve; once every node has been read, fill the history with a day."""
    from gateway.app import running
    from gateway.config import parse_config
    from gateway.logging import configure_logging

    configure_logging("warning", "json")

    async def serve() -> None:
        async with running(parse_config(raw)) as gateway:
            nodes = gateway.nodes
            await nodes.wait_ready()
            while not (nodes.nodes and all(n.health.last_success for n in nodes.nodes.values())):
                await asyncio.sleep(0.5)
            while nodes.statistics().last_cycle is None:
                await asyncio.sleep(0.5)
            history = gateway.history
            assert history is not None
            now, spent = time.time(), 0.0
            for slot in range(history.slots):
                started = time.thread_time()
                history.sample(nodes.nodes, now - 60 * (history.slots - slot))
                spent += time.thread_time() - started
            sample_ms.value = 1000 * spent / history.slots
            ready.set()
            await asyncio.Event().wait()

    asyncio.run(serve())


async def _log_in(client: WebClient) -> tuple[str, str]:
    status, _ = await client.request("POST", "/login", {"user": "admin", "password": PASSWORD})
    assert status == 303, status
    cookie = client.headers["set-cookie"].split(";", 1)[0]
    return ("cookie", cookie)


def _idle_rate(pid: int) -> float:
    before, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(IDLE_SECONDS)
    return (cpu_seconds(pid) - before) / (time.monotonic() - wall)


async def _measure(pid: int, client: WebClient, count: int, request: Callable[[], Awaitable[int]]) -> dict[str, float]:
    """CPU (ms) the gateway spent and HTTP bytes it sent per request, over `count` of them."""
    idle = await asyncio.to_thread(_idle_rate, pid)
    received, statuses = client.received, set()
    before, wall = cpu_seconds(pid), time.monotonic()
    for _ in range(count):
        statuses.add(await request())
    spent = cpu_seconds(pid) - before - idle * (time.monotonic() - wall)
    return {
        "cpu_ms": round(1000 * spent / count, 2),
        "bytes": round((client.received - received) / count),
        "statuses": sorted(statuses),
    }


async def _run(port: int, pid: int) -> dict[str, Any]:
    client = WebClient(port)
    cookie = await _log_in(client)

    async def get(target: str, *headers: tuple[str, str]) -> int:
        status, _ = await client.request("GET", target, headers=(cookie, *headers))
        return status

    async def page_load() -> int:
        status = await get("/nodes/1")
        await get("/static/style.css")
        await get("/static/panel.js")
        return status

    await client.request("GET", "/api/nodes/1/panel", headers=(cookie,))
    etag = client.headers["etag"]

    async def changed() -> int:  # as the page asks after a poll cycle that moved a value
        return await get("/api/nodes/1/panel", ("if-none-match", '"stale"'))

    async def unchanged() -> int:
        return await get("/api/nodes/1/panel", ("if-none-match", etag))

    async def fresh_etag() -> None:
        nonlocal etag
        await get("/api/nodes/1/panel")
        etag = client.headers["etag"]

    results: dict[str, Any] = {"panel_page_load": await _measure(pid, client, PAGES, page_load)}
    results["panel_update_changed"] = await _measure(pid, client, REQUESTS, changed)
    await fresh_etag()
    results["panel_update_unchanged"] = await _measure(pid, client, REQUESTS, unchanged)
    results["values_page_load"] = await _measure(pid, client, PAGES, lambda: get("/nodes/1/values"))
    results["values_update"] = await _measure(pid, client, REQUESTS, lambda: get("/api/nodes/1"))
    results["trends_page"] = await _measure(pid, client, PAGES, lambda: get("/nodes/1/trends?channel=7"))
    results["trends_chart_redrawn"] = await _measure(
        pid, client, PAGES, lambda: get("/nodes/1/chart?channels=43,44,45,46")
    )
    results["trends_csv_of_a_day"] = await _measure(pid, client, 5, lambda: get("/nodes/1/trends.csv"))
    _, body = await client.request("GET", "/api/nodes/1/panel", headers=(cookie,))
    refresh = json.loads(body)["refresh_s"]  # after the first cycle, which reads every block
    _, metrics = await client.request("GET", "/metrics")
    history = re.search(rb"^bcpm_web_trend_history_bytes (\S+)$", metrics, re.MULTILINE)
    cycle = re.search(rb"^bcpm_poll_cycle_seconds (\S+)$", metrics, re.MULTILINE)
    await client.close()
    results["refresh_s"] = refresh
    results["poll_cycle_s"] = None if cycle is None else round(float(cycle[1]), 2)
    results["panel_updates_a_minute"] = round(60 / refresh, 1)
    results["trend_history_bytes"] = None if history is None else int(float(history[1]))
    return results


def run(boards: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name, simulator(BAUDRATE, Path(name), boards) as serial_port:
        folder, port = Path(name), free_port()
        raw = {
            "gateway": {"operating_mode": "discovery", "state_file": str(folder / "state.json")},
            "serial": {"port": serial_port, "baudrate": BAUDRATE, "scan": f"1-{2 * boards}", "probe_timeout": 0.02},
            "bacnet": {"address": "127.0.0.1/8", "port": free_port(socket.SOCK_DGRAM)},
            "snmp": {"address": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM)},
            "modbus_tcp": {"address": "127.0.0.1", "port": free_port()},
            "web": {
                "enabled": True,
                "address": "127.0.0.1",
                "port": port,
                "password_hash": hash_password(PASSWORD),
                "rate_limit": 10000,  # one client asks back to back here; a browser asks once a poll cycle
            },
        }
        context = multiprocessing.get_context("spawn")
        ready, sample_ms = context.Event(), context.Value("d", 0.0)
        process = context.Process(target=_serve, args=(raw, ready, sample_ms), daemon=True)
        process.start()
        try:
            if not ready.wait(300):
                raise RuntimeError("the gateway did not read every node within 5 minutes")
            assert process.pid is not None
            results = asyncio.run(_run(port, process.pid))
        finally:
            process.terminate()
            process.join(10)
    return {
        "benchmark": "web",
        "boards": boards,
        "nodes": 2 * boards,
        "baudrate": BAUDRATE,
        **results,
        "trend_sample_cpu_ms": round(sample_ms.value, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=16, help="simulated boards (default 16: 32 nodes)")
    json.dump(run(parser.parse_args().boards), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
