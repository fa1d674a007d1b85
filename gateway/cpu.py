"""The line first: the CPU the faces' event loop may take, so that the bus thread always finds some.

On a small board the gateway's CPU is often capped (a cgroup quota, as systemd's CPUQuota=, or a
container's). When a BMS and an NMS keep the faces busy, the main loop would use the whole quota
at the start of each scheduling period, and the bus thread, woken by a reply on the line, would
wait for the next period: every transaction stretched, every value staler. So the main loop is
paced: before each turn it may run only as much CPU as the budget has accrued, and otherwise
sleeps (giving the bus thread the interpreter and the quota). The budget is what the process may
use (TARGET of its cgroup quota, or of its CPUs) less what the bus thread used lately, with room
to spare; without a quota on a machine with CPUs to spare it never binds. What the faces lose
shows as slower answers, then as requests their sockets drop, which clients retry.

    budget = CpuBudget()
    with asyncio.Runner(loop_factory=budget.loop) as runner:   # the loop that serves the faces
        runner.run(main(budget))                              # main: budget.protect(bus_thread_id)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import selectors
import time
from dataclasses import dataclass
from pathlib import Path

TARGET = 0.8  # of the CPU the process may use: the rest is room for bursts, so the quota is rarely hit
BUS_MARGIN = 1.5  # the bus thread's recent CPU, times this, is kept for it
FACES_FLOOR = 0.1  # of the CPU the process may use: the faces' least, however much the line takes
REFRESH = 0.5  # seconds between looks at the quota and the bus thread's CPU
BURST_PERIODS = 0.5  # the faces may run this share of one quota period's CPU in one go


@dataclass(frozen=True, slots=True)
class Quota:
    """The CPU a process may use: cores (a fraction on a capped cgroup) and the scheduler's period."""

    cores: float
    period: float | None  # seconds; None without a quota


def own_quota(proc: Path = Path("/proc/self"), cgroups: Path = Path("/sys/fs/cgroup")) -> Quota:
    """This process's CPU: its CPUs, less when its cgroup (or a parent) has a quota (v2 or v1)."""
    cores = float(len(os.sched_getaffinity(0)))
    limits = [limit for limit in _cgroup_limits(proc, cgroups) if limit[0] < cores]
    if not limits:
        return Quota(cores, None)
    tightest = min(limits)
    return Quota(tightest[0], tightest[1])


def _cgroup_limits(proc: Path, cgroups: Path) -> list[tuple[float, float]]:
    """(cores, period) of every quota on this process's cgroup and its parents."""
    limits = []
    for found in _quota_files(_read(proc / "cgroup"), cgroups):
        text = " ".join(_read(file).strip() for file in found)
        parts = text.split()
        if len(parts) == 2 and parts[0] not in ("max", "-1") and all(p.isdigit() for p in parts):
            quota, period = int(parts[0]), int(parts[1])
            if period:
                limits.append((quota / period, period / 1e6))
    return limits


