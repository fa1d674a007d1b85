"""A gateway started as root serves as its user, keeping only the right to bind ports below 1024.

Each case runs in a child process started as root (the suite runs as root, as CI does), which
drops to `nobody` and reports what it then is and may do; every module it needs is imported
before the drop (this machine's interpreter lives where `nobody` cannot read)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway.privileges import CAP_NET_BIND_SERVICE

CHILD = """
import json, os, socket, sys
from pathlib import Path
from gateway.errors import GatewayError
from gateway.privileges import drop_root

folder = Path(sys.argv[1])
try:
    dropped = drop_root(sys.argv[2], folder)
except GatewayError as error:
    print(json.dumps({"error": str(error)}))
    sys.exit(0)
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
listener = socket.socket()
try:
    listener.bind(("127.0.0.1", int(sys.argv[3])))
    bound = True
except PermissionError:
    bound = False
try:
    Path("/etc/bcpm-gateway-test-denied").write_text("x")
    wrote_etc = True
except PermissionError:
    wrote_etc = False
(folder / "state.json").write_text("{}")
print(json.dumps({
    "dropped": dropped,
    "uid": status["Uid"].split(),
    "gid": status["Gid"].split(),
    "groups": status["Groups"].split(),
    "effective": int(status["CapEff"], 16),
    "permitted": int(status["CapPrm"], 16),
    "bound_low_port": bound,
    "wrote_etc": wrote_etc,
}))
"""


def low_port() -> int:
    """A port below 1024 that nothing on 127.0.0.1 listens on now."""
    for port in range(900, 1024):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


def drop_in_a_child(user: str, folder: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), user, str(low_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_root_becomes_the_user_with_only_the_right_to_bind_low_ports() -> None:
    assert os.geteuid() == 0, "this test runs as root, as CI does"
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o755)
        folder = Path(scratch) / "state"  # missing: made for the user
        found = drop_in_a_child("nobody", folder)
        assert found["dropped"] is True
        assert set(found["uid"]) == {"65534"} and set(found["gid"]) == {"65534"}  # real, effective, saved, fs
        assert found["groups"] == ["65534"]  # root's groups are gone
        assert found["effective"] == found["permitted"] == 1 << CAP_NET_BIND_SERVICE
        assert found["bound_low_port"] is True and found["wrote_etc"] is False
        assert folder.stat().st_uid == 65534 and (folder / "state.json").stat().st_uid == 65534


def test_a_state_folder_the_user_cannot_write_is_a_clear_error() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o755)
        folder = Path(scratch) / "state"
        folder.mkdir(mode=0o755)  # root's
        found = drop_in_a_child("nobody", folder)
        assert found == {"error": f"user nobody cannot write to the state folder {folder}: chown nobody {folder}"}


def test_run_as_root_with_a_user_named_that_does_not_exist_stops_with_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n[log]\nformat = "console"\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", str(config), "--user", "no-such-user-here"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "started as root, and there is no user 'no-such-user-here' to serve as" in result.stderr
