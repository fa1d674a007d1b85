"""Throw-away hosts for the tests that need more than one: two IPv4 subnets joined by an IP
router, every host in a network namespace of its own (needs root and `ip`).

    site = Site()                                  # the router: 10.231.1.254/24 and 10.231.2.254/24
    site.host("gw", "10.231.1.1/24")               # a host on the first subnet, routed to the second
    process = await site.start("gw", sys.executable, "-m", "gateway", "run", "--config", path)
    out = await site.run("far", "node", "client.js", program)
    await site.close()                             # every process stopped, every namespace deleted

Nothing touches the machine's own interfaces: the veth pairs are made inside the namespaces and
every address lives there, so nothing is sent or heard outside them. Names carry the test run's
process ID; `Site()` first deletes what a killed run (a dead process ID) left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # processes run here, so `python -m tests...` works
PREFIX = "bcpmtest"
ROUTER = "router"
SUBNETS = (IPv4Interface("10.231.1.254/24"), IPv4Interface("10.231.2.254/24"))  # the router's side of each


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Process:
    """A process in a namespace; its output lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.ensure_future(self._collect(process.stdout, self.stdout)),
            asyncio.ensure_future(self._collect(process.stderr, self.stderr)),
        ]

    @staticmethod
    async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
        async for line in stream:
            lines.append(line.decode(errors="replace").rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines (structlog's JSON renderer) written so far."""
        found = []
        for line in self.stderr:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    found.append(event)
        return found

    async def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if self.process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                output = "\n".join(self.stderr[-40:])
                raise AssertionError(f"{self.name}: no {what} (exit code {self.process.returncode}):\n{output}")
            await asyncio.sleep(0.05)

    async def logged(self, event: str, timeout: float = 30) -> dict[str, Any]:
        """The first log event of that name, once it is written."""
        await self.wait_for(lambda: any(e.get("event") == event for e in self.events()), timeout, f"{event!r} log")
        return next(e for e in self.events() if e.get("event") == event)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


class Site:
    def __init__(self) -> None:
        _remove_leftovers()
        self._prefix = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        self._namespaces: list[str] = []
        self._processes: list[Process] = []
        try:
            router = self._namespace(ROUTER)
            ip("netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for index, side in enumerate(SUBNETS):
                bridge = f"br{index}"
                ip("-n", router, "link", "add", bridge, "type", "bridge")
                ip("-n", router, "addr", "add", str(side), "dev", bridge)
                ip("-n", router, "link", "set", bridge, "up")
        except BaseException:
            self._delete_namespaces()
            raise

    def namespace(self, name: str) -> str:
        return f"{self._prefix}-{name}"

    def host(self, name: str, address: str) -> None:
        """A host `name` at `address` ("ip/prefix") on one of the two subnets."""
        interface = IPv4Interface(address)
        index, side = next((i, s) for i, s in enumerate(SUBNETS) if interface.network == s.network)
        namespace = self._namespace(name)
        router = self.namespace(ROUTER)
        port = f"to-{name}"[:15]
        ip("-n", router, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        ip("-n", router, "link", "set", port, "master", f"br{index}")
        ip("-n", router, "link", "set", port, "up")
        ip("-n", namespace, "addr", "add", address, "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        ip("-n", namespace, "route", "add", "default", "via", str(side.ip))

    def forward_directed_broadcasts(self) -> None:
        """Let the router pass broadcasts sent to a subnet's broadcast address from the other side."""
        router = self.namespace(ROUTER)
        for interface in ("all", *(f"br{index}" for index in range(len(SUBNETS)))):
            ip("netns", "exec", router, "sysctl", "-qw", f"net.ipv4.conf.{interface}.bc_forwarding=1")

    async def start(self, host: str, *argv: str, env: dict[str, str] | None = None) -> Process:
        process = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            self.namespace(host),
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        running = Process(process, f"{host}: {' '.join(argv)}")
        self._processes.append(running)
        return running

    async def run(self, host: str, *argv: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
        """Run to the end; its standard output. A failure shows its standard error."""
        process = await self.start(host, *argv, env=env)
        await asyncio.wait_for(process.process.wait(), timeout)
        await process.stop()
        output = "\n".join(process.stderr)
        assert process.process.returncode == 0, f"{process.name} failed:\n{output}"
        return "\n".join(process.stdout)

    async def close(self) -> None:
        try:
            for process in self._processes:
                await process.stop()
        finally:
            self._delete_namespaces()

    def _delete_namespaces(self) -> None:
        while self._namespaces:  # their veth pairs go with them; one failure must not keep the others
            subprocess.run(["ip", "netns", "delete", self._namespaces.pop()], capture_output=True, timeout=30)

    def _namespace(self, name: str) -> str:
        namespace = self.namespace(name)
        ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")
        return namespace


@contextlib.asynccontextmanager
async def site_of(hosts: Mapping[str, str]) -> AsyncIterator[Site]:
    """A site with a host of each name at its address ("ip/prefix"), closed afterwards."""
    site = Site()
    try:
        for name, address in hosts.items():
            site.host(name, address)
        yield site
    finally:
        await site.close()


def _remove_leftovers() -> None:
    listed = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if parts[0] == PREFIX and len(parts) > 2 and parts[1].isdigit() and not _alive(int(parts[1])):
            ip("netns", "delete", name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
