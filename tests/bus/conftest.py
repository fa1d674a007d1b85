"""Fixtures for the bus tests: a responder on a pty, and a Bus serving it on its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from gateway.bus import Bus, LineSettings

from .responder import Responder


def registers(base: int) -> dict[int, int]:
    return {address: base + address for address in range(300)}


class BusThread:
    """Runs `bus.serve()` on a thread with its own event loop, as the gateway does."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bus", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.bus.serve())
        except asyncio.CancelledError:
            pass  # stopped
        except BaseException as exc:  # handed to the test through .error
            self.error = exc

    def start(self) -> BusThread:
        self._thread.start()
        self.bus.wait_ready(timeout=5)
        return self

    def join(self, timeout: float = 5) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "bus thread did not end"

    def stop(self) -> None:
        self.bus.stop()
        self.join()


@pytest.fixture
def responder() -> Iterator[Responder]:
    with Responder({1: registers(1000), 2: registers(2000)}) as slave:
        yield slave


@pytest.fixture
def start_bus(responder: Responder) -> Iterator[Callable[..., BusThread]]:
    """Start a Bus on the responder's pty; keyword arguments go to LineSettings."""
    runners: list[BusThread] = []

    def start(**settings: object) -> BusThread:
        runner = BusThread(Bus(LineSettings(responder.path, **settings)))  # type: ignore[arg-type]
        runners.append(runner.start())
        return runner

    yield start
    for runner in runners:
        runner.stop()
