"""The checked style, run by the README's test command: lint and format (ruff), types (mypy) and the layer
contracts between the packages (import-linter), all configured in pyproject.toml."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from gateway.bacnet.doctor import Conflict
from gateway.config import SECTIONS
from gateway.modbus_tcp.server import Closed

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent  # installed by the test extra, beside this Python


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "gateway", "tests", "bench"),
        ("ruff", "format", "--check", "gateway", "tests", "bench"),
        ("mypy",),
        ("lint-imports",),
    ],
    ids=["ruff", "ruff format", "mypy", "lint-imports"],
)
def test_the_code_passes(command: tuple[str, ...]) -> None:
    result = subprocess.run(
        [str(TOOLS / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# One convention for log event names (README, "Logs"): a lowercase phrase, the subject first, words
# separated by single spaces, no dots, underscores or capitals but in a setting's key
# (`snmp.trap_rate`); what varies goes in keys. A PeerEvents class name is an event name too.
SETTING_KEY = re.compile(rf"\b(?:{'|'.join(SECTIONS)})\.[a-z0-9_]+\b")
EVENT_NAME = re.compile(r"[a-z0-9(][a-z0-9 ,:;()\-]*")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
NAMERS = {"peer_events", "PeerEvents", "DropReport"}
# Names made at run time, each checked below: the doctor's conflicts, the Modbus TCP face's refusals,
# the serial ports' outages (the bus, the upstream port, an MS/TP link) and an MS/TP address conflict.
MADE_AT_RUN_TIME = {
    "conflict.event",
    "f'{conflict.event} cleared'",
    "f'modbus tcp connection {reason}'",
    "f'{self.name} port unavailable'",
    "f'{self.name} port lost'",
    "f'{name} port open'",
    "f'{self.settings.name} mac conflict'",
}
PORT_NAMES = ("bus", "upstream", "mstp")


def event_name_breaks_convention(name: str) -> bool:
    return EVENT_NAME.fullmatch(SETTING_KEY.sub("key", name)) is None or "  " in name or name != name.strip()


def logged_event_names() -> Iterator[tuple[str, int, ast.expr]]:
    """(file, line, name expression) of each log call and PeerEvents class in gateway/."""
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        if path.name == "logging.py":
            continue  # the mechanism: it logs the names its callers give
        for call in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(call, ast.Call) or not call.args:
                continue
            func = call.func
            logs = (
                isinstance(func, ast.Attribute)
                and func.attr in LEVELS
                and ast.unparse(func.value).endswith(("log", "get_logger(__name__)"))
            )
            if logs or (isinstance(func, ast.Name) and func.id in NAMERS):
                yield str(path.relative_to(ROOT)), call.lineno, call.args[0]


def test_every_log_event_name_follows_the_convention() -> None:
    breaking = []
    for path, line, name in logged_event_names():
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            if event_name_breaks_convention(name.value):
                breaking.append(f"{path}:{line}: {name.value!r}")
        elif ast.unparse(name) not in MADE_AT_RUN_TIME:
            breaking.append(f"{path}:{line}: {ast.unparse(name)} (not a string literal)")
    assert not breaking, "\n".join(breaking)


@pytest.mark.parametrize(
    "name",
    [
        *(Conflict(kind, 1, "?").event for kind in get_args(get_type_hints(Conflict)["kind"])),
        *(f"modbus tcp connection {reason}" for reason in Closed),
        *(f"{port} {event}" for port in PORT_NAMES for event in ("port unavailable", "port lost", "port open")),
        *(f"{port} mac conflict" for port in PORT_NAMES),
    ],
)
def test_event_names_made_at_run_time_follow_the_convention(name: str) -> None:
    assert not event_name_breaks_convention(name)


@pytest.mark.parametrize("name", ["bus.closed", "bus_closed", "Bus closed", "bus  closed", "web login refused!"])
def test_the_convention_is_checked(name: str) -> None:
    assert event_name_breaks_convention(name)
