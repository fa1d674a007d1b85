"""BACnet/IP clients against the gateway: ReadPropertyMultiple throughput and latency, COV latency.

One simulated model-A board (nodes 1 and 2, ~1830 objects each) at 115200 baud behind the
gateway, BACnet/IP on a free loopback port. The clients are bacpypes3 applications in a separate
process, so they do not share the gateway's interpreter; each keeps one request outstanding.

- rpm: every object of node 1 read by ReadPropertyMultiple (Present_Value and Status_Flags), in
  requests of `OBJECTS_PER_RPM` objects (what a BMS sends; the answer fits one BACnet/IP frame),
  by 1 and by 8 clients for a few seconds each: requests per second, latency p50/p99, and the
  time one client takes to read the whole node, twice in a row. The gateway builds an object when
  a request first names it, so the first sweep of the first run also builds the node's objects.
- preencoded: the same RPM (and an RPM of one object) from a client that builds each request's
  bytes once with bacpypes3's encoders and then only changes the invoke ID: `IN_FLIGHT` requests
  outstanding on one socket, replies matched by invoke ID, so a request costs the client
  microseconds and the figure is the gateway's. Requests per second, properties (object x
  property) per second, latency p50/p99, and replies that were not a Complex-ACK; first through
  the full stack (`fast_reads` off), then from encodings, in the same run.
- attacks: requests of the issue's hostile client, one a second, alternating nodes, while the
  pre-encoded client reads: a segmented RPM of every object of a node x `all` (its answer cannot
  fit: aborted as soon as that is known, the objects read in slices), the same x (Present_Value,
  Status_Flags), and one unsegmented 63 KB RPM (refused before it is read). The lag of the
  gateway's event loop (how late a 10 ms timer fires: worst and p99), the legitimate requests
  served and their p99, and what the limits refused.
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
import select
import socket
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
from gateway.bacnet import BacnetFace  # noqa: E402
from gateway.bacnet.network import BacnetNetwork  # noqa: E402
from gateway.bacnet.objects import object_specs  # noqa: E402
from gateway.bacnet.reads import TOO_BIG  # noqa: E402
from gateway.bacnet.stack import speedups  # noqa: E402
from gateway.config import BacnetSettings, parse_config  # noqa: E402
from gateway.pointmap import load  # noqa: E402
from gateway.sim import Board, SimulatedLine  # noqa: E402
from tests.bacnet.client import Client, free_udp_port  # noqa: E402
from tests.bacnet.raw import COMPLEX_ACK, apdu_offset, read_property_multiple, routed, segmented  # noqa: E402

BAUDRATE = 115200
POLL_INTERVAL = 0.2
CLIENTS = (1, 8)
SECONDS = 5.0
OBJECTS_PER_RPM = 40
IN_FLIGHT = 8
PROPERTIES = ("present-value", "status-flags")
COV_SAMPLES = 15
NODE = 1
CURRENT = load().find("current", group="branch", channel=12)


def rpm_requests() -> list[list[Any]]:
    """The RPM requests that read every object of a node once."""
    specs = object_specs(load(), "A")
    batches = []
    for start in range(0, len(specs), OBJECTS_PER_RPM):
        request: list[Any] = []
        for spec in specs[start : start + OBJECTS_PER_RPM]:
            request += [ObjectIdentifier((spec.object_type, spec.instance)), ["present-value", "status-flags"]]
        batches.append(request)
    return batches


def _preencoded(port: int, network: int, objects: int, seconds: float, results: multiprocessing.Queue) -> None:
    """Keep IN_FLIGHT requests of `objects` objects outstanding for `seconds` (runs in its own
    process): the node's measurements and settings (its Analog Inputs and Values)."""
    specs = [spec for spec in object_specs(load(), "A") if spec.object_type.startswith("analog")]
    requests = [
        bytearray(
            routed(
                network,
                NODE,
                read_property_multiple(
                    [((spec.object_type, spec.instance), PROPERTIES) for spec in specs[start : start + objects]]
                ),
            )
        )
        for start in range(0, len(specs) - objects + 1, objects)
    ]
    at = apdu_offset(requests[0]) + 2  # type, max segments/APDU, invoke ID
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    target = ("127.0.0.1", port)
    sent: dict[int, float] = {}
    latencies: list[float] = []
    failures = lost = 0
    counter = 0

    def send() -> None:
        nonlocal counter
        invoke = counter % 256
        request = requests[counter % len(requests)]
        counter += 1
        request[at] = invoke
        sent[invoke] = time.perf_counter()
        sock.sendto(request, target)

    for _ in range(IN_FLIGHT):
        send()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 1.0)
        if not ready:  # a reply lost: start that many again
            lost += len(sent)
            sent.clear()
            for _ in range(IN_FLIGHT):
                send()
            continue
        reply = sock.recv(2048)
        apdu = apdu_offset(reply)
        invoke, ack = reply[apdu + 1], reply[apdu] == COMPLEX_ACK
        started = sent.pop(invoke, None)
        if started is None:
            continue
        latencies.append(time.perf_counter() - started)
        failures += not ack
        send()
    sock.close()
    results.put({"latencies": latencies, "failures": failures, "lost": lost})


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


