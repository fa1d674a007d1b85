"""Fixtures for the bus tests: the simulator's board at units 1 and 2, on a real pty (or, where a
test asks for it, a memory line), and a Bus serving it on its own thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gateway.bus import Bus, BusClosed, LineSettings, MemoryPort, RtuTransport
from gateway.pointmap import load
from gateway.sim import Board, MemoryLine, SimulatedLine
from gateway.threads import LoopThread

TURNAROUND = 0.002  # seconds the simulated meters think before answering
# The PDU address (0-based) of channel 1's CT size: a static register the meters let a master write,
# the first of 42 alike
CT_SIZE = load().find("ct_size", group="setup", channel=1).register - 1

StartBus = Callable[..., Bus]


def serve_on_a_thread(bus: Bus) -> LoopThread:
    """Serve `bus` on a loop thread of its own, as the gateway does; returns once the port is open."""
    thread = LoopThread("bus")
    thread.start(bus.serve)
    bus.wait_ready(timeout=5)
    return thread


@pytest.fixture
def line(request: pytest.FixtureRequest) -> Iterator[SimulatedLine | MemoryLine]:
    """Board 1 (units 1 and 2) on a pty at 19200 baud with wire timing; parametrize it indirectly
    with "memory" for the same board on a memory line."""
    if getattr(request, "param", "pty") == "memory":
        yield MemoryLine([Board(1)])
        return
    with SimulatedLine([Board(1)], turnaround=TURNAROUND) as running:
        yield running


@pytest.fixture
def transports() -> list[RtuTransport]:
    """Every serial transport the buses of a test opened, oldest first."""
    return []


@pytest.fixture
def start_bus(line: SimulatedLine | MemoryLine, transports: list[RtuTransport]) -> Iterator[Callable[..., Bus]]:
    """Start a Bus on the line; keyword arguments go to LineSettings."""
    threads: list[LoopThread] = []

    async def open_rtu(settings: LineSettings, on_lost: Callable[[BusClosed], None]) -> RtuTransport:
        transports.append(transport := await RtuTransport.open(settings, on_lost))
        return transport

    def start(**settings: object) -> Bus:
        if isinstance(line, MemoryLine):
            bus = Bus(LineSettings("memory", **settings), open_transport=MemoryPort(line))  # type: ignore[arg-type]
        else:
            bus = Bus(LineSettings(line.path, **settings), open_transport=open_rtu)  # type: ignore[arg-type]
        threads.append(serve_on_a_thread(bus))
        return bus

    yield start
    for thread in threads:
        thread.stop()
