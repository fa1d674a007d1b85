"""Field lifecycle, end to end: the gateway as a process, the simulator as a process on a pty.

Meters that are silent at start, a serial port that vanishes and returns (the simulator stopped
and started again on the same --link path), a port missing at start, `forget`, and restarts.
What a user sees is checked through Modbus TCP (a node that is offline answers 0x0B) and the log.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bacpypes3.pdu import Address
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient

from gateway.app import running
from gateway.bacnet import BacnetFace
from gateway.config import merge_config, parse_config
from gateway.modbus import GATEWAY_TARGET_FAILED
from gateway.nodes.cache import Quality
from gateway.nodes.errors import ScanRefused, UnknownTarget
from gateway.pointmap import load
from gateway.sim import Board, Faults, SimulatedLine
from gateway.snmp import SnmpFace
from gateway.state import StateStore
from tests.bacnet.client import Client, free_udp_port
from tests.snmp.netsnmp import varbinds
from tests.snmp.rig import READ, Agent, instance
from tests.support import TEST_BAUDRATE, eventually, free_port, gateway_config

COMMAND = [sys.executable, "-m", "gateway"]
CURRENT_12 = load().find("current", group="branch", channel=12)
CURRENT_1 = 1336 - 1  # PDU address of "Current Ch 1"
WAIT = 30.0


def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


class Simulator:
    """`bcpm-gateway simulate` on a fixed --link path, to stop and start like a USB adapter."""

    def __init__(self, link: Path, *options: str) -> None:
        self.link = link
        self.options = options
        self.process: subprocess.Popen[str] | None = None

    def start(self, *extra: str) -> None:
        self.process = subprocess.Popen(
            [
                *COMMAND,
                "simulate",
                "--link",
                str(self.link),
                "--baudrate",
                str(TEST_BAUDRATE),
                "--turnaround",
                "1",
                *self.options,
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert "simulating" in self.process.stdout.readline()

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=10) == 0
            self.process = None


class Gateway:
    """`bcpm-gateway run` with Modbus TCP on a free port; its JSON log goes to a file."""

    def __init__(self, tmp_path: Path, port: Path, **sections: dict[str, Any]) -> None:
        self.tcp_port = free_port()
        self.log = tmp_path / "gateway.log"
        self.state = tmp_path / "state.json"
        self.serial_port = port
        self.config = tmp_path / "gateway.toml"
        self.configure(**sections)
        self.process: subprocess.Popen[bytes] | None = None

    def configure(self, **sections: dict[str, Any]) -> None:
        raw = merge_config(
            {
                "gateway": {"state_file": str(self.state)},
                "serial": {
                    "port": str(self.serial_port),
                    "baudrate": TEST_BAUDRATE,
                    "scan": "1-6",
                    "poll_interval": 0.1,
                    "timeout": 0.05,
                    "probe_timeout": 0.02,
                },
                "bacnet": {"enabled": False},
                "snmp": {"enabled": False},
                "modbus_tcp": {"address": "127.0.0.1", "port": self.tcp_port},
                "log": {"format": "json"},
            },
            sections,
        )
        self.config.write_text(
            "".join(
                f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
                for name, keys in raw.items()
            )
        )

    def start(self) -> None:
        self.log.write_text("")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([*COMMAND, "run", "--config", str(self.config)], stderr=log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=15) == 0, self.log.read_text()
            self.process = None

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = (json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{"))
        return [line for line in lines if line.get("event") == name]

    def read_current(self, unit: int) -> int | None:
        """Channel 1's current of a node in mA, or the exception code Modbus TCP answered."""
        with ModbusTcpClient("127.0.0.1", port=self.tcp_port, timeout=5, retries=0) as client:
            if not client.connected:
                return None
            reply = client.read_holding_registers(CURRENT_1, count=1, device_id=unit)
            return -reply.exception_code if reply.isError() else reply.registers[0]

    def serves(self, unit: int) -> bool:
        value = self.read_current(unit)
        return value is not None and value >= 0

    def refuses(self, unit: int) -> bool:
        return self.read_current(unit) == -0x0B

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., tuple[Simulator, Gateway]]]:
    made: list[tuple[Simulator, Gateway]] = []

    def make(*sim_options: str, **sections: dict[str, Any]) -> tuple[Simulator, Gateway]:
        link = tmp_path / "ttyBCPM"
        # At the test line's 115200 baud a request is shorter on the wire than the turnaround.
        options = sim_options if "--baudrate" in sim_options else ("--no-wire-time", *sim_options)
        pair = Simulator(link, *options), Gateway(tmp_path, link, **sections)
        made.append(pair)
        return pair

    yield make
    for simulator, gateway in made:
        for process in (gateway.process, simulator.process):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_a_vanishing_port_keeps_the_gateway_up_and_polling_resumes_when_it_returns(rig) -> None:
    simulator, gateway = rig("--addresses", "1")
    simulator.start()
    gateway.start()
    until(lambda: gateway.serves(1) and gateway.serves(2), "both nodes served")
    simulator.stop()  # the adapter is unplugged: the pty and its link are gone
    until(lambda: gateway.refuses(1) and gateway.refuses(2), "both nodes offline")
    time.sleep(4)  # several attempts to open the port again (1 s, 2 s, ...)
    assert gateway.alive()
    assert len(gateway.events("bus port lost")) == 1
    assert gateway.events("bus port unavailable") == []  # the failed attempts are not logged one by one
    simulator.start()  # plugged in again under the same name
    until(lambda: gateway.serves(1) and gateway.serves(2), "both nodes served again")
    assert gateway.alive()
    gateway.stop()


