"""Fixtures: a running simulated line with one board, and a test master on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.sim import Board, SimulatedLine

from .master import Master


@pytest.fixture
def line() -> Iterator[SimulatedLine]:
    """One model-A board at addresses 1 and 2, answering at pty speed."""
    with SimulatedLine([Board(1, model="A")], turnaround=0, emulate_wire=False, seed=1) as running:
        yield running


@pytest.fixture
def master(line: SimulatedLine) -> Iterator[Master]:
    m = Master(line.path)
    yield m
    m.close()
