"""The line first (gateway.cpu): the quota a process finds, and the pace its event loop keeps."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from gateway.cpu import CpuBudget, Quota, datagrams_dropped, own_quota, thread_cpu_seconds

CORES = float(len(os.sched_getaffinity(0)))


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("proc", "cgroups", "expected"),
    [
        (
            {"cgroup": "0::/system.slice/gw.service\n"},
            {"system.slice/gw.service/cpu.max": "12000 100000\n"},
            (0.12, 0.1),
        ),
        ({"cgroup": "0::/a/b\n"}, {"a/cpu.max": "25000 10000\n", "a/b/cpu.max": "max 100000\n"}, (2.5, 0.01)),
        ({"cgroup": "0::/a/b\n"}, {"a/cpu.max": "2500 10000\n", "a/b/cpu.max": "5000 10000\n"}, (0.25, 0.01)),
        ({"cgroup": "0::/x\n"}, {"unified/x/cpu.max": "1200 10000\n"}, (0.12, 0.01)),  # hybrid: v2 under unified
        (
            {"cgroup": "4:memory:/m\n1:cpu,cpuacct:/gw\n0::/\n"},
            {"cpu,cpuacct/gw/cpu.cfs_quota_us": "1200\n", "cpu,cpuacct/gw/cpu.cfs_period_us": "10000\n"},
            (0.12, 0.01),
        ),
        ({"cgroup": "1:cpu:/gw\n"}, {"cpu/gw/cpu.cfs_quota_us": "-1\n", "cpu/gw/cpu.cfs_period_us": "100000\n"}, None),
        ({"cgroup": "0::/\n"}, {}, None),
        ({}, {}, None),  # no /proc/self/cgroup at all
        ({"cgroup": "0::/x\n"}, {"x/cpu.max": "garbled\n"}, None),
    ],
)
def test_the_quota_is_the_tightest_of_the_cgroup_and_its_parents_in_v1_and_v2(
    tmp_path: Path, proc: dict[str, str], cgroups: dict[str, str], expected: tuple[float, float] | None
) -> None:
    found = own_quota(tree(tmp_path / "proc", proc), tree(tmp_path / "cgroup", cgroups))
    if expected is None or expected[0] >= CORES:
        assert found == Quota(CORES, None)
    else:
        assert found == Quota(*expected)


def test_the_cpu_of_a_thread_is_read_from_the_kernel() -> None:
    done = threading.Event()
    spent: list[float | None] = []

    def busy() -> None:
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:
            pass
        spent.append(thread_cpu_seconds(threading.get_native_id()))
        done.wait()

    worker = threading.Thread(target=busy)
    worker.start()
    while not spent:
        time.sleep(0.01)
    assert spent[0] is not None and spent[0] >= 0.05
    done.set()
    worker.join()


def test_a_loop_that_may_take_a_tenth_of_a_core_sleeps_off_the_rest() -> None:
    budget = CpuBudget(Quota(0.125, 0.01))  # at 0.8 of it: a tenth of a core

    async def spin(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sum(range(1000))
            await asyncio.sleep(0)

    with asyncio.Runner(loop_factory=budget.loop) as runner:
        started, cpu = time.monotonic(), time.thread_time()
        runner.run(spin(1.0))
        share = (time.thread_time() - cpu) / (time.monotonic() - started)
    assert share < 0.15, "the loop kept to about its tenth of a core"
    assert budget.held_back > 0


def test_without_a_quota_on_a_machine_with_cores_to_spare_the_loop_is_never_held_back() -> None:
    budget = CpuBudget(Quota(2.0, None))

    async def spin() -> None:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            await asyncio.sleep(0)

    with asyncio.Runner(loop_factory=budget.loop) as runner:
        runner.run(spin())
    assert budget.held_back == 0 and budget.faces_rate >= 1


def test_the_datagrams_a_full_socket_dropped_are_counted_by_its_port() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as face,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        face.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's least: a few datagrams
        face.bind(("127.0.0.1", 0))
        port = face.getsockname()[1]
        assert datagrams_dropped()[port] == 0
        for _ in range(200):
            client.sendto(b"request", ("127.0.0.1", port))
        face.setblocking(False)
        received = 0
        while True:
            try:
                face.recv(64)
            except BlockingIOError:
                break
            received += 1
        assert 0 < received < 200
        assert datagrams_dropped()[port] == 200 - received
    assert port not in datagrams_dropped()  # closed: no longer the process's
