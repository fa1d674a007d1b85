"""The gateway's error hierarchy: the root error and the errors of its support modules.

Every error the gateway raises on purpose derives from `GatewayError`, so the command line
can report it in one sentence instead of a traceback. Subsystems (bus, nodes, faces) define
their own errors in their own packages, also derived from `GatewayError`.

    try:
        config = load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            print(problem.key, problem.allowed)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One bad setting: where it is (dotted TOML path), what it was, what would be accepted."""

    key: str
    value: object
    allowed: str

    def __str__(self) -> str:
        return f"{self.key} = {show_value(self.value)}: allowed {self.allowed}"


class ConfigError(GatewayError):
    """A configuration the gateway refuses to start with.

    Carries every problem found, so a person fixes the file in one pass. `heading` says which
    file or what went wrong as a whole (for example a file that is not TOML at all).
    """

    def __init__(self, problems: Iterable[ConfigProblem] = (), heading: str | None = None) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        self.heading = heading
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [self.heading] if self.heading else []
        lines.extend(str(problem) for problem in self.problems)
        return "\n".join(lines)


class ListenError(GatewayError):
    """A face cannot listen on its configured address and port; the message says which and why."""


class StateError(GatewayError):
    """The saved state file cannot be read or written; the message names the file and why."""


def show_value(value: object) -> str:
    """Write a value the way a person would type it in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON string syntax is TOML's basic string syntax, and it escapes control characters.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key} = {show_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show_value(item) for item in value) + "]"
    return str(value)
