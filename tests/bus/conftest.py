"""Fixtures for the bus tests: a responder on a pty, and a Bus serving it on its own thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gateway.bus import Bus, LineSettings
from gateway.threads import LoopThread

from .responder import Responder


def registers(base: int) -> dict[int, int]:
    return {address: base + address for address in range(300)}


def serve_on_a_thread(bus: Bus) -> LoopThread:
    """Serve `bus` on a loop thread of its own, as the gateway does; returns once the port is open."""
    thread = LoopThread("bus")
    thread.start(bus.serve)
    bus.wait_ready(timeout=5)
    return thread


@pytest.fixture
def responder() -> Iterator[Responder]:
    with Responder({1: registers(1000), 2: registers(2000)}) as slave:
        yield slave


@pytest.fixture
def start_bus(responder: Responder) -> Iterator[Callable[..., Bus]]:
    """Start a Bus on the responder's pty; keyword arguments go to LineSettings."""
    threads: list[LoopThread] = []

    def start(**settings: object) -> Bus:
        bus = Bus(LineSettings(responder.path, **settings))  # type: ignore[arg-type]
        threads.append(serve_on_a_thread(bus))
        return bus

    yield start
    for thread in threads:
        thread.stop()
