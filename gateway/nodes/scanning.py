"""Finding meters at the addresses of ``serial.scan`` that no node holds: the first scan and every pass after it.

While no meter is known (a first start), the scan has the line to itself and runs at the line's
speed, again with back-off while nothing answers. Once meters are known they are served at once,
and every later look, the pass that follows a restart as much as the background rescan, runs
beside polling: its probes are paced to `DISCOVERY_SHARE` of the line and the bus gives each its
turn, so a pass ends within ``rescan_interval`` (or the time the share allows, when longer)
however busy polling keeps the line. A pass probes the likely addresses first, and again every
``rescan_interval`` while it lasts longer: the partners of known panels, then the addresses right
after the highest known board, where installers put the next one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

import structlog

from gateway.bus import DISCOVERY_SHARE, Bus, BusClosed, expected_reply_length
from gateway.nodes.api import ScanProgress
from gateway.nodes.discovery import IDENTITY, Found, identify, scan
from gateway.nodes.modbus import read_registers
from gateway.nodes.profile import NodeProfile

log = structlog.get_logger(__name__)

FIRST_SCAN_RETRY_START = 5.0  # seconds before scanning a bus where no meter answered again, doubling
FIRST_SCAN_RETRY_MAX = 300.0

LIKELY_AFTER = 4
"""Addresses right after the highest known board that a pass probes first: the next two boards."""


def likely(addresses: Iterable[int], known: Iterable[NodeProfile]) -> list[int]:
    """Of `addresses`, where a meter is most likely to appear, most likely first: partners of known
    panels (a board answers at N and N+1), then the addresses right after the highest known node.

    >>> likely([1, 2, 4, 5, 6, 7, 8, 9, 10], [NodeProfile(3, 7, "A", 15172, 0, 0, primary_address=3)])
    [4, 5, 6, 7, 8]
    """
    known = list(known)
    partners = {a for profile in known for a in (profile.primary_address, profile.primary_address + 1)}
    highest = max((profile.primary_address + 1 for profile in known), default=0)
    after = set(range(highest + 1, highest + 1 + LIKELY_AFTER)) - partners
    ordered = list(addresses)
    return [a for a in ordered if a in partners] + [a for a in ordered if a in after]


class Scanner:
    """Looks for meters at the unused addresses of `addresses`; `found` hears each one found.

    `known` gives the nodes known now, by address. `run_first_scan` scans with the line to itself
    until a meter answers; `run` makes passes beside polling, and `ask` starts one now.
    """

    def __init__(
        self,
        bus: Bus,
        addresses: Sequence[int],
        *,
        probe_timeout: float,
        patient_timeout: float,
        known: Callable[[], Mapping[int, NodeProfile]],
        found: Callable[[Sequence[NodeProfile]], None],
    ) -> None:
        self.bus = bus
        self.addresses = addresses
        self.probe_timeout = probe_timeout
        self.patient_timeout = patient_timeout
        self._known = known
        self._found = found
        self.progress = ScanProgress()
        self._asked = asyncio.Event()  # bound to the loop that runs the scanner (the bus thread's)

    def unused(self) -> list[int]:
        known = self._known()
        return [a for a in self.addresses if a not in known]

    def ask(self) -> None:
        """Start a pass now (from the scanner's loop)."""
        self._asked.set()

    async def run_first_scan(self) -> None:
        """Scan the unused addresses with the line to itself until a meter answers (meters powered up
        with the gateway may still be booting: scanned again with back-off)."""
        pause = FIRST_SCAN_RETRY_START
        while True:
            addresses = self.unused()
            self._started(len(addresses))
            started = time.monotonic()
            found = await self._scan(addresses)
            self._finished(started)
            log.info("discovery done", seconds=round(time.monotonic() - started, 2), found=len(found))
            self._found(found)
            if self._known():
                return
            log.warning("no meter answered; scanning again", seconds=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, FIRST_SCAN_RETRY_MAX)

    async def run(self, interval: float, *, pass_now: bool) -> None:
        """Passes for ever: one now when `pass_now`, then one every `interval` seconds (0: none),
        each paced to the line's share for discovery and spread over at least `interval`; a pass a
        user asks for starts at once (cutting short one under way) at the share's pace."""
        asked = False
        while True:
            addresses = self.unused()
            if addresses and (pass_now or asked or interval):
                fastest = self._probe_line_time() / DISCOVERY_SHARE
                spacing = max(interval / len(addresses), fastest) if interval and not asked else fastest
                if asked:
                    log.info("rescan asked for", addresses=len(addresses))
                asked = await self._pass(addresses, spacing, interval)
            else:
                asked = await self._pause(interval or None)
            pass_now = False

    async def _pass(self, addresses: Sequence[int], spacing: float, interval: float) -> bool:
        """Probe `addresses`, one every `spacing` seconds, the likely ones first and again every
        `interval` seconds while the pass lasts longer; True when a user asked for a pass meanwhile
        (this one is then cut short)."""
        first = likely(addresses, self._known().values())
        queue = deque(first + [a for a in addresses if a not in first])
        started = time.monotonic()
        likely_again = started + interval if interval else math.inf
        self._started(len(queue))
        while queue:
            if time.monotonic() >= likely_again:
                queue.extendleft(reversed([a for a in likely(addresses, self._known().values()) if a not in queue]))
                likely_again += interval
            address = queue.popleft()
            next_start = time.monotonic() + spacing
            if address not in self._known():  # not found meanwhile as a partner
                await self._probe(address)
            self.progress = replace(self.progress, left=len(queue))
            if await self._pause(next_start - time.monotonic()):
                self.progress = replace(self.progress, running=False)
                return True
        self._finished(started)
        return False

    async def _probe(self, address: int) -> None:
        """Identify what answers at `address`; a meter found is kept, and its partner panel asked at once."""
        found = await self._identify(address, self.probe_timeout)
        if found is None or found.profile is None:
            return
        profile = found.profile
        self._found([profile])
        for partner in (profile.primary_address, profile.primary_address + 1):
            if partner in self.addresses and partner not in self._known():
                partnered = await self._identify(partner, self.patient_timeout)
                if partnered is not None and partnered.profile is not None:
                    self._found([partnered.profile])

    async def _identify(self, address: int, timeout: float) -> Found | None:
        while True:
            await self.bus.wait_open()
            try:
                found = await identify(self.bus, address, timeout)
            except BusClosed:
                continue  # the port went away: ask again once it is back
            if found is not None and not found.is_bcpm:
                log.warning("not a bcpm, left alone", address=address, detail=found.detail)
            return found

    async def _scan(self, addresses: Sequence[int]) -> list[NodeProfile]:
        """The BCPM profiles found at `addresses` in one scan; a scan the line interrupts is run again."""
        while True:
            await self.bus.wait_open()
            self.progress = replace(self.progress, left=len(addresses))
            try:
                found = await scan(
                    self.bus,
                    addresses,
                    self.probe_timeout,
                    patient_timeout=self.patient_timeout,
                    probed=lambda _: self._count_down(),
                )
            except BusClosed:
                continue
            for item in found:
                if not item.is_bcpm:
                    log.warning("not a bcpm, left alone", address=item.address, detail=item.detail)
            return [item.profile for item in found if item.profile is not None]

    def _probe_line_time(self) -> float:
        """How long a probe of a silent address holds the line: its frame, the wait, the silences."""
        line = self.bus.settings
        probe = read_registers(IDENTITY.start, IDENTITY.count)
        return (
            line.wire_time(len(probe) + 3)
            + line.wire_time(expected_reply_length(probe) or 0)
            + self.probe_timeout
            + 2 * line.silence
        )

    async def _pause(self, seconds: float | None) -> bool:
        """Sleep `seconds` (None: for ever) unless a pass is asked for first; whether one was."""
        try:
            async with asyncio.timeout(seconds):
                await self._asked.wait()
        except TimeoutError:
            return False
        self._asked.clear()
        return True

    def _started(self, addresses: int) -> None:
        self.progress = replace(self.progress, running=True, left=addresses)

    def _count_down(self) -> None:
        self.progress = replace(self.progress, left=max(0, self.progress.left - 1))

    def _finished(self, started: float) -> None:
        self.progress = replace(
            self.progress,
            running=False,
            left=0,
            passes=self.progress.passes + 1,
            last_seconds=round(time.monotonic() - started, 3),
            last_finished=time.time(),
        )
