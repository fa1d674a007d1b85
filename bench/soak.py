"""Soak: the gateway on a faulty bus, checked for crashes, stale data served as fresh, and poll rate.

Two boards (4 model-A nodes) at 115200 baud, default timeouts. Three phases: a clean line; 5 % of
replies with a CRC error and 5 % silent; then the soak: those faults and node 3 vanishing for
``--flap`` seconds and returning for as long, over and over. Meanwhile a Modbus TCP master reads
node 3's branch currents from the cache as fast as it can, while the simulator's clock counts up a
current on it: a value older than ``cache_max_age`` served as fresh is a violation, and so is any
value served while the node has been gone for longer than that. With ``--port-every``, the serial
port itself vanishes that often during the soak (the simulator's pty and its link path are
removed, as when a USB adapter is unplugged) for ``--port-gone`` seconds and comes back under the
same path: the gateway must stay up, serve nothing stale as fresh meanwhile, and have every node
back each time. Prints one JSON object.

    python bench/soak.py                            # under a minute
    python bench/soak.py --seconds 3600 --flap 30   # an hour, the node gone for 30 s every minute
    python bench/soak.py --seconds 240 --port-every 60   # the port gone for 10 s every minute

The two baselines (clean line, line faults) last a quarter of ``--seconds`` each, at least 8 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from common import free_port

from gateway.app import running
from gateway.config import parse_config
from gateway.logging import configure_logging
from gateway.modbus_tcp import ModbusTcpFace
from gateway.nodes.events import NodeOffline, NodeOnline
from gateway.sim import Board, Faults, SimulatedLine

BAUDRATE = 115200
FLAPPING = 3
HEALTHY = (1, 2, 4)
CACHE_MAX_AGE = 2.0
CHANNEL = 5
REGISTER = 1336 + CHANNEL - 1


async def run(seconds: float, flap: float, port_every: float, port_gone: float) -> dict[str, Any]:
    boards = [Board(1, baudrate=BAUDRATE), Board(3, baudrate=BAUDRATE)]
    with (
        tempfile.TemporaryDirectory() as folder,
        SimulatedLine(boards, baudrate=BAUDRATE, turnaround=0.005, seed=7, link=f"{folder}/ttyBCPM") as line,
    ):
        tcp_port = free_port()
        config = parse_config(
            {
                "gateway": {"state_file": str(Path(folder) / "state.json")},
                "serial": {"port": line.link, "baudrate": BAUDRATE, "scan": "1-4", "poll_interval": 1.0},
                "bacnet": {"enabled": False},
                "snmp": {"enabled": False},
                "modbus_tcp": {"address": "127.0.0.1", "port": tcp_port, "cache_max_age": CACHE_MAX_AGE},
            }
        )
        async with running(config) as gateway:
            await gateway.nodes.wait_ready()
            face = next(f for f in gateway.faces if isinstance(f, ModbusTcpFace))
            while face.bound is None or gateway.nodes.poller.cycles < 2:
                await asyncio.sleep(0.05)
            phase = max(8.0, seconds / 4)  # the baselines long enough to compare against
            clean = await _refresh_rates(gateway, phase)
            line.faults = Faults(crc_error=0.05, silence=0.05)
            line_faults = await _refresh_rates(gateway, phase)

            transitions = gateway.hub.subscribe(NodeOffline, NodeOnline)
            line.flap(FLAPPING, flap)
            port = _Port(line, gateway)
            vanishing = asyncio.create_task(port.vanish_every(port_every, port_gone)) if port_every else None
            checker = asyncio.create_task(_check_freshness(line, port, tcp_port, seconds))
            soak = await _refresh_rates(gateway, seconds)
            violations, served, refused = await checker
            if vanishing is not None:
                vanishing.cancel()
                await asyncio.gather(vanishing, return_exceptions=True)
                await port.back()
            line.faults = Faults()
            crashed = gateway.thread.done
            went_offline = gateway.nodes.nodes[FLAPPING].health.went_offline
            lost = restored = 0
            while True:
                try:
                    event = transitions.get_nowait()
                except asyncio.QueueEmpty:
                    break
                lost += isinstance(event, NodeOffline)
                restored += isinstance(event, NodeOnline)
            stats = gateway.nodes.bus.stats
    return {
        "benchmark": "soak",
        "seconds": seconds,
        "faults": {"crc_error": 0.05, "silence": 0.05, "flapping_node": FLAPPING, "flap_period_s": flap},
        "crashed": crashed,
        "node_lost_events": lost,
        "node_restored_events": restored,
        "went_offline": went_offline,
        "healthy_refresh_per_s": {
            "clean_line": _rounded(clean),
            "crc_and_silence": _rounded(line_faults),
            "soak": _rounded(soak),
        },
        # What the vanishing node costs the others (same line faults, with and without it):
        "healthy_poll_rate_kept": round(min(soak[a] / line_faults[a] for a in HEALTHY), 3),
        "healthy_poll_rate_vs_clean_line": round(min(soak[a] / clean[a] for a in HEALTHY), 3),
        "modbus_tcp_values_served": served,
        "modbus_tcp_refused_0x0b": refused,
        "stale_served_as_fresh": violations,
        **(
            {
                "port": {
                    "every_s": port_every,
                    "gone_s": port_gone,
                    "vanished": port.vanished,
                    "healthy_nodes_back": port.all_back,
                    "seconds_to_healthy_nodes_back": {
                        "max": round(max(port.recoveries, default=0), 2),
                        "median": round(median(port.recoveries), 2) if port.recoveries else None,
                    },
                }
            }
            if port_every
            else {}
        ),
        "bus": {"transactions": stats.transactions, "timeouts": stats.timeouts, "corrupt": stats.corrupt},
    }


class _Port:
    """The simulator's port, unplugged and plugged in again; what the gateway did about it."""

    def __init__(self, line: SimulatedLine, gateway: Any) -> None:
        self.line = line
        self.gateway = gateway
        self.down = False
        self.vanished = self.all_back = 0
        self.recoveries: list[float] = []

    async def vanish_every(self, every: float, gone: float) -> None:
        while True:
            await asyncio.sleep(max(0.0, every - gone))
            self.down = True
            self.line.stop()  # the pty and the link path disappear
            self.vanished += 1
            await asyncio.sleep(gone)
            await self.back()

    async def back(self) -> None:
        if not self.down:
            return
        self.line.start()  # plugged in again under the same path
        self.down = False
        returned = time.monotonic()
        nodes = [self.gateway.nodes.nodes[address] for address in HEALTHY]  # node 3 may be flapping
        while not all(node.health.online for node in nodes):
            if time.monotonic() - returned > 60:
                return
            await asyncio.sleep(0.05)
        self.all_back += 1
        self.recoveries.append(time.monotonic() - returned)


