"""The poll loop: every cycle, each online node's fast reads plus a slice of its slow reads.

Nodes are polled concurrently: each node's reads run in order, and the bus interleaves the nodes'
requests so it never waits for one node's answer to be processed before serving the next. An
offline node costs one short probe per back-off period, so it never slows the others. While the
serial port is missing or failed, every node is offline and the loop waits for the bus to have
the port open again; then every node is probed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque

import structlog

from gateway.bus import BusClosed, BusError, CorruptReply, NoResponse
from gateway.nodes.api import CycleReport
from gateway.nodes.client import NodeClient
from gateway.nodes.node import Node
from gateway.nodes.plan import REPLY_OVERHEAD_BYTES, REQUEST_BYTES, Read
from gateway.nodes.registry import NodeRegistry

log = structlog.get_logger(__name__)

REPORTS_KEPT = 64
LINE_CHECK = 0.1  # seconds between looks at a line that is not open yet


class Poller:
    def __init__(self, client: NodeClient, registry: NodeRegistry, *, interval: float, slow_every: int) -> None:
        self.client = client
        self.registry = registry
        self.interval = interval
        self.slow_every = slow_every
        self.cycles = 0
        self.reports: deque[CycleReport] = deque(maxlen=REPORTS_KEPT)
        self._unprocessed: set[tuple[int, int]] = set()  # (address, start) of reads that failed in our code

    async def run(self) -> None:
        bus = self.client.bus
        while True:
            if not bus.ready.is_set():
                await self._wait_for_the_line()
            started = time.monotonic()
            if self.registry.nodes:  # none yet: discovery is still looking
                self.reports.append(await self.cycle())
                self.cycles += 1
            await asyncio.sleep(max(0.0, started + self.interval - time.monotonic()))

    async def cycle(self) -> CycleReport:
        started = time.monotonic()
        now = started
        planned: list[Read] = []
        async with asyncio.TaskGroup() as group:
            for node in self.registry.nodes.values():
                if node.health.online:
                    reads = node.plan.fast + self._slow_slice(node)
                    planned.extend(reads)
                    group.create_task(self._poll(node, reads))
                elif now >= node.health.next_probe:
                    group.create_task(self.client.probe(node))
        wire = sum(
            self.client.bus.settings.wire_time(REQUEST_BYTES + REPLY_OVERHEAD_BYTES + 2 * r.count) for r in planned
        )
        return CycleReport(time.monotonic() - started, len(planned), sum(r.count for r in planned), wire)

    async def _wait_for_the_line(self) -> None:
        """Until the bus has the port open. While it is missing or failed (not merely being opened
        at start), every node is offline; once it is back, every node is probed at once."""
        bus = self.client.bus
        while not bus.ready.is_set():
            if bus.line_down:
                for node in self.registry.nodes.values():
                    if node.health.online:
                        self.client.line_lost(node)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LINE_CHECK):
                    await bus.wait_open()
        for node in self.registry.nodes.values():
            self.client.line_back(node)

    def _slow_slice(self, node: Node) -> tuple[Read, ...]:
        slow = node.plan.slow
        if node.needs_full_sweep or not slow:
            node.needs_full_sweep = False
            return slow
        reads, node.slow_cursor = slow_slice(slow, node.slow_cursor, self.slow_every)
        return reads

    async def _poll(self, node: Node, reads: tuple[Read, ...]) -> None:
        for read in reads:
            try:
                await self.client.read(node, read)
            except BusClosed:
                return  # the line is down: the next cycle waits for it
            except (NoResponse, CorruptReply) as error:
                # A node that did not answer (even after retries) gets no more of this cycle's
                # time: the others go on, and it is asked again next cycle.
                log.debug("poll read failed", address=node.address, start=read.start, error=str(error))
                return
            except BusError as error:
                log.debug("poll read refused", address=node.address, start=read.start, error=str(error))
            except Exception:  # noqa: BLE001 - a reply we fail to process must not stop every node's polling
                if (node.address, read.start) not in self._unprocessed:  # a traceback once, not every cycle
                    self._unprocessed.add((node.address, read.start))
                    log.exception("poll read not processed", address=node.address, start=read.start)
            else:
                self._unprocessed.discard((node.address, read.start))


def slow_slice(slow: tuple[Read, ...], cursor: int, every: int) -> tuple[tuple[Read, ...], int]:
    """The next `1/every` of a node's slow reads from `cursor` (wrapping round), and the cursor after."""
    size = math.ceil(len(slow) / every)
    start = cursor % len(slow)
    return (slow + slow)[start : start + size], start + size
