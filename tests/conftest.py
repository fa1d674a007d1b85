"""Shared rigs: the simulated BCPM line on a pty, and a gateway running against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from gateway.app import Gateway, running
from gateway.config import Config
from gateway.sim import Board, SimulatedLine
from tests.support import TEST_BAUDRATE, eventually


@pytest.fixture
def make_line() -> Iterator[Callable[..., SimulatedLine]]:
    """Start simulated boards at the given primary addresses; stopped after the test."""
    lines: list[SimulatedLine] = []

    def make(*primaries: int, model: str = "A", emulate_wire: bool = False, **options: Any) -> SimulatedLine:
        boards = [Board(primary, model=model, baudrate=TEST_BAUDRATE) for primary in primaries]
        line = SimulatedLine(boards, baudrate=TEST_BAUDRATE, turnaround=0.001, emulate_wire=emulate_wire, seed=1,
                             **options)
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
        await eventually(lambda: gateway.nodes.ready.is_set() or gateway.thread.done, 20, "discovery")
        if gateway.thread.done:
            await gateway.thread.wait()  # raises what stopped the bus thread
        return gateway

    yield start
    for context in reversed(stack):
        await context.__aexit__(None, None, None)
