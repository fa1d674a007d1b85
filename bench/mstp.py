"""The MS/TP data link's timing on a multidrop line, against rusty-bacnet stations.

The gateway's data link (MAC 3, `gateway.mstp.MstpLink`, on its own thread) and rusty-bacnet MS/TP
stations share a virtual RS-485 line (`gateway.sim.multidrop`, in a process of its own, so that
its relay does not share the gateway's interpreter) that carries octets at 38400 baud and records
when each frame's last octet arrived. The link's upper layer answers a ReadProperty at once with a
ReadProperty-ACK made beforehand (its invoke ID set), so what is measured is the data link, not a
BACnet stack above it.

- token rotation: the time between two tokens to the gateway with 2, 3 and 5 masters (the other
  stations idle, each polling for masters every 50 tokens as the standard has it);
- reply time: from the last octet of a rusty station's ReadProperty (a Data Expecting Reply frame)
  to the first octet of the gateway's answer; the standard allows 250 ms (Treply_delay);
- a 2 % CRC-error line: one write in fifty arrives with a bit flipped; the frames lost, what the
  gateway saw of them, and what the client's ReadProperty (3 retries, 1 s timeout) got.

Then the same with the whole gateway: the BACnet router with its MS/TP port at MAC 3 (a simulated
board behind it, nodes 1 and 2, polled every second) and a rusty-bacnet client at MAC 1:

- router reply time: from the last octet of the client's ReadProperty of a meter's Present_Value
  (analog-input 1336 of device 50001, routed to network 50) to the first octet of the gateway's
  answer, which comes from the cache through bacpypes3 (the fast path serves BACnet/IP only); an
  answer not ready within the reply delay goes out after a Reply Postponed, in the gateway's next
  token, which is counted too;
- token rotation with the router on the line (2 masters);
- the 2 % CRC-error line with the router: the client's reads of the meter through it.

Prints one JSON object. Runs in about two minutes.

    python bench/mstp.py
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import rusty_bacnet as bacnet
from common import free_port, report

from gateway.app import running
from gateway.bacnet import BacnetFace
from gateway.config import parse_config
from gateway.mstp import Frame, FrameType, MstpLink, MstpSettings, Received, Receiver
from gateway.nodes.service import GIL_SWITCH_INTERVAL
from gateway.serialport import PortSettings
from gateway.sim import Board, SimulatedLine
from gateway.sim.multidrop import MultidropLine

BAUD = 38400
GATEWAY = 3
MAX_MASTER = 10
STATIONS = (1, 5, 7, 9)  # the rusty-bacnet stations' MACs, as many as a run needs
# ReadProperty-ACK (analog-input 1, present-value, REAL 42.5) in an NPDU; octet 3 is the invoke ID.
ACK = bytes.fromhex("010030000c0c0000000119553e44422a00003f")
ANSWERS = (FrameType.DATA_NOT_EXPECTING_REPLY, FrameType.REPLY_POSTPONED)


class CannedAnswers:
    """The upper layer: a ReadProperty-ACK to every confirmed request, at once."""

    def __init__(self) -> None:
        self.link: MstpLink | None = None

    def __call__(self, received: Received) -> None:
        if received.expecting_reply and self.link is not None and received.npdu[1] == 0x04:
            self.link.send(received.source, ACK[:3] + received.npdu[4:5] + ACK[4:])


class Line:
    """The multidrop line in a child process: `recording()` gives what it carried meanwhile."""

    def __init__(self, paths: list[Path], corrupt: float) -> None:
        self._commands, child = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_serve_line, args=([str(path) for path in paths], corrupt, child), daemon=True
        )
        self._process.start()
        assert self._commands.recv() == "ready"

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[tuple[float, int | None, bytes]]]:
        record: list[tuple[float, int | None, bytes]] = []
        self._commands.send("record")
        yield record
        self._commands.send("stop recording")
        record.extend(self._commands.recv())

    def stats(self) -> dict[str, int]:
        self._commands.send("stats")
        return self._commands.recv()

    def close(self) -> None:
        self._commands.send("close")
        self._process.join(10)


def _serve_line(paths: list[str], corrupt: float, commands: Connection) -> None:
    with MultidropLine(paths, baudrate=BAUD, corrupt=corrupt, seed=1) as line:
        commands.send("ready")
        while (command := commands.recv()) != "close":
            if command == "record":
                line.record = []
            elif command == "stop recording":
                commands.send(line.record)
                line.record = None
            elif command == "stats":
                commands.send({"chunks": line.stats.chunks, "corrupted": line.stats.corrupted})


def frames_on(record: list[tuple[float, int | None, bytes]]) -> list[tuple[float, float, Frame]]:
    """Every valid frame the line carried: (when its first octet was on the wire, when its last
    arrived, the frame), each sender's octets framed on their own."""
    receivers: dict[int | None, Receiver] = {}
    found = []
    for arrived, sender, octets in record:
        receiver = receivers.setdefault(sender, Receiver(0.06))
        for frame in receiver.feed(octets, arrived):
            if isinstance(frame, Frame):
                wire = (8 + (len(frame.data) + 2 if frame.data else 0)) * 10 / BAUD
                found.append((arrived - wire, arrived, frame))
    return found


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "samples": len(ordered),
    }


