"""SNMP agent throughput beside net-snmp's snmpd, and trap latency, measured with net-snmp's tools.

The gateway polls 2 simulated boards (4 model-A nodes) on a simulated line with wire time emulated
at 115200 8N1 and a 5 ms meter turnaround; its agent listens on a free loopback port (with
snmp.rate_limit raised out of the way: one walking client is the whole load here). Debian's
snmpd serves its own tree on another free loopback port, from a minimal configuration (a read
community for 127.0.0.1, nothing else). Once every value has been read:

* walks of each whole served tree (from .1) with `snmpbulkwalk -Cr25`, `-Cr50` and `snmpwalk`
  (GETNEXT) with the read community, and `snmpbulkwalk -Cr25` and `-Cr50` as an SNMPv3 user at
  authPriv (SHA-256, AES-128; the same user on both agents), gateway and snmpd alternately, three
  rounds; OIDs per second = varbinds printed / wall time of the tool (for v3 that includes the
  tool's own key localization and the engine discovery); medians, and the gateway's share of
  snmpd's rate (target: at least 0.3 each for v2c, 0.5 for v3);
* trap latency: the simulator's current on a channel is driven over its non-latching high alarm
  threshold, and the time to the line `snmptrapd` prints is taken (it includes waiting for the
  next poll of the meter); also from the moment the alarm event reached the gateway's event hub.

Prints one JSON object. The simulator runs in this process (the tests' rig), so it can be driven.

    python bench/snmp.py
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import free_port, report

sys.path.insert(0, str(Path(__file__).parent.parent))  # the test suite's SNMP rig
from gateway.app import running  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.nodes.events import AlarmChanged  # noqa: E402
from gateway.sim import Board, SimulatedLine  # noqa: E402
from gateway.snmp import SnmpFace  # noqa: E402
from tests.snmp.rig import swept  # noqa: E402

SNMPD = "/usr/sbin/snmpd"

BOARDS = 2
BAUDRATE = 115200
TURNAROUND = 0.005
POLL_INTERVAL = 0.1
ROUNDS = 3
V2C = ("-v2c", "-c", "public")
USER, AUTH_PASSPHRASE, PRIV_PASSPHRASE = "nms", "bench-auth-passphrase", "bench-priv-passphrase"
V3 = ("-v3", "-l", "authPriv", "-u", USER, "-a", "SHA-256", "-A", AUTH_PASSPHRASE, "-x", "AES", "-X", PRIV_PASSPHRASE)
WALKS = {  # the tool and its options, its security, the target (a share of snmpd's rate)
    "bulkwalk_cr25": (("snmpbulkwalk", "-Cr25"), V2C, 0.3),
    "bulkwalk_cr50": (("snmpbulkwalk", "-Cr50"), V2C, 0.3),
    "getnext_walk": (("snmpwalk",), V2C, 0.3),
    "v3_authpriv_bulkwalk_cr25": (("snmpbulkwalk", "-Cr25"), V3, 0.5),
    "v3_authpriv_bulkwalk_cr50": (("snmpbulkwalk", "-Cr50"), V3, 0.5),
}
ALARMS = 8  # channels driven into alarm, one after the other
RAISED = "OID: .1.3.6.1.4.1.3833.1.30.1.2.0.1"  # bcpmChannelAlarmRaised


class TrapLog:
    """snmptrapd on loopback; keeps (arrival time, line) of every trap it prints."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        conf = folder / "snmptrapd.conf"
        conf.write_text("disableAuthorization yes\n")
        self.port = free_port(socket.SOCK_DGRAM)
        self.lines: list[tuple[float, str]] = []
        self._process = subprocess.Popen(
            [
                "snmptrapd",
                "-f",
                "-Lo",
                "-C",
                "-c",
                str(conf),
                "-n",
                "-On",
                "-F",
                "TRAP|%v\n",
                f"udp:127.0.0.1:{self.port}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append((time.monotonic(), line))

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()


class Snmpd:
    """Debian's snmpd on a free loopback port: read community "public" and the SNMPv3 user, nothing else."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        conf = folder / "snmpd.conf"
        conf.write_text(
            "rocommunity public 127.0.0.1\n"
            f"createUser {USER} SHA-256 {AUTH_PASSPHRASE} AES {PRIV_PASSPHRASE}\n"
            f"rouser {USER} priv\n"
        )
        self.port = free_port(socket.SOCK_DGRAM)
        # -C: only our file; -f: foreground; -Lo: log to stdout; -p: our pid file
        self._process = subprocess.Popen(
            [SNMPD, "-f", "-Lo", "-C", "-c", str(conf), "-p", str(folder / "snmpd.pid"), f"udp:127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                [
                    "snmpget",
                    "-v2c",
                    "-c",
                    "public",
                    "-t",
                    "0.2",
                    "-r",
                    "0",
                    f"udp:127.0.0.1:{self.port}",
                    ".1.3.6.1.2.1.1.3.0",
                ],
                capture_output=True,
                env=env,
            ).returncode
            != 0
        ):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("snmpd did not start (Debian package snmpd)")

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()


def walk(env: dict[str, str], port: int, command: tuple[str, ...], security: tuple[str, ...]) -> tuple[int, float]:
    """(OIDs, OIDs per second) of one walk of the whole tree."""
    started = time.monotonic()
    result = subprocess.run(
        [*command, *security, "-On", "-t", "5", f"udp:127.0.0.1:{port}", ".1"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    seconds = time.monotonic() - started
    oids = sum(1 for line in result.stdout.splitlines() if " = " in line)
    return oids, oids / seconds


async def trap_latencies(line: SimulatedLine, gateway: Any, traps: TrapLog) -> tuple[list[float], list[float]]:
    """(from the simulator's alarm, from the gateway's alarm event) to snmptrapd, in seconds."""
    events = gateway.hub.subscribe(AlarmChanged)
    seen: dict[int, float] = {}

    async def note_events() -> None:
        async for event in events:
            if event.point.key == "alarm_status" and event.raised:
                seen.setdefault(event.point.channel, time.monotonic())

    noting = asyncio.create_task(note_events())
    from_alarm, from_event = [], []
    try:
        for channel in range(1, ALARMS + 1):
            count = len(traps.lines)
            driven = time.monotonic()
            line.panel(1).set_current(channel, 19.0)  # 95 % of the 20 A breaker: non-latching high
            while not any(
                RAISED in text and f".1.3.6.1.4.1.3833.1.30.1.2.4.2.0 = INTEGER: {channel}\t" in text
                for _, text in traps.lines[count:]
            ):
                await asyncio.sleep(0.001)
            arrived = next(t for t, text in traps.lines[count:] if RAISED in text)
            from_alarm.append(arrived - driven)
            from_event.append(arrived - seen[channel])
            await asyncio.sleep(0.2)
    finally:
        noting.cancel()
        events.close()
    return from_alarm, from_event


def summary(values: list[float], scale: float = 1.0, digits: int = 0) -> dict[str, float]:
    return {
        "median": round(statistics.median(values) * scale, digits),
        "min": round(min(values) * scale, digits),
        "max": round(max(values) * scale, digits),
    }


def compared(rates: dict[str, list[float]]) -> dict[str, Any]:
    """Each agent's rates and their medians' ratio (gateway / snmpd)."""
    ratio = statistics.median(rates["gateway"]) / statistics.median(rates["snmpd"])
    return {
        **{agent: {**summary(runs), "runs": [round(rate) for rate in runs]} for agent, runs in rates.items()},
        "ratio": round(ratio, 2),
    }


async def measure() -> dict[str, Any]:
    boards = [Board(1 + 2 * i, model="A", baudrate=BAUDRATE) for i in range(BOARDS)]
    line = SimulatedLine(boards, baudrate=BAUDRATE, turnaround=TURNAROUND, emulate_wire=True)
    line.start()
    try:
        with tempfile.TemporaryDirectory() as folder_name:
            folder = Path(folder_name)
            (folder / "cert_indexes").mkdir()
            env = {**os.environ, "SNMPCONFPATH": folder_name, "SNMP_PERSISTENT_DIR": folder_name, "MIBS": ""}
            traps = TrapLog(folder, env)
            port = free_port(socket.SOCK_DGRAM)
            config = parse_config(
                {
                    "gateway": {"state_file": str(folder / "state.json")},
                    "serial": {
                        "port": line.path,
                        "baudrate": BAUDRATE,
                        "scan": f"1-{2 * BOARDS}",
                        "poll_interval": POLL_INTERVAL,
                        "probe_timeout": 0.02,
                    },
                    "bacnet": {"enabled": False},
                    "modbus_tcp": {"enabled": False},
                    "snmp": {
                        "enabled": True,
                        "address": "127.0.0.1",
                        "port": port,
                        "read_community": "public",
                        "notify_hosts": [f"127.0.0.1:{traps.port}"],
                        "rate_limit": 1000000,
                        "users": {USER: {"auth_passphrase": AUTH_PASSPHRASE, "priv_passphrase": PRIV_PASSPHRASE}},
                    },
                }
            )
            snmpd = Snmpd(folder, env)
            rates: dict[str, dict[str, list[float]]] = {name: {"gateway": [], "snmpd": []} for name in WALKS}
            walked: dict[str, int] = {}  # OIDs in a walk of each agent's tree
            try:
                async with running(config) as gateway:
                    face = next(f for f in gateway.faces if isinstance(f, SnmpFace))
                    while not swept(face):
                        await asyncio.sleep(0.05)
                    assert face.controller is not None
                    served = len(face.controller.index)
                    for _ in range(ROUNDS):
                        for name, (command, security, _) in WALKS.items():
                            for agent, agent_port in (("gateway", port), ("snmpd", snmpd.port)):
                                walked[agent], rate = await asyncio.to_thread(walk, env, agent_port, command, security)
                                rates[name][agent].append(rate)
                    from_alarm, from_event = await trap_latencies(line, gateway, traps)
                    cycles = [report.duration for report in list(gateway.nodes.poller.reports)[2:]]
            finally:
                snmpd.stop()
                traps.stop()
    finally:
        line.stop()
    return {
        "benchmark": "snmp",
        "boards": BOARDS,
        "nodes": 2 * BOARDS,
        "oids_served": served,
        "oids_walked": walked,
        "line": {
            "baudrate": BAUDRATE,
            "framing": "8N1",
            "turnaround_ms": TURNAROUND * 1000,
            "poll_interval_s": POLL_INTERVAL,
            "poll_cycle_s_median": round(statistics.median(cycles), 3),
        },
        **{
            f"{name}_oids_per_s": {**compared(rates[name]), "target_ratio": target}
            for name, (_, _, target) in WALKS.items()
        },
        "target_met": all(compared(rates[name])["ratio"] >= target for name, (_, _, target) in WALKS.items()),
        "trap_latency_ms": {
            "from_simulator_alarm": summary(from_alarm, 1000, 1),
            "from_gateway_alarm_event": summary(from_event, 1000, 1),
            "samples": len(from_alarm),
        },
    }


def main() -> None:
    report(measure())


if __name__ == "__main__":
    main()
