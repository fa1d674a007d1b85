"""The command line, run as a user would: separate processes, the simulator on a pty."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.modbus import ILLEGAL_DATA_ADDRESS
from gateway.sim import Fault
from tests.nodes.test_discovery import answer_the_dip_read_of
from tests.support import TEST_BAUDRATE, config_file, free_port

COMMAND = [sys.executable, "-m", "gateway"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=timeout)


def test_discover_prints_each_node_with_its_board_pairing(make_line) -> None:
    line = make_line(1, 4)
    result = run("discover", "--port", line.path, "--baudrate", str(TEST_BAUDRATE), "--range", "1-8", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert [row["address"] for row in found] == [1, 2, 4, 5]
    assert {row["address"]: row["board"] for row in found} == {1: [1, 2], 2: [1, 2], 4: [4, 5], 5: [4, 5]}
    assert {row["address"]: row["panel"] for row in found} == {1: 1, 2: 2, 4: 1, 5: 2}
    assert all(row["bcpm"] and row["model"] == "A" and row["serial"].startswith("0x") for row in found)
    table = run("discover", "--port", line.path, "--baudrate", str(TEST_BAUDRATE), "--range", "1-3")
    assert "panel 2 of board 1,2" in table.stdout


def test_discover_shows_a_panel_whose_meter_refuses_the_dip_read_as_a_board_of_its_own(make_line) -> None:
    line = make_line(1)
    answer_the_dip_read_of(line, 2, Fault(exception=ILLEGAL_DATA_ADDRESS))
    result = run(
        "discover",
        "--port",
        line.path,
        "--baudrate",
        str(TEST_BAUDRATE),
        "--range",
        "1-3",
        "--timeout",
        "0.5",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert {row["address"]: row["board"] for row in json.loads(result.stdout)} == {1: [1], 2: [2]}


def test_discover_on_a_missing_port_says_so(tmp_path: Path) -> None:
    result = run("discover", "--port", str(tmp_path / "ttyNONE"))
    assert result.returncode == 2
    assert "ttyNONE" in result.stderr and "Traceback" not in result.stderr


def test_check_config_names_key_value_and_what_is_allowed(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[serial]\nbaudrate = 12345\n[snmp]\nread_comunity = "x"\n')
    result = run("check-config", str(config))
    assert result.returncode == 2
    assert 'serial.baudrate = 12345: allowed 9600, 19200, 38400, 57600, 115200, "auto"' in result.stderr
    assert "snmp.read_comunity" in result.stderr and "read_community" in result.stderr


def test_a_broken_state_file_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "profiles": {"1": {"model": "Z"}}')
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstate_file = "{state}"\n')
    for command in (["check-config", str(config)], ["run", "--config", str(config)]):
        result = run(*command)
        assert result.returncode == 2, command
        assert str(state) in result.stderr and "Traceback" not in result.stderr
    assert state.read_text() == '{"version": 1, "profiles": {"1": {"model": "Z"}}'


def _wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 30) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    pytest.fail(f"{text!r} not logged; got:\n{''.join(seen)}")


def test_run_serves_until_sigterm_and_stops_cleanly(make_line, tmp_path: Path) -> None:
    line = make_line(1)
    bacnet = {"enabled": True, "address": "127.0.0.1/8", "port": free_port(socket.SOCK_DGRAM)}
    config = config_file(line, tmp_path, serial={"scan": "1-4"}, bacnet=bacnet, log={"format": "json"})
    process = subprocess.Popen([*COMMAND, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        logged = _wait_for_line(process, '"nodes ready"')
        assert json.loads(logged[-1])["addresses"] == [1, 2]
        # pysnmp would load cryptography (6.5 MB) for SNMPv3 privacy, which no user has here;
        # bacpypes3, readline for its console, which a serving gateway has not
        libraries = Path(f"/proc/{process.pid}/maps").read_text()
        assert "libpython" in libraries or "python3" in libraries
        assert "cryptography" not in libraries and "libreadline" not in libraries
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_a_serving_gateway_imports_no_server_or_client_of_its_libraries(make_line, tmp_path: Path) -> None:
    """Every face on, /metrics scraped: prometheus_client's own HTTP server, WSGI app and push
    client (gateway.unused) and the package metadata reader (the version is the package's) are
    never imported, nor what they bring (http.client, email): some 3 MB resident. Nor is the
    simulator, whose command's options every command parses (some 0.3 MB more)."""
    line = make_line(1)
    web_port = free_port()
    config = config_file(
        line,
        tmp_path,
        serial={"scan": "1-4"},
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": free_port(socket.SOCK_DGRAM)},
        snmp={"enabled": True, "address": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM)},
        modbus_tcp={"enabled": True, "address": "127.0.0.1", "port": free_port()},
        web={"enabled": True, "address": "127.0.0.1", "port": web_port},
        log={"format": "json"},
    )
    command = [sys.executable, "-X", "importtime", "-m", "gateway", "run", "--config", str(config)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        seen = _wait_for_line(process, '"web listening"')
        if not any('"nodes ready"' in line for line in seen):
            seen += _wait_for_line(process, '"nodes ready"')
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(f"https://127.0.0.1:{web_port}/metrics", context=context, timeout=30) as reply:
            assert reply.status == 200 and b"bcpm_node_online" in reply.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        seen += process.stderr.readlines()
    finally:
        process.kill()
        process.wait()
    imported = {line.rsplit("|", 1)[1].strip() for line in seen if line.startswith("import time:")}
    assert "prometheus_client" in imported and "bacpypes3" in imported
    unused = {"http.server", "urllib.request", "wsgiref.simple_server", "http.client", "email", "importlib.metadata"}
    assert not imported & unused
    assert "gateway.sim.cli" in imported
    assert not imported & {"gateway.sim.meter", "gateway.sim.line", "gateway.sim.faults", "gateway.sim.memory"}


def test_check_config_warns_when_communities_are_readable_by_others(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n[snmp]\nwrite_community = "s3cret"\n')
    config.chmod(0o644)
    result = run("check-config", str(config))
    assert result.returncode == 0
    assert "readable by other users" in result.stdout and "write_community" in result.stdout
    config.chmod(0o640)
    assert "readable by other users" not in run("check-config", str(config)).stdout


def test_a_face_that_cannot_listen_stops_the_gateway_with_a_clear_error(make_line, tmp_path: Path) -> None:
    line = make_line(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = config_file(
            line, tmp_path, serial={"scan": "1-3"}, snmp={"enabled": True, "address": "127.0.0.1", "port": port}
        )
        result = run("run", "--config", str(config))
    assert result.returncode == 2
    assert f"SNMP cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
