"""Footprint: resident memory, start-up time to the first BACnet and SNMP answers, CPU share.

The gateway runs as `bcpm-gateway run` (all faces on loopback) against simulated model-A boards at
19200 baud in a process of their own. Measured on the gateway process alone:

- resident memory (VmRSS) with 1, 4 and 16 boards (2, 8 and 32 nodes: a full RS-485 segment),
  once every face serves, and what each node adds (the 4 to 16 board difference per node); again
  after a minute of polling, when more of each node has been read (the first cycle reads every
  block of every node: with 16 boards at 19200 baud it takes longer than that);
- the time from starting the process to the first I-Am answering a Who-Is and the first SNMP
  GET response, in discovery mode (scan 1-16, or 1-32 for 16 boards) and in locked mode (saved
  profiles, no scan);
- its CPU share of one core over 60 s of polling at a 1 s poll interval;
- its resident memory again after a client has read every object of every node (what a BMS that
  reads everything costs: the fast reads answer it building nothing, and keep the encodings of at
  most `bacnet.max_encoded_objects` objects);
- the web face's share: resident memory with every face on, less the same without the web face;
- the CPU time /metrics costs beyond what the gateway spends meanwhile anyway: the first scrape,
  which makes the snapshot, and each of 50 more, which it serves (as Prometheus scrapes: gzip);
  the size of the text and of what a scrape sends with gzip; resident memory after them;
- the memory the web face's history of the currents takes after the minute of polling (made whole
  at a node's first sample, once a minute: `bcpm_web_trend_history_bytes` on /metrics), within the
  resident figures after that minute.

The gateway runs from a virtualenv of its own holding only what `pip install .` brings, as on a
site: the test tools' libraries in the development virtualenv (rich, pulled in by import-linter,
is imported by structlog whenever present: 4.5 MB) are not the product's. The bench makes that
virtualenv once (`build/footprint-venv`, about 20 s) and reuses it; the gateway's code is the
checkout's own (an editable install).

Prints one JSON object.

    python bench/footprint.py                # 1, 4 and 16 boards, about 6 minutes
    python bench/footprint.py --boards 16    # one size only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))  # the test suite's BACnet client
from bacnet import rpm_requests  # noqa: E402
from common import cpu_seconds, free_port, resident_kib, simulator  # noqa: E402
from fuzz import snmp_templates  # noqa: E402

from gateway.web.auth import hash_password  # noqa: E402
from tests.bacnet.client import Client  # noqa: E402

BAUDRATE = 19200
PASSWORD_HASH = hash_password("bench")  # every face on: the web face with a login, as in service
WHO_IS = bytes.fromhex("810a000c" + "0120ffff00ff" + "1008")  # unicast BVLL carrying a global Who-Is
ROOT = Path(__file__).resolve().parent.parent
PRODUCT_VENV = ROOT / "build" / "footprint-venv"
CPU_SECONDS = 60.0  # long enough that the share varies little from run to run
SCRAPES = 50


@dataclass(frozen=True)
class Ports:
    bacnet: int
    snmp: int
    web: int


@contextlib.contextmanager
def gateway(
    folder: Path, serial_port: str, boards: int, mode: str, web: bool = True
) -> Iterator[tuple[subprocess.Popen[bytes], Ports]]:
    ports = Ports(free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM))
    config = folder / f"{mode}.toml"
    config.write_text(
        f'[gateway]\noperating_mode = "{mode}"\nstate_file = "{folder / "state.json"}"\n'
        f'[serial]\nport = "{serial_port}"\nbaudrate = {BAUDRATE}\nscan = "1-{max(16, 2 * boards)}"\n'
        "probe_timeout = 0.02\n"
        f'[bacnet]\naddress = "127.0.0.1/8"\nport = {ports.bacnet}\n'
        f'[snmp]\naddress = "127.0.0.1"\nport = {ports.snmp}\n'
        f'[modbus_tcp]\naddress = "127.0.0.1"\nport = {free_port(socket.SOCK_STREAM)}\n'
        f'[web]\nenabled = {str(web).lower()}\naddress = "127.0.0.1"\nport = {ports.web}\n'
        f'password_hash = "{PASSWORD_HASH}"\n'
        '[log]\nlevel = "warning"\n'
    )
    process = subprocess.Popen(
        [str(product_python()), "-m", "gateway", "run", "--config", str(config)], stderr=subprocess.DEVNULL
    )
    try:
        yield process, ports
    finally:
        process.terminate()
        process.wait(10)


def product_python() -> Path:
    """The interpreter of a virtualenv with the gateway's own dependencies only, made on first use."""
    python = PRODUCT_VENV / "bin" / "python"
    # What pip installed from, written once it has succeeded: a failed install, or one of other
    # dependencies than the project's now, is made again.
    installed = PRODUCT_VENV / "installed"
    wanted = (ROOT / "pyproject.toml").read_text()
    if not installed.exists() or installed.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PRODUCT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True)
        installed.write_text(wanted)
    return python


