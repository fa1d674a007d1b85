"""What the SNMP tests drive: the gateway's agent and snmptrapd, both on free loopback ports."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.pointmap import Point
from gateway.sim import SimulatedLine
from gateway.snmp import SnmpFace
from gateway.snmp.placement import default_layout
from tests.snmp.netsnmp import dotted, environment, run_async, tool
from tests.support import free_port

READ, WRITE, TRAP = "public", "private", "traps"  # the communities the rig configures
# Outside the enterprise tree: the system group (8), the snmp group's current objects (8), the
# engine (4), the message processing (3) and USM counters (6).
STANDARD_INSTANCES = 29


def instance(point: Point, address: int) -> str:
    """The dotted OID of one point of one panel in the agent's tree."""
    layout = default_layout()
    column = layout.column_of(point)
    per_panel = len(layout.table_of(column).indexes) == 1
    return dotted(column.oid + ((address,) if per_panel else (address, point.channel)))


def swept(face: SnmpFace) -> bool:
    """The face serves its tree and every instance has a value (all nodes swept at least once)."""
    index = face.controller.index if face.controller else None
    return index is not None and len(index) > 100 and index.all_have_values()


@dataclass
class Agent:
    line: SimulatedLine
    gateway: Gateway
    face: SnmpFace
    port: int
    folder: Path  # for the net-snmp tools' own files

    @property
    def target(self) -> str:
        return f"udp:127.0.0.1:{self.port}"

    async def tool(
        self, name: str, *args: str, community: str = READ, timeout: float = 2
    ) -> subprocess.CompletedProcess[str]:
        """A net-snmp tool against the agent: v2c, numeric OIDs, `timeout` seconds and one retry.
        Where no answer is expected, a short timeout and a counter of what the agent dropped."""
        return await run_async(
            self.folder, name, "-v2c", "-c", community, "-On", "-t", str(timeout), "-r", "1", self.target, *args
        )

    def all_values_present(self) -> bool:
        """Every served instance has a value (all nodes swept at least once)."""
        return swept(self.face)


class TrapReceiver:
    """snmptrapd on a free loopback port; collects the notifications it prints, one a line."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "snmptrapd.conf"
        conf.write_text("disableAuthorization yes\n")
        self.port = free_port(socket.SOCK_DGRAM)
        self.lines: list[str] = []
        # -C: no configuration but ours; -n: numeric addresses; one line a trap, fields split by |
        self._process = subprocess.Popen(
            [
                tool("snmptrapd"),
                "-f",
                "-Lo",
                "-C",
                "-c",
                str(conf),
                "-n",
                "-On",
                "-F",
                "TRAP %B|%P|%V|%v\n",
                f"udp:127.0.0.1:{self.port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment(folder),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def traps(self) -> list[dict[str, str]]:
        """Each trap as {OID: "TYPE: value"} (sysUpTime.0, snmpTrapOID.0, then the objects), plus
        "from" (the sender's address) and "security" (version and community)."""
        found = []
        for line in self.lines:
            if line.startswith("TRAP "):
                sender, security, _, *fields = line.removeprefix("TRAP ").split("|")
                trap = dict(field.split(" = ", 1) for field in fields if " = " in field)
                found.append({"from": sender, "security": security, **trap})
        return found

    def wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while not any("NET-SNMP version" in line for line in self.lines):
            if self._process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"snmptrapd did not start: {self.lines}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._reader.join(10)
