"""Writing the configuration: what a running gateway may change (and where it goes), atomic
files, the audit of every change and refusal. The unit-level API a settings page calls."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest
import tomli_w

from gateway.audit import AUDIT_FILE, Actor, AuditLog
from gateway.config import SECTIONS, SETTABLE, SETTINGS_FILE, Config, load_config
from gateway.config_file import (
    change_settings,
    configuration_text,
    previous_settings,
    revert_settings,
    upload_changes,
)
from gateway.errors import ConfigError, GatewayError
from gateway.files import write_atomically

ADMIN = Actor("admin", "192.0.2.7", "3f9c1ab2")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site's file as root would keep it, with its state folder."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'# site A\n[gateway]\nstate_file = "{tmp_path / "state" / "state.json"}"\n'
        '[snmp]\nread_community = "site-secret"\ntrap_rate = 10\n'
    )
    path.chmod(0o640)
    return path


def audit_of(site: Path) -> list[dict[str, object]]:
    path = site.parent / "state" / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def audit(site: Path) -> AuditLog:
    return AuditLog(site.parent / "state" / AUDIT_FILE)


def test_a_change_goes_to_the_settings_file_beside_the_state_and_the_site_file_is_untouched(site: Path) -> None:
    before = site.read_text()
    config = change_settings(site, {"snmp.trap_rate": 20, "bacnet.network": 77}, ADMIN, audit(site))
    assert (config.snmp.trap_rate, config.bacnet.network) == (20, 77)
    assert site.read_text() == before
    settings = site.parent / "state" / SETTINGS_FILE
    assert settings.stat().st_mode & 0o777 == 0o600
    assert "trap_rate = 20" in settings.read_text()
    assert load_config(site).snmp.trap_rate == 20  # what the next start runs with
    change_settings(site, {"snmp.trap_rate": 30}, ADMIN, audit(site))  # a later change keeps the earlier ones
    assert (load_config(site).snmp.trap_rate, load_config(site).bacnet.network) == (30, 77)
    done = [(e["key"], e["outcome"], e["detail"], e["client"], e["session"]) for e in audit_of(site)]
    assert done == [
        ("snmp.trap_rate", "done", "10 -> 20", "192.0.2.7", "3f9c1ab2"),
        ("bacnet.network", "done", "50 -> 77", "192.0.2.7", "3f9c1ab2"),  # 50: the default
        ("snmp.trap_rate", "done", "20 -> 30", "192.0.2.7", "3f9c1ab2"),
    ]


@pytest.mark.parametrize(
    "key, value",
    [
        ("gateway.state_file", "/etc/shadow"),
        ("bacnet.bdt_file", "/etc/shadow"),
        ("web.tls_cert", "/tmp/cert.pem"),
        ("web.tls_key", "/tmp/key.pem"),
        ("serial.port", "/dev/sda"),
        ("web.allow", []),
        ("web.password_hash", ""),
        ("web.port", 8443),
        ("nosuch.key", 1),
    ],
)
def test_paths_and_the_web_faces_own_access_are_never_changed_and_the_refusal_is_audited(
    site: Path, key: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        change_settings(site, {"snmp.trap_rate": 20, key: value}, ADMIN, audit(site))
    assert not (site.parent / "state" / SETTINGS_FILE).exists()
    assert [(e["key"], e["outcome"]) for e in audit_of(site)] == [(key, "refused: not settable")]


def test_a_refused_value_writes_nothing_and_names_the_key(site: Path) -> None:
    with pytest.raises(ConfigError, match="snmp.trap_rate = 0"):
        change_settings(site, {"snmp.trap_rate": 0, "bacnet.network": 77}, ADMIN, audit(site))
    assert not (site.parent / "state" / SETTINGS_FILE).exists()
    assert [(e["key"], e["outcome"]) for e in audit_of(site)] == [
        ("snmp.trap_rate", "refused: invalid value"),
        ("bacnet.network", "refused: another value was invalid"),
    ]


def test_a_secret_changed_is_audited_without_its_value(site: Path) -> None:
    change_settings(site, {"snmp.read_community": "n3w-secret"}, ADMIN, audit(site))
    text = (site.parent / "state" / AUDIT_FILE).read_text()
    assert "n3w-secret" not in text and "site-secret" not in text and "(a secret)" in text
    assert load_config(site).snmp.read_community == "n3w-secret"


def test_a_key_planted_in_the_settings_file_stops_the_gateway_naming_it(site: Path) -> None:
    folder = site.parent / "state"
    folder.mkdir()
    (folder / SETTINGS_FILE).write_text('[gateway]\nstate_file = "/tmp/elsewhere.json"\n[web]\nallow = []\n')
    with pytest.raises(ConfigError) as refused:
        load_config(site)
    assert {problem.key for problem in refused.value.problems} == {"gateway.state_file", "web.allow"}
    assert str(folder / SETTINGS_FILE) in str(refused.value)


def test_a_settings_file_others_may_write_is_refused(site: Path) -> None:
    change_settings(site, {"snmp.trap_rate": 20}, ADMIN, audit(site))
    (site.parent / "state" / SETTINGS_FILE).chmod(0o620)
    with pytest.raises(ConfigError, match="writable by others than its owner: chmod go-w"):
        load_config(site)


def test_check_config_names_the_keys_the_settings_file_sets(site: Path) -> None:
    change_settings(site, {"snmp.trap_rate": 20}, ADMIN, audit(site))
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(site)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f"{site.parent / 'state' / SETTINGS_FILE} (changed on the running gateway) sets snmp.trap_rate" in (
        result.stdout
    )


def _is_path(annotation: object) -> bool:
    return "Path" in str(annotation)


def test_no_settable_key_is_a_path_or_opens_the_web_face() -> None:
    config = Config()
    hints = {name: typing.get_type_hints(type(getattr(config, name))) for name in SECTIONS}
    for section, keys in SETTABLE.items():
        assert keys <= set(hints[section]), section
        for key in keys:
            assert not _is_path(hints[section][key]), f"{section}.{key}"
    assert not {"enabled", "address", "port", "allow", "metrics_allow", "password_hash"} & SETTABLE["web"]
    assert "port" not in SETTABLE["serial"]  # the serial device is a path too


def test_a_file_written_whole_has_its_mode_whatever_the_umask_and_replaces_a_link_without_following(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    target = tmp_path / "settings.toml"
    target.symlink_to(elsewhere)
    old_umask = os.umask(0)
    try:
        write_atomically(target, b"new", 0o600)
    finally:
        os.umask(old_umask)
    assert elsewhere.read_text() == "untouched"
    assert not target.is_symlink() and target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_the_audit_log_keeps_bounded_refusals_per_address_and_every_change(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / AUDIT_FILE, max_bytes=4000)
    for _ in range(15):
        log.record(ADMIN, "POST /actions/restart", "refused: csrf token or origin")
    log.record(ADMIN, "restart the gateway", "done")
    log.record(Actor("admin", "192.0.2.8"), "log in", "refused: wrong user or password")
    entries = [json.loads(line) for line in (tmp_path / AUDIT_FILE).read_text().splitlines()]
    assert [e["outcome"] for e in entries].count("refused: csrf token or origin") == 10
    assert entries[-2]["outcome"] == "done" and entries[-1]["client"] == "192.0.2.8"
    for _ in range(30):
        log.record(ADMIN, "restart the gateway", "done")
    assert (tmp_path / (AUDIT_FILE + ".1")).exists()
    assert (tmp_path / AUDIT_FILE).stat().st_size <= 4000
    assert (tmp_path / AUDIT_FILE).stat().st_mode & 0o777 == 0o600


def test_the_file_before_a_change_is_kept_and_taken_back_by_a_revert(site: Path) -> None:
    settings = site.parent / "state" / SETTINGS_FILE
    with pytest.raises(ConfigError, match="no earlier settings"):
        revert_settings(site, ADMIN, audit(site))
    change_settings(site, {"snmp.trap_rate": 20}, ADMIN, audit(site))
    assert not previous_settings(settings).exists()  # there was no file before
    change_settings(site, {"snmp.trap_rate": 30}, ADMIN, audit(site))
    assert "trap_rate = 20" in previous_settings(settings).read_text()
    assert previous_settings(settings).stat().st_mode & 0o777 == 0o600
    assert revert_settings(site, ADMIN, audit(site)).snmp.trap_rate == 20
    assert load_config(site).snmp.trap_rate == 20
    assert revert_settings(site, ADMIN, audit(site)).snmp.trap_rate == 30  # a second revert undoes the first
    assert [e["action"] for e in audit_of(site)][-2:] == ["revert settings", "revert settings"]


def test_a_check_beyond_the_keys_refuses_a_change_and_nothing_is_written(site: Path) -> None:
    def no_bbmd(config: Config) -> None:
        if config.bacnet.bbmd:
            raise GatewayError("bdt file /etc/bcpm-gateway/bdt.ini: cannot read it: No such file or directory")

    with pytest.raises(ConfigError, match="not changed: bdt file .* cannot read it"):
        change_settings(site, {"bacnet.bbmd": True}, ADMIN, audit(site), no_bbmd)
    assert not (site.parent / "state" / SETTINGS_FILE).exists()
    assert [(e["key"], e["outcome"]) for e in audit_of(site)] == [
        ("bacnet.bbmd", "refused: the gateway would not start with it")
    ]


def test_a_downloaded_configuration_uploads_back_as_no_change_and_leaves_its_secrets_out(site: Path) -> None:
    change_settings(site, {"bacnet.device_id_offset": 60000}, ADMIN, audit(site))
    text = configuration_text(load_config(site), secrets=False)
    assert "site-secret" not in text and "# Left out" in text and "snmp.read_community" in text
    assert tomllib.loads(text)["bacnet"]["device_id_offset"] == 60000
    assert upload_changes(site, text) == {}  # every key as it is; the secrets left out are kept
    with_secrets = configuration_text(load_config(site), secrets=True)
    assert 'read_community = "site-secret"' in with_secrets and upload_changes(site, with_secrets) == {}


def test_an_upload_changes_only_what_differs_and_may_leave_keys_out(site: Path) -> None:
    text = configuration_text(load_config(site), secrets=False).replace(
        "device_id_offset = 50000", "device_id_offset = 61000"
    )
    assert upload_changes(site, text) == {"bacnet.device_id_offset": 61000}
    assert upload_changes(site, '[snmp]\nnotify_hosts = ["192.0.2.50"]\n') == {"snmp.notify_hosts": ["192.0.2.50"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[snmp\n", "not valid TOML"),
        ("[snmp]\ntrap_rate = 0\n", "snmp.trap_rate = 0: allowed an integer 1-1000"),
        ("[bacnet]\nnosuch = 1\n", "bacnet.nosuch = 1: allowed keys in [bacnet]"),
        (
            '[web]\nport = 8443\n[gateway]\nstate_file = "/tmp/x.json"\n',
            "web.port = 8443: allowed 443 (only the site's",
        ),
    ],
)
def test_an_upload_that_check_config_refuses_or_that_changes_a_key_outside_settable_changes_nothing(
    site: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        upload_changes(site, text)
    assert "not changed" in str(refused.value)
    if "state_file" in text:
        assert "gateway.state_file" in str(refused.value)  # every one named


def test_snmpv3_users_go_out_without_their_keys_and_come_back_through_an_upload(site: Path) -> None:
    user = {"auth_passphrase": "correct horse battery", "priv_passphrase": "staple of the NMS", "access": "read-write"}
    changes = upload_changes(site, tomli_w.dumps({"snmp": {"users": {"nms": user}, "v2c": False}}))
    assert changes == {"snmp.users": {"nms": user}, "snmp.v2c": False}
    config = change_settings(site, changes, ADMIN, audit(site))
    assert [str(u) for u in config.snmp.users] == ["nms (sha256, aes128, authPriv, read-write)"]
    text = configuration_text(load_config(site), secrets=False)
    assert "correct horse" not in text and "staple" not in text
    assert "snmp.users.nms.auth_passphrase, snmp.users.nms.priv_passphrase" in text
    assert tomllib.loads(text)["snmp"]["users"]["nms"]["access"] == "read-write"
    assert upload_changes(site, configuration_text(load_config(site), secrets=True)) == {}
    assert "correct horse" not in (site.parent / "state" / AUDIT_FILE).read_text()