def first_answer(port: int, request: bytes, started: float, timeout: float = 60.0) -> float:
    """Seconds from `started` until `port` answers `request` (asked every 20 ms)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.02)
        while time.monotonic() - started < timeout:
            sock.sendto(request, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                if sock.recv(65536):
                    return time.monotonic() - started
    raise TimeoutError(f"no answer on port {port}")


async def read_every_object(port: int, nodes: int) -> int:
    """ReadPropertyMultiple of every object of nodes 1..`nodes` (Present_Value, Status_Flags);
    the number of objects read."""
    client = Client(port)
    try:
        await client.find_router()
        batches = rpm_requests()
        for address in range(1, nodes + 1):
            for request in batches:
                await client.app.read_property_multiple(client.node(address), request)
        return nodes * sum(len(request) // 2 for request in batches)
    finally:
        client.close()


def start_times(folder: Path, port: str, boards: int, mode: str) -> dict[str, float]:
    started = time.monotonic()
    with gateway(folder, port, boards, mode) as (_, ports):
        return {
            "who_is_s": round(first_answer(ports.bacnet, WHO_IS, started), 2),
            "snmp_get_s": round(first_answer(ports.snmp, snmp_templates()[0], started), 2),
        }


def settled_memory(folder: Path, port: str, boards: int, web: bool) -> int:
    """Resident KiB once every face serves and a few poll cycles ran."""
    with gateway(folder, port, boards, "locked", web) as (process, ports):
        first_answer(ports.snmp, snmp_templates()[0], time.monotonic())
        time.sleep(5.0)
        return resident_kib(process.pid)


@dataclass(frozen=True, slots=True)
class Scrapes:
    snapshot_cpu_ms: float  # the first scrape: the snapshot made (the metrics thread's CPU included)
    scrape_cpu_ms: float  # each of the next, from the snapshot
    text_bytes: int  # the exposition's text
    gzip_bytes: int  # what a scrape sends with gzip, as Prometheus asks
    cycle_s: float | None  # the last poll cycle as the scrape says it
    trend_history_bytes: int | None  # what the trends' history of the currents takes, as the scrape says it


def scrapes(pid: int, port: int) -> Scrapes:
    """What /metrics costs the gateway (its CPU meanwhile less its idle rate, measured just before
    over the same time): the first scrape, which makes the snapshot, and SCRAPES more, which the
    snapshot serves while a poll cycle lasts; each as Prometheus scrapes (gzip, a kept-alive HTTPS
    connection) from an address of its own (one address may scrape once a second)."""
    idle_before, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(5.0)
    idle_rate = (cpu_seconds(pid) - idle_before) / (time.monotonic() - wall)

    def scrape(source: str, gzip: bool = True) -> bytes:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=ssl._create_unverified_context(), source_address=(source, 0)
        )
        try:
            connection.request("GET", "/metrics", headers={"Accept-Encoding": "gzip" if gzip else "identity"})
            reply = connection.getresponse()
            assert reply.status == 200, reply.status
            return reply.read()
        finally:
            connection.close()

    def cpu_ms(work: Callable[[], object]) -> float:
        before, wall = cpu_seconds(pid), time.monotonic()
        work()
        return 1000 * (cpu_seconds(pid) - before - idle_rate * (time.monotonic() - wall))

    compressed: list[bytes] = []
    first = cpu_ms(lambda: compressed.append(scrape("127.0.1.1")))
    more = cpu_ms(lambda: [scrape(f"127.0.2.{n + 1}") for n in range(SCRAPES)])
    text = scrape("127.0.1.2", gzip=False)

    def gauge(name: str) -> float | None:
        return next(
            (float(line.split()[-1]) for line in text.decode().splitlines() if line.startswith(name + " ")), None
        )

    cycle, history = gauge("bcpm_poll_cycle_seconds"), gauge("bcpm_web_trend_history_bytes")
    return Scrapes(
        first, more / SCRAPES, len(text), len(compressed[0]), cycle, None if history is None else int(history)
    )


def run(sizes: tuple[int, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "footprint", "baudrate": BAUDRATE, "poll_interval_s": 1.0}
    for boards in sizes:
        with tempfile.TemporaryDirectory() as name, simulator(BAUDRATE, Path(name), boards) as port:
            folder = Path(name)
            discovery = start_times(folder, port, boards, "discovery")  # also saves the profiles
            locked = start_times(folder, port, boards, "locked")
            without_web = settled_memory(folder, port, boards, web=False)
            with gateway(folder, port, boards, "locked") as (process, ports):
                first_answer(ports.snmp, snmp_templates()[0], time.monotonic())
                time.sleep(5.0)  # every face built, a few poll cycles done
                memory = resident_kib(process.pid)
                cpu_before, wall_before = cpu_seconds(process.pid), time.monotonic()
                time.sleep(CPU_SECONDS)
                cpu = (cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - wall_before)
                memory_polled = resident_kib(process.pid)
                scraped = scrapes(process.pid, ports.web)
                memory_scraped = resident_kib(process.pid)
                objects = asyncio.run(read_every_object(ports.bacnet, 2 * boards))
                memory_read_all = resident_kib(process.pid)
        result[f"boards_{boards}"] = {
            "nodes": 2 * boards,
            "resident_mb": round(memory / 1024, 1),
            "resident_mb_after_a_minute": round(memory_polled / 1024, 1),
            "start_to_answer_discovery": discovery,
            "start_to_answer_locked": locked,
            "cpu_share_of_one_core": round(cpu, 3),
            "web_face_resident_mb": round((memory - without_web) / 1024, 1),
            "metrics_snapshot_cpu_ms": round(scraped.snapshot_cpu_ms, 1),
            "metrics_scrape_cpu_ms": round(scraped.scrape_cpu_ms, 1),
            "poll_cycle_s": scraped.cycle_s,
            "gateway_cpu_ms_per_poll_cycle": (
                None if scraped.cycle_s is None else round(1000 * cpu * max(scraped.cycle_s, 1.0))
            ),
            "metrics_scrape_bytes": scraped.text_bytes,
            "metrics_scrape_gzip_bytes": scraped.gzip_bytes,
            "resident_mb_after_scrapes": round(memory_scraped / 1024, 1),
            "trend_history_bytes": scraped.trend_history_bytes,
            "objects_read": objects,
            "resident_mb_after_reading_every_object": round(memory_read_all / 1024, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, action="append", help="boards to measure (default 1, 4 and 16)")
    sizes = tuple(parser.parse_args().boards or (1, 4, 16))
    result = run(sizes)
    if "boards_4" in result and "boards_16" in result:
        for key in ("resident_mb", "resident_mb_after_a_minute"):
            grown = result["boards_16"][key] - result["boards_4"][key]
            result[f"{key}_per_node_4_to_16_boards"] = round(grown / 24, 2)
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
