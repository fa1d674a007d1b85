"""Writes to the meters: points checked against the point map, a master's requests passed through,
and what a write changed read back into the cache so every face sees it. Runs on the bus thread,
except `words_for`, which any thread may call.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from gateway.bus import BusError, Priority
from gateway.modbus import ILLEGAL_DATA_VALUE
from gateway.nodes.client import NodeClient
from gateway.nodes.errors import MeterRefused, NodeUnavailable, NotWritable, OutOfRange, UnknownTarget, WriteRefused
from gateway.nodes.modbus import malformed, write_registers, written_registers
from gateway.nodes.node import Node
from gateway.nodes.plan import Read
from gateway.nodes.registry import NodeRegistry
from gateway.pointmap import Encoding, Point, signed

log = structlog.get_logger(__name__)


class Writer:
    """Writes to the nodes of `registry` through `client` (points) or its bus (pass-through)."""

    def __init__(self, client: NodeClient, registry: NodeRegistry) -> None:
        self.client = client
        self.registry = registry
        self.pointmap = registry.pointmap

    async def write(self, address: int, register: int, words: Sequence[int]) -> None:
        """Raw registers of one point, checked against the point map, then read back."""
        node, point = self._check(address, register, words)
        await self.client.transact(node, write_registers(register, words), Priority.WRITE)
        # The cache follows what the meter now holds (an alarm status keeps its non-latching bits).
        await self._read_back(node, Read(register, point.count), Priority.WRITE)

    async def passthrough(self, unit: int, pdu: bytes) -> bytes:
        node = self.registry.nodes.get(unit)
        if node is None:
            raise NodeUnavailable(f"no meter node answered at address {unit} during discovery")
        if malformed(pdu):
            raise MeterRefused(ILLEGAL_DATA_VALUE, "a request the meter would not parse")
        if not node.health.online:
            # Its probes will notice when it is back; a master's retries must not eat the bus meanwhile.
            raise NodeUnavailable(f"node {unit} is offline: {node.health.last_error}")
        # Straight to the bus: no retry (the master retries by itself), and no say in the node's
        # health: a meter that ignores an odd request from a master is not offline.
        reply = await self.client.bus.transact(unit, pdu, Priority.PASSTHROUGH)
        written = written_registers(pdu)
        if written is not None and any(node.cache.tracks(r) for r in written):
            await self._read_back(node, Read(written.start, len(written)), Priority.PASSTHROUGH)
        return reply

    def words_for(self, address: int, register: int, value: float) -> list[int]:
        """An engineering value as the raw registers of a point, scaled the way the meter scales it now."""
        node = self.registry.nodes.get(address)
        point = self.pointmap.point_at(register)
        if node is None or point is None:
            raise UnknownTarget(f"no point at register {register} of address {address}")
        scale = node.cache.scale_of(point)
        if scale is None:
            raise WriteRefused(f"the scale of {point.label} is not known (its scale register unread or garbled)")
        return point.encode(value, scale)

    async def _read_back(self, node: Node, read: Read, priority: Priority) -> None:
        """After a write the meter accepted: its registers into the cache, so every face sees them.

        A failed read-back does not undo the write: the next poll catches up.
        """
        try:
            await self.client.read(node, read, priority)
        except BusError as error:
            log.info("read-back after a write failed", address=node.address, register=read.start, error=str(error))

    def _check(self, address: int, register: int, words: Sequence[int]) -> tuple[Node, Point]:
        node = self.registry.nodes.get(address)
        if node is None:
            raise UnknownTarget(f"no meter node at address {address}")
        point = self.pointmap.point_at(register)
        if point is None or point.register != register:
            raise UnknownTarget(f"register {register} is not the first register of a point")
        if not point.writable or node.profile.model not in point.models:
            raise NotWritable(f"{point.label} (register {register}) is not writable on a model {node.profile.model}")
        if len(words) != point.count:
            raise OutOfRange(f"{point.label} takes {point.count} registers, got {len(words)}")
        if point.encoding is not Encoding.STRING:
            raw = (
                words[0] << 16 | words[1]
                if point.count == 2
                else (signed(words[0]) if point.encoding is Encoding.INT16 else words[0])
            )
            if not point.accepts(raw):
                raise OutOfRange(f"{point.label} (register {register}) accepts {point.valid_text()}, not {raw}")
        return node, point
