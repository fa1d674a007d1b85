"""`bcpm-gateway install-service` / `uninstall-service`: the gateway as a systemd service, one command.

Install (idempotent: a step already done is left as it is):

1. the system user `bcpm-gateway` (its own group, and dialout for the serial port);
2. /etc/bcpm-gateway (0750 root:bcpm-gateway) with the documented config, if there is none
   (0640: it holds the SNMP communities and the reinitialize password);
3. /var/lib/bcpm-gateway (0750, owned by the user) for the state file;
4. /etc/systemd/system/bcpm-gateway.service, with ExecStart set to this installation's command;
5. `systemctl daemon-reload`, when systemd runs this system.

Uninstall stops and disables the service, removes the unit and the user, and keeps the config and
the state (a later install gives them back to the service's group). `root` makes every path
relative to another root folder (an image being prepared, or a test's scratch folder): there
systemd is never asked to reload. The user is made by `useradd` (and removed by `userdel`), which
take the same root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError

USER = "bcpm-gateway"
SERIAL_GROUP = "dialout"
UNIT = "bcpm-gateway.service"
CONFIG_DIR = Path("/etc/bcpm-gateway")
CONFIG_FILE = CONFIG_DIR / "gateway.toml"
STATE_DIR = Path("/var/lib/bcpm-gateway")
UNIT_FILE = Path("/etc/systemd/system") / UNIT
#: Where a wheel install puts the documented config, the unit, the MIB module and the PICS
#: (pyproject's data-files); an editable install or a checkout has them in its own folders.
INSTALLED_FILES = Path(sysconfig.get_path("data")) / "share" / "bcpm-gateway"
CHECKOUT = Path(__file__).resolve().parents[1]
CHECKOUT_FILES = tuple(CHECKOUT / folder for folder in ("config", "mibs", "docs"))
HIDDEN_FROM_SERVICE = (Path("/home"), Path("/root"), Path("/run/user"))  # ProtectHome=yes


class ServiceError(GatewayError):
    pass


@dataclass(frozen=True, slots=True)
class Step:
    """One change to the system: what it does, in words, and the doing of it."""

    what: str
    do: Callable[[], None]


def shipped(name: str) -> Path:
    """A file shipped with the gateway (`gateway.toml`, the unit, the MIB module, the PICS)."""
    for folder in (INSTALLED_FILES, *CHECKOUT_FILES):
        if (folder / name).is_file():
            return folder / name
    places = ", ".join(map(str, (INSTALLED_FILES, *CHECKOUT_FILES)))
    raise ServiceError(f"{name} is not installed with the gateway (looked in {places})")


def installed_command() -> Path:
    """The absolute path of this installation's `bcpm-gateway` command: the one running, if it is."""
    running = Path(sys.argv[0])
    command = running if running.name == "bcpm-gateway" else Path(sysconfig.get_path("scripts")) / "bcpm-gateway"
    command = command.absolute()
    if not os.access(command, os.X_OK):
        raise ServiceError(f"{command} is not an executable: install the gateway with pip first")
    if any(command.is_relative_to(hidden) for hidden in HIDDEN_FROM_SERVICE):
        raise ServiceError(
            f"{command} is under a home folder, which the unit hides from the service "
            "(ProtectHome=yes): install the gateway elsewhere, e.g. in a virtualenv in /opt"
        )
    return command


def unit_text(command: Path) -> str:
    """The shipped unit, started by `command`."""
    text = shipped(UNIT).read_text()
    return re.sub(r"^ExecStart=\S+", f"ExecStart={command}", text, count=1, flags=re.MULTILINE)


def install_steps(root: Path, command: Path) -> list[Step]:
    """What installing the service changes under `root`, in order; empty when it is all done."""
    _check_accounts(root)
    steps = []
    if _account(root, "passwd", USER) is None:
        # The group outlives an uninstall where userdel keeps it; the user then joins it again.
        group = ["--gid", USER] if _account(root, "group", USER) else ["--user-group"]
        steps.append(
            Step(
                f"create system user {USER} (group {USER}, member of {SERIAL_GROUP})",
                lambda: _run(
                    "useradd",
                    "--root",
                    str(root),
                    "--system",
                    *group,
                    "--groups",
                    SERIAL_GROUP,
                    "--no-create-home",
                    "--home-dir",
                    str(STATE_DIR),
                    "--shell",
                    "/usr/sbin/nologin",
                    USER,
                ),
            )
        )
    elif USER not in _members(root, SERIAL_GROUP):
        steps.append(
            Step(
                f"add user {USER} to group {SERIAL_GROUP}",
                lambda: _run("usermod", "--root", str(root), "--append", "--groups", SERIAL_GROUP, USER),
            )
        )
    steps += _folder(root, CONFIG_DIR, 0o750, owner="root")
    config = _under(root, CONFIG_FILE)
    if not config.exists():
        steps.append(
            Step(
                f"write the documented config to {config} (0640 root:{USER})",
                lambda: _write(root, config, shipped("gateway.toml").read_text(), 0o640, owner="root"),
            )
        )
    else:
        steps += _owned(root, config, owner="root")
    steps += _folder(root, STATE_DIR, 0o750, owner=USER)
    unit = _under(root, UNIT_FILE)
    text = unit_text(command)
    if not unit.exists() or unit.read_text() != text:
        steps.append(
            Step(
                f"write {unit} (0644), ExecStart={command}",
                lambda: _write(root, unit, text, 0o644, owner="root", group="root"),
            )
        )
    if steps and _systemd_runs(root):
        steps.append(Step("systemctl daemon-reload", lambda: _run("systemctl", "daemon-reload")))
    return steps


