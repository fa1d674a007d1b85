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
AUTH_PASSPHRASE, PRIV_PASSPHRASE = "maplesyrup-auth", "maplesyrup-priv"  # every SNMPv3 user's
ENGINE_ID = bytes.fromhex("80000ef9050102030405060708")  # snmp.engine_id where a test fixes it
#: net-snmp's names of the protocols
NETSNMP_AUTH = {"sha1": "SHA", "sha224": "SHA-224", "sha256": "SHA-256", "sha384": "SHA-384", "sha512": "SHA-512"}
NETSNMP_PRIV = {"aes128": "AES", "aes192": "AES-192", "aes256": "AES-256"}
# Outside the enterprise tree: the system group (8), the snmp group's current objects (8), the
# engine (4), the message processing (3), snmpUnknownContexts and the USM counters (6).
STANDARD_INSTANCES = 30


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


@dataclass(frozen=True)
class V3User:
    """An SNMPv3 user with the rig's passphrases: its [snmp.users.NAME] table and net-snmp's options."""

    name: str
    auth: str = "sha256"
    priv: str | None = "aes128"

    def settings(self, **extra: object) -> dict[str, object]:
        keys = {"auth_passphrase": AUTH_PASSPHRASE}
        if self.priv:
            keys["priv_passphrase"] = PRIV_PASSPHRASE
        return {"auth": self.auth, "priv": self.priv or "none", **keys, **extra}

    @property
    def level(self) -> str:
        return "authPriv" if self.priv else "authNoPriv"

    def options(self, auth: str = AUTH_PASSPHRASE, priv: str = PRIV_PASSPHRASE) -> list[str]:
        """net-snmp's options for this user (with other passphrases, for the tests of wrong keys)."""
        options = ["-v3", "-l", self.level, "-u", self.name, "-a", NETSNMP_AUTH[self.auth], "-A", auth]
        return options + (["-x", NETSNMP_PRIV[self.priv], "-X", priv] if self.priv else [])

    def create_user(self, engine_id: bytes | None = None) -> str:
        """snmptrapd's createUser line: with the sender's engine ID for traps, without for informs."""
        engine = f"-e 0x{engine_id.hex()} " if engine_id else ""
        priv = f" {NETSNMP_PRIV[self.priv]} {PRIV_PASSPHRASE}" if self.priv else ""
        return f"createUser {engine}{self.name} {NETSNMP_AUTH[self.auth]} {AUTH_PASSPHRASE}{priv}"


NMS = V3User("nms")


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

    async def v3(
        self, name: str, *args: str, user: V3User = NMS, options: list[str] | None = None, timeout: float = 2
    ) -> subprocess.CompletedProcess[str]:
        """A net-snmp tool against the agent as an SNMPv3 user (its own options, or ``options``)."""
        security = user.options() if options is None else options
        return await run_async(self.folder, name, *security, "-On", "-t", str(timeout), "-r", "1", self.target, *args)

    def all_values_present(self) -> bool:
        """Every served instance has a value (all nodes swept at least once)."""
        return swept(self.face)


class TrapReceiver:
    """snmptrapd on a free loopback port; collects the notifications it prints, one a line."""

    def __init__(self, folder: Path, users: tuple[V3User, ...] = (), engine_id: bytes = ENGINE_ID) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "snmptrapd.conf"
        # Each user twice: for the traps of the agent's engine, and for informs to snmptrapd's own.
        created = [user.create_user(engine) for user in users for engine in (engine_id, None)]
        conf.write_text("\n".join(["disableAuthorization yes", *created]) + "\n")
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
