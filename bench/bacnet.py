"""BACnet/IP clients against the gateway: ReadPropertyMultiple throughput and latency, COV latency.

One simulated model-A board (nodes 1 and 2, ~1830 objects each) at 115200 baud behind the
gateway, BACnet/IP on a free loopback port. The clients are bacpypes3 applications in a separate
process, so they do not share the gateway's interpreter; each keeps one request outstanding.

- rpm: every object of node 1 read by ReadPropertyMultiple (Present_Value and Status_Flags), in
  requests of `OBJECTS_PER_RPM` objects (what a BMS sends; the answer fits one BACnet/IP frame),
  by 1 and by 8 clients for a few seconds each: requests per second, latency p50/p99, and the
  time one client takes to read the whole node, twice in a row. The gateway builds an object when
  a request first names it, so the first sweep of the first run also builds the node's objects.
- cov: a confirmed COV subscription to a branch current; the simulator's current is changed by
  more than the increment and the time until the notification arrives is measured (it includes
  waiting for the next poll of that register: `poll_interval` is given with it).
- startup: seconds from "nodes known" to the BACnet devices being served.

    python bench/bacnet.py
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bacpypes3.primitivedata import ObjectIdentifier

sys.path.insert(0, str(Path(__file__).parent.parent))
from common import report  # noqa: E402

from gateway.app import running  # noqa: E402
from gateway.bacnet import BacnetFace, speedups  # noqa: E402
from gateway.bacnet.objects import object_specs  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.pointmap import load  # noqa: E402
from gateway.sim import Board, SimulatedLine  # noqa: E402
from tests.bacnet.client import Client, free_udp_port  # noqa: E402

BAUDRATE = 115200
POLL_INTERVAL = 0.2
CLIENTS = (1, 8)
SECONDS = 5.0
OBJECTS_PER_RPM = 40
COV_SAMPLES = 15
NODE = 1
CURRENT = load().find("current", group="branch", channel=12)


def rpm_requests() -> list[list[Any]]:
    """The RPM requests that read every object of a node once."""
    specs = object_specs(load(), "A")
    batches = []
    for start in range(0, len(specs), OBJECTS_PER_RPM):
        request: list[Any] = []
        for spec in specs[start:start + OBJECTS_PER_RPM]:
            request += [ObjectIdentifier((spec.object_type, spec.instance)), ["present-value", "status-flags"]]
        batches.append(request)
    return batches


def _load(port: int, clients: int, seconds: float, results: multiprocessing.Queue) -> None:
    speedups.install()  # the clients are bacpypes3 too: keep them from being the bottleneck
    results.put(asyncio.run(_clients(port, clients, seconds)))


async def _clients(port: int, count: int, seconds: float) -> dict[str, Any]:
    clients = [Client(port, instance=4100000 + i) for i in range(count)]
    for client in clients:
        await client.find_router()
    batches = rpm_requests()
    sweeps = []
    for _ in range(2):  # one client reads the whole node, twice
        sweep_started = time.perf_counter()
        for request in batches:
            await clients[0].app.read_property_multiple(clients[0].node(NODE), request)
        sweeps.append(round(time.perf_counter() - sweep_started, 3))
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def run(client: Client, offset: int) -> None:
        nonlocal errors
        index = offset
        while time.monotonic() < deadline:
            request = batches[index % len(batches)]
            index += 1
            started = time.perf_counter()
            try:
                await client.app.read_property_multiple(client.node(NODE), request)
            except Exception:  # counted, not fatal: the figure says how many failed
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(run(client, i * 7) for i, client in enumerate(clients)))
    for client in clients:
        client.close()
    return {"latencies": latencies, "errors": errors, "sweeps": sweeps, "requests_per_sweep": len(batches)}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


async def _rpm_runs(port: int) -> list[dict[str, Any]]:
    runs = []
    for clients in CLIENTS:
        results: multiprocessing.Queue = multiprocessing.Queue()
        worker = multiprocessing.Process(target=_load, args=(port, clients, SECONDS, results))
        worker.start()
        while worker.is_alive() and results.empty():
            await asyncio.sleep(0.05)
        outcome = results.get()
        worker.join()
        latencies = outcome["latencies"]
        runs.append({
            "clients": clients,
            "requests_per_second": round(len(latencies) / SECONDS, 1),
            "objects_per_second": round(len(latencies) * OBJECTS_PER_RPM / SECONDS),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
            "latency_ms_p99": round(_percentile(latencies, 0.99) * 1000, 2),
            "errors": outcome["errors"],
            "whole_node_seconds": outcome["sweeps"],
            "requests_per_whole_node": outcome["requests_per_sweep"],
        })
    return runs


async def _cov_latency(port: int, line: SimulatedLine) -> dict[str, Any]:
    client = Client(port, instance=4190000)
    try:
        await client.find_router()
        await client.subscribe(client.node(NODE), f"analog-input,{CURRENT.register}", confirmed=True, lifetime=300)
        await client.notification()
        latencies = []
        amps = 10.0
        for _ in range(COV_SAMPLES):
            await asyncio.sleep(random.uniform(0, POLL_INTERVAL))  # changes fall anywhere in the cycle
            amps = 10.0 if amps > 10.0 else 20.0
            started = time.perf_counter()
            line.panel(NODE).set_current(CURRENT.channel, amps)
            await client.notification_where(lambda values, wanted=amps: values["present-value"] == wanted)
            latencies.append(time.perf_counter() - started)
        return {"samples": COV_SAMPLES, "poll_interval_s": POLL_INTERVAL,
                "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
                "latency_ms_max": round(max(latencies) * 1000, 1)}
    finally:
        client.close()


async def measure() -> dict[str, Any]:
    line = SimulatedLine([Board(1, model="A", baudrate=BAUDRATE)], baudrate=BAUDRATE, turnaround=0.001,
                         emulate_wire=True, seed=1)
    line.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            port = free_udp_port()
            config = parse_config({
                "gateway": {"state_file": str(Path(folder) / "state.json")},
                "serial": {"port": line.path, "baudrate": BAUDRATE, "scan": "1-2", "poll_interval": POLL_INTERVAL},
                "bacnet": {"address": "127.0.0.1/8", "port": port},
                "snmp": {"enabled": False}, "modbus_tcp": {"enabled": False},
            })
            async with running(config) as gateway:
                await gateway.nodes.wait_ready()
                ready = time.monotonic()
                face = next(f for f in gateway.faces if isinstance(f, BacnetFace))
                while face.network is None:
                    await asyncio.sleep(0.01)
                startup = time.monotonic() - ready
                while gateway.nodes.poller.cycles < 3:
                    await asyncio.sleep(0.05)
                rpm = await _rpm_runs(port)
                cov = await _cov_latency(port, line)
                objects = len(object_specs(load(), "A"))
    finally:
        line.stop()
    return {"benchmark": "bacnet", "baudrate": BAUDRATE, "nodes": 2, "objects_per_node": objects,
            "startup_s": round(startup, 2), "seconds_per_run": SECONDS,
            "rpm_request": f"{OBJECTS_PER_RPM} objects x (present-value, status-flags), routed to node {NODE}",
            "rpm": rpm, "cov": cov}


def main() -> None:
    report(measure())


if __name__ == "__main__":
    main()
