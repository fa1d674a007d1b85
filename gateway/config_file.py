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
settings file gives the site's file back in full; `check-config` names each key it overrides. The
file before the last change is kept beside it (``web-settings.toml.1``); `revert_settings` takes it
back (the one it replaces kept in turn).

A whole configuration goes out as `configuration_text` (every key as the gateway would run with it
after a restart, secrets left out unless asked) and comes back through `upload_changes`: the keys
whose value differs from that, which `change_settings` then writes; an upload that would change a
key outside SETTABLE changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
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
    raw_settings,
    read_settings,
    read_toml,
    settings_file,
    with_key,
    with_uploads,
)
from gateway.errors import ConfigError, ConfigProblem, GatewayError, show_value
from gateway.files import write_atomically

__all__ = [
    "change_settings",
    "configuration_text",
    "overridden_keys",
    "previous_settings",
    "revert_settings",
    "set_site_keys",
    "upload_changes",
]

_writing = threading.Lock()  # one change at a time in this process; the file lock for others
#: What else a configuration must pass to be written: what `check-config` checks beyond the keys
#: (a BBMD's table, ...). Raises GatewayError saying what is wrong.
Check = Callable[[Config], None]


def previous_settings(settings: Path) -> Path:
    """Where the settings file before the last change is kept."""
    return settings.with_name(settings.name + ".1")


def settable(name: str) -> bool:
    """Whether ``"section.key"`` may be changed on a running gateway (see SETTABLE)."""
    section, _, key = name.partition(".")
    return key in SETTABLE.get(section, ())


