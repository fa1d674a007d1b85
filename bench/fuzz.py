"""Fuzz every face of a running gateway, then check it still answers, logged no crash, kept its memory.

The gateway runs as `bcpm-gateway demo` (simulated board on a pty, everything on loopback) in a
process of its own, logging JSON to a file. Each face gets random bytes and mutations of valid
messages (bit flips, truncations, insertions, repeated or stretched fields). Afterwards a normal
request on every face must succeed, the log must hold no unhandled exception, and the
resident memory must be back within 10 % of what it was after a warm-up round of the same
traffic. Prints one JSON object.

    python bench/fuzz.py                 # 100,000 inputs per face
    python bench/fuzz.py --inputs 2000   # a quick round (the test suite runs one)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = 20261126


@dataclass(frozen=True, slots=True)
class Ports:
    bacnet: int
    snmp: int
    modbus_tcp: int


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- mutation -----------------------------------------------------------------------------------


def mutate(rng: random.Random, valid: bytes) -> bytes:
    """One malformed variant of a valid message."""
    data = bytearray(valid)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        position = rng.randrange(len(data)) if data else 0
        if choice == 0 and data:  # flip bits
            data[position] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:  # a byte at an extreme
            data[position] = rng.choice((0x00, 0x7F, 0x80, 0xFF))
        elif choice == 2:  # truncate
            del data[rng.randrange(len(data) + 1):]
        elif choice == 3:  # insert random bytes
            data[position:position] = rng.randbytes(rng.randint(1, 8))
        elif choice == 4 and data:  # repeat a slice
            end = rng.randint(position, len(data))
            data[position:position] = data[position:end] * rng.randint(1, 20)
        else:  # overwrite a 16-bit field with an extreme length
            data[position:position + 2] = rng.choice((0, 1, 0x7FFF, 0xFFFF)).to_bytes(2, "big")
    return bytes(data)


def inputs(rng: random.Random, templates: list[bytes], count: int) -> Iterator[bytes]:
    """Random bytes one time in ten, mutations of the valid templates otherwise."""
    for _ in range(count):
        if rng.random() < 0.1:
            yield rng.randbytes(rng.randint(0, 600))
        else:
            yield mutate(rng, rng.choice(templates))


# --- the faces ----------------------------------------------------------------------------------


def modbus_templates() -> list[bytes]:
    def frame(unit: int, pdu: str) -> bytes:
        body = bytes([unit]) + bytes.fromhex(pdu)
        return b"\x00\x01\x00\x00" + len(body).to_bytes(2, "big") + body

    return [frame(1, "0305370002"), frame(2, "0400000005"), frame(1, "0600480064"),
            frame(1, "1000480001020064"), frame(2, "11"), frame(1, "2b0e0100"), frame(9, "0300000001")]


async def fuzz_modbus(port: int, count: int, rng: random.Random) -> int:
    """Each input on a connection of its own, read until the gateway is done with it (it answers
    and sees the end of input, or closes a malformed connection), 12 connections at a time (the
    gateway's default cap is 16)."""
    gate = asyncio.Semaphore(12)

    async def one(frame: bytes) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(frame)
                writer.write_eof()
                await asyncio.wait_for(reader.read(), 10)
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()

    frames = list(inputs(rng, modbus_templates(), count))
    await asyncio.gather(*(one(frame) for frame in frames))
    return len(frames)


def send_datagrams(port: int, messages: Iterator[bytes], pause_every: int = 200) -> int:
    """UDP datagrams to 127.0.0.1:port, pacing a little so the socket buffers do not just drop them."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for message in messages:
            with contextlib.suppress(OSError):
                sock.sendto(message[:65000], ("127.0.0.1", port))
                sent += 1
            if sent % pause_every == 0:
                time.sleep(0.002)
    return sent


# --- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def gateway(folder: Path, ports: Ports) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    config = folder / "demo.toml"
    config.write_text(
        "[serial]\nbaudrate = 115200\n"  # the simulated line too: pass-through requests go faster
        f'[bacnet]\naddress = "127.0.0.1/8"\nport = {ports.bacnet}\n'
        f'[snmp]\nport = {ports.snmp}\n'
        f'[modbus_tcp]\nport = {ports.modbus_tcp}\n'
        '[log]\nlevel = "info"\nformat = "json"\n'
    )
    log = folder / "gateway.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--config", str(config)],
                                   stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b'"nodes ready"' not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start:\n{log.read_text()}")
            time.sleep(0.1)
        time.sleep(1.0)  # the first poll cycle fills the cache
        yield process, log
    finally:
        process.terminate()
        process.wait(10)


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def log_problems(log: Path) -> list[str]:
    """Log lines that report an unhandled exception or an error."""
    problems = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(line)  # not our JSON: a traceback printed by something else
            continue
        if record.get("level") in ("error", "critical") or "exception" in record:
            problems.append(line)
    return problems


FaceFuzzer = Callable[[Ports, int, random.Random], int]


def fuzzers() -> dict[str, FaceFuzzer]:
    return {
        "modbus_tcp": lambda ports, count, rng: asyncio.run(fuzz_modbus(ports.modbus_tcp, count, rng)),
    }


async def _modbus_answers(port: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(bytes.fromhex("000700000006010305370002"))  # FC03, 2 registers at 1336
    header = await asyncio.wait_for(reader.readexactly(7), 5)
    reply = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
    writer.close()
    return header[:2] == b"\x00\x07" and reply[:2] == b"\x03\x04"


def answers(ports: Ports) -> dict[str, bool]:
    """A normal request to every face gets a normal answer."""
    return {"modbus_tcp": asyncio.run(_modbus_answers(ports.modbus_tcp))}


def run(count: int) -> dict[str, Any]:
    ports = Ports(free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM))
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as folder, gateway(Path(folder), ports) as (process, log):
        warm_up = max(200, count // 20)
        for fuzz in fuzzers().values():  # let caches, buffers and lazy imports settle first
            fuzz(ports, warm_up, rng)
        memory_before = resident_kib(process.pid)
        sent = {}
        started = time.monotonic()
        for face, fuzz in fuzzers().items():
            sent[face] = fuzz(ports, count, rng)
        seconds = time.monotonic() - started
        time.sleep(1.0)
        alive = process.poll() is None
        healthy = answers(ports) if alive else {}
        memory_after = resident_kib(process.pid) if alive else None
        problems = log_problems(log)
    return {
        "benchmark": "fuzz",
        "inputs_per_face": sent,
        "seconds": round(seconds, 1),
        "gateway_alive": alive,
        "faces_answer_afterwards": healthy,
        "crashes": 0 if alive else 1,
        "errors_logged": len(problems),
        "first_errors": problems[:5],
        "memory_kib_before": memory_before,
        "memory_kib_after": memory_after,
        "memory_growth": round(memory_after / memory_before - 1, 3) if memory_after else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="malformed inputs per face")
    args = parser.parse_args()
    json.dump(run(args.inputs), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
