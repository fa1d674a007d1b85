"""`run` and `check-config` warn once, naming the keys, when a face on the network keeps an open default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import defaults_to_change_warning, parse_config
from tests.support import config_file, free_port

COMMAND = [sys.executable, "-m", "gateway"]
#: TEST-NET-1 (RFC 5737): an address no interface of this machine has, so a bind to it fails
#: and nothing ever reaches a network; to the gateway it is simply "not loopback".
ELSEWHERE = "192.0.2.1"
LOOPBACK = {
    "bacnet": {"address": "127.0.0.1/8"},
    "snmp": {"address": "127.0.0.1"},
    "modbus_tcp": {"address": "127.0.0.1"},
}


def test_the_documented_defaults_name_the_snmp_community_and_the_open_modbus_face() -> None:
    warning = defaults_to_change_warning(parse_config({}))
    assert warning is not None
    assert 'snmp.read_community = "public"' in warning
    assert "modbus_tcp.read_only = false with modbus_tcp.allow = []" in warning
    assert "bacnet" not in warning  # BACnet listens on loopback by default


def test_bacnet_on_the_network_without_a_reinitialize_password_is_named() -> None:
    exposed = parse_config({**LOOPBACK, "bacnet": {"address": f"{ELSEWHERE}/24"}})
    assert defaults_to_change_warning(exposed) == (
        "faces on the network run with defaults a site should change: "
        'bacnet.reinit_password = "" (no password for ReinitializeDevice)'
    )
    guarded = parse_config({**LOOPBACK, "bacnet": {"address": f"{ELSEWHERE}/24", "reinit_password": "s3cret"}})
    assert defaults_to_change_warning(guarded) is None


@pytest.mark.parametrize("closed", [{"read_only": True}, {"allow": ["10.1.2.0/24"]}, {"enabled": False}])
def test_a_modbus_face_read_only_or_limited_to_some_hosts_is_not_named(closed: dict[str, object]) -> None:
    config = parse_config({**LOOPBACK, "modbus_tcp": {"address": "0.0.0.0", **closed}})
    assert defaults_to_change_warning(config) is None


def test_faces_on_loopback_or_with_their_defaults_changed_are_not_named() -> None:
    assert defaults_to_change_warning(parse_config(LOOPBACK)) is None
    changed = parse_config({"snmp": {"read_community": "bms-only"}, "modbus_tcp": {"read_only": True}})
    assert defaults_to_change_warning(changed) is None


def test_check_config_prints_the_warning_once(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n')
    result = subprocess.run([*COMMAND, "check-config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.count("defaults a site should change") == 1
    assert "snmp.read_community" in result.stdout and "modbus_tcp.allow" in result.stdout


def test_run_logs_the_warning_once_before_serving(make_line, tmp_path: Path) -> None:
    line = make_line(1)
    port = free_port()
    config = config_file(
        line, tmp_path, modbus_tcp={"enabled": True, "address": ELSEWHERE, "port": port}, log={"format": "json"}
    )
    result = subprocess.run([*COMMAND, "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
    # The bind to an address this machine does not have fails, which ends the gateway: the warning came first.
    assert result.returncode == 2 and f"cannot listen on {ELSEWHERE}:{port}" in result.stderr
    assert result.stderr.count("defaults a site should change") == 1
    assert "modbus_tcp.read_only" in result.stderr and "snmp" not in result.stderr.split("cannot listen")[0]