async def _in_process(target: Any, *args: Any) -> dict[str, Any]:
    """What `target(*args, results)` puts in its queue, run in a process of its own; the event
    loop is never blocked waiting for it."""
    results: multiprocessing.Queue = multiprocessing.Queue()
    worker = multiprocessing.Process(target=target, args=(*args, results))
    worker.start()
    while worker.is_alive() and results.empty():
        await asyncio.sleep(0.05)
    outcome = results.get()
    while worker.is_alive():
        await asyncio.sleep(0.05)
    return outcome


async def _rpm_runs(port: int) -> list[dict[str, Any]]:
    runs = []
    for clients in CLIENTS:
        outcome = await _in_process(_load, port, clients, SECONDS)
        latencies = outcome["latencies"]
        runs.append(
            {
                "clients": clients,
                "requests_per_second": round(len(latencies) / SECONDS, 1),
                "objects_per_second": round(len(latencies) * OBJECTS_PER_RPM / SECONDS),
                "latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
                "latency_ms_p99": round(_percentile(latencies, 0.99) * 1000, 2),
                "errors": outcome["errors"],
                "whole_node_seconds": outcome["sweeps"],
                "requests_per_whole_node": outcome["requests_per_sweep"],
            }
        )
    return runs


async def _preencoded_runs(port: int, network: int, fast_reads: bool) -> list[dict[str, Any]]:
    runs = []
    for objects in (OBJECTS_PER_RPM, 1):
        outcome = await _in_process(_preencoded, port, network, objects, SECONDS)
        latencies = outcome["latencies"]
        runs.append(
            {
                "fast_reads": fast_reads,
                "objects": objects,
                "properties": len(PROPERTIES),
                "in_flight": IN_FLIGHT,
                "requests_per_second": round(len(latencies) / SECONDS, 1),
                "properties_per_second": round(len(latencies) * objects * len(PROPERTIES) / SECONDS),
                "latency_ms_p50": round(statistics.median(latencies) * 1000, 2),
                "latency_ms_p99": round(_percentile(latencies, 0.99) * 1000, 2),
                "not_complex_ack": outcome["failures"],
                "lost": outcome["lost"],
            }
        )
    return runs


ATTACKS = (
    "none (the baseline of this machine now)",
    "segmented RPM at the size limit, objects x all",
    "segmented RPM at the size limit, objects x (present-value, status-flags)",
    "segmented RPM beyond the size limit, every object x all",
    "unsegmented 63 KB RPM",
)
LAG_TICK = 0.01
SEGMENT = 1400  # service data per segment the attacker sends


def _attack_requests(network: int, node: int, attack: str, max_request: int) -> list[bytes]:
    """The datagrams of one hostile request to `node`."""
    everything = [(spec.object_type, spec.instance) for spec in object_specs(load(), "A")]
    if attack == ATTACKS[0]:
        return []
    if attack == ATTACKS[4]:
        request = read_property_multiple([(objid, PROPERTIES) for objid in everything] * 3)
        return [routed(network, node, request)[:65000]]
    properties = ["all"] if attack != ATTACKS[2] else list(PROPERTIES)
    count = len(everything)
    while (
        attack != ATTACKS[3]
        and len(
            segmented(
                network,
                node,
                read_property_multiple([(objid, properties) for objid in everything[:count]]),
                size=SEGMENT,
            )
        )
        * SEGMENT
        > max_request
    ):
        count -= 25
    return segmented(
        network, node, read_property_multiple([(objid, properties) for objid in everything[:count]]), size=SEGMENT
    )


