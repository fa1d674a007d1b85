"""Modbus TCP for several masters: polled registers from the cache, everything else through the bus.

Unit ID = the node's Modbus address. A read (FC03/FC04) of registers the poller keeps fresh is
answered from the cache while every register in it is younger than ``cache_max_age``; any other
request, of any function code, goes to the bus in its turn (pass-through priority: behind writes,
taking turns with polling while both wait) and its reply goes back under the master's transaction
id. Each connection's requests are answered in the order they arrived.

Errors, as a Modbus gateway reports them: a node that does not answer, is offline, or was not
found by discovery gives exception 0x0B (gateway target device failed to respond), the last two
without using the bus; a stopped or overloaded bus gives 0x0A (gateway path unavailable); a
standard request that does not parse gives 0x03; a meter's own exception goes back as it came.
A malformed MBAP header closes that one connection.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

import structlog
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from gateway.config import ModbusTcpSettings
from gateway.errors import ListenError
from gateway.nodes.api import NodeAPI
from gateway.nodes.errors import LineUnavailable, MeterRefused, NodeUnavailable

log = structlog.get_logger(__name__)

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length (unit + PDU), unit id
MAX_PDU = 253
GATEWAY_PATH_UNAVAILABLE = 0x0A
GATEWAY_TARGET_FAILED = 0x0B
MAX_UNIT = 247

_RESPONSES = {0x03: ReadHoldingRegistersResponse, 0x04: ReadInputRegistersResponse}


@dataclass(slots=True)
class MasterStats:
    """What one connected master asked and how it was served."""

    peer: str
    requests: int = 0
    cache_hits: int = 0
    bus_trips: int = 0
    exceptions: int = 0


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
        self._requests = DecodePDU(is_server=True)
        self.bound: tuple[str, int] | None = None  # the address actually listening
        self._connections: set[asyncio.StreamWriter] = set()

    async def run(self) -> None:
        try:
            server = await asyncio.start_server(self._serve, self.settings.address, self.settings.port)
        except OSError as error:
            raise ListenError(f"Modbus TCP cannot listen on {self.settings.address}:{self.settings.port} "
                              f"(modbus_tcp.address, modbus_tcp.port): {error.strerror}") from error
        self.bound = server.sockets[0].getsockname()[:2]
        self.listening.set()
        log.info("modbus tcp listening", address=self.bound[0], port=self.bound[1])
        try:
            async with server:
                await server.serve_forever()
        finally:
            # The server stops taking connections; the open ones end with the face, not after it.
            for writer in tuple(self._connections):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        if len(self.masters) >= self.settings.max_connections:
            log.warning("modbus tcp connection refused: too many masters", peer=peer,
                        limit=self.settings.max_connections)
            writer.close()
            return
        stats = MasterStats(peer)
        self.masters[id(stats)] = stats
        self._connections.add(writer)
        try:
            while True:
                tid, unit, pdu = await self._read_frame(reader)
                stats.requests += 1
                reply = await self._answer(unit, pdu, stats)
                writer.write(self._framer.encode(reply, unit, tid))
                await writer.drain()
        except MalformedFrame as error:
            log.warning("modbus tcp connection closed: malformed frame", peer=peer, error=str(error))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the master hung up
        finally:
            self._connections.discard(writer)
            del self.masters[id(stats)]
            self.finished = [*self.finished[-63:], stats]
            writer.close()

    async def _read_frame(self, reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
        tid, protocol, length, unit = MBAP.unpack(await reader.readexactly(MBAP.size))
        if protocol != 0:
            raise MalformedFrame(f"protocol id {protocol}, not 0")
        if not 2 <= length <= MAX_PDU + 1:
            raise MalformedFrame(f"length {length}, not 2-{MAX_PDU + 1}")
        return tid, unit, await reader.readexactly(length - 1)

    async def _answer(self, unit: int, pdu: bytes, stats: MasterStats) -> bytes:
        cached = self._from_cache(unit, pdu)
        if cached is not None:
            stats.cache_hits += 1
            return cached
        if not 1 <= unit <= MAX_UNIT:
            stats.exceptions += 1
            return _exception(pdu[0], GATEWAY_PATH_UNAVAILABLE)  # no device lives there on a serial bus
        stats.bus_trips += 1
        try:
            return await self.nodes.passthrough(unit, pdu)
        except MeterRefused as error:
            code = error.code
        except NodeUnavailable:
            code = GATEWAY_TARGET_FAILED
        except LineUnavailable:
            code = GATEWAY_PATH_UNAVAILABLE
        stats.exceptions += 1
        return _exception(pdu[0], code)

    def _from_cache(self, unit: int, pdu: bytes) -> bytes | None:
        """The reply to a read of fresh, polled registers; None when the bus must answer."""
        response = _RESPONSES.get(pdu[0])
        node = self.nodes.nodes.get(unit)
        if response is None or node is None or not node.health.online:
            return None
        request = self._requests.decode(pdu)
        if request is None or not 1 <= request.count <= 125:
            return None
        found = node.cache.block(range(request.address + 1, request.address + 1 + request.count))
        if found is None or found[1] < time.time() - self.settings.cache_max_age:
            return None
        words = found[0]
        reply = response(registers=words)
        return reply.function_code.to_bytes(1, "big") + reply.encode()


def _exception(function: int, code: int) -> bytes:
    return bytes([(function | 0x80) & 0xFF, code])
