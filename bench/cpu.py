"""CPU per RTU transaction: what polling costs the gateway, per thread, with no clients.

16 simulated model-A boards (32 nodes, a full RS-485 segment) at 115200 baud in a process of their
own, with a data-center load (circuits that draw current, so values move as on a real site); the
gateway as `bcpm-gateway run` from config/gateway.toml as shipped, with only the serial port, the
state and BBMD table paths, loopback addresses and free ports changed (and the line's 115200 baud):
BACnet, SNMP and Modbus TCP serve, nobody asks. A first start: the scan of 1-247, the start-up sweep
(every block of every node), then polling at the shipped 1 s interval, with the background rescan.

The window is the time between two status lines of the gateway's log (every 30 s), the first some
time after the start-up sweep; the bus's counters come from those lines, the CPU from /proc at the
moment each arrived: utime + stime of the process, of its main thread (the faces' event loop) and
of its bus thread (named "bus": polling, the cache, events published). CPU seconds, which the load
of other processes on the machine inflates little, unlike the share of a core. The simulator runs on
a core of its own, the gateway on the others (`common.apart`): on a site the meters' work is done
on the wire, not on the gateway's core.

With `--profile FILE`, py-spy samples both threads over the windows (the samples of the thread
holding the interpreter, `--gil`, so waiting is left out) into FILE in its raw format, one stack a
line with its count, for flamegraph.pl or a look with grep. py-spy is not in the test extra:
`pip install py-spy==0.4.3`. It samples without stopping the process (`--nonblocking`), yet
reading its memory 250 times a second still costs the gateway CPU: take the figures from a run
without it.

Before the gateway starts, the floor is taken on the same cores from the same boards:
`bench/bare_master.py` polls the same plan with nothing but the line (no event loop, no faces),
once as it is and once keeping each reply in the gateway's node cache; each window also gives the
gateway's CPU a transaction against those two (`process_against`): taken in the same run, minutes
apart, on the same cores, where the machine's speed varies between runs by more than a tenth. The
gateway's transactions include the background rescan's probes of empty addresses (some 4 a second
of 40, each cheaper than a read), which the bare master does not make: its ratios are a little low.

Prints one JSON object.

    python bench/cpu.py                 # about 3 minutes
    python bench/cpu.py --windows 3     # three windows in a row, each reported
    python bench/cpu.py --profile build/cpu.raw
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).parent.parent))  # the shipped file, as the field suite changes it
from common import apart, free_port, pinned_to, simulator  # noqa: E402

from gateway.app import STATUS_EVERY  # noqa: E402
from tests.field.site import shipped_with  # noqa: E402

BAUDRATE = 115200
BOARDS = 16
LOAD = "datacenter"
SETTLE = 40.0  # seconds after "nodes ready" before a window may start: the start-up sweep is over
REFERENCE_SECONDS = 30.0  # each run of the bare master, as long as a window
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process, or of one of its threads."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_named(pid: int, name: str) -> int:
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            return int(task.name)
    raise RuntimeError(f"no thread named {name!r} in process {pid}")


def config_text(folder: Path, port: str) -> str:
    return shipped_with(
        {
            "gateway": {"state_file": str(folder / "state.json")},
            "serial": {"port": port, "baudrate": BAUDRATE},
            "bacnet": {
                "address": "127.0.0.1/8",
                "port": free_port(socket.SOCK_DGRAM),
                "bdt_file": str(folder / "bdt.ini"),
            },
            "snmp": {"address": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM)},
            "modbus_tcp": {"address": "127.0.0.1", "port": free_port()},
        }
    )


def _log_lines(stream: IO[str]) -> Any:
    """The gateway's JSON log lines, as they come."""
    for line in stream:
        if line.startswith("{"):
            yield json.loads(line)
    raise RuntimeError("the gateway stopped")


def _sample(pid: int, bus_thread: int, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": time.monotonic(),
        "process": cpu_seconds(pid),
        "main": cpu_seconds(pid, pid),
        "bus": cpu_seconds(pid, bus_thread),
        "line": status["bus"],
        "cycle_seconds": status["cycle_seconds"],
        "online": len(status["online"]),
    }