def test_a_port_missing_at_start_is_waited_for_not_a_start_up_failure(rig) -> None:
    simulator, gateway = rig("--addresses", "1")
    simulator.start()
    gateway.start()
    until(lambda: gateway.serves(1), "node 1 served")
    gateway.stop()
    simulator.stop()
    gateway.configure(gateway={"operating_mode": "locked"})
    gateway.start()  # locked mode, saved nodes, no port
    until(lambda: gateway.refuses(1) and gateway.refuses(2), "the saved nodes served as offline")
    assert len(gateway.events("bus port unavailable")) == 1
    simulator.start()
    until(lambda: gateway.serves(1) and gateway.serves(2), "both nodes online once the port exists")
    gateway.stop()
    simulator.stop()
    check = subprocess.run([*COMMAND, "check-config", str(gateway.config)], capture_output=True, text=True)
    assert check.returncode == 0 and "serial.port" in check.stdout and "does not exist" in check.stdout


def test_a_known_meter_silent_at_start_is_served_offline_then_online_and_never_forgotten(rig) -> None:
    simulator, gateway = rig("--addresses", "1,3")
    simulator.start()
    gateway.start()
    until(lambda: all(gateway.serves(unit) for unit in (1, 2, 3, 4)), "four nodes served")
    gateway.stop()
    simulator.stop()
    simulator.start("--absent", "3:8", "--absent", "4:8")  # the second board boots late
    gateway.start()
    until(lambda: gateway.serves(1) and gateway.refuses(3) and gateway.refuses(4), "board 3 served as offline")
    assert sorted(StateStore(gateway.state).load().profiles) == [1, 2, 3, 4]
    until(lambda: gateway.serves(3) and gateway.serves(4), "board 3 online by itself")
    assert sorted(gateway.events("nodes ready")[0]["addresses"]) == [1, 2, 3, 4]
    refused = subprocess.run([*COMMAND, "forget", "--config", str(gateway.config), "3"], capture_output=True, text=True)
    assert refused.returncode == 2 and f"process {gateway.process.pid}" in refused.stderr
    assert "stop it first" in refused.stderr and "Traceback" not in refused.stderr
    gateway.stop()
    unknown = subprocess.run([*COMMAND, "forget", "--config", str(gateway.config), "9"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "no node known at 9 (known: 1, 2, 3, 4)" in unknown.stderr
    revision = StateStore(gateway.state).load().database_revision
    forgot = subprocess.run(
        [*COMMAND, "forget", "--config", str(gateway.config), "3", "4"], capture_output=True, text=True
    )
    assert forgot.returncode == 0, forgot.stderr
    forgotten = StateStore(gateway.state).load()
    assert (sorted(forgotten.profiles), forgotten.database_revision) == ([1, 2], revision + 1)


async def test_twenty_restarts_in_a_row_find_every_node_every_time(tmp_path: Path) -> None:
    """Each life starts from an empty state file, so its own scan must find every node; each is
    stopped at a different point of a poll cycle, with a request or a reply on the wire."""
    boards = [Board(primary, baudrate=19200) for primary in (1, 3, 5)]
    found = []
    with SimulatedLine(boards, baudrate=19200, turnaround=0.005, emulate_wire=True) as line:
        for life in range(20):
            state = tmp_path / f"state-{life}.json"
            config = parse_config(
                {
                    "gateway": {"state_file": str(state)},
                    # Probes patient enough for a simulator slowed by a loaded machine: what is tested is
                    # that nothing of the last life (stale bytes, a late reply) costs a node.
                    "serial": {
                        "port": line.path,
                        "baudrate": 19200,
                        "scan": "1-8",
                        "poll_interval": 0.1,
                        "probe_timeout": 0.05,
                    },
                    "bacnet": {"enabled": False},
                    "snmp": {"enabled": False},
                    "modbus_tcp": {"enabled": False},
                }
            )
            async with running(config) as gateway:
                await eventually(gateway.nodes.ready.is_set, 20, what=f"discovery of life {life}")
                await asyncio.sleep(0.05 * (life % 4))
                found.append(sorted(StateStore(state).load().profiles))
    assert found == [[1, 2, 3, 4, 5, 6]] * 20


async def test_a_meter_powered_up_later_comes_online_on_every_face_without_a_restart(make_line, tmp_path) -> None:
    line = make_line(1, 3)
    line.vanish(3)
    line.vanish(4)
    snmp_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    config = gateway_config(
        line,
        tmp_path,
        serial={"rescan_interval": 1},
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port()},
        snmp={"enabled": True, "address": "127.0.0.1", "port": snmp_port, "read_community": READ},
        modbus_tcp={"enabled": True, "address": "127.0.0.1", "port": tcp_port},
    )
    async with running(config) as gateway:
        await eventually(gateway.nodes.ready.is_set, 20, "discovery")
        assert sorted(gateway.nodes.nodes) == [1, 2]
        snmp = next(face for face in gateway.faces if isinstance(face, SnmpFace))
        await eventually(lambda: snmp.controller is not None, 20, "the SNMP agent")
        agent = Agent(line, gateway, snmp, snmp_port, tmp_path / "netsnmp")
        client = Client(config.bacnet.port)
        try:
            await client.find_router()
            assert (await agent.tool("snmpget", instance(CURRENT_12, 3))).stdout.count("No Such Instance") == 1
            line.restore(3)
            line.restore(4)
            bacnet = next(face for face in gateway.faces if isinstance(face, BacnetFace))
            await eventually(
                lambda: bacnet.network is not None and sorted(bacnet.network.applications) == [1, 2, 3, 4],
                20,
                "the rescan finding board 3, and BACnet serving it",
            )
            i_ams = await client.app.who_is(address=Address(f"{config.bacnet.network}:*"), timeout=1)
            offset = config.bacnet.device_id_offset
            assert sorted(i_am.iAmDeviceIdentifier[1] for i_am in i_ams) == [offset + a for a in (1, 2, 3, 4)]
            assert await client.read(client.node(4), f"device,{offset + 4}", "model-name")
            line.panel(3).set_current(12, 4.5)
            await eventually(
                lambda: gateway.nodes.nodes[3].cache.reading(CURRENT_12).value == 4.5, what="node 3 polled"
            )
            [got] = varbinds((await agent.tool("snmpget", instance(CURRENT_12, 3))).stdout)
            assert got.number == 4500  # mA
            tcp = AsyncModbusTcpClient("127.0.0.1", port=tcp_port, timeout=5, retries=0)
            await tcp.connect()
            try:
                reply = await tcp.read_holding_registers(CURRENT_12.register - 1, count=1, device_id=3)
                assert not reply.isError()
            finally:
                tcp.close()
        finally:
            client.close()


async def test_a_forgotten_node_leaves_every_face_and_the_state_and_a_rescan_finds_it_again(
    make_line, tmp_path
) -> None:
    line = make_line(1, 3)
    snmp_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    config = gateway_config(  # rescan_interval 0: only a rescan asked for scans again
        line,
        tmp_path,
        serial={"rescan_interval": 0},
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port()},
        snmp={"enabled": True, "address": "127.0.0.1", "port": snmp_port, "read_community": READ},
        modbus_tcp={"enabled": True, "address": "127.0.0.1", "port": tcp_port},
    )
    state = StateStore(config.gateway.state_file)
    async with running(config) as gateway:
        await eventually(gateway.nodes.ready.is_set, 20, "discovery")
        snmp = next(face for face in gateway.faces if isinstance(face, SnmpFace))
        bacnet = next(face for face in gateway.faces if isinstance(face, BacnetFace))
        await eventually(lambda: snmp.controller is not None and bacnet.network is not None, 20, "the faces")
        agent = Agent(line, gateway, snmp, snmp_port, tmp_path / "netsnmp")
        client = Client(config.bacnet.port)
        tcp = AsyncModbusTcpClient("127.0.0.1", port=tcp_port, timeout=5, retries=0)
        await tcp.connect()
        try:
            await client.find_router()
            revision = state.load().database_revision
            with pytest.raises(UnknownTarget, match="no node known at 9"):
                await gateway.nodes.forget([3, 9])
            assert sorted(state.load().profiles) == [1, 2, 3, 4]
            await gateway.nodes.forget([3])
            assert sorted(gateway.nodes.nodes) == [1, 2, 4]
            assert sorted(state.load().profiles) == [1, 2, 4]
            await eventually(lambda: sorted(bacnet.network.applications) == [1, 2, 4], what="the BACnet device gone")
            assert state.load().database_revision == revision + 1  # saved before the device left
            i_ams = await client.app.who_is(address=Address(f"{config.bacnet.network}:*"), timeout=1)
            offset = config.bacnet.device_id_offset
            assert sorted(i_am.iAmDeviceIdentifier[1] for i_am in i_ams) == [offset + a for a in (1, 2, 4)]
            for _ in range(100):  # the SNMP index is built again off the event, in its own time
                if "No Such Instance" in (await agent.tool("snmpget", instance(CURRENT_12, 3))).stdout:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("SNMP still serves the rows of the forgotten node")
            gone = await tcp.read_holding_registers(CURRENT_12.register - 1, count=1, device_id=3)
            assert gone.isError() and gone.exception_code == GATEWAY_TARGET_FAILED
            await gateway.nodes.rescan()  # the meter still answers: found again
            await eventually(
                lambda: bacnet.network is not None and sorted(bacnet.network.applications) == [1, 2, 3, 4],
                20,
                "the rescan finding node 3, and BACnet serving it",
            )
            assert sorted(state.load().profiles) == [1, 2, 3, 4]
            back = await tcp.read_holding_registers(CURRENT_12.register - 1, count=1, device_id=3)
            assert not back.isError()
        finally:
            tcp.close()
            client.close()