def _rounded(rates: dict[int, float]) -> dict[str, float]:
    return {str(address): round(rate, 3) for address, rate in rates.items()}


async def _refresh_rates(gateway: Any, seconds: float) -> dict[int, float]:
    """Fresh reads of each healthy node's fast data per second (the branch current block)."""
    point = gateway.nodes.pointmap.point_at(REGISTER)
    seen = {a: gateway.nodes.nodes[a].cache.reading(point).timestamp for a in HEALTHY}
    counts = dict.fromkeys(HEALTHY, 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for address in HEALTHY:
            stamp = gateway.nodes.nodes[address].cache.reading(point).timestamp
            if stamp != seen[address]:
                counts[address] += 1
                seen[address] = stamp
    return {a: counts[a] / seconds for a in HEALTHY}


async def _check_freshness(line: SimulatedLine, serial: _Port, port: int, seconds: float) -> tuple[int, int, int]:
    """Drive a counting current on the flapping node and check every value Modbus TCP serves."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    panel = line.panel(FLAPPING)
    # (time, raw value) of the driven current; it held its value before until we start driving it
    history: list[tuple[float, int]] = [(time.monotonic(), panel.read(REGISTER, 1)[0])]
    gone_since: float | None = None
    violations = served = refused = tid = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = time.monotonic()
        raw = 10 + int(now * 10) % 900  # 1.0-90.9 A: within the CT, distinct for 90 s
        panel.set_current(CHANNEL, raw / 10)
        history.append((now, raw))
        absent = serial.down or line.is_absent(FLAPPING, now)
        gone_since = (gone_since or now) if absent else None
        tid = (tid + 1) & 0xFFFF
        writer.write(struct.pack(">HHHBBHH", tid, 0, 6, FLAPPING, 3, REGISTER - 1, 1))
        await writer.drain()
        header = await reader.readexactly(7)
        reply = await reader.readexactly(struct.unpack(">H", header[4:6])[0] - 1)
        if reply[0] & 0x80:
            refused += 1
        else:
            served += 1
            value = struct.unpack(">H", reply[2:4])[0]
            # When was this value last true on the meter? It must be within cache_max_age of now.
            set_at = max((t for t, v in history if v == value), default=None)
            too_old = set_at is None or time.monotonic() - set_at > CACHE_MAX_AGE + 1.0
            gone_too_long = gone_since is not None and now - gone_since > CACHE_MAX_AGE
            violations += too_old or gone_too_long
        history = history[-400:]
        await asyncio.sleep(0.05)
    writer.close()
    return violations, served, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--flap", type=float, default=10.0, help="seconds node 3 stays gone, and then back")
    parser.add_argument(
        "--port-every",
        type=float,
        default=0.0,
        help="the serial port vanishes this often during the soak, in seconds (default 0: never)",
    )
    parser.add_argument("--port-gone", type=float, default=10.0, help="seconds the port stays gone (default 10)")
    args = parser.parse_args()
    configure_logging("error", "console")
    json.dump(asyncio.run(run(args.seconds, args.flap, args.port_every, args.port_gone)), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
