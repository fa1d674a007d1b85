"""Shared rigs: the simulated BCPM line on a pty, and a gateway running against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway, running
from gateway.config import Config
from gateway.sim import SimulatedLine
from gateway.sim.multidrop import MultidropLine
from tests.support import discovered, simulated_line

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_exception_interact(node: pytest.Item) -> None:
    """A test failed: pytest-timeout is about to stop its clock (as for a debugger), which would
    leave a teardown that hangs after the failure unbounded. Unless a debugger is wanted, the clock
    goes on (`pytest_timeout_cancel_timer` below)."""
    if not node.config.getoption("usepdb"):
        node.stash[_FAILED] = True


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    """Keep the test's time bound through the teardown of a failed test; cancel it otherwise."""
    if item.stash.get(_FAILED, False):
        item.stash[_FAILED] = False
        return True  # handled: pytest-timeout leaves its timer running
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the field acceptance suite measured (its `record_property`s), one line a case."""
    measured = [
        report
        for report in terminalreporter.getreports("passed")
        if report.when == "call" and report.user_properties and "tests/field/" in report.nodeid
    ]
    if measured:
        terminalreporter.section("field acceptance: what a site can expect (config/gateway.toml as shipped)")
        for report in measured:
            figures = ", ".join(f"{name} {value}" for name, value in report.user_properties)
            terminalreporter.line(f"{report.nodeid.split('::')[-1]}: {figures}")


@pytest.fixture
def make_line() -> Iterator[Callable[..., SimulatedLine]]:
    """Start simulated boards at the given primary addresses; stopped after the test."""
    lines: list[SimulatedLine] = []

    def make(*primaries: int, **options: Any) -> SimulatedLine:
        line = simulated_line(*primaries, **options)
        line.start()
        lines.append(line)
        return line

    yield make
    for line in lines:
        line.stop()


@pytest.fixture
async def start_gateway() -> AsyncIterator[Callable[[Config], Any]]:
    """Run a gateway until the test ends; the returned coroutine waits until its nodes are known."""
    stack: list[Any] = []

    async def start(config: Config) -> Gateway:
        context = running(config)
        gateway = await context.__aenter__()
        stack.append(context)
        return await discovered(gateway)

    yield start
    for context in reversed(stack):
        await context.__aexit__(None, None, None)


@pytest.fixture
def multidrop(tmp_path: Path) -> Iterator[Any]:
    """`multidrop(n, **options)`: a virtual RS-485 line of n stations (ptys tty0...); stopped after the test."""
    lines: list[MultidropLine] = []

    def make(count: int, **options: Any) -> tuple[MultidropLine, list[Path]]:
        paths = [tmp_path / f"tty{index}" for index in range(count)]
        line = MultidropLine([str(path) for path in paths], **options)
        line.start()
        lines.append(line)
        return line, paths

    yield make
    for line in lines:
        line.stop()
