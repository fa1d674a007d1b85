"""`bcpm-gateway set-password`: only a scrypt hash goes into the config file, the rest is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gateway.audit import AUDIT_FILE
from gateway.config import load_config
from gateway.web.auth import verify_password

COMMAND = [sys.executable, "-m", "gateway"]


def set_password(config: Path, typed: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "set-password", "--config", str(config)], input=typed, capture_output=True, text=True, timeout=60
    )


def test_the_hash_replaces_the_key_in_web_and_keeps_comments_and_permissions(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('# site A\n[web]\n# the hash\npassword_hash = ""\nport = 8443\n[log]\nlevel = "info"\n')
    config.chmod(0o640)
    result = set_password(config, "plug and play\n")
    assert result.returncode == 0, result.stderr
    stored = load_config(config).web.password_hash
    assert stored is not None and stored.startswith("scrypt$")
    assert verify_password("plug and play", stored) and not verify_password("plug and pray", stored)
    assert config.read_text() == (
        f'# site A\n[web]\n# the hash\npassword_hash = "{stored}"\nport = 8443\n[log]\nlevel = "info"\n'
    )
    assert config.stat().st_mode & 0o777 == 0o640
    assert "plug and play" not in config.read_text()


def test_a_file_without_a_web_section_gets_one(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[log]\nlevel = "info"\n')
    assert set_password(config, "abcdef\n").returncode == 0
    assert load_config(config).web.password_hash is not None
    assert config.read_text().startswith('[log]\nlevel = "info"\n\n[web]\npassword_hash = "scrypt$')


def test_a_short_password_or_a_broken_file_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[web]\nport = 8443\n")
    result = set_password(config, "abc\n")
    assert result.returncode == 2 and "at least 4 characters" in result.stderr
    assert config.read_text() == "[web]\nport = 8443\n"
    config.write_text('[web]\nport = "https"\n')
    result = set_password(config, "abcdef\n")
    assert result.returncode == 2 and 'web.port = "https"' in result.stderr
    assert config.read_text() == '[web]\nport = "https"\n'


def test_a_file_others_could_read_is_written_0640_whole_and_the_change_audited(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstate_file = "{tmp_path / "state" / "state.json"}"\n[web]\nport = 8443\n')
    config.chmod(0o644)
    os.chown(config, 0, 65534)  # root and the service's group (here nogroup) keep the file
    result = subprocess.run(
        [*COMMAND, "set-password", "--config", str(config)],
        input="plug and play\n",
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0),  # a careless installer's shell: the file is never wider for that
    )
    assert result.returncode == 0, result.stderr
    status = config.stat()
    assert (status.st_mode & 0o777, status.st_uid, status.st_gid) == (0o640, 0, 65534)
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
    [entry] = [json.loads(line) for line in (tmp_path / "state" / AUDIT_FILE).read_text().splitlines()]
    assert (entry["key"], entry["outcome"], entry["client"]) == ("web.password_hash", "done", "local")
    assert "scrypt" not in entry["detail"]