@functools.lru_cache(maxsize=4)  # looked up twice a second: the same while the process stays in its cgroup
def _quota_files(membership: str, cgroups: Path) -> tuple[tuple[Path, ...], ...]:
    """The files that hold the quotas of the cgroups in `membership` (/proc/PID/cgroup) and their
    parents, as far as they exist: v2's cpu.max ("quota period" or "max period"), v1's pair."""
    files: list[tuple[Path, ...]] = []
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            files += [(folder / "cpu.max",) for folder in _ancestors(cgroups / "unified", path)]
            files += [(folder / "cpu.max",) for folder in _ancestors(cgroups, path)]
        elif "cpu" in controllers.split(","):
            files += [
                (folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")
                for root in (cgroups / controllers, cgroups / "cpu")
                for folder in _ancestors(root, path)
            ]
    return tuple(found for found in files if all(file.exists() for file in found))


def _ancestors(root: Path, path: str) -> list[Path]:
    parts = [part for part in path.split("/") if part]
    return [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def thread_cpu_seconds(native_id: int) -> float | None:
    """CPU time a thread of this process has used (its schedstat); None when it has ended."""
    text = _read(Path(f"/proc/self/task/{native_id}/schedstat"))
    return int(text.split()[0]) / 1e9 if text else None


def datagrams_dropped(proc: Path = Path("/proc/self")) -> dict[int, int]:
    """Datagrams the kernel dropped for this process's UDP sockets, by local port: what arrived
    while a socket's receive buffer was full because its face fell behind (BACnet and SNMP
    clients retry them). From the kernel's UDP tables, the sockets found among the open files."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in (proc / "fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    dropped: dict[int, int] = {}
    for table in ("net/udp", "net/udp6"):
        for line in _read(proc / table).splitlines()[1:]:
            fields = line.split()  # sl local rem st queues tr retrnsmt uid timeout inode ref pointer drops
            if len(fields) >= 13 and fields[9] in inodes:
                port = int(fields[1].rsplit(":", 1)[1], 16)
                dropped[port] = dropped.get(port, 0) + int(fields[-1])
    return dropped


class CpuBudget:
    """Paces the loop it makes (`loop`) to the CPU left when the protected thread has had its share."""

    def __init__(self, quota: Quota | None = None) -> None:
        self._fixed = quota
        self.quota = quota or own_quota()
        self.held_back = 0.0  # seconds the loop slept to stay within its budget
        self._protected: int | None = None
        self._protected_cpu: float | None = None
        self._rate = self._faces_rate(protected=0.0)  # CPU seconds a second the loop may take now
        self._tokens = 0.0
        self._refreshed = self._last = time.monotonic()
        self._cpu = time.thread_time()

    def loop(self) -> asyncio.AbstractEventLoop:
        """A new event loop that runs at the budget's pace."""
        return asyncio.SelectorEventLoop(_PacedSelector(self))

    def protect(self, native_id: int | None) -> None:
        """The thread whose CPU comes first (the bus's); None: no thread."""
        self._protected = native_id
        self._protected_cpu = None if native_id is None else thread_cpu_seconds(native_id)

    @property
    def faces_rate(self) -> float:
        """CPU seconds a second the paced loop may take now."""
        return self._rate

    def pace(self) -> None:
        """Called before each turn of the loop: sleep off what it ran beyond its budget."""
        now, cpu = time.monotonic(), time.thread_time()
        if now - self._refreshed >= REFRESH:
            self._refresh(now)
        burst = self._burst()
        self._tokens = min(burst, self._tokens + (now - self._last) * self._rate - (cpu - self._cpu))
        self._last, self._cpu = now, cpu
        if self._tokens < 0:
            owed = -self._tokens / self._rate
            time.sleep(owed)
            self.held_back += owed
            self._tokens = 0.0
            self._last = time.monotonic()

    def _burst(self) -> float:
        period = self.quota.period
        return self.quota.cores * period * BURST_PERIODS if period else 0.01

    def _refresh(self, now: float) -> None:
        if self._fixed is None:
            self.quota = own_quota()
        protected = 0.0
        if self._protected is not None:
            used = thread_cpu_seconds(self._protected)
            if used is not None and self._protected_cpu is not None:
                protected = (used - self._protected_cpu) / (now - self._refreshed)
            self._protected_cpu = used
        self._rate = self._faces_rate(protected)
        self._refreshed = now

    def _faces_rate(self, protected: float) -> float:
        """What the loop may take when the protected thread took `protected` CPU seconds a second."""
        cores = self.quota.cores
        return max(FACES_FLOOR * cores, TARGET * cores - BUS_MARGIN * protected)


class _PacedSelector(selectors.DefaultSelector):
    """The platform's selector, asking the budget before each wait for events (once a loop turn)."""

    def __init__(self, budget: CpuBudget) -> None:
        super().__init__()
        self._budget = budget

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._budget.pace()
        return super().select(timeout)
