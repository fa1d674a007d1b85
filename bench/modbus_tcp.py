"""Modbus TCP masters against the gateway: throughput, latency, cache hits and the RS-485 load.

One board (2 model-A nodes) on the simulated line at 115200 baud (simulator in its own process).
1, 4 and 16 masters, each on its own connection, read the branch currents (a polled block) in a
closed loop for a few seconds; the masters run in a separate process so they do not share the
gateway's interpreter. The RS-485 load is the bus's transactions per second meanwhile: with
reads answered from the cache it must not grow with the number of masters. A last run has 16
masters ask for Report Slave ID, which always passes through to the line: the poll transactions
per second must hold up there too (the bus keeps polling a share of the line, POLL_SHARE).
Prints one JSON object.

    python bench/modbus_tcp.py
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from common import free_port, report, simulator

from gateway.app import running
from gateway.config import parse_config
from gateway.modbus_tcp import ModbusTcpFace
from gateway.pointmap import load

BAUDRATE = 115200
SECONDS = 4.0
CURRENTS = load().find("current", group="branch", channel=1)
REQUESTS = {
    "cached": struct.pack(">BHH", 3, CURRENTS.register - 1, 42),  # FC03, the 42 branch currents
    "passthrough": bytes([0x11]),  # Report Slave ID: never cached, always on the line
}
RUNS = (("cached", 1), ("cached", 4), ("cached", 16), ("passthrough", 16))


def _load(port: int, pdu: bytes, masters: int, seconds: float, results: multiprocessing.Queue) -> None:
    results.put(asyncio.run(_masters(port, pdu, masters, seconds)))


async def _masters(port: int, pdu: bytes, masters: int, seconds: float) -> list[float]:
    """Latencies of every request of every master, in seconds."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def master(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        unit = 1 + index % 2
        tid = 0
        while time.monotonic() < deadline:
            tid = (tid + 1) & 0xFFFF
            writer.write(struct.pack(">HHHB", tid, 0, 1 + len(pdu), unit) + pdu)  # MBAP + PDU
            started = time.perf_counter()
            await writer.drain()
            header = await reader.readexactly(7)
            reply = await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
            latencies.append(time.perf_counter() - started)
            if struct.unpack(">H", header[:2])[0] != tid or reply[0] != pdu[0]:
                raise RuntimeError(f"bad reply {header.hex()} {reply.hex()}")
        writer.close()

    await asyncio.gather(*(master(i) for i in range(masters)))
    return latencies


async def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder, simulator(BAUDRATE, Path(folder), boards=1) as serial_port:
        tcp_port = free_port()
        config = parse_config(
            {
                "gateway": {"state_file": str(Path(folder) / "state.json")},
                "serial": {"port": serial_port, "baudrate": BAUDRATE, "scan": "1-2", "poll_interval": 0.5},
                "bacnet": {"enabled": False},
                "snmp": {"enabled": False},
                "modbus_tcp": {"address": "127.0.0.1", "port": tcp_port, "cache_max_age": 2.0},
            }
        )
        async with running(config) as gateway:
            await gateway.nodes.wait_ready()
            face = next(f for f in gateway.faces if isinstance(f, ModbusTcpFace))
            while gateway.nodes.poller.cycles < 2:  # the start-up sweep is done, the cache is warm
                await asyncio.sleep(0.05)
            nodes = gateway.nodes.nodes.values()
            runs = []
            for request, masters in RUNS:
                bus_before = gateway.nodes.bus.stats.transactions
                # Pass-through skips the NodeClient, so the nodes' transaction counts are the poller's alone.
                polls_before = sum(node.health.transactions for node in nodes)
                done_before = len(face.finished)
                results: multiprocessing.Queue = multiprocessing.Queue()
                args = (tcp_port, REQUESTS[request], masters, SECONDS, results)
                worker = multiprocessing.Process(target=_load, args=args)
                started = time.monotonic()
                worker.start()
                while worker.is_alive() and results.empty():
                    await asyncio.sleep(0.05)
                latencies = results.get()
                elapsed = time.monotonic() - started
                worker.join()
                bus_transactions = gateway.nodes.bus.stats.transactions - bus_before
                poll_transactions = sum(node.health.transactions for node in nodes) - polls_before
                while len(face.finished) < done_before + masters:
                    await asyncio.sleep(0.01)
                served = face.finished[-masters:]
                requests = sum(m.requests for m in served)
                latencies.sort()
                runs.append(
                    {
                        "request": request,
                        "masters": masters,
                        "requests_per_second": round(len(latencies) / SECONDS),
                        "latency_ms_p50": round(statistics.median(latencies) * 1000, 3),
                        "latency_ms_p99": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 3),
                        "cache_hit_ratio": round(sum(m.cache_hits for m in served) / requests, 4),
                        "rs485_transactions_per_second": round(bus_transactions / elapsed, 1),
                        "poll_transactions_per_second": round(poll_transactions / elapsed, 1),
                    }
                )
    return {
        "benchmark": "modbus_tcp",
        "baudrate": BAUDRATE,
        "nodes": 2,
        "seconds_per_run": SECONDS,
        "requests": {"cached": "FC03, 42 registers (branch currents)", "passthrough": "FC11, Report Slave ID"},
        "runs": runs,
    }


def main() -> None:
    report(measure())


if __name__ == "__main__":
    main()