async def on_a_line(folder: Path, masters: int, corrupt: float, run: Any) -> dict[str, Any]:
    """The gateway and `masters - 1` rusty-bacnet stations on one line; `run(line, link, stations)`."""
    folder.mkdir()
    paths = [folder / f"tty{index}" for index in range(masters)]
    line = Line(paths, corrupt)
    try:
        upper = CannedAnswers()
        link = MstpLink(MstpSettings(PortSettings(str(paths[0]), BAUD), GATEWAY, MAX_MASTER), upper)
        upper.link = link
        link.start()
        stations = []
        try:
            for path, mac in zip(paths[1:], STATIONS, strict=False):
                station = bacnet.MstpEndpoint(
                    1000 + mac,
                    str(path),
                    mstp_baud=BAUD,
                    mstp_mac=mac,
                    mstp_max_master=MAX_MASTER,
                    apdu_timeout_ms=1000,
                    apdu_retries=3,
                )
                station.add_analog_input(1, "ai1", present_value=1.0)
                await station.__aenter__()
                stations.append(station)
            deadline = time.monotonic() + 30
            while link.counts.tokens_received < 20 * masters:  # every station in the ring, the ring settled
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no token ring with {masters} masters")
                await asyncio.sleep(0.1)
            return await run(line, link, stations)
        finally:
            for station in stations:
                await station.close()
            link.stop()
    finally:
        line.close()


async def rotation(line: Line, link: MstpLink, stations: list[Any]) -> dict[str, Any]:
    with line.recording() as record:
        await asyncio.sleep(5)
    tokens = [
        end for _, end, frame in frames_on(record) if frame.kind == FrameType.TOKEN and frame.destination == GATEWAY
    ]
    return {**percentiles([b - a for a, b in zip(tokens, tokens[1:])]), "ring": link.node.next_station}


async def reply_time(line: Line, link: MstpLink, stations: list[Any]) -> dict[str, Any]:
    client = await stations[0].client()
    objid = bacnet.ObjectIdentifier(bacnet.ObjectType.ANALOG_INPUT, 1)
    with line.recording() as record:
        for _ in range(300):
            await client.read_property(str(GATEWAY), objid, bacnet.PropertyIdentifier.PRESENT_VALUE)
    return replies_on(frames_on(record))


async def lossy(line: Line, link: MstpLink, stations: list[Any]) -> dict[str, Any]:
    client = await stations[0].client()
    objid = bacnet.ObjectIdentifier(bacnet.ObjectType.ANALOG_INPUT, 1)
    return await reads_on_a_lossy_line(
        line, link, lambda: client.read_property(str(GATEWAY), objid, bacnet.PropertyIdentifier.PRESENT_VALUE)
    )


async def reads_on_a_lossy_line(line: Line, link: MstpLink, read: Any) -> dict[str, Any]:
    """Ten seconds of `read()` one after the other: what the line carried and lost, what the client got."""
    before, stats_before = link.counts.invalid_frames, line.stats()
    done = failed = 0
    with line.recording() as record:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                await read()
                done += 1
            except Exception:  # noqa: BLE001 - counted: what a client sees of the line
                failed += 1
    carried = line.stats()
    return {
        "writes_on_line": carried["chunks"] - stats_before["chunks"],
        "writes_corrupted": carried["corrupted"] - stats_before["corrupted"],
        "valid_frames_on_line": len(frames_on(record)),
        "invalid_frames_seen_by_gateway": link.counts.invalid_frames - before,
        "reads_done": done,
        "reads_failed_after_retries": failed,
        "requests_received_by_gateway": link.counts.npdus_received,
        "tokens_lost": link.counts.tokens_lost,
    }


METER_VALUE = (50001, bacnet.ObjectIdentifier(bacnet.ObjectType.ANALOG_INPUT, 1336))
METER_BAUD = 115200  # the simulated meters' line (no wire time: the figures are the MS/TP side's)


