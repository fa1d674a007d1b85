"""The gateway on a small board: a CPU quota stands for a slower core; does the line keep its clock?

The gateway (`bcpm-gateway run`, the shipped settings with only paths, loopback addresses and
free ports changed) runs in a cgroup of its own with a CPU quota (cgroup v2 `cpu.max` or v1
`cpu.cfs_quota_us`, period 10 ms), at 100 %, 25 % and 12 % of one core. The simulated boards
(a process at real-time priority, `--load datacenter` values), the clients and this bench run
outside it. Modbus TCP reads are served from the cache (`cache_max_age` raised): read through to
the line they would take turns with polling, which is the line's choice, not the CPU's. For 16
boards at 115200 baud and 2 boards at 19200 baud, each quota is measured
quiet and under a saturating face load (BACnet ReadPropertyMultiple of 10 objects, SNMP GETBULK
of 25 repetitions, Modbus TCP reads of 42 registers, all at once, several in flight each, from a
niced process whose requests are encoded once). Over a 40 s window it reports line transactions
a second (what the simulator heard) against the quiet run at the same quota, the poll cycle, each
face's answers a second and p50/p99 and the requests left unanswered within 2 s (shed), the
gateway's CPU per transaction and its resident memory. Needs root and a cgroup CPU controller;
without them it says so and stops. Prints one JSON object.

    python bench/smallboard.py                          # everything, about 14 minutes
    python bench/smallboard.py --boards 16 --quota 12   # one line, one quota
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from common import free_port, resident_kib
from footprint import cpu_seconds
from traffic import (
    PRESENT_VALUE,
    STATUS_FLAGS,
    bvll,
    invoke_id_of,
    modbus_read,
    read_property_multiple,
    routed,
    snmp_message,
    snmp_request_id,
)

from gateway.sim import Board, SimulatedLine
from gateway.sim.load import load_named

ROOT = Path(__file__).resolve().parent.parent
PERIOD_US = 10_000
WINDOW = 40.0  # holds at least one status line (every 30 s), which gives the poll cycle
UNANSWERED = 2.0  # seconds after which a request counts as shed
CLIENT_NICENESS = 10
LINES = {16: 115200, 2: 19200}  # boards: baud rate
QUOTAS = (100, 25, 12)  # percent of one core
IN_FLIGHT = {"bacnet": 4, "snmp": 2, "modbus_tcp": 4}  # requests each face has outstanding under load
ENTERPRISE_BRANCH_INPUTS = (1, 3, 6, 1, 4, 1, 3833, 1, 30, 1, 5)


class NoCgroup(Exception):
    pass


@contextlib.contextmanager
def cpu_cap(percent: int) -> Iterator[Path]:
    """A cgroup whose CPU is `percent` % of one core (period 10 ms); yields its cgroup.procs file."""
    name = f"bcpm-smallboard-{os.getpid()}"
    v2 = next((p for p in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")) if _v2_has_cpu(p)), None)
    if v2 is not None:
        group = v2 / name
        group.mkdir()
        (group / "cpu.max").write_text(f"{PERIOD_US * percent // 100} {PERIOD_US}")
    elif Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists():
        group = Path("/sys/fs/cgroup/cpu") / name
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(PERIOD_US * percent // 100))
    else:
        raise NoCgroup("no cgroup CPU controller here (neither v2 cpu.max nor v1 cpu.cfs_quota_us)")
    try:
        yield group / "cgroup.procs"
    finally:
        for pid in filter(None, (group / "cgroup.procs").read_text().split()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        for _ in range(50):
            with contextlib.suppress(OSError):
                group.rmdir()
                break
            time.sleep(0.1)


def _v2_has_cpu(root: Path) -> bool:
    try:
        return "cpu" in (root / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def _simulate(link: str, boards: int, baudrate: int, heard: Any, stop: Any) -> None:
    """The boards, at real-time priority when allowed (a meter is another device); `heard` counts requests."""
    with contextlib.suppress(PermissionError, OSError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
    load = load_named("datacenter", 0)
    simulated = [Board(1 + 2 * i, baudrate=baudrate, load=load) for i in range(boards)]
    with SimulatedLine(simulated, baudrate=baudrate, turnaround=0.005, link=link) as line:
        while not stop.wait(0.2):
            heard.value = line.stats.requests


def _config(folder: Path, link: str, baudrate: int, ports: dict[str, int]) -> Path:
    """config/gateway.toml with only what a test host must change, and the line's baud rate."""
    text = (ROOT / "config" / "gateway.toml").read_text()
    section = ""
    lines = []
    wanted = {
        ("gateway", "state_file"): json.dumps(str(folder / "state.json")),
        ("serial", "port"): json.dumps(link),
        ("serial", "baudrate"): str(baudrate),
        ("bacnet", "address"): '"127.0.0.1/8"',
        ("bacnet", "port"): str(ports["bacnet"]),
        ("bacnet", "bdt_file"): json.dumps(str(folder / "bdt.ini")),
        ("snmp", "address"): '"127.0.0.1"',
        ("snmp", "port"): str(ports["snmp"]),
        ("modbus_tcp", "address"): '"127.0.0.1"',
        ("modbus_tcp", "port"): str(ports["modbus_tcp"]),
        # Modbus TCP reads from the cache however old (as a site whose masters poll slower than the
        # line): read through to the line, they would halve polling by design (they take turns).
        ("modbus_tcp", "cache_max_age"): "3600",
    }
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        key = line.split(" = ", 1)[0]
        if (section, key) in wanted:
            line = f"{key} = {wanted[section, key]}"
        lines.append(line)
    config = folder / "gateway.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _status_lines(log: Path, since: float) -> list[dict[str, Any]]:
    """The status lines logged after wall-clock time `since`."""
    lines = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            if entry["event"] == "status" and _stamp(entry["timestamp"]) >= since:
                lines.append(entry)
    return lines


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def measure(boards: int, percent: int, loaded: bool) -> dict[str, Any]:
    baudrate = LINES[boards]
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as name, cpu_cap(percent) as procs:
        folder = Path(name)
        link = str(folder / "ttyBCPM")
        heard, stop = context.Value("q", 0), context.Event()
        simulator = context.Process(target=_simulate, args=(link, boards, baudrate, heard, stop), daemon=True)
        simulator.start()
        while not Path(link).exists():
            time.sleep(0.05)
        ports = {
            "bacnet": free_port(socket.SOCK_DGRAM),
            "snmp": free_port(socket.SOCK_DGRAM),
            "modbus_tcp": free_port(),
        }
        config = _config(folder, link, baudrate, ports)
        log = folder / "gateway.log"
        with log.open("wb") as output:
            gateway = subprocess.Popen(
                ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", sys.executable, "-m", "gateway", "run"]
                + ["--config", str(config)],
                stderr=output,
            )
        try:
            _wait_polled(log, 2 * boards)
            _wait_cycled(log)  # past the first cycle, which reads every slow block
            load = _start_load(ports, boards) if loaded else None
            if load is not None:
                time.sleep(3)  # the load at full strength
            started_wall, started = time.time(), time.monotonic()
            heard_before, cpu_before = heard.value, cpu_seconds(gateway.pid)
            time.sleep(WINDOW)
            seconds = time.monotonic() - started
            transactions = heard.value - heard_before
            cpu = cpu_seconds(gateway.pid) - cpu_before
            rss = resident_kib(gateway.pid) / 1024
            faces = _stop_load(load) if load is not None else None
            time.sleep(0.5)
            status = _status_lines(log, started_wall)
        finally:
            gateway.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.wait(15)
            stop.set()
            simulator.join(10)
    return {
        "boards": boards,
        "baudrate": baudrate,
        "quota_percent_of_a_core": percent,
        "loaded": loaded,
        "transactions_per_s": round(transactions / seconds, 1),
        "poll_cycle_seconds": statistics.median(cycles)
        if (cycles := [e["cycle_seconds"] for e in status if e["cycle_seconds"]])
        else None,
        "cpu_ms_per_transaction": round(cpu / transactions * 1000, 2) if transactions else None,
        "cpu_share_of_a_core": round(cpu / seconds, 3),
        "resident_mb": round(rss, 1),
        **({"faces": faces} if faces is not None else {}),
        # The gateway's own count, since its start: datagrams its BACnet and SNMP sockets dropped
        # while the faces were held back, and how long they were held back.
        **({"gateway_shed": _shed(status[-1]["cpu"], ports)} if status else {}),
    }