def uninstall_steps(root: Path) -> list[Step]:
    """What uninstalling changes under `root`; the config and the state stay."""
    steps = []
    unit = _under(root, UNIT_FILE)
    if unit.exists():
        if _systemd_runs(root):
            steps.append(Step(f"systemctl disable --now {UNIT}", lambda: _run("systemctl", "disable", "--now", UNIT)))
        steps.append(Step(f"remove {unit}", unit.unlink))
        if _systemd_runs(root):
            steps.append(Step("systemctl daemon-reload", lambda: _run("systemctl", "daemon-reload")))
    if _account(root, "passwd", USER) is not None:
        steps.append(Step(f"remove user {USER}", lambda: _run("userdel", "--root", str(root), USER)))
    return steps


def require_root() -> None:
    if os.geteuid() != 0:
        raise ServiceError("this changes the system: run it as root (or with --dry-run to see what it would do)")


def carry_out(steps: list[Step], dry_run: bool, say: Callable[[str], None]) -> None:
    """Say each step and, unless `dry_run`, do it."""
    for step in steps:
        say(f"{'would ' if dry_run else ''}{step.what}")
        if not dry_run:
            step.do()


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


def _account(root: Path, table: str, name: str) -> list[str] | None:
    """The fields of `name` in /etc/passwd or /etc/group under `root`; None when it is not there."""
    try:
        lines = _under(root, Path("/etc") / table).read_text().splitlines()
    except FileNotFoundError:
        return None
    return next((fields for fields in (line.split(":") for line in lines) if fields[0] == name), None)


def _check_accounts(root: Path) -> None:
    """The service user is added to the accounts of the system at `root`: they must be there."""
    missing = [table for table in ("passwd", "group") if not _under(root, Path("/etc") / table).is_file()]
    if missing:
        files = " and ".join(f"etc/{table}" for table in missing)
        raise ServiceError(
            f"{root} has no {files}: --root takes the root folder of a system (an image being prepared), "
            "whose accounts the service user joins"
        )
    if _account(root, "group", SERIAL_GROUP) is None:
        raise ServiceError(f"{root} has no group {SERIAL_GROUP}, which the service user joins to use the serial port")


def _members(root: Path, group: str) -> list[str]:
    found = _account(root, "group", group)
    return found[3].split(",") if found and len(found) > 3 else []


def _ids(root: Path, owner: str, group: str) -> tuple[int, int]:
    user = _account(root, "passwd", owner)
    found = _account(root, "group", group)
    if user is None or found is None:
        raise ServiceError(f"user {owner} or group {group} is missing under {root}")
    return int(user[2]), int(found[2])


def _owned(root: Path, path: Path, owner: str) -> list[Step]:
    """A step giving a kept file back to the service's group (a reinstall may have a new group id)."""
    user, group = _account(root, "passwd", owner), _account(root, "group", USER)
    status = path.stat()
    if user and group and (status.st_uid, status.st_gid) == (int(user[2]), int(group[2])):
        return []
    return [Step(f"give {path} to {owner}:{USER}", lambda: os.chown(path, *_ids(root, owner, USER)))]


def _folder(root: Path, path: Path, mode: int, owner: str) -> list[Step]:
    folder = _under(root, path)
    if folder.is_dir():
        return _owned(root, folder, owner)

    def make() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(mode)
        os.chown(folder, *_ids(root, owner, USER))

    return [Step(f"create {folder} ({mode:04o} {owner}:{USER})", make)]


def _write(root: Path, path: Path, text: str, mode: int, owner: str, group: str = USER) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    temporary.chmod(mode)
    os.chown(temporary, *_ids(root, owner, group))
    temporary.replace(path)


def _systemd_runs(root: Path) -> bool:
    return root == Path("/") and Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ServiceError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
