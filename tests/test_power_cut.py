"""Power cuts: SIGKILL at random moments during a storm of BACnet identity writes, then a restart.

The state file must always load, and every Object_Name / Object_Identifier write the gateway
acknowledged before the kill must be in it (or the one write still in flight, which may have
landed just before the kill).

A kill lands between two system calls, most often far from a save. So the state folder's whole
history is recorded too (strace: every open, write, truncation, rename and unlink the gateway
makes) and replayed on a folder kept in memory, a power cut after each call: the state file on
disk must load after every one of them. A save written in place, not to a temporary file renamed
over the old one, leaves it empty or half written at some call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bacpypes3.primitivedata import ObjectIdentifier

from gateway.state import StateError, StateStore
from tests.bacnet.client import Client, free_udp_port
from tests.support import config_file

ROUNDS = 6
NODES = (1, 2)


@dataclass
class Writes:
    """What one node's identity is known to be: acknowledged values, and the one in flight."""

    name: str | None = None
    instance: int | None = None
    in_flight: dict[str, object] = field(default_factory=dict)


async def _storm(client: Client, writes: dict[int, Writes], rng: random.Random, round_: int) -> None:
    step = 0
    while True:
        step += 1
        for address in NODES:
            known = writes[address]
            target = client.node(address)
            current = f"device,{known.instance if known.instance is not None else 50000 + address}"
            if step % 3:
                name = f"panel-{address}-r{round_}-{step}"
                known.in_flight = {"name": name}
                await client.write(target, current, "object-name", name)
                known.name = name
            else:
                instance = 60000 + 1000 * address + rng.randrange(1000)
                known.in_flight = {"instance": instance}
                await client.write(target, current, "object-identifier", ObjectIdentifier(("device", instance)))
                known.instance = instance
            known.in_flight = {}


async def _up(client: Client) -> None:
    await client.find_router(timeout=30)
    for address in NODES:  # the node devices answer once discovery is done
        for _ in range(100):
            with contextlib.suppress(Exception):
                await client.read(client.node(address), "device,4194303", "object-name")
                break
            await asyncio.sleep(0.1)


async def test_sigkill_during_identity_writes_never_breaks_the_state_or_loses_an_acknowledged_write(
    make_line, tmp_path: Path
) -> None:
    line = make_line(1)
    port = free_udp_port()
    state_file = tmp_path / "state.json"
    config = config_file(
        line,
        tmp_path,
        serial={"scan": "1-3"},
        log={"level": "warning"},
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": port},
    )
    rng = random.Random(1)
    writes = {address: Writes() for address in NODES}
    for round_ in range(ROUNDS):
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config)], stderr=subprocess.DEVNULL
        )
        client = Client(port)
        try:
            await _up(client)
            storm = asyncio.create_task(_storm(client, writes, rng, round_))
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            process.kill()  # the power cut
            process.wait()
            storm.cancel()
            await asyncio.gather(storm, return_exceptions=True)
        finally:
            client.close()
            process.kill()
            process.wait()
        overrides = StateStore(state_file).load().overrides  # raises if the file is broken
        for address, known in writes.items():
            saved = overrides.get(address)
            assert saved is not None
            allowed_names = {known.name, known.in_flight.get("name")}
            allowed_instances = {known.instance, known.in_flight.get("instance")}
            assert saved.object_name in allowed_names, (round_, address, saved, known)
            assert saved.object_instance in allowed_instances, (round_, address, saved, known)
            # Whatever landed is what the next round starts from.
            known.name, known.instance, known.in_flight = saved.object_name, saved.object_instance, {}
    assert sum(1 for known in writes.values() if known.instance is not None) == len(NODES)


# The calls that change what a folder holds, as strace prints them with -ttt -y -xx: every string
# and path as \xNN escapes, a descriptor with its file's path ("3<\x2f...>").
CALLS = "openat,write,pwrite64,ftruncate,rename,renameat,renameat2,unlink,unlinkat"
_LINE = re.compile(r"(?P<time>\d+\.\d+) (?P<name>\w+)\((?P<arguments>.*)\) += (?P<result>-?\d+)(?:<[^>]*>)?")
_DESCRIPTOR = re.compile(r"(?P<number>\d+|AT_FDCWD)<(?P<path>[^>]*)>")


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    arguments: tuple[str, ...]  # as printed
    result: int

    def path(self, at: int) -> bytes | None:
        """The path of argument `at`: a string, or the file of a descriptor."""
        token = self.arguments[at]
        if token.startswith('"'):
            return _unescaped(token.strip('"'))
        descriptor = _DESCRIPTOR.fullmatch(token)
        return _unescaped(descriptor["path"]) if descriptor else None

    def data(self, at: int) -> bytes:
        return _unescaped(self.arguments[at].strip('"'))

    def descriptor(self, at: int) -> str:
        return self.arguments[at].split("<", 1)[0]


