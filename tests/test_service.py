"""`install-service` / `uninstall-service`, against a scratch root folder (never this machine's /)."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway.service import CONFIG_FILE, STATE_DIR, UNIT_FILE, USER, installed_command, shipped

COMMAND = [sys.executable, "-m", "gateway"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root folder with the accounts a fresh Debian has that matter here: root, and dialout."""
    etc = tmp_path / "root" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\ndialout:x:20:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\ndialout:*::\n")
    return etc.parent


def service(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=60)


def under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


def account(root: Path, table: str, name: str) -> list[str] | None:
    lines = (root / "etc" / table).read_text().splitlines()
    return next((line.split(":") for line in lines if line.split(":")[0] == name), None)


def owner(path: Path) -> tuple[int, int, int]:
    status = path.stat()
    return status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)


def test_install_creates_the_user_folders_config_and_unit(root: Path) -> None:
    result = service("install-service", "--root", str(root))
    assert result.returncode == 0, result.stderr
    user, group = account(root, "passwd", USER), account(root, "group", USER)
    assert user is not None and group is not None
    uid, gid = int(user[2]), int(group[2])
    assert user[3] == group[2] and user[6] == "/usr/sbin/nologin"
    assert USER in account(root, "group", "dialout")[3].split(",")
    assert owner(under(root, CONFIG_FILE.parent)) == (0, gid, 0o750)
    assert owner(under(root, CONFIG_FILE)) == (0, gid, 0o640)
    assert under(root, CONFIG_FILE).read_text() == shipped("gateway.toml").read_text()
    assert owner(under(root, STATE_DIR)) == (uid, gid, 0o750)
    unit = under(root, UNIT_FILE)
    assert owner(unit) == (0, 0, 0o644)
    command = installed_command()
    assert command.is_absolute()
    assert f"ExecStart={command} run --config /etc/bcpm-gateway/gateway.toml" in unit.read_text().splitlines()
    assert "systemctl enable" not in result.stdout  # that advice is for the real root


def test_the_unit_it_writes_passes_systemd_analyze_verify_and_keeps_its_exposure_low(root: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd): the unit is not verified here")
    assert service("install-service", "--root", str(root)).returncode == 0
    unit = under(root, UNIT_FILE)
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == ""
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert score is not None, security.stdout + security.stderr
    assert float(score.group(1)) <= 2.0  # 6.2 before the hardening of the unit


def test_install_again_changes_nothing_and_keeps_an_edited_config(root: Path) -> None:
    assert service("install-service", "--root", str(root)).returncode == 0
    config = under(root, CONFIG_FILE)
    config.write_text('[snmp]\nread_community = "site-only"\n')
    again = service("install-service", "--root", str(root))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("nothing to do: the service is installed")
    assert config.read_text() == '[snmp]\nread_community = "site-only"\n'


def test_dry_run_says_what_it_would_do_and_does_nothing(root: Path) -> None:
    before = sorted(path.relative_to(root) for path in root.rglob("*"))
    result = service("install-service", "--root", str(root), "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"would create system user {USER} (group {USER}, member of dialout)"
    assert any(line.startswith(f"would write {under(root, UNIT_FILE)}") for line in lines)
    assert sorted(path.relative_to(root) for path in root.rglob("*")) == before


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_root_folder_without_accounts_is_named_plainly(tmp_path: Path, dry_run: list[str]) -> None:
    result = service("install-service", "--root", str(tmp_path), *dry_run)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path} has no etc/passwd and etc/group: --root takes the root folder of a system" in result.stderr
    assert not (tmp_path / "etc").exists()


def test_a_root_folder_without_the_serial_group_is_named_plainly(root: Path) -> None:
    (root / "etc" / "group").write_text("root:x:0:\n")
    result = service("install-service", "--root", str(root))
    assert result.returncode == 2 and "has no group dialout" in result.stderr and "useradd" not in result.stderr
    assert account(root, "passwd", USER) is None


def test_uninstall_removes_the_unit_and_user_and_keeps_config_and_state(root: Path) -> None:
    assert service("install-service", "--root", str(root)).returncode == 0
    (under(root, STATE_DIR) / "state.json").write_text("{}")
    dry = service("uninstall-service", "--root", str(root), "--dry-run")
    assert dry.stdout.splitlines() == [f"would remove {under(root, UNIT_FILE)}", f"would remove user {USER}"]
    result = service("uninstall-service", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert not under(root, UNIT_FILE).exists() and account(root, "passwd", USER) is None
    assert USER not in account(root, "group", "dialout")[3].split(",")
    assert under(root, CONFIG_FILE).exists() and (under(root, STATE_DIR) / "state.json").exists()
    assert service("uninstall-service", "--root", str(root)).stdout.startswith("nothing to do")
    # Installed again, the kept config and state belong to the service again.
    assert service("install-service", "--root", str(root)).returncode == 0
    gid = int(account(root, "group", USER)[2])
    uid = int(account(root, "passwd", USER)[2])
    assert owner(under(root, CONFIG_FILE))[:2] == (0, gid) and owner(under(root, STATE_DIR))[:2] == (uid, gid)


def test_a_user_who_is_not_root_is_told_to_be_root(root: Path) -> None:
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            # Still able to read the checkout, wherever it is (a private folder too): only the user changes.
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            *COMMAND,
            "install-service",
            "--root",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "run it as root" in result.stderr and "Traceback" not in result.stderr
    assert account(root, "passwd", USER) is None


def test_a_command_in_a_home_folder_is_refused_because_the_service_could_not_run_it(tmp_path: Path) -> None:
    home = Path("/root") if Path("/root").is_dir() else Path("/home")
    venv = Path(tempfile.mkdtemp(dir=home))
    try:
        command = venv / "bcpm-gateway"
        command.symlink_to(Path(sys.executable).parent / "bcpm-gateway")
        result = subprocess.run(
            [str(command), "install-service", "--root", str(tmp_path), "--dry-run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(venv)
    assert result.returncode == 2
    assert "under a home folder" in result.stderr and "ProtectHome" in result.stderr