def _shed(cpu: dict[str, Any], ports: dict[str, int]) -> dict[str, Any]:
    dropped = cpu["datagrams_dropped"]
    return {
        "faces_held_back_s": cpu.get("faces_held_back_s"),
        **{f"{face}_datagrams_dropped": dropped.get(str(ports[face]), 0) for face in ("bacnet", "snmp")},
    }


def _wait_cycled(log: Path, timeout: float = 300.0) -> None:
    """Until a status line gives a poll cycle: the first one, which reads every block, is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(entry["cycle_seconds"] for entry in _status_lines(log, 0.0)):
            return
        time.sleep(1.0)
    raise RuntimeError(f"no poll cycle done within {timeout:.0f} s")


def _wait_polled(log: Path, nodes: int, timeout: float = 180.0) -> None:
    """Until the gateway logged that its nodes are ready (a first start: after the scan)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if '"nodes ready"' in log.read_text():
            return
        time.sleep(0.2)
    raise RuntimeError(f"the gateway did not find its {nodes} nodes: {log.read_text()[-2000:]}")


# --- the load: one niced process, requests encoded once, several in flight per face ---------------


def _start_load(ports: dict[str, int], boards: int) -> tuple[Any, Any, Any]:
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    process = context.Process(target=_load, args=(ports, 2 * boards, stop, results), daemon=True)
    process.start()
    return process, stop, results