def _attacker(port: int, network: int, attack: str, max_request: int, seconds: float) -> None:
    """One hostile request a second, alternating nodes 1 and 2 (runs in its own process)."""
    datagrams = {node: _attack_requests(network, node, attack, max_request) for node in (1, 2)}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        for datagram in datagrams[1 + sent % 2]:
            sock.sendto(datagram, ("127.0.0.1", port))
        sent += 1
        time.sleep(1.0)
    sock.close()


async def _lags(stop: asyncio.Event) -> list[float]:
    """How late a 10 ms timer of the gateway's event loop fires, every time, until `stop`."""
    lags = []
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(LAG_TICK)
        lags.append(time.perf_counter() - started - LAG_TICK)
    return lags


async def _attack_runs(port: int, settings: BacnetSettings, network: BacnetNetwork) -> list[dict[str, Any]]:
    runs = []
    limits = network.fast_path.limits
    for attack in ATTACKS:
        refused_before, too_big_before = dict(limits.refused), TOO_BIG.dropped
        attacker = multiprocessing.Process(
            target=_attacker, args=(port, settings.network, attack, limits.max_request, SECONDS)
        )
        attacker.start()
        stop = asyncio.Event()
        lag = asyncio.ensure_future(_lags(stop))
        outcome = await _in_process(_preencoded, port, settings.network, OBJECTS_PER_RPM, SECONDS)
        stop.set()
        lags = await lag
        while attacker.is_alive():  # never block the loop on a join
            await asyncio.sleep(0.05)
        latencies = outcome["latencies"]
        runs.append(
            {
                "attack": attack,
                "loop_lag_ms_max": round(max(lags) * 1000, 1),
                "loop_lag_ms_p99": round(_percentile(lags, 0.99) * 1000, 1),
                "legitimate_requests_per_second": round(len(latencies) / SECONDS, 1),
                "legitimate_latency_ms_p99": round(_percentile(latencies, 0.99) * 1000, 2),
                "legitimate_lost": outcome["lost"],
                "refused_at_entry": {
                    reason: count - refused_before.get(reason, 0) for reason, count in limits.refused.items()
                },
                "answers_aborted": TOO_BIG.dropped - too_big_before,
            }
        )
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
        return {
            "samples": COV_SAMPLES,
            "poll_interval_s": POLL_INTERVAL,
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
            "latency_ms_max": round(max(latencies) * 1000, 1),
        }
    finally:
        client.close()


async def measure() -> dict[str, Any]:
    line = SimulatedLine(
        [Board(1, model="A", baudrate=BAUDRATE)], baudrate=BAUDRATE, turnaround=0.001, emulate_wire=True, seed=1
    )
    line.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            port = free_udp_port()
            config = parse_config(
                {
                    "gateway": {"state_file": str(Path(folder) / "state.json")},
                    "serial": {"port": line.path, "baudrate": BAUDRATE, "scan": "1-2", "poll_interval": POLL_INTERVAL},
                    # Every client of the bench is 127.0.0.1: bacnet.rate_limit raised out of the way, so
                    # the figure is the gateway's work per request, not the per-source share.
                    "bacnet": {"address": "127.0.0.1/8", "port": port, "rate_limit": 1000000},
                    "snmp": {"enabled": False},
                    "modbus_tcp": {"enabled": False},
                }
            )
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
                preencoded = []
                for fast_reads in (False, True):  # the full stack, then the fast path, in one run
                    face.network.set_fast_reads(fast_reads)
                    preencoded += await _preencoded_runs(port, config.bacnet.network, fast_reads)
                attacks = await _attack_runs(port, config.bacnet, face.network)
                cov = await _cov_latency(port, line)
                objects = len(object_specs(load(), "A"))
    finally:
        line.stop()
    return {
        "benchmark": "bacnet",
        "baudrate": BAUDRATE,
        "nodes": 2,
        "objects_per_node": objects,
        "startup_s": round(startup, 2),
        "seconds_per_run": SECONDS,
        "rpm_request": f"{OBJECTS_PER_RPM} objects x (present-value, status-flags), routed to node {NODE}",
        "rpm": rpm,
        "preencoded": preencoded,
        "attacks": attacks,
        "cov": cov,
    }


def main() -> None:
    report(measure())


if __name__ == "__main__":
    main()
