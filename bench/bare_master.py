"""The floor of CPU a transaction: the least a Python RTU master spends polling the gateway's plan.

A master with nothing but the line: one thread, no event loop, no scheduler, no faces. It sends
each node's poll reads in the gateway's plan (fast reads every cycle, a slice of the slow ones),
nodes in turn, waiting for the line's silence, the reply's first piece (poll) and its rest (a sleep
of its wire time) as the gateway's bus does, and checks each reply's CRC and length. With `--store`
it also keeps each reply in a node cache of the gateway's (`NodeCache.store`), the one piece of the
gateway's own work that every poll read needs. `bench/cpu.py` runs it against the same simulator
as the gateway, in the same run, so the gateway's figure can be read against it.

Prints one JSON object: transactions, replies, CPU seconds of the process, CPU a transaction.

    python bench/bare_master.py --port /dev/pts/5 --units 32 --seconds 20 [--store]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import serial
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

sys.path.insert(0, str(Path(__file__).parent.parent))
from gateway.bus import CorruptReply  # noqa: E402
from gateway.config import parse_config, read_toml  # noqa: E402
from gateway.modbus import crc_holds  # noqa: E402
from gateway.nodes.cache import NodeCache  # noqa: E402
from gateway.nodes.line import line_settings  # noqa: E402
from gateway.nodes.modbus import read_registers, registers_of  # noqa: E402
from gateway.nodes.plan import REPLY_OVERHEAD_BYTES, PollPlan, Read, poll_plan  # noqa: E402
from gateway.nodes.poller import slow_slice  # noqa: E402
from gateway.nodes.registry import line_cost  # noqa: E402
from gateway.pointmap import load  # noqa: E402

MODEL = "A"
SHIPPED = Path(__file__).parent.parent / "config" / "gateway.toml"


def cycles(plan: PollPlan, every: int) -> Iterator[tuple[Read, ...]]:
    """Each cycle's reads of one node, as the gateway's poller picks them: the fast ones and the
    next slice of the slow ones."""
    cursor = 0
    while True:
        slow, cursor = slow_slice(plan.slow, cursor, every) if plan.slow else ((), 0)
        yield plan.fast + slow


def run(port: str, baudrate: int, units: int, seconds: float, store: bool) -> dict[str, Any]:
    shipped = parse_config(read_toml(SHIPPED))  # its reply timeout and share of the slow reads
    line = line_settings(replace(shipped, serial=replace(shipped.serial, port=port, baudrate=baudrate)))
    pointmap = load()
    plan = poll_plan(pointmap, MODEL, line_cost(line))
    framer = FramerRTU(DecodePDU(is_server=False))
    requests = {
        (unit, read): framer.encode(read_registers(read.start, read.count), unit, 0)
        for unit in range(1, units + 1)
        for read in plan.reads
    }
    caches = {unit: NodeCache(pointmap, MODEL, plan) for unit in range(1, units + 1)}
    wire = line.wire_time
    device = serial.Serial(port, baudrate, timeout=0)
    fd = device.fileno()
    ready = select.poll()
    ready.register(fd, select.POLLIN)
    counts = {"transactions": 0, "replies": 0}
    last_byte = time.monotonic()

    def transact(unit: int, read: Read) -> None:
        nonlocal last_byte
        if (wait := last_byte + line.silence - time.monotonic()) > 0:
            time.sleep(wait)
        frame = requests[unit, read]
        os.write(fd, frame)
        length = REPLY_OVERHEAD_BYTES + 2 * read.count
        give_up = time.monotonic() + wire(len(frame)) + line.timeout + wire(length)
        reply = b""
        while len(reply) < length and (left := give_up - time.monotonic()) > 0:
            if reply:
                time.sleep(wire(length - len(reply)))
            elif not ready.poll(left * 1000):
                break
            reply += os.read(fd, 4096)
        last_byte = time.monotonic()
        counts["transactions"] += 1
        if len(reply) == length and crc_holds(reply):
            counts["replies"] += 1
            if store:
                with contextlib.suppress(CorruptReply):  # not a reply to this read: nothing to keep
                    caches[unit].store(read.start, registers_of(reply[1:-2], read.count), time.time())

    for read in plan.reads:  # the start-up sweep, left out of the figures as in bench/cpu.py
        for unit in caches:
            transact(unit, read)
    counts.update(dict.fromkeys(counts, 0))
    cpu_before, started = time.process_time(), time.monotonic()
    schedule = cycles(plan, shipped.serial.slow_every)
    while time.monotonic() < started + seconds:
        for read in next(schedule):
            for unit in caches:
                transact(unit, read)
    cpu = time.process_time() - cpu_before
    return {
        "benchmark": "bare_master",
        "store": store,
        "seconds": round(time.monotonic() - started, 1),
        "transactions_per_s": round(counts["transactions"] / (time.monotonic() - started), 1),
        **counts,
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_transaction": round(1000 * cpu / max(counts["transactions"], 1), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True, help="the serial device of the simulated boards")
    parser.add_argument("--baudrate", type=int, default=115200)
    parser.add_argument("--units", type=int, default=32, help="poll units 1 to this (default 32: 16 boards)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--store", action="store_true", help="keep each reply in a node cache of the gateway's")
    args = parser.parse_args()
    json.dump(run(args.port, args.baudrate, args.units, args.seconds, args.store), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
