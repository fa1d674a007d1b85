"""Helpers for tests that run the gateway against the simulated line."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import Config, merge_config, parse_config
from gateway.nodes.cache import Quality
from gateway.sim import Board, SimulatedLine

TEST_BAUDRATE = 115200


def simulated_line(*primaries: int, model: str = "A", emulate_wire: bool = False, **options: Any) -> SimulatedLine:
    """Simulated boards at the given primary addresses at the test baud rate, not started yet."""
    boards = [Board(primary, model=model, baudrate=TEST_BAUDRATE) for primary in primaries]
    return SimulatedLine(boards, baudrate=TEST_BAUDRATE, turnaround=0.001, emulate_wire=emulate_wire, seed=1, **options)


async def discovered(gateway: Gateway) -> Gateway:
    """The gateway once its nodes are known; what stopped its bus thread, if that came first."""
    await eventually(lambda: gateway.nodes.ready.is_set() or gateway.thread.done, 20, "discovery")
    if gateway.thread.done:
        await gateway.thread.wait()  # raises what stopped the bus thread
    return gateway


def _test_settings(line: SimulatedLine, tmp_path: Path, sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Fast polling and short timeouts on the simulated line; no face listening unless asked."""
    raw: dict[str, Any] = {
        "gateway": {"state_file": str(tmp_path / "state.json")},
        "serial": {
            "port": line.path,
            "baudrate": TEST_BAUDRATE,
            "scan": "1-10",
            "poll_interval": 0.1,
            "timeout": 0.05,
            "probe_timeout": 0.02,
            "slow_every": 2,
        },
        "bacnet": {"enabled": False},
        "snmp": {"enabled": False},
        "modbus_tcp": {"enabled": False},
    }
    return merge_config(raw, sections)


def config_file(line: SimulatedLine, tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """The same settings as `gateway_config`, as a TOML file for a gateway run as a command."""

    def toml(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else json.dumps(value)

    path = tmp_path / "gateway.toml"
    path.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{key} = {toml(value)}\n" for key, value in keys.items())
            for name, keys in _test_settings(line, tmp_path, sections).items()
        )
    )
    return path


def gateway_config(line: SimulatedLine, tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A configuration for tests: fast polling, short timeouts, no face listening anywhere."""
    return parse_config(_test_settings(line, tmp_path, sections))


async def eventually(
    check: Callable[[], bool], timeout: float = 30.0, what: str = "condition", *, step: float = 0.02
) -> None:
    """Wait until ``check()`` holds, asking every ``step`` seconds (0: at every turn of the event
    loop); fail with ``what`` if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(step)


async def eventually_async(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """`eventually` for a check that must await (a request over the network)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class StillCache:
    """A node cache as a face reads every point of it (`current`): each register's value and
    quality as a test sets them; unknown until set."""

    values: dict[int, tuple[float | None, Quality]] = field(default_factory=dict)

    def current(self, register: int) -> tuple[float | None, Quality]:
        return self.values.get(register, (None, Quality.UNKNOWN))
