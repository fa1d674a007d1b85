"""`bcpm-gateway demo`: a panel that moves, what to try on each face, and the demo's own logging."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.bacnet.objects import av_instances
from gateway.pointmap import load as load_pointmap
from gateway.sim import Board
from gateway.sim.load import load_named
from tests.snmp.netsnmp import environment
from tests.support import free_port

COMMAND = [sys.executable, "-m", "gateway", "demo"]
_MBPOLL_VALUE = re.compile(r"^\[(\d+)\]:\s+(-?\d+)", re.MULTILINE)


def _config(tmp_path: Path, **sections: dict[str, object]) -> Path:
    raw: dict[str, dict[str, object]] = {
        "bacnet": {"port": free_port(socket.SOCK_DGRAM)},
        "snmp": {"port": free_port(socket.SOCK_DGRAM)},
        "modbus_tcp": {"port": free_port()},
        "web": {"port": free_port()},
    }
    for name, keys in sections.items():
        raw.setdefault(name, {}).update(keys)
    path = tmp_path / "demo.toml"
    path.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
            for name, keys in raw.items()
        )
    )
    return path


class Demo:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.logged: list[str] = []
        self.printed: list[str] = []

    def wait_for_log(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.logged.append(line)
            if text in line:
                return line
        pytest.fail(f"{text!r} not logged; got:\n{''.join(self.logged)}")

    def wait_for_nodes(self, addresses: set[int], timeout: float = 60) -> None:
        """Until every address is served: found by the first scan ("nodes ready") or, a board that
        scan missed, by the rescan beside polling ("node found")."""
        served: set[int] = set()
        deadline = time.monotonic() + timeout
        while not addresses <= served:
            event = json.loads(self.wait_for_log('"node', max(0.0, deadline - time.monotonic())))
            if event["event"] == "nodes ready":
                served.update(event["addresses"])
            elif event["event"] == "node found":
                served.add(event["address"])

    def read_printed(self) -> list[str]:
        """What the demo printed before serving: lines up to the first empty one."""
        assert self.process.stdout is not None
        while (line := self.process.stdout.readline()) not in ("", "\n"):
            self.printed.append(line)
        return self.printed


@pytest.fixture
def demo() -> Iterator[Callable[..., Demo]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Demo:
        process = subprocess.Popen(
            [*COMMAND, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(process)
        return Demo(process)

    yield start
    for process in started:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        finally:
            process.kill()
            process.wait()


def _suggested(printed: list[str], face: str) -> list[str]:
    """The command the demo suggests on the line of `face`, as argv."""
    line = next(line for line in printed if line.startswith(face))
    return shlex.split(line.removeprefix(face).split("  (")[0])


def _mbpoll(argv: list[str]) -> dict[int, int]:
    # Until the first slow sweep reads the scale registers, reads go through to the line: allow 5 s.
    result = subprocess.run([*argv[:-1], "-o", "5", argv[-1]], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return {int(register): int(value) for register, value in _MBPOLL_VALUE.findall(result.stdout)}


def test_the_demo_panel_moves_without_alarms_and_its_suggestions_work(demo, tmp_path: Path) -> None:
    running = demo("--boards", "2", "--config", str(_config(tmp_path)))
    first = json.loads(running.wait_for_log('"demo"'))  # JSON: stderr is not a terminal
    assert set(first) >= {"bacnet", "snmp", "modbus_tcp", "web"} and first["load"] == "datacenter"
    running.wait_for_nodes({1, 2, 3, 4})
    printed = running.read_printed()
    assert any(line.startswith("BACnet/IP") for line in printed)

    read_currents = _suggested(printed, "Modbus TCP ")
    before = _mbpoll(read_currents)
    time.sleep(2.5)  # a poll cycle or two
    after = _mbpoll(read_currents)
    assert len(before) == 42 and sum(1 for amps in before.values() if amps) > 30
    assert before != after

    unit = read_currents[read_currents.index("-a") + 1]
    port = read_currents[read_currents.index("-p") + 1]
    statuses = _mbpoll(["mbpoll", "-m", "tcp", "-p", port, "-a", unit, "-r", "178", "-c", "46", "-1", "127.0.0.1"])
    assert len(statuses) == 46 and set(statuses.values()) == {0}  # no channel in alarm at start

    clear = shlex.split(next(line for line in printed if "clear: mbpoll" in line).split("clear: ")[1])
    cleared = subprocess.run([clear[0], "-o", "5", *clear[1:]], capture_output=True, text=True, timeout=30)
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr  # the suggested write is accepted

    snmpget = _suggested(printed, "SNMP v2c   ")
    deadline = time.monotonic() + 30  # an SNMP value shows once its scale register was read (slow data)
    while True:
        result = subprocess.run(
            [snmpget[0], "-On", *snmpget[1:]],
            capture_output=True,
            text=True,
            timeout=30,
            env=environment(tmp_path / "snmp"),
        )
        assert result.returncode == 0, result.stderr
        if "No Such" not in result.stdout or time.monotonic() > deadline:
            break
        time.sleep(1)
    current_ma, status = (int(line.split()[-1]) for line in result.stdout.splitlines())
    assert current_ma > 0 and status == 0

    web = _suggested(printed, "Web        ")[0]  # https://127.0.0.1:PORT/nodes/N
    login = http.client.HTTPSConnection(*web.split("/")[2].split(":"), context=ssl._create_unverified_context())
    login.request("POST", "/login", "user=admin&password=demo", {"Content-Type": "application/x-www-form-urlencoded"})
    reply = login.getresponse()
    assert reply.status == 303 and "bcpm_session=" in reply.getheader("set-cookie", "")  # admin / demo logs in
    login.close()

    # Demand: a sliding minute of 10 s sub-intervals, so the AUX kW demand shows within the first minute.
    demand = ["mbpoll", "-m", "tcp", "-p", port, "-a", unit, "-r", "277", "-1", "127.0.0.1"]
    deadline = time.monotonic() + 60
    while (value := _mbpoll(demand)[277]) == 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert value > 0


def test_the_demo_logs_as_its_config_says_and_names_only_the_faces_it_serves(demo, tmp_path: Path) -> None:
    config = _config(tmp_path, bacnet={"enabled": False}, snmp={"enabled": False}, log={"format": "console"})
    running = demo("--config", str(config), "--load", "idle")
    first = running.wait_for_log("demo")
    assert "modbus_tcp=" in first and "snmp" not in first and "bacnet" not in first and "load=idle" in first
    assert not first.startswith("{")
    running.wait_for_log("nodes ready")
    printed = running.read_printed()
    assert any(line.startswith("Modbus TCP") for line in printed)
    assert not any(line.startswith(("SNMP", "BACnet")) for line in printed)


def test_a_bad_load_file_stops_the_demo_with_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "load.csv"
    bad.write_text("7;12\n")
    result = subprocess.run([*COMMAND, "--load", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"load file {bad}, line 1" in result.stderr and "Traceback" not in result.stderr


def test_the_readme_names_the_demo_channel_that_swings() -> None:
    board = Board(1, load=load_named("datacenter"))
    assert board.load is not None and board.load.swing is not None
    address, channel = board.load.swing
    pointmap = load_pointmap()
    current = pointmap.find("current", group="branch", channel=channel).register
    status = pointmap.find("alarm_status", group="alarms", channel=channel).register
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"channel {channel} of node {address} with the default seed" in readme
    assert f"-a {address} -r {current} 127.0.0.1" in readme and f"-a {address} -r {status} -1 127.0.0.1 0" in readme
    assert f"write 0 to AV{av_instances(pointmap)[status]}" in readme