def change_settings(
    site_file: Path, changes: Mapping[str, Any], actor: Actor, audit: AuditLog, check: Check | None = None
) -> Config:
    """Set ``"section.key"`` -> raw TOML value in the settings file over `site_file`; the
    configuration the gateway will run with after a restart. Raises ConfigError, writing nothing,
    when a key may not be changed (see SETTABLE), a value is refused, or `check` refuses the
    result; each key's outcome is audited. The file it replaces is kept (`previous_settings`)."""
    action = "change setting"
    refused = [
        ConfigProblem(name, value, "a key the running gateway may change (see SETTABLE)")
        for name, value in changes.items()
        if not settable(name)
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
            config = _checked(site_file, site, wanted, check, changes, actor, audit, action)
            text = _toml(wanted)
            if tomllib.loads(text) != wanted:  # what is written reads back the same, or nothing is
                raise ConfigError(heading=f"not changed: the settings would not read back from {target}")
            _replace_keeping(target, text.encode())
    before = raw_settings(running)  # each key's value, whether the site's file, a change or the default gave it
    for name, value in changes.items():
        section, key = name.split(".", 1)
        was = before[section].get(key, "(none)")
        detail = "(a secret)" if key in SECRET_KEYS else f"{_redacted(was)!r} -> {_redacted(value)!r}"
        audit.record(actor, action, "done", key=name, detail=detail)
    return config


def revert_settings(site_file: Path, actor: Actor, audit: AuditLog, check: Check | None = None) -> Config:
    """Take back the settings file before the last change (the one now in use is kept in its
    place, so a second revert undoes the first); checked like a change. ConfigError when there is
    none or it is refused, and nothing changes."""
    action = "revert settings"
    with _writing:
        site = read_toml(site_file)
        target = settings_file(load_config(site_file))
        with _held(target):
            previous = previous_settings(target)
            if not previous.exists():
                audit.record(actor, action, "refused: no earlier settings")
                raise ConfigError(heading="not changed: no earlier settings are kept")
            wanted = read_settings(previous)
            config = _checked(site_file, site, wanted, check, {}, actor, audit, action)
            _replace_keeping(target, previous.read_bytes())
    audit.record(actor, action, "done")
    return config


def upload_changes(site_file: Path, text: str) -> dict[str, Any]:
    """The changes an uploaded configuration (TOML text) asks for: ``"section.key"`` -> its raw value,
    for each key whose value differs from what the gateway runs with after a restart; keys left out
    are kept. ConfigError, naming every problem, for text that is not TOML or that `check-config`
    would refuse, and for one that changes a key outside SETTABLE: then nothing is to change."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(heading=f"not changed: the file is not valid TOML: {error}") from None
    try:
        uploaded = raw_settings(parse_config(data))
    except ConfigError as error:
        raise ConfigError(error.problems, heading="not changed: the file has") from None
    running = raw_settings(load_config(site_file))
    changes: dict[str, Any] = {}
    refused: list[ConfigProblem] = []
    for section, keys in data.items():
        for key, value in keys.items():
            name = f"{section}.{key}"
            if uploaded[section][key] == running[section][key]:
                continue
            if settable(name):
                changes[name] = value
            else:
                refused.append(
                    ConfigProblem(name, value, f"{show_value(running[section][key])} (only the site's file sets it)")
                )
    if refused:
        raise ConfigError(refused, heading="not changed: the file changes keys a running gateway may not change:")
    return changes


def configuration_text(config: Config, *, secrets: bool, host: str = "") -> str:
    """The whole configuration as TOML, every key as `config` has it; secrets (SECRET_KEYS) left
    out, each named in a comment, unless `secrets`. Read back with `upload_changes`."""
    import tomli_w  # only a download needs it

    tables = raw_settings(config)
    left_out = [] if secrets else _secrets_taken_out(tables)
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    heading = [
        f"# The configuration of the BCPM gateway{f' {host}' if host else ''} as it runs after a restart, {made}:",
        "# the site's file with the settings changed on the running gateway over it; every key.",
    ]
    if left_out:
        heading.append(f"# Left out (kept as they are when this file is uploaded): {', '.join(left_out)}.")
    return "\n".join(heading) + "\n\n" + tomli_w.dumps(tables)


def _redacted(value: Any) -> Any:
    """A raw value as the audit may show it: a secret inside a table (an SNMPv3 user's key) masked."""
    if isinstance(value, dict):
        return {key: "(a secret)" if key in SECRET_KEYS else _redacted(item) for key, item in value.items()}
    return value


def _secrets_taken_out(tables: dict[str, Any], where: str = "") -> list[str]:
    """Take every secret out of raw TOML tables, however deep (an SNMPv3 user's keys); their names."""
    taken = []
    for key, value in list(tables.items()):
        name = f"{where}.{key}" if where else key
        if key in SECRET_KEYS:
            del tables[key]
            taken.append(name)
        elif isinstance(value, dict):
            taken += _secrets_taken_out(value, name)
    return taken


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


def _checked(
    site_file: Path,
    site: Mapping[str, Any],
    wanted: Mapping[str, Any],
    check: Check | None,
    changes: Mapping[str, Any],
    actor: Actor,
    audit: AuditLog,
    action: str,
) -> Config:
    """The configuration `wanted` over the site's file gives, as `check-config` and `check` see
    it; ConfigError (each change's refusal audited) when either refuses it."""
    try:
        config = with_uploads(replace(parse_config(merge_config(site, wanted)), source=site_file))
        if check is not None:
            check(config)
    except ConfigError as error:
        named = {problem.key.split("[")[0] for problem in error.problems}
        for name in changes or {"": None}:
            outcome = "refused: invalid value" if name in named else "refused: another value was invalid"
            audit.record(actor, action, outcome, key=name)
        raise ConfigError(error.problems, heading="not changed:") from None
    except GatewayError as error:
        for name in changes or {"": None}:
            audit.record(actor, action, "refused: the gateway would not start with it", key=name)
        raise ConfigError(heading=f"not changed: {error}") from None
    return config


def _replace_keeping(target: Path, data: bytes) -> None:
    """Write `target` whole, the file it replaces kept as `previous_settings`."""
    if target.exists():
        write_atomically(previous_settings(target), target.read_bytes(), 0o600)
    write_atomically(target, data, 0o600)


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