async def on_a_router_line(folder: Path, corrupt: float, run: Any) -> dict[str, Any]:
    """The gateway, its router's MS/TP port at MAC 3, and a rusty-bacnet client at MAC 1;
    `run(line, link, client)`."""
    folder.mkdir()
    paths = [folder / "tty0", folder / "tty1"]
    line = Line(paths, corrupt)
    meters = SimulatedLine([Board(1, model="A", baudrate=METER_BAUD)], baudrate=METER_BAUD, turnaround=0.001, seed=1)
    meters.start()
    try:
        config = parse_config(
            {
                "gateway": {"state_file": str(folder / "state.json")},
                "serial": {"port": meters.path, "baudrate": METER_BAUD, "scan": "1-2", "poll_interval": 1.0},
                "bacnet": {"address": "127.0.0.1/8", "port": free_port(socket.SOCK_DGRAM)},
                "snmp": {"enabled": False},
                "modbus_tcp": {"enabled": False},
                "upstream": {"mode": "mstp", "port": str(paths[0]), "mac": GATEWAY, "max_master": MAX_MASTER},
                "log": {"level": "warning"},
            }
        )
        async with running(config) as gateway:
            await gateway.nodes.wait_ready()
            face = next(each for each in gateway.faces if isinstance(each, BacnetFace))
            while face.network is None or face.network.mstp is None:
                await asyncio.sleep(0.05)
            link = face.network.mstp.link
            async with bacnet.BACnetClient(
                transport="mstp",
                serial_port=str(paths[1]),
                mstp_mac=1,
                mstp_max_master=MAX_MASTER,
                apdu_timeout_ms=1000,
            ) as client:
                while len(await client.discover(timeout_ms=1000)) < 3:
                    pass
                return await run(line, link, client)
    finally:
        meters.stop()
        line.close()


def replies_on(frames: list[tuple[float, float, Frame]]) -> dict[str, Any]:
    """The gateway's reply times to the Data Expecting Reply frames sent to it, and how it answered."""
    replies, postponed, unanswered = [], 0, 0
    for index, (_, ended, frame) in enumerate(frames):
        if frame.kind == FrameType.DATA_EXPECTING_REPLY and frame.destination == GATEWAY:
            began, _, answer = next(f for f in frames[index + 1 :] if f[2].source == GATEWAY)
            if answer.destination != frame.source or answer.kind not in ANSWERS:
                unanswered += 1  # the gateway's next frame was something else: no reply at all
                continue
            replies.append(began - ended)
            postponed += answer.kind == FrameType.REPLY_POSTPONED
    return {**percentiles(replies), "reply_postponed": postponed, "unanswered": unanswered, "limit_ms": 250}


async def router_reply_time(line: Line, link: MstpLink, client: Any) -> dict[str, Any]:
    device, objid = METER_VALUE
    with line.recording() as record:
        for _ in range(300):
            await client.read_property_from_device(device, objid, bacnet.PropertyIdentifier.PRESENT_VALUE)
    return {**replies_on(frames_on(record)), "postponed_by_the_link": link.counts.replies_postponed}


async def router_rotation(line: Line, link: MstpLink, client: Any) -> dict[str, Any]:
    return await rotation(line, link, [client])


async def router_lossy(line: Line, link: MstpLink, client: Any) -> dict[str, Any]:
    device, objid = METER_VALUE
    return await reads_on_a_lossy_line(
        line, link, lambda: client.read_property_from_device(device, objid, bacnet.PropertyIdentifier.PRESENT_VALUE)
    )


async def measure() -> dict[str, Any]:
    # As in the gateway (gateway.nodes.service): a thread woken by its line gets the interpreter soon.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    with tempfile.TemporaryDirectory() as folder:
        figures: dict[str, Any] = {"baudrate": BAUD}
        for masters in (2, 3, 5):
            figures[f"token_rotation_{masters}_masters"] = await on_a_line(
                Path(folder) / f"r{masters}", masters, 0.0, rotation
            )
        figures["reply_time"] = await on_a_line(Path(folder) / "reply", 2, 0.0, reply_time)
        figures["crc_errors_2_percent"] = await on_a_line(Path(folder) / "lossy", 2, 0.02, lossy)
        figures["router_reply_time"] = await on_a_router_line(Path(folder) / "router", 0.0, router_reply_time)
        figures["router_token_rotation_2_masters"] = await on_a_router_line(
            Path(folder) / "router-ring", 0.0, router_rotation
        )
        figures["router_crc_errors_2_percent"] = await on_a_router_line(
            Path(folder) / "router-lossy", 0.02, router_lossy
        )
        return figures


if __name__ == "__main__":
    report(measure())