def _window(first: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    line = {key: last["line"][key] - first["line"][key] for key in ("transactions", "replies", "timeouts", "corrupt")}
    seconds = last["at"] - first["at"]
    per = max(line["transactions"], 1)
    cpu = {thread: last[thread] - first[thread] for thread in ("process", "main", "bus")}
    return {
        "seconds": round(seconds, 1),
        "transactions_per_s": round(line["transactions"] / seconds, 1),
        "replies_per_s": round(line["replies"] / seconds, 1),
        "timeouts": line["timeouts"],  # mostly the background rescan's probes of empty addresses
        "corrupt": line["corrupt"],
        "cpu_ms_per_transaction": {thread: round(1000 * spent / per, 3) for thread, spent in cpu.items()},
        "cpu_share_of_one_core": {thread: round(spent / seconds, 4) for thread, spent in cpu.items()},
        "poll_cycle_seconds": last["cycle_seconds"],
        "nodes_online": last["online"],
    }


@contextlib.contextmanager
def profiled(pid: int, path: Path | None, seconds: float) -> Iterator[None]:
    """py-spy sampling `pid` into `path` for about `seconds` (nothing when `path` is None)."""
    if path is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--threads",
        "--gil",
        "--nonblocking",
        "--rate",
        "250",
        "--format",
        "raw",
    ]
    sampler = subprocess.Popen(
        [*command, "--duration", str(round(seconds)), "--output", str(path)], stdout=subprocess.DEVNULL
    )
    try:
        yield
    finally:
        sampler.wait(seconds + 30)


def bare_master(port: str, cores: set[int], *options: str) -> dict[str, Any]:
    """The floor, on the gateway's cores: `bench/bare_master.py` polling the same boards' plan."""
    command = [sys.executable, str(Path(__file__).with_name("bare_master.py")), "--port", port]
    command += ["--baudrate", str(BAUDRATE), "--units", str(2 * BOARDS), "--seconds", str(REFERENCE_SECONDS)]
    done = subprocess.run(
        [*command, *options], stdout=subprocess.PIPE, text=True, check=True, preexec_fn=pinned_to(cores)
    )
    floor: dict[str, Any] = json.loads(done.stdout)
    if floor["replies"] < 0.99 * floor["transactions"]:  # failed reads cost less: no floor then
        raise RuntimeError(f"the bare master's reads failed: {floor}")
    return floor


def run(windows: int, profile: Path | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "cpu",
        "boards": BOARDS,
        "nodes": 2 * BOARDS,
        "baudrate": BAUDRATE,
        "load": LOAD,
        "settings": "config/gateway.toml as shipped (poll_interval 1.0, rescan_interval 60, every face but web on)",
        "clients": 0,
    }
    gateway_cores, simulator_cores = apart()
    result["cores"] = {"gateway": sorted(gateway_cores), "simulator": sorted(simulator_cores)}
    with (
        tempfile.TemporaryDirectory() as name,
        simulator(BAUDRATE, Path(name), BOARDS, "--load", LOAD, cores=simulator_cores) as port,
    ):
        result["reference"] = {
            "bare_master": bare_master(port, gateway_cores),
            "bare_master_with_store": bare_master(port, gateway_cores, "--store"),
        }
        folder = Path(name)
        config = folder / "gateway.toml"
        config.write_text(config_text(folder, port))
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=pinned_to(gateway_cores),
        )
        try:
            assert process.stderr is not None
            lines = _log_lines(process.stderr)
            ready = next(line for line in lines if line["event"] == "nodes ready")
            result["ready_seconds"] = round(time.monotonic() - started, 1)
            result["nodes_found"] = len(ready["addresses"])
            ready_at = time.monotonic()
            bus_thread = thread_named(process.pid, "bus")
            first = next(line for line in lines if line["event"] == "status" and time.monotonic() >= ready_at + SETTLE)
            samples = [_sample(process.pid, bus_thread, first)]
            with profiled(process.pid, profile, windows * STATUS_EVERY):
                for line in lines:
                    if line["event"] == "status":
                        samples.append(_sample(process.pid, bus_thread, line))
                        if len(samples) > windows:
                            break
        finally:
            process.terminate()
            process.wait(30)
    result["windows"] = [_window(a, b) for a, b in zip(samples, samples[1:])]
    for window in result["windows"]:
        spent = window["cpu_ms_per_transaction"]["process"]
        window["process_against"] = {
            name: round(spent / floor["cpu_ms_per_transaction"], 2) for name, floor in result["reference"].items()
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1, help="status-line windows of 30 s to report (default 1)")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="py-spy's samples over the windows, raw")
    args = parser.parse_args()
    json.dump(run(args.windows, args.profile), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
