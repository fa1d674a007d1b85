"""The bus: the one owner of the serial line, running one RTU transaction at a time by priority.

Writes go first and discovery last; pass-through and polling share the line (see `POLL_SHARE`),
and discovery keeps a bounded share of it however busy polling is (see `DISCOVERY_SHARE`).

The line itself is a `Transport` the bus opens (`RtuTransport` by default, see `gateway.bus.transport`), and
opens again when it fails. `Bus.serve()` runs on its own event loop, normally on a thread of its
own, so that busy loops elsewhere (BACnet, SNMP) cannot stretch RTU timing. Requests come from
any thread or loop and go back as futures:

    bus = Bus(LineSettings("/dev/ttyUSB0"))
    thread = threading.Thread(target=run_bus, args=(bus,))   # run_bus: asyncio.run(bus.serve())
    thread.start()
    bus.wait_ready(timeout=5)
    reply = await bus.transact(1, bytes.fromhex("0300000002"), Priority.POLL)   # from any loop
    future = bus.submit(1, bytes.fromhex("0600100001"), Priority.WRITE)        # from any thread
    bus.stop(); thread.join()

    async with Bus(LineSettings("/dev/ttyUSB0")) as bus:     # or served on this loop, for a while
        reply = await bus.transact(1, bytes.fromhex("0300000002"), Priority.POLL)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import IntEnum

import structlog

from gateway.bus.errors import (
    BusClosed,
    BusError,
    BusOverloaded,
    CorruptReply,
    ExceptionReply,
    NoResponse,
)
from gateway.bus.line import LineSettings
from gateway.bus.rtu import RtuTransport
from gateway.bus.transport import OpenTransport, Transport
from gateway.modbus import MAX_PDU, MAX_UNIT
from gateway.serialport import Reopening

_log = structlog.get_logger("gateway.bus")


class Priority(IntEnum):
    """Which queued request goes on the line next: lower first, first come first within one.

    Two exceptions, so that no class starves: a waiting poll gets its turn ahead of pass-through
    (POLL_SHARE), and waiting discovery its share of the line's time ahead of both (DISCOVERY_SHARE).
    """

    WRITE = 0
    PASSTHROUGH = 1
    POLL = 2
    DISCOVERY = 3


POLL_SHARE = 2
"""While polls wait, at least one in every POLL_SHARE pass-through-or-poll transactions is a poll.

Pass-through outranks polling because a Modbus TCP master waits on it, but sixteen busy masters
would then hold the line for good and every polled value would go stale. So once POLL_SHARE - 1
pass-through transactions have run since the last poll, a waiting poll goes first. 2 means they
take turns while both wait; pass-through keeps the rest, so neither starves (keep it 2 or more).
"""

DISCOVERY_SHARE = 0.1
"""The share of the line's time that waiting discovery requests are owed, and take, under load.

