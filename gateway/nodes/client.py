"""Talking to one node through the bus: retries, health, and the online/offline transitions.

Every transaction with a node (poll, probe, write, read-back) goes through ``NodeClient`` so that the
node's health is judged from all of them in one place. Runs on the bus thread.
"""

from __future__ import annotations

import time
from typing import cast

import structlog

from gateway.bus import Bus, BusClosed, BusError, CorruptReply, ExceptionReply, NoResponse, Priority
from gateway.hub import Publish, Watched
from gateway.nodes.cache import Changes, Quality
from gateway.nodes.discovery import IDENTITY, identity_of
from gateway.nodes.events import AlarmChanged, NodeEvent, NodeOffline, NodeOnline, RegistersRead, ValueChanged
from gateway.nodes.modbus import read_registers, registers_of
from gateway.nodes.node import Node
from gateway.nodes.plan import Read
from gateway.pointmap import Encoding

log = structlog.get_logger(__name__)


class NodeClient:
    """The node layer's Modbus client: transactions with nodes over the bus, judging their health."""

    def __init__(
        self, bus: Bus, *, retries: int, offline_after: int, probe_timeout: float, publish: Publish, watched: Watched
    ) -> None:
        self.bus = bus
        self.retries = retries
        self.offline_after = offline_after
        self.probe_timeout = probe_timeout
        self.publish = publish
        self.watched = watched

    async def transact(
        self, node: Node, pdu: bytes, priority: Priority, *, timeout: float | None = None, retries: int | None = None
    ) -> bytes:
        """One request to a node, retried on silence or corruption; a Modbus exception is an answer."""
        health = node.health
        # A node that has just failed gets no retries: one more silence is enough to judge it.
        attempts = 1 + (0 if health.consecutive_failures else self.retries if retries is None else retries)
        for attempt in range(attempts):
            health.attempted()
            try:
                reply = await self.bus.transact(node.address, pdu, priority, timeout=timeout)
            except ExceptionReply:
                health.answered()
                raise
            except (NoResponse, CorruptReply) as error:
                health.missed()
                if attempt + 1 == attempts:
                    self._failed(node, error)
                    raise
            else:
                health.answered()
                return reply
        raise AssertionError("unreachable")

    async def read(self, node: Node, read: Read, priority: Priority = Priority.POLL) -> None:
        """Read a block into the node's cache and publish what changed, and that it was read."""
        reply = await self.transact(node, read_registers(read.start, read.count), priority)
        words = registers_of(reply, read.count)
        changes = node.cache.store(read.start, words, time.time())
        self.publish([*self._events(node.address, changes), RegistersRead(node.address, read.start, read.count)])

    async def probe(self, node: Node) -> None:
        """Ask an offline node whether it is back (identity registers, short timeout, no retry)."""
        health = node.health
        try:
            reply = await self.transact(
                node,
                read_registers(IDENTITY.start, IDENTITY.count),
                Priority.POLL,
                timeout=self.probe_timeout,
                retries=0,
            )
            serial = identity_of(registers_of(reply, IDENTITY.count)).serial
        except BusError as error:
            health.probe_failed(str(error))
            return
        if serial != node.profile.serial:
            # A different meter at this address: its plan may not fit. Keep it out until rediscovery.
            health.replaced(f"serial changed from 0x{node.profile.serial:08X} to 0x{serial:08X}; rediscover")
            log.warning("node replaced", address=node.address, detail=health.last_error)
            return
        health.restored()
        log.info("node restored", address=node.address)
        self.publish([NodeOnline(node.address)])

    def line_lost(self, node: Node) -> None:
        """The serial port is gone: the node is offline whatever its failure count."""
        self._failed(node, BusClosed(f"line unavailable: {self.bus.closed_reason}"), force=True)

    def line_back(self, node: Node) -> None:
        """The serial port is open again: the node is probed at once."""
        node.health.probe_now()

    def _events(self, address: int, changes: Changes) -> list[NodeEvent]:
        """The events of what changed: a value only where some face shows it, an alarm bitmap's
        transitions always."""
        events: list[NodeEvent] = []
        watched = self.watched(ValueChanged)
        for point, at in changes:
            if (address, point.register) in watched:
                events.append(ValueChanged(address, point, *changes.pair(at)))
            if point.group == "alarms" and point.encoding is Encoding.BITMAP:
                old, new = changes.pair(at)
                if new.quality is Quality.GOOD and (old.value or 0) != new.value:
                    # A bitmap point decodes to an int (None before its first reading).
                    events.append(AlarmChanged(address, point, cast("int | None", old.value), cast(int, new.value)))
        return events

    def _failed(self, node: Node, error: BusError, *, force: bool = False) -> None:
        health = node.health
        if health.failed(str(error) or type(error).__name__, self.offline_after, force=force):
            # A lost port is logged once by the bus, not once per node.
            (log.debug if force else log.warning)(
                "node lost", address=node.address, failures=health.consecutive_failures, error=health.last_error
            )
            self.publish(
                [NodeOffline(node.address, health.last_error), *self._events(node.address, node.cache.mark_stale())]
            )
