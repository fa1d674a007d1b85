"""The checked style, run by the README's test command: lint (ruff), types (mypy) and the layer
contracts between the packages (import-linter), all configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = Path(sys.executable).parent  # installed by the test extra, beside this Python


@pytest.mark.parametrize("command", [
    ("ruff", "check", "gateway", "tests", "bench"),
    ("mypy",),
    ("lint-imports",),
], ids=lambda command: command[0])
def test_the_code_passes(command: tuple[str, ...]) -> None:
    result = subprocess.run([str(TOOLS / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
