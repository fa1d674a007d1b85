"""Modbus TCP for several masters: polled registers from the cache, everything else through the bus.

Unit ID = the node's Modbus address. What a request gets (from the cache, or from the meter in its
turn on the line; the exceptions; ``read_only``) is `gateway.modbus_requests`, which the upstream
port's Modbus RTU slave shares; here the reply goes back under the master's transaction id, and
each connection's requests are answered in the order they arrived.

Connections are bounded: a host outside ``allow`` is disconnected at once; a connection silent for
``idle_timeout`` between requests, or whose frame takes longer than ``frame_timeout`` once
started, or with a malformed MBAP header, is closed; TCP keepalive finds masters that vanished.
At ``max_connections`` the connection idle the longest (none waiting for an answer) is closed to
make room. Each of these is counted and logged at most once a minute (`DropReport`), never per
packet.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import struct
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import structlog
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU

from gateway.config import ModbusTcpSettings
from gateway.errors import ListenError
from gateway.logging import DropReport
from gateway.modbus import MAX_PDU
from gateway.modbus_requests import ModbusRequests
from gateway.nodes.api import NodeAPI

log = structlog.get_logger(__name__)

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length (unit + PDU), unit id
KEEPALIVE_PROBES = 3
SWEEP_EVERY = 1.0  # seconds between two looks for idle and stalled connections, at most


class Closed(enum.StrEnum):
    """Why the face refused or closed a connection; each is counted and reported once a minute."""

    NOT_ALLOWED = "refused (not in modbus_tcp.allow)"
    FULL = "refused (modbus_tcp.max_connections reached, every master waiting for an answer)"
    EVICTED = "closed to make room (the longest idle, at modbus_tcp.max_connections)"
    IDLE = "closed idle (modbus_tcp.idle_timeout)"
    SLOW_FRAME = "closed mid-frame (modbus_tcp.frame_timeout)"
    MALFORMED = "closed (malformed mbap header)"


@dataclass(slots=True)
class MasterStats:
    """What one connected master asked and how it was served."""

    peer: str
    requests: int = 0
    cache_hits: int = 0
    bus_trips: int = 0
    exceptions: int = 0
    refused_writes: int = 0  # answered 0x01 by a read-only face
    last_active: float = field(default_factory=time.monotonic)  # the last byte in or reply out
    answering: bool = False  # a request of this master is being answered
    frame_started: float | None = None  # when the first byte of a request not yet whole arrived


class MalformedFrame(Exception):
    pass


class ModbusTcpFace:
    def __init__(self, settings: ModbusTcpSettings, nodes: NodeAPI) -> None:
        self.settings = settings
        self.nodes = nodes
        self.listening = asyncio.Event()  # set once the server is bound
        self.masters: dict[int, MasterStats] = {}  # live connections, by id
        self.finished: list[MasterStats] = []  # closed connections, newest last (bounded)
        self._framer = FramerSocket(DecodePDU(is_server=True))
        self._requests = ModbusRequests(nodes, cache_max_age=settings.cache_max_age, read_only=settings.read_only)
        self.bound: tuple[str, int] | None = None  # the address actually listening
        self._connections: dict[int, asyncio.StreamWriter] = {}  # by id of the master's stats
        self.closed = {reason: DropReport(f"modbus tcp connection {reason}") for reason in Closed}
        self.refused_writes = 0  # requests a read-only face answered 0x01

    async def run(self) -> None:
        try:
            server = await asyncio.start_server(self._serve, self.settings.address, self.settings.port)
        except OSError as error:
            raise ListenError(
                f"Modbus TCP cannot listen on {self.settings.address}:{self.settings.port} "
                f"(modbus_tcp.address, modbus_tcp.port): {error.strerror}"
            ) from error
        self.bound = server.sockets[0].getsockname()[:2]
        self.listening.set()
        log.info("modbus tcp listening", address=self.bound[0], port=self.bound[1])
        sweeping = asyncio.create_task(self._sweep())
        try:
            async with server:
                await server.serve_forever()
        finally:
            sweeping.cancel()
            # The server stops taking connections; the open ones end with the face, not after it.
            for writer in tuple(self._connections.values()):
                writer.close()

    @property
    def counts(self) -> dict[str, int]:
        """Writes refused by a read-only face (the refused or closed connections are PeerEvents)."""
        return {"refused_writes": self.refused_writes}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        if self.settings.allow and not any(IPv4Address(host) in network for network in self.settings.allow):
            self._close(writer, Closed.NOT_ALLOWED, peer, "address not allowed")
            return
        if len(self.masters) >= self.settings.max_connections and not self._make_room():
            self._close(writer, Closed.FULL, peer, f"{len(self.masters)} masters waiting for answers")
            return
        _keep_alive(writer, self.settings.keepalive)
        stats = MasterStats(peer)
        self.masters[id(stats)] = stats
        self._connections[id(stats)] = writer
        try:
            while True:
                tid, unit, pdu = await self._read_frame(reader, stats)
                stats.frame_started = None
                stats.answering = True
                reply = await self._answer(unit, pdu, stats)
                writer.write(self._framer.encode(reply, unit, tid))
                await writer.drain()
                stats.answering = False
                stats.last_active = time.monotonic()
        except MalformedFrame as error:
            self.closed[Closed.MALFORMED].drop(peer, str(error))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the master hung up, or the face closed the connection (idle, stalled, making room)
        finally:
            self._connections.pop(id(stats), None)
            self.masters.pop(id(stats), None)
            self.finished = [*self.finished[-63:], stats]
            writer.close()

    async def _sweep(self) -> None:
        """Close the connections silent too long between requests, or stalled inside one.

        One timer for the face rather than one per request: a request costs two clock reads.
        """
        idle, frame = self.settings.idle_timeout, self.settings.frame_timeout
        while True:
            await asyncio.sleep(min(SWEEP_EVERY, frame / 2, idle / 2 if idle else SWEEP_EVERY))
            now = time.monotonic()
            for stats in [s for s in self.masters.values() if not s.answering]:
                if stats.frame_started is not None and now - stats.frame_started > frame:
                    self._drop(stats, Closed.SLOW_FRAME, f"a frame took over {frame:g} s")
                elif stats.frame_started is None and idle and now - stats.last_active > idle:
                    self._drop(stats, Closed.IDLE, f"silent for {idle:g} s")

    def _make_room(self) -> bool:
        """Close the connection idle the longest, if one is idle at all; False when none is."""
        waiting = [stats for stats in self.masters.values() if not stats.answering]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda stats: stats.last_active)
        self._drop(oldest, Closed.EVICTED, f"idle for {time.monotonic() - oldest.last_active:.0f} s")
        return True

    def _drop(self, stats: MasterStats, reason: Closed, detail: str) -> None:
        """Close a master's connection now: its slot is free at once; its task ends on the closed stream."""
        del self.masters[id(stats)]
        self._close(self._connections.pop(id(stats)), reason, stats.peer, detail)

    def _close(self, writer: asyncio.StreamWriter, reason: Closed, peer: str, detail: str) -> None:
        self.closed[reason].drop(peer, detail)
        writer.close()

    async def _read_frame(self, reader: asyncio.StreamReader, stats: MasterStats) -> tuple[int, int, bytes]:
        first = await reader.readexactly(1)
        stats.frame_started = stats.last_active = time.monotonic()
        tid, protocol, length, unit = MBAP.unpack(first + await reader.readexactly(MBAP.size - 1))
        if protocol != 0:
            raise MalformedFrame(f"protocol id {protocol}, not 0")
        if not 2 <= length <= MAX_PDU + 1:
            raise MalformedFrame(f"length {length}, not 2-{MAX_PDU + 1}")
        return tid, unit, await reader.readexactly(length - 1)

    async def _answer(self, unit: int, pdu: bytes, stats: MasterStats) -> bytes:
        refused = stats.refused_writes
        reply = await self._requests.answer(unit, pdu, stats)
        self.refused_writes += stats.refused_writes - refused
        return reply


def _keep_alive(writer: asyncio.StreamWriter, idle: int) -> None:
    """TCP keepalive on a master's connection: a peer that vanished is found and the slot freed."""
    sock = writer.get_extra_info("socket")
    if not idle or sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // KEEPALIVE_PROBES))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