async def test_locked_mode_refuses_a_rescan(make_line, tmp_path) -> None:
    line = make_line(1)
    async with running(gateway_config(line, tmp_path)) as gateway:
        await eventually(gateway.nodes.ready.is_set, 20, "discovery")
    async with running(gateway_config(line, tmp_path, gateway={"operating_mode": "locked"})) as gateway:
        await eventually(gateway.nodes.ready.is_set, 20, "the saved nodes")
        with pytest.raises(ScanRefused, match="locked mode"):
            await gateway.nodes.rescan()


def test_a_transceiver_that_hears_itself_is_served_with_serial_echo(rig) -> None:
    simulator, gateway = rig("--addresses", "1", "--echo", serial={"echo": True})
    simulator.start()
    gateway.start()
    until(lambda: gateway.serves(1) and gateway.serves(2), "both nodes served through the echo")
    gateway.stop()


async def test_an_echo_that_does_not_match_is_a_counted_line_fault(make_line, start_gateway, tmp_path) -> None:
    line = make_line(1, echo=True)
    gateway = await start_gateway(gateway_config(line, tmp_path, serial={"echo": True}))
    assert sorted(gateway.nodes.nodes) == [1, 2]
    await eventually(
        lambda: all(n.cache.reading(CURRENT_12).quality is Quality.GOOD for n in gateway.nodes.nodes.values()),
        what="both nodes polled",
    )
    line.faults = Faults(echo_error=1.0)
    await eventually(lambda: not any(n.health.online for n in gateway.nodes.nodes.values()), what="nodes offline")
    assert gateway.nodes.bus.stats.corrupt >= 2
    line.faults = Faults()
    await eventually(lambda: all(n.health.online for n in gateway.nodes.nodes.values()), what="nodes back")