def _stop_load(load: tuple[Any, Any, Any]) -> dict[str, Any]:
    process, stop, results = load
    stop.set()
    figures = results.get(timeout=30)
    process.join(10)
    return figures


def _load(ports: dict[str, int], nodes: int, stop: Any, results: Any) -> None:
    os.nice(CLIENT_NICENESS)
    results.put(asyncio.run(_clients(ports, nodes, stop)))


async def _clients(ports: dict[str, int], nodes: int, stop: Any) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {face: [] for face in IN_FLIGHT}
    shed = dict.fromkeys(IN_FLIGHT, 0)
    started = time.monotonic()
    objects = [("analog-input", instance) for instance in range(1336, 1346)]
    rpm = [PRESENT_VALUE, STATUS_FLAGS]
    bacnet = [bvll(routed(50, 1 + n % nodes, read_property_multiple(n, objects, rpm))) for n in range(256)]
    snmp = [snmp_message("getbulk", ENTERPRISE_BRANCH_INPUTS, "public", n, repetitions=25) for n in range(256)]
    modbus = [modbus_read(n, 1 + n % nodes, 1336, 42) for n in range(256)]

    async def datagrams(face: str, port: int, requests: list[bytes], key: Any) -> None:
        loop = asyncio.get_running_loop()
        waiting: dict[int, asyncio.Future[None]] = {}

        class Answers(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                future = waiting.pop(key(data), None)
                if future is not None and not future.done():
                    future.set_result(None)

        transport, _ = await loop.create_datagram_endpoint(Answers, local_addr=("127.0.0.1", 0))

        async def one(slot: int) -> None:
            n = slot
            while not stop.is_set():
                request = requests[n % len(requests)]
                waiting[n % len(requests)] = future = loop.create_future()
                sent = time.monotonic()
                transport.sendto(request, ("127.0.0.1", port))
                try:
                    await asyncio.wait_for(future, UNANSWERED)
                    latencies[face].append(time.monotonic() - sent)
                except TimeoutError:
                    shed[face] += 1
                n += IN_FLIGHT[face]

        await asyncio.gather(*(one(slot) for slot in range(IN_FLIGHT[face])))
        transport.close()

    async def masters() -> None:
        async def one(slot: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", ports["modbus_tcp"])
            n = slot
            while not stop.is_set():
                sent = time.monotonic()
                writer.write(modbus[n % len(modbus)])
                try:
                    head = await asyncio.wait_for(reader.readexactly(7), UNANSWERED)
                    await reader.readexactly(struct.unpack(">H", head[4:6])[0] - 1)
                    latencies["modbus_tcp"].append(time.monotonic() - sent)
                except TimeoutError:
                    shed["modbus_tcp"] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", ports["modbus_tcp"])
                n += IN_FLIGHT["modbus_tcp"]
            writer.close()

        await asyncio.gather(*(one(slot) for slot in range(IN_FLIGHT["modbus_tcp"])))

    await asyncio.gather(
        datagrams("bacnet", ports["bacnet"], bacnet, _bacnet_invoke),
        datagrams("snmp", ports["snmp"], snmp, snmp_request_id),
        masters(),
    )
    seconds = time.monotonic() - started
    return {face: _face(latencies[face], shed[face], seconds) for face in IN_FLIGHT}


def _bacnet_invoke(datagram: bytes) -> int | None:
    head = invoke_id_of(datagram)
    return None if head is None else head[1]


def _face(latencies: list[float], shed: int, seconds: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "answers_per_s": round(len(ordered) / seconds, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1) if ordered else None,
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 1) if ordered else None,
        "shed": shed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, choices=sorted(LINES), action="append")
    parser.add_argument("--quota", type=int, choices=QUOTAS, action="append", help="percent of one core")
    args = parser.parse_args()
    if os.geteuid() != 0:
        json.dump({"benchmark": "smallboard", "error": "needs root, to make a cgroup with a CPU quota"}, sys.stdout)
        print()
        sys.exit(2)
    runs = []
    try:
        for boards in args.boards or sorted(LINES, reverse=True):
            for percent in args.quota or QUOTAS:
                quiet = measure(boards, percent, loaded=False)
                loaded = measure(boards, percent, loaded=True)
                loaded["line_kept"] = round(loaded["transactions_per_s"] / quiet["transactions_per_s"], 3)
                runs += [quiet, loaded]
    except NoCgroup as error:
        json.dump({"benchmark": "smallboard", "error": str(error)}, sys.stdout)
        print()
        sys.exit(2)
    json.dump({"benchmark": "smallboard", "window_s": WINDOW, "runs": runs}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