Discovery is last in line, but a scan that only gets the line between poll cycles never finishes
on a line that polling keeps busy. So the bus counts what discovery owes: each of its
transactions during which another request waited adds its time x (1 - DISCOVERY_SHARE), each
other transaction pays off its time x DISCOVERY_SHARE; while nothing is owed, a waiting discovery
request goes ahead of pass-through and polls (never ahead of a write). Discovery that kept nobody
waiting (an otherwise idle line) costs nothing. Under load it gets this share of the line and,
when its requests keep coming, no more (the node layer paces its probes to about this share too).
"""


@dataclass(frozen=True, slots=True)
class BusStats:
    """Counters since the bus was created; `busy_seconds` is time spent in transactions."""

    transactions: int = 0
    replies: int = 0
    timeouts: int = 0
    corrupt: int = 0
    exceptions: int = 0
    stale_bytes: int = 0
    busy_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Request:
    unit: int
    pdu: bytes
    timeout: float
    # The caller's future: a thread-safe one, or, for a caller on the serving loop itself (the
    # poller), a plain asyncio future, settled in place (a thread-safe one takes a lock, and
    # `asyncio.wrap_future` hands its outcome over through the loop's self-pipe).
    future: Future[bytes] | asyncio.Future[bytes]
    priority: Priority

    def start(self) -> bool:
        """Whether the caller still waits (it did not cancel); from now on it cannot cancel the
        transaction, only stop waiting for it."""
        if isinstance(self.future, asyncio.Future):
            return not self.future.cancelled()
        return self.future.set_running_or_notify_cancel()

    def settle(self, outcome: bytes | BaseException) -> None:
        if self.future.done():
            return  # a caller on the serving loop stopped waiting while the transaction ran
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class Bus:
    """Queue of RTU requests in front of one serial line.

    `submit` and `transact` may be called from any thread or event loop; everything else
    happens on the loop that runs `serve`.
    """

    def __init__(self, settings: LineSettings, open_transport: OpenTransport = RtuTransport.open) -> None:
        self.settings = settings
        self._open_transport = open_transport
        self.ready = threading.Event()
        self._stats = BusStats()
        # Guards the queue and the serving state, which other threads touch in submit().
        self._lock = threading.Lock()
        self._queues: dict[Priority, deque[_Request]] = {priority: deque() for priority in Priority}
        self._queued = 0
        self._passthrough_since_poll = 0
        self._discovery_owes = 0.0  # seconds of line time; see DISCOVERY_SHARE
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving_thread: int | None = None  # the thread of that loop
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed_reason = "bus not started"
        # Set once serve() has either opened the port or given up; see wait_ready().
        self._settled = threading.Event()
        self._stale_before = 0
        self._open = asyncio.Event()  # the line is open; used on the serving loop only
        self._serving: asyncio.Task[None] | None = None  # when run as an async context manager

    @property
    def stats(self) -> BusStats:
        """A consistent snapshot of the counters, readable from any thread."""
        return self._stats

    @property
    def line_down(self) -> bool:
        """The port failed or could not be opened (not merely: not opened yet)."""
        return self._settled.is_set() and not self.ready.is_set()

    @property
    def closed_reason(self) -> str:
        """Why requests are refused right now (the last failure to open or keep the port)."""
        return self._closed_reason

    def submit(self, unit: int, pdu: bytes, priority: Priority, *, timeout: float | None = None) -> Future[bytes]:
        """Queue a request; the future gives the reply PDU (function code and data) or a BusError.

        Unit 0 broadcasts and resolves to b"". `timeout` overrides the line's reply allowance.
        Thread-safe; never blocks.
        """
        future: Future[bytes] = Future()
        self._queue(_Request(unit, bytes(pdu), self._allowance(timeout), future, priority))
        return future

    async def transact(self, unit: int, pdu: bytes, priority: Priority, *, timeout: float | None = None) -> bytes:
        """Like `submit`, awaited from any event loop."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            return await asyncio.wrap_future(self.submit(unit, pdu, priority, timeout=timeout))
        future: asyncio.Future[bytes] = loop.create_future()
        self._queue(_Request(unit, bytes(pdu), self._allowance(timeout), future, priority))
        return await future

    def _allowance(self, timeout: float | None) -> float:
        return self.settings.timeout if timeout is None else timeout

    def _queue(self, request: _Request) -> None:
        if not 0 <= request.unit <= MAX_UNIT:
            raise ValueError(f"unit must be 0..{MAX_UNIT}, not {request.unit}")
        if not 1 <= len(request.pdu) <= MAX_PDU:
            raise ValueError(f"a PDU is 1..{MAX_PDU} bytes, not {len(request.pdu)}")
        with self._lock:
            if self._loop is None or self._wake is None:
                request.settle(BusClosed(self._closed_reason))
                return
            if self._queued >= self.settings.max_queue:
                request.settle(BusOverloaded(f"{self._queued} requests already queued on {self.settings.port}"))
                return
            self._queues[request.priority].append(request)
            self._queued += 1
            loop, wake, serving = self._loop, self._wake, self._serving_thread
        if threading.get_ident() == serving:  # the poller, on the serving loop: not through its self-pipe
            wake.set()
            return
        # RuntimeError: the loop has closed, and serve() failed the queue, this request included.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    def stop(self) -> None:
        """Cancel `serve()` from any thread; queued requests fail with BusClosed."""
        task = self._task
        if task is not None:
            # RuntimeError: the loop has closed, so serve() has already ended.
            with contextlib.suppress(RuntimeError):
                task.get_loop().call_soon_threadsafe(task.cancel)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until serve() has tried to open the port; raise BusClosed if that failed.

        Raises TimeoutError if neither happens within `timeout` seconds.
        """
        if not self._settled.wait(timeout):
            raise TimeoutError(f"bus on {self.settings.port} not ready within {timeout} s")
        if not self.ready.is_set():
            raise BusClosed(self._closed_reason)

    async def serve(self) -> None:
        """Keep the line open and run transactions on the running loop until cancelled.

        A port that cannot be opened, or fails, is opened again with back-off (`Reopening`: 1 s
        doubling to 30 s), and it is logged once, not at every attempt. While the
        line is down every request fails at once with BusClosed; `wait_ready` reports the first
        attempt. Re-raises cancellation, after closing the port and failing what is queued.
        """
        with self._lock:
            if self._task is not None:
                raise RuntimeError("this bus is already serving")
            self._task = asyncio.current_task()
        self._settled.clear()
        reopening = Reopening("bus", self.settings.port)
        try:
            while True:
                wake = asyncio.Event()
                try:
                    transport = await self._open_transport(self.settings, _waker(wake))
                except BusClosed as exc:
                    self._shut(str(exc))
                    await reopening.failed(str(exc))
                    continue
                reopening.opened()
                try:
                    await self._serve_transport(transport, wake)
                except BusClosed as exc:
                    reopening.lost(str(exc))
        finally:
            self._shut("bus stopped")
            self._task = None

    async def wait_open(self) -> None:
        """Until the line is open; awaited on the loop that runs `serve`."""
        await self._open.wait()

    async def __aenter__(self) -> Bus:
        """Serve on the running loop; raises BusClosed when the line cannot be opened."""
        self._serving = asyncio.create_task(self.serve())
        try:
            await asyncio.to_thread(self.wait_ready)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._serving is not None:
            self._serving.cancel()
            await asyncio.gather(self._serving, return_exceptions=True)
            self._serving = None

    async def _serve_transport(self, transport: Transport, wake: asyncio.Event) -> None:
        """Run transactions on one open transport until it fails (BusClosed) or serve() is cancelled."""
        with self._lock:
            self._loop, self._wake, self._serving_thread = asyncio.get_running_loop(), wake, threading.get_ident()
        self._stale_before = self._stats.stale_bytes
        self.ready.set()
        self._settled.set()
        self._open.set()
        reason = "bus stopped"
        try:
            await self._run(transport, wake)
        except BusClosed as exc:
            reason = str(exc)
            raise
        finally:
            self._open.clear()
            self._shut(reason)
            await transport.close()
            _log.info("bus closed", port=self.settings.port, reason=reason)

    async def _run(self, transport: Transport, wake: asyncio.Event) -> None:
        while True:
            request = await self._next(transport, wake)
            # False when the caller cancelled before the request went on the line.
            if request.start():
                contended = self._others_wait()
                seconds = await self._execute(transport, request)
                self._share(request.priority, seconds, contended or self._others_wait())

    async def _next(self, transport: Transport, wake: asyncio.Event) -> _Request:
        while True:
            if transport.failure is not None:
                raise transport.failure
            with self._lock:
                if self._queued:
                    return self._pop()
                wake.clear()
            await wake.wait()

    def _others_wait(self) -> bool:
        """Whether a request other than discovery is waiting for the line."""
        return self._queued > len(self._queues[Priority.DISCOVERY])

    def _pop(self) -> _Request:
        """The next request by priority, unless discovery or a waiting poll is owed its turn
        (DISCOVERY_SHARE, POLL_SHARE)."""
        priority = next(priority for priority in _PRIORITIES if self._queues[priority])
        if priority is not Priority.WRITE and self._queues[Priority.DISCOVERY] and self._discovery_owes <= 0:
            priority = Priority.DISCOVERY
        elif (
            priority is Priority.PASSTHROUGH
            and self._queues[Priority.POLL]
            and self._passthrough_since_poll >= POLL_SHARE - 1
        ):
            priority = Priority.POLL
        if priority is Priority.POLL:
            self._passthrough_since_poll = 0
        elif priority is Priority.PASSTHROUGH:
            self._passthrough_since_poll += 1
        self._queued -= 1
        return self._queues[priority].popleft()

    def _share(self, priority: Priority, seconds: float, contended: bool) -> None:
        """Count a transaction's line time toward what discovery owes the others (DISCOVERY_SHARE);
        `contended`: another request waited for the line at its start or end."""
        if priority is not Priority.DISCOVERY:
            self._discovery_owes = max(0.0, self._discovery_owes - seconds * DISCOVERY_SHARE)
        elif contended:
            self._discovery_owes += seconds * (1 - DISCOVERY_SHARE)

    async def _execute(self, transport: Transport, request: _Request) -> float:
        """Run one transaction and settle its future; the seconds it held the line."""
        started = time.monotonic()
        try:
            reply = await transport.transact(request.unit, request.pdu, request.timeout)
        except BusError as exc:
            self._record(transport, started, exc)
            request.settle(exc)
            if isinstance(exc, BusClosed):
                raise
        except BaseException:
            stopped = BusClosed("bus stopped during the transaction")
            self._record(transport, started, stopped)
            request.settle(stopped)
            raise
        else:
            self._record(transport, started, reply)
            request.settle(reply)
        return time.monotonic() - started

    def _record(self, transport: Transport, started: float, outcome: bytes | BusError) -> None:
        """Count one transaction; a broadcast's b"" is not a reply."""
        stats = self._stats
        self._stats = BusStats(
            transactions=stats.transactions + 1,
            replies=stats.replies + (isinstance(outcome, bytes) and outcome != b""),
            timeouts=stats.timeouts + isinstance(outcome, NoResponse),
            corrupt=stats.corrupt + isinstance(outcome, CorruptReply),
            exceptions=stats.exceptions + isinstance(outcome, ExceptionReply),
            stale_bytes=self._stale_before + transport.stale_bytes,
            busy_seconds=stats.busy_seconds + time.monotonic() - started,
        )

    def _shut(self, reason: str) -> None:
        """Stop taking requests and fail the queued ones with BusClosed(reason)."""
        with self._lock:
            self._loop = self._wake = self._serving_thread = None
            self._closed_reason = reason
            queued = [request for priority in Priority for request in self._queues[priority]]
            for waiting in self._queues.values():
                waiting.clear()
            self._queued = 0
        self.ready.clear()
        self._settled.set()
        for request in queued:
            if request.start():
                request.settle(BusClosed(reason))


_PRIORITIES = tuple(Priority)  # highest first (iterating the enum itself costs more, every transaction)


def _waker(wake: asyncio.Event) -> Callable[[BusClosed], None]:
    """The transport's on_lost: wake the serving loop, which then finds the transport's failure."""
    return lambda _: wake.set()
