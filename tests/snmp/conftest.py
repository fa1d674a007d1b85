"""Fixtures: the gateway with its SNMP agent against simulated boards, and a trap receiver."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.snmp import SnmpFace
from tests.snmp.rig import NMS, READ, TRAP, WRITE, Agent, TrapReceiver
from tests.support import eventually, free_port, gateway_config


@pytest.fixture
def snmp_agent(make_line, start_gateway, tmp_path) -> Callable[..., Any]:
    """Start simulated boards and a gateway with SNMP on; returns the Agent once its tree is served."""

    async def start(*primaries: int, line_options: dict[str, Any] | None = None, **snmp: Any) -> Agent:
        line = make_line(*(primaries or (1,)), **(line_options or {}))
        port = free_port(socket.SOCK_DGRAM)
        settings = {
            "enabled": True,
            "address": "127.0.0.1",
            "port": port,
            "read_community": READ,
            "write_community": WRITE,
            "trap_community": TRAP,
            **snmp,
        }
        gateway = await start_gateway(gateway_config(line, tmp_path, snmp=settings))
        face = next(f for f in gateway.faces if isinstance(f, SnmpFace))
        agent = Agent(line, gateway, face, port, tmp_path / "netsnmp")
        await eventually(lambda: face.controller is not None and len(face.controller.index) > 100, what="SNMP tree")
        return agent

    return start


@pytest.fixture
def trap_receiver(tmp_path) -> Iterator[TrapReceiver]:
    receiver = TrapReceiver(tmp_path / "snmptrapd", users=(NMS,))
    receiver.wait_listening()
    yield receiver
    receiver.stop()
