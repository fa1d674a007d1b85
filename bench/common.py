"""What the benchmarks share: free loopback ports, the simulator in a process of its own, memory
and CPU readings, and printing one JSON object."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from gateway.logging import configure_logging

TURNAROUND = 0.005  # the simulated meters' turnaround, seconds


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def apart() -> tuple[set[int], set[int]]:
    """The cores for the gateway and for the simulator, kept apart where there are two or more: the
    simulator stands for meters on a wire, whose work no board's core does. Sharing a core, its
    replies, at a real-time priority, would preempt the gateway on every request and leave its
    caches cold (a quarter more CPU a transaction, seen on this machine's 2 cores)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return set(cores), set(cores)
    return set(cores[:-1]), {cores[-1]}


@contextlib.contextmanager
def simulator(baudrate: int, folder: Path, boards: int, *options: str, cores: set[int] | None = None) -> Iterator[str]:
    """Simulated model-A boards in a process of their own (more `simulate` options: `options`), on
    `cores` if given; yields the serial device path."""
    link = folder / "ttyBCPM"
    addresses = ",".join(str(1 + 2 * i) for i in range(boards))
    command = [
        sys.executable,
        "-m",
        "gateway",
        "simulate",
        "--link",
        str(link),
        "--addresses",
        addresses,
        "--baudrate",
        str(baudrate),
        "--turnaround",
        str(TURNAROUND * 1000),
        *options,
    ]
    if shutil.which("chrt") and os.geteuid() == 0:
        command = ["chrt", "--fifo", "50", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, preexec_fn=pinned_to(cores))
    try:
        deadline = time.monotonic() + 10
        while not link.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.02)
        yield str(link)
    finally:
        process.terminate()
        process.wait()


def pinned_to(cores: set[int] | None) -> Callable[[], None] | None:
    """A child's start, pinned to `cores` (None: where it likes)."""
    return None if cores is None else lambda: os.sched_setaffinity(0, cores)


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used, every thread of it, user and system."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def report(measure: Coroutine[Any, Any, dict[str, Any]], level: str = "warning") -> None:
    """Run a benchmark's coroutine and print its figures as one JSON object."""
    configure_logging(level, "console")
    json.dump(asyncio.run(measure), sys.stdout, indent=2)
    print()
