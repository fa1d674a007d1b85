"""Rigs: a gateway serving BACnet/IP on a free loopback port against the simulated line, and
bacpypes3 clients of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.bacnet import BacnetFace
from gateway.config import Config
from gateway.sim import SimulatedLine
from tests.bacnet.client import CLIENT_INSTANCE, Client, free_udp_port
from tests.support import eventually, gateway_config


def bacnet_config(line: SimulatedLine, tmp_path: Path, **bacnet: Any) -> Config:
    """A test configuration with BACnet/IP on loopback only, at a port nobody else uses."""
    settings = {"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port(), **bacnet}
    return gateway_config(line, tmp_path, bacnet=settings)


def bacnet_face(gateway: Gateway) -> BacnetFace:
    return next(face for face in gateway.faces if isinstance(face, BacnetFace))


async def serving(gateway: Gateway) -> Gateway:
    """Until the gateway's BACnet devices are built and its BACnet/IP socket takes datagrams."""
    face = bacnet_face(gateway)
    await eventually(lambda: face.network is not None and face.network.fast_path.installed, 20, "the BACnet face")
    return gateway


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(
        gateway_or_port: Gateway | int,
        instance: int = CLIENT_INSTANCE,
        *,
        foreign_ttl: int | None = None,
        host: str = "127.0.0.1",
    ) -> Client:
        port = gateway_or_port if isinstance(gateway_or_port, int) else gateway_or_port.config.bacnet.port
        client = Client(port, instance, foreign_ttl=foreign_ttl, host=host)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
async def bacnet_gateway(
    make_line: Callable[..., SimulatedLine], start_gateway: Callable[[Config], Any], tmp_path: Path
) -> AsyncIterator[tuple[Gateway, SimulatedLine]]:
    """One model-A board (nodes 1 and 2) behind a gateway serving BACnet/IP."""
    line = make_line(1)
    gateway = await serving(await start_gateway(bacnet_config(line, tmp_path)))
    yield gateway, line


@pytest.fixture
async def client(
    bacnet_gateway: tuple[Gateway, SimulatedLine], make_client: Callable[..., Client]
) -> AsyncIterator[Client]:
    """A client that has found the gateway's router."""
    found = make_client(bacnet_gateway[0])
    await found.find_router()
    yield found
