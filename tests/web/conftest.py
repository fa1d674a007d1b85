"""Fixtures: the gateway with its web face on a free loopback port, and HTTPS clients for it."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.sim import SimulatedLine
from gateway.web.auth import hash_password
from gateway.web.face import WebFace
from gateway.web.tls import CERT_NAME
from tests.support import config_file, eventually, free_port, gateway_config

PASSWORD = "correct horse"
PASSWORD_HASH = hash_password(PASSWORD)


@dataclass
class Endpoint:
    """The face's address and the certificate to trust, with HTTPS clients for it."""

    port: int
    certificate: Path  # the self-signed certificate the face made

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts only the face's certificate, host name checked (127.0.0.1)."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def client(self, source: str = "127.0.0.1") -> aiohttp.ClientSession:
        """An HTTPS client whose connections come from `source` (any 127.x address is this host)."""
        # unsafe: the jar keeps cookies of a host given by IP address
        return aiohttp.ClientSession(
            self.url,
            connector=aiohttp.TCPConnector(ssl=self.tls(), local_addr=(source, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    async def raw(self, data: bytes, source: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
        """What the face answers to `data` sent as is over TLS, until it closes the connection."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls(), local_addr=(source, 0))
        try:
            writer.write(data)
            return await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()

    async def logged_in(self, source: str = "127.0.0.1") -> aiohttp.ClientSession:
        client = self.client(source)
        try:
            async with client.post(
                "/login", data={"user": "admin", "password": PASSWORD}, allow_redirects=False
            ) as reply:
                assert reply.status == 303, await reply.text()
        except BaseException:
            await client.close()
            raise
        return client


@dataclass
class Site(Endpoint):
    line: SimulatedLine
    gateway: Gateway
    face: WebFace


@pytest.fixture
async def web_site(make_line, start_gateway, tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """Start simulated boards and a gateway with the web face on; returns the Site once it serves."""

    async def start(
        *primaries: int, sections: dict[str, Any] | None = None, from_file: bool = False, **web: Any
    ) -> Site:
        """`from_file`: the configuration read from a site's file (`tmp_path / "gateway.toml"`), as
        `run` reads it, so the settings pages have a file to change."""
        line = make_line(*(primaries or (1,)))
        port = free_port()
        settings = {"enabled": True, "address": "127.0.0.1", "port": port, "password_hash": PASSWORD_HASH, **web}
        if from_file:
            config = load_config(config_file(line, tmp_path, web=settings, **(sections or {})))
        else:
            config = gateway_config(line, tmp_path, web=settings, **(sections or {}))
        gateway = await start_gateway(config)
        face = next(f for f in gateway.faces if isinstance(f, WebFace))
        await eventually(lambda: face.server is not None, what="the web face listening")
        site = Site(port, tmp_path / CERT_NAME, line, gateway, face)
        # Locked without saved profiles serves no node; otherwise every simulated node, once polled.
        locked = (sections or {}).get("gateway", {}).get("operating_mode") == "locked"
        expected = set() if locked else set(line.addresses)
        await eventually(
            lambda: (
                expected <= set(gateway.nodes.nodes)
                and all(n.health.last_success for n in gateway.nodes.nodes.values())
            ),
            what="found and polled",
        )
        return site

    yield start
