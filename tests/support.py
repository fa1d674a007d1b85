"""Helpers for tests that run the gateway against the simulated line."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, merge_config, parse_config
from gateway.sim import SimulatedLine

TEST_BAUDRATE = 115200


def gateway_config(line: SimulatedLine, tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A configuration for tests: fast polling, short timeouts, no face listening anywhere."""
    raw: dict[str, Any] = {
        "gateway": {"state_file": str(tmp_path / "state.json")},
        "serial": {"port": line.path, "baudrate": TEST_BAUDRATE, "scan": "1-10", "poll_interval": 0.1,
                   "timeout": 0.05, "probe_timeout": 0.02, "slow_every": 2},
        "bacnet": {"enabled": False},
        "snmp": {"enabled": False},
        "modbus_tcp": {"enabled": False},
    }
    return parse_config(merge_config(raw, sections))


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until ``check()`` holds; fail with ``what`` if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
