"""A site as a new user builds it: `config/gateway.toml` as shipped, the meters on a serial line.

The gateway runs as `bcpm-gateway run` from the shipped file with only what a test host must
change (the serial port, the state and BBMD table paths, loopback addresses, free unprivileged
ports); the boards are `bcpm-gateway simulate` on a pty, at the line's baud rate with wire time
and a 5 ms turnaround. Every face is checked with a client this project did not write: mbpoll
(Modbus TCP), net-snmp's snmpget (SNMP), @bacnet-js/client (BACnet).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.pointmap import load
from gateway.snmp.placement import default_layout
from gateway.snmp.tree import NodeField
from tests.bacnet.client import free_udp_port
from tests.bacnet.js_client import bacnet_js
from tests.snmp.netsnmp import dotted, environment, tool, varbinds
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "gateway.toml"
COMMAND = [sys.executable, "-m", "gateway"]
CURRENT_1 = load().find("current", group="branch", channel=1)
NODE_ONLINE = next(c for c in default_layout().objects if c.node_field is NodeField.ONLINE).oid  # the nodes table
OFFSET = 50000  # bacnet.device_id_offset as shipped
ROUTER = 0  # the router device's "address" among the meters' (its device ID is the offset itself)
READY_EVENTS = ("nodes ready", "modbus tcp listening", "snmp agent serving", "bacnet ready")
PATIENCE = 300.0  # seconds any one wait of this suite may take before the case fails


def shipped_with(changes: dict[str, dict[str, Any]]) -> str:
    """The text of config/gateway.toml with only `changes` ({section: {key: value}}) made, each in
    its own line of the file; every other line stays as shipped."""
    wanted = {(section, key): value for section, keys in changes.items() for key, value in keys.items()}
    lines, section, done = [], "", set()
    for line in SHIPPED.read_text().splitlines():
        if match := re.fullmatch(r"\[(\w+)\]", line):
            section = match[1]
        elif (match := re.match(r"(\w+) = ", line)) and (section, match[1]) in wanted:
            key = (section, match[1])
            value = wanted[key]
            line = f"{match[1]} = {str(value).lower() if isinstance(value, bool) else json.dumps(value)}"
            done.add(key)
        lines.append(line)
    assert done == set(wanted), f"not keys of the shipped file: {set(wanted) - done}"
    return "\n".join(lines) + "\n"


def mbpoll() -> str:
    path = shutil.which("mbpoll")
    if path is None:
        pytest.fail("mbpoll is not installed (Debian package mbpoll; .ci/install-tools installs it)")
    return path


def wait_for(check: Any, what: str, timeout: float = PATIENCE) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


class Simulator:
    """`bcpm-gateway simulate` of boards at `addresses` on a fixed link, stopped and started like a USB adapter."""

    def __init__(self, link: Path, addresses: tuple[int, ...], baudrate: int) -> None:
        self.link = link
        self.options = ["--addresses", ",".join(map(str, addresses)), "--baudrate", str(baudrate)]
        self.process: subprocess.Popen[str] | None = None

    def start(self, *extra: str) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, "simulate", "--link", str(self.link), *self.options, *extra], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert "simulating" in self.process.stdout.readline()

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=30) == 0
            self.process = None


@dataclass
class Faces:
    """What each face serves now: the Modbus addresses it answers for."""

    modbus: set[int] = field(default_factory=set)  # answered with a value (0x0B: offline or unknown)
    snmp: set[int] = field(default_factory=set)  # rows of the nodes table (online or offline)
    bacnet: set[int] = field(default_factory=set)  # devices that answered a global Who-Is
    router: bool = False  # the router device answered too

    def serve(self, addresses: set[int], *, polled: set[int] | None = None) -> bool:
        """Every face serves `addresses`, and Modbus TCP has values of `polled` (default: all)."""
        polled = addresses if polled is None else polled
        return self.router and addresses <= self.snmp and addresses <= self.bacnet and polled <= self.modbus


class Site:
    """The gateway from the shipped file against simulated boards; `changes` lie over the test host's."""

    def __init__(
        self,
        folder: Path,
        addresses: tuple[int, ...] = (1, 3),
        baudrate: int = 19200,
        **changes: dict[str, Any],
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.link = folder / "ttyBCPM"
        self.state = folder / "state.json"
        self.config = folder / "gateway.toml"
        self.log = folder / "gateway.log"
        self.simulator = Simulator(self.link, addresses, baudrate)
        self.ports = {"bacnet": free_udp_port(), "snmp": free_udp_port(), "modbus_tcp": free_port()}
        host: dict[str, dict[str, Any]] = {
            "gateway": {"state_file": str(self.state)},
            "serial": {"port": str(self.link)},
            "bacnet": {"address": "127.0.0.1/8", "port": self.ports["bacnet"], "bdt_file": str(folder / "bdt.ini")},
            "snmp": {"address": "127.0.0.1", "port": self.ports["snmp"]},
            "modbus_tcp": {"address": "127.0.0.1", "port": self.ports["modbus_tcp"]},
        }
        for section, keys in changes.items():
            host.setdefault(section, {}).update(keys)
        self.config.write_text(shipped_with(host))
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.started_at = 0.0  # wall clock, as the log's timestamps

    # --- the gateway process ---

    def start(self, *command: str) -> None:
        """`bcpm-gateway run` (or `command`, e.g. "demo", "--boards", "2") with the site's file."""
        self.log.write_text("")
        argv = [*COMMAND, *(command or ("run",)), "--config", str(self.config)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        self.started = time.monotonic()
        self.started_at = time.time()

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=30) == 0, self.log.read_text()[-4000:]
            self.process = None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = (json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{"))
        return [line for line in lines if line.get("event") == name]

    def logged_ready(self) -> float:
        """Seconds from the start to the last face's own "ready" line in its log: the time to ready
        without the clients' part (a Who-Is waits half a second for its I-Ams, a client starts)."""
        ready = [self.events(name)[-1] for name in READY_EVENTS]
        return round(max(datetime.fromisoformat(line["timestamp"]).timestamp() for line in ready) - self.started_at, 2)

    def errors(self) -> list[dict[str, Any]]:
        lines = (json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{"))
        return [line for line in lines if line.get("level") in ("error", "critical")]

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another `bcpm-gateway` command on the site's file (forget, check-config...)."""
        return subprocess.run([*COMMAND, *args, "--config", str(self.config)], capture_output=True, text=True)

    # --- the faces, through clients this project did not write ---

    async def faces(self, addresses: set[int]) -> Faces:
        modbus, snmp, bacnet = await asyncio.gather(self._modbus(addresses), self._snmp(addresses), self._bacnet())
        return Faces(modbus, snmp, bacnet - {ROUTER}, ROUTER in bacnet)

    async def until_served(self, addresses: set[int], what: str, *, polled: set[int] | None = None) -> float:
        """Seconds from the gateway's start until every face serves `addresses` (see Faces.serve).

        Each face is asked in a loop of its own, so a slow client does not delay the others' answers.
        """
        polled = addresses if polled is None else polled

        async def until(face: str, ask: Callable[[], Awaitable[set[int]]], wanted: set[int]) -> float:
            deadline = time.monotonic() + PATIENCE
            while not wanted <= await ask():
                assert self.alive(), self.log.read_text()[-4000:]
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out waiting for {what} on {face}")
                await asyncio.sleep(0.1)
            return time.monotonic() - self.started

        served = await asyncio.gather(
            until("modbus tcp", lambda: self._modbus(polled), polled),
            until("snmp", lambda: self._snmp(addresses), addresses),
            until("bacnet", self._bacnet, addresses | {ROUTER}),
        )
        return round(max(served), 2)

    async def _bacnet(self) -> set[int]:
        """Modbus addresses of the meter devices that answered a global Who-Is, ROUTER for the router."""
        answered = (await bacnet_js(self.ports["bacnet"], {"op": "whoIs", "waitMs": 500}))[0]
        return {device["deviceId"] - OFFSET for device in answered} if isinstance(answered, list) else set()

    async def _modbus(self, addresses: set[int]) -> set[int]:
        """Of `addresses`, those Modbus TCP answers channel 1's current for (one mbpoll over one connection)."""
        process = await asyncio.create_subprocess_exec(
            mbpoll(),
            *("-m", "tcp", "-p", str(self.ports["modbus_tcp"]), "-a", ",".join(map(str, sorted(addresses)))),
            *("-r", str(CURRENT_1.register), "-c", "1", "-1", "-o", "1", "127.0.0.1"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        sections = re.split(r"^-- Polling slave (\d+)\.\.\.$", out.decode(), flags=re.MULTILINE)
        return {int(unit) for unit, text in zip(sections[1::2], sections[2::2]) if f"[{CURRENT_1.register}]:" in text}

    async def _snmp(self, addresses: set[int]) -> set[int]:
        oids = {dotted((*NODE_ONLINE, address)): address for address in sorted(addresses)}
        process = await asyncio.create_subprocess_exec(
            tool("snmpget"),
            *("-v2c", "-c", "public", "-On", "-t", "1", "-r", "0", f"udp:127.0.0.1:{self.ports['snmp']}", *oids),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment(self.folder / "net-snmp"),
        )
        out, _ = await process.communicate()
        served = set()
        for varbind in varbinds(out.decode()):
            address = oids.get(dotted(varbind.oid))
            if address is not None and not varbind.exception:
                served.add(address)
        return served
