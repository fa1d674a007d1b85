"""Writing the configuration: the site's file from a command run by root, the settings a running
gateway may change from its web face, and the audit of both.

Two files, two owners. The site's file (``/etc/bcpm-gateway/gateway.toml``, ``0640
root:bcpm-gateway``) is read by the gateway and written only by root: by hand, or by
``bcpm-gateway set-password`` through `set_site_keys`. The gateway, which faces the network, never
gets write access to it (the systemd unit's ``ProtectSystem=strict`` keeps /etc read-only; a gateway
started as root drops to its user, `gateway.privileges`). What the web face may change goes to the
settings file beside the state file (`gateway.config.SETTINGS_FILE`, ``0600``, the gateway user's),
which `gateway.config.load_config` lays over the site's file at every start:

- only the keys of `gateway.config.SETTABLE` are ever written there, and a key outside it found
  there stops the gateway with an error naming it, so even a process that could write any bytes to
  that file cannot move a path (state file, bdt.ini, certificate, key, serial device) or open the
  web face wider (its address, port, allow lists, password): those stay the site file's;
- `change_settings` checks the whole result as `check-config` would (the same `parse_config`)
  before anything is written, and writes nothing when one value is refused;
- every write is atomic with the final mode set before the data (`gateway.files.write_atomically`);
- every change and every refusal is in the audit log beside the state file (`gateway.audit`),
  with the user, client address, session and key (values of secrets are never written there).

A settings page calls ``change_settings(site_file, {"snmp.trap_rate": 20}, actor, audit)`` after
its session and CSRF checks, and restarts the gateway for the change to take effect. ``rm`` of the
settings file gives the site's file back in full; `check-config` names each key it overrides.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.audit import Actor, AuditLog
from gateway.config import (
    SECRET_KEYS,
    SETTABLE,
    Config,
    load_config,
    merge_config,
    parse_config,
    read_settings,
    read_toml,
    settings_file,
    with_key,
)
from gateway.errors import ConfigError, ConfigProblem
from gateway.files import write_atomically

__all__ = ["change_settings", "overridden_keys", "set_site_keys"]

_writing = threading.Lock()  # one change at a time in this process; the file lock for others


def change_settings(site_file: Path, changes: Mapping[str, Any], actor: Actor, audit: AuditLog) -> Config:
    """Set ``"section.key"`` -> raw TOML value in the settings file over `site_file`; the
    configuration the gateway will run with after a restart. Raises ConfigError, writing nothing,
    when a key may not be changed (see SETTABLE) or a value is refused; each key's outcome is
    audited."""
    action = "change setting"
    refused = [
        ConfigProblem(name, value, "a key the running gateway may change (see SETTABLE)")
        for name, value in changes.items()
        if name.partition(".")[2] not in SETTABLE.get(name.partition(".")[0], ())
    ]
    for problem in refused:
        audit.record(actor, action, "refused: not settable", key=problem.key)
    if refused:
        raise ConfigError(refused, heading="not changed:")
    with _writing:
        site = read_toml(site_file)
        running = load_config(site_file)
        target = settings_file(running)
        with _held(target):
            current = read_settings(target)
            wanted = merge_config(current, _tables(changes))
            try:
                config = parse_config(merge_config(site, wanted))
            except ConfigError as error:
                named = {problem.key.split("[")[0] for problem in error.problems}
                for name in changes:
                    outcome = "refused: invalid value" if name in named else "refused: another value was invalid"
                    audit.record(actor, action, outcome, key=name)
                raise ConfigError(error.problems, heading="not changed:") from None
            text = _toml(wanted)
            if tomllib.loads(text) != wanted:  # what is written reads back the same, or nothing is
                raise ConfigError(heading=f"not changed: the settings would not read back from {target}")
            write_atomically(target, text.encode(), 0o600)
    before = merge_config(site, current)
    for name, value in changes.items():
        section, key = name.split(".", 1)
        was = before.get(section, {}).get(key, "(default)")
        detail = "(a secret)" if key in SECRET_KEYS else f"{was!r} -> {value!r}"
        audit.record(actor, action, "done", key=name, detail=detail)
    return config


def overridden_keys(site_file: Path) -> list[str]:
    """The keys of the settings file that the gateway runs with instead of the site file's."""
    config = load_config(site_file)
    return [f"{section}.{key}" for section, keys in read_settings(settings_file(config)).items() for key in keys]


def set_site_keys(site_file: Path, changes: Sequence[tuple[str, str, object]], audit: AuditLog | None = None) -> None:
    """Set keys (section, key, value; None removes the key) in the site's own file, comments and
    the rest kept, in one write (a command run by root).

    The file keeps its owner and group, and its mode but at most 0640 (it holds secrets). Raises
    ConfigError, writing nothing, when the result is refused.
    """
    text = site_file.read_text(encoding="utf-8")
    for section, key, value in changes:
        text = with_key(text, section, key, value)
    try:
        parse_config(tomllib.loads(text))
    except ConfigError as error:
        raise ConfigError(error.problems, heading=f"config file {site_file}: not changed:") from None
    status = site_file.stat()
    owner = (status.st_uid, status.st_gid) if os.geteuid() == 0 else None
    write_atomically(site_file, text.encode(), status.st_mode & 0o740, owner)
    if audit is not None:
        for section, key, _ in changes:
            audit.record(Actor("root", "local"), "change the site's config file", "done", key=f"{section}.{key}")


def _tables(changes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for name, value in changes.items():
        section, key = name.split(".", 1)
        tables.setdefault(section, {})[key] = value
    return tables


def _toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    import tomli_w  # only a change of settings needs it

    heading = "# Settings changed on the running gateway (its web face); laid over the site's file.\n"
    return heading + tomli_w.dumps(tables)


@contextlib.contextmanager
def _held(path: Path) -> Iterator[None]:
    """An exclusive lock (flock) on a lock file beside `path`, for writers in other processes."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