@pytest.mark.parametrize("mode", ["kernel", "rts"])
async def test_rs485_direction_control_on_a_port_without_it_is_a_clear_line_error(make_line, tmp_path, mode) -> None:
    line = make_line(1)  # a pty has neither an RS-485 mode nor RTS
    async with running(gateway_config(line, tmp_path, serial={"rs485": mode})) as gateway:
        bus = gateway.nodes.bus
        await eventually(lambda: "RS-485" in bus.closed_reason, what="the port refused")
        assert f"serial.rs485 = '{mode}'" in bus.closed_reason and "Inappropriate ioctl" in bus.closed_reason
        assert not gateway.thread.done  # still up, trying again


def test_discover_finds_the_line_settings_of_the_meters(rig, tmp_path) -> None:
    # 9600 8N1: a master on a pty cannot set a parity (Linux refuses it), so parity is not tried here.
    simulator, _ = rig("--addresses", "1", "--baudrate", "9600")
    simulator.start()
    result = subprocess.run(
        [*COMMAND, "discover", "--port", str(simulator.link), "--baudrate", "auto", "--range", "1-3", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert [(row["address"], row["baudrate"], row["parity"]) for row in found] == [(1, 9600, "N"), (2, 9600, "N")]
    assert result.stderr == ""  # off a terminal: the result only
    # On a terminal, the progress: line settings being tried, addresses probed, meters found so far.
    terminal, shown = os.openpty()
    fcntl.ioctl(shown, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 columns wide
    try:
        table = subprocess.Popen(
            [*COMMAND, "discover", "--port", str(simulator.link), "--baudrate", "auto", "--range", "1-3"],
            stdout=subprocess.PIPE,
            stderr=shown,
            text=True,
        )
        progress = b""
        while table.poll() is None or select.select([terminal], [], [], 0)[0]:
            if select.select([terminal], [], [], 0.1)[0]:
                progress += os.read(terminal, 4096)
        stdout, _ = table.communicate(timeout=120)
    finally:
        os.close(terminal)
        os.close(shown)
    assert table.returncode == 0
    assert "9600 baud, 8N1" in stdout
    assert b"19200 8N1" in progress and b"9600 8N1" in progress and b"found=2" in progress


def test_run_with_auto_line_settings_finds_serves_and_saves_them(rig) -> None:
    simulator, gateway = rig("--addresses", "1", "--baudrate", "9600", serial={"baudrate": "auto"})
    simulator.start()
    gateway.start()
    until(lambda: gateway.serves(1) and gateway.serves(2), "both nodes served at the settings found")
    # A Modbus master this project did not write reads a branch current through the gateway.
    read = subprocess.run(
        [
            "mbpoll",
            "-m",
            "tcp",
            "-1",
            "-0",
            "-a",
            "2",
            "-r",
            str(CURRENT_1),
            "-c",
            "1",
            "-t",
            "4",
            "-p",
            str(gateway.tcp_port),
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert read.returncode == 0 and f"[{CURRENT_1}]:" in read.stdout, read.stdout + read.stderr
    [found] = gateway.events("line settings found")
    assert (found["baudrate"], found["parity"]) == (9600, "N")
    # 19200 8N1 heard nothing; 8E1 and 8O1 the pty refused (no parity on a pty); then 9600 8N1.
    assert [event["baudrate"] for event in gateway.events("bus port open")] == [19200, 9600]
    assert json.loads(gateway.state.read_text())["line"] == {"baudrate": 9600, "parity": "N"}
    gateway.stop()
    gateway.start()
    until(lambda: gateway.serves(1) and gateway.serves(2), "both nodes served after a restart")
    assert [event["baudrate"] for event in gateway.events("bus port open")] == [9600]  # the saved settings first
    gateway.stop()
    check = subprocess.run([*COMMAND, "check-config", str(gateway.config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