def _unescaped(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


def recorded_calls(prefix: Path) -> list[Call]:
    """The calls of every thread (strace -ff writes a file for each), in the order they were made."""
    timed = []
    for trace in prefix.parent.glob(prefix.name + ".*"):
        for line in trace.read_text().splitlines():
            if (match := _LINE.fullmatch(line)) is not None:
                call = Call(match["name"], tuple(match["arguments"].split(", ")), int(match["result"]))
                timed.append((float(match["time"]), call))
    return [call for _, call in sorted(timed, key=lambda pair: pair[0])]


def versions(calls: list[Call], state_file: Path) -> Iterator[bytes | None]:
    """What the state file holds after each call that changes it (None: there is none), the folder
    replayed in memory from the calls."""
    target = bytes(state_file)
    files: dict[bytes, bytearray] = {}
    offsets: dict[str, int] = {}  # by descriptor
    for call in calls:
        if call.result < 0:
            continue
        touched: tuple[bytes | None, ...] = ()
        if call.name == "openat" and (path := call.path(1)) is not None:
            flags = call.arguments[2]
            if "O_TRUNC" in flags or ("O_CREAT" in flags and path not in files):
                files[path] = bytearray()
                touched = (path,)
            offsets[str(call.result)] = len(files.get(path, b"")) if "O_APPEND" in flags else 0
        elif call.name in ("write", "pwrite64") and (path := call.path(0)) is not None:
            data = call.data(1)[: call.result]
            descriptor = call.descriptor(0)
            at = int(call.arguments[3]) if call.name == "pwrite64" else offsets.get(descriptor, 0)
            files.setdefault(path, bytearray())[at : at + len(data)] = data
            if call.name == "write":
                offsets[descriptor] = at + len(data)
            touched = (path,)
        elif call.name == "ftruncate" and (path := call.path(0)) is not None:
            size = int(call.arguments[1])
            files[path] = files.get(path, bytearray())[:size].ljust(size, b"\0")
            touched = (path,)
        elif call.name.startswith("rename"):
            old, new = (call.path(0), call.path(1)) if call.name == "rename" else (call.path(1), call.path(3))
            if old is not None and new is not None:
                files[new] = files.pop(old, bytearray())
                touched = (old, new)
        elif call.name.startswith("unlink"):
            path = call.path(0 if call.name == "unlink" else 1)
            files.pop(path or b"", None)
            touched = (path,)
        if target in touched:
            yield bytes(files[target]) if target in files else None


def _traced(command: list[str], prefix: Path) -> subprocess.Popen[bytes]:
    strace = shutil.which("strace")
    assert strace, "strace is missing: .ci/install-tools installs it"
    return subprocess.Popen(
        [strace, "-f", "-ff", "--seccomp-bpf", "-qq", "-ttt", "-y", "-xx", "-s", "1000000"]
        + ["-e", f"trace={CALLS}", "-o", str(prefix), "--", *command],
        stderr=subprocess.DEVNULL,
    )


def _loads(content: bytes, scratch: Path) -> bool:
    scratch.write_bytes(content)
    try:
        StateStore(scratch).load()
    except StateError:
        return False
    return True


async def test_the_state_file_on_disk_loads_after_every_call_of_a_storm_of_identity_writes(
    make_line, tmp_path: Path
) -> None:
    line = make_line(1)
    port = free_udp_port()
    state_file = tmp_path / "state" / "state.json"
    config = config_file(
        line,
        tmp_path,
        gateway={"state_file": str(state_file)},
        serial={"scan": "1-3"},
        log={"level": "warning"},
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": port},
    )
    prefix = tmp_path / "trace" / "calls"
    prefix.parent.mkdir()
    tracer = _traced([sys.executable, "-m", "gateway", "run", "--config", str(config)], prefix)
    client = Client(port)
    writes = {address: Writes() for address in NODES}
    try:
        await _up(client)
        storm = asyncio.create_task(_storm(client, writes, random.Random(2), 0))
        await asyncio.sleep(3)
        storm.cancel()
        await asyncio.gather(storm, return_exceptions=True)
    finally:
        client.close()
        children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children")
        for child in children.read_text().split() if children.exists() else ():
            os.kill(int(child), signal.SIGKILL)  # the power cut, to the gateway under strace
        tracer.wait(30)
    history = list(versions(recorded_calls(prefix), state_file))
    scratch = tmp_path / "scratch" / "state.json"
    scratch.parent.mkdir()
    broken = [at for at, content in enumerate(history) if content is not None and not _loads(content, scratch)]
    assert broken == [], f"{len(broken)} of {len(history)} moments leave a state file that does not load"
    saves = sum(1 for content in history if content is not None)
    assert saves >= 5, history  # the identity writes were saved, several times over
    assert history[-1] == state_file.read_bytes()  # the replay ends where the disk does
