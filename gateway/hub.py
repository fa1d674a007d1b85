"""The event hub: events published from any thread, fanned out to subscribers on one event loop.

It is neutral: it knows no kind of event. The node layer publishes its events
(:mod:`gateway.nodes.events`) from the bus thread, the BACnet face its network findings
(:mod:`gateway.findings`); the faces subscribe on the main loop. ``EventHub.publish`` hands a batch
of events to the hub's loop, which copies them into every subscriber's bounded queue. A subscriber
that falls behind loses its oldest events (counted), so a slow face can never hold up polling or
grow memory without bound.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Callable, Container, Iterable, Sequence
from typing import Any

Publish = Callable[[Iterable[object]], None]
"""What a publisher is handed: `EventHub.publish`."""
Watched = Callable[[type["Shown"]], Container[tuple[int, int]]]
"""What a publisher of `Shown` events may be handed too: `EventHub.watched`."""


class Shown:
    """An event about one point of one node, which a subscriber that shows only some points takes
    only for those (see `Subscription.show_only`): a node's value changed."""

    __slots__ = ()

    @property
    def shown_as(self) -> tuple[int, int]:
        """The (address, register) the event is about."""
        raise NotImplementedError


class Subscription:
    """A face's view of the event stream: ``async for event in subscription``.

    Events wait in a bounded deque (the oldest go first when it is full) rather than an
    asyncio.Queue: a batch of a few dozen arrives with every poll read, and the queue's per-event
    bookkeeping cost more than what the faces do with them.
    """

    def __init__(self, hub: EventHub, kinds: tuple[type, ...], maxsize: int) -> None:
        self._hub = hub
        self._kinds = kinds
        self._wants: dict[type, bool] = {}  # each event class met so far: one of `kinds`?
        self._events: deque[Any] = deque(maxlen=maxsize)
        self._arrived = asyncio.Event()
        self.dropped = 0
        self.values: Container[tuple[int, int]] | None = None  # see `show_only`

    def show_only(self, values: Container[tuple[int, int]]) -> None:
        """Take a `Shown` event (a node's value changed) only for the (address, register) pairs in
        `values`, which the subscriber keeps up to date: a face that shows a few points (the BACnet
        objects a client asked for) is not handed every value a poll read changes. A value that
        changes while no subscriber takes it is not even handed over to this loop."""
        self.values = values

    def _offer(self, batch: tuple[Any, ...], classes: set[type]) -> None:
        """Take the events of `batch` (of these `classes`) that are of our kinds."""
        wanted_classes = self._taken(classes)
        if not wanted_classes:
            return
        values = self.values if any(map(_is_shown, wanted_classes)) else None
        if values is not None:
            wanted: Sequence[Any] = [
                e for e in batch if type(e) in wanted_classes and (not isinstance(e, Shown) or e.shown_as in values)
            ]
        else:
            wanted = batch if wanted_classes == classes else [e for e in batch if type(e) in wanted_classes]
        if not wanted:
            return
        self.dropped += max(0, len(self._events) + len(wanted) - (self._events.maxlen or 0))
        self._events.extend(wanted)
        self._arrived.set()

    def _taken(self, classes: set[type]) -> set[type]:
        """Which of these event classes are of our kinds."""
        if not self._kinds:
            return classes
        return {kind for kind in classes if self._wanted(kind)}

    def _wanted(self, kind: type) -> bool:
        wanted = self._wants.get(kind)
        if wanted is None:
            wanted = self._wants[kind] = issubclass(kind, self._kinds)
        return wanted

    async def get(self) -> Any:
        while not self._events:
            self._arrived.clear()
            await self._arrived.wait()
        return self._events.popleft()

    def get_nowait(self) -> Any:
        if not self._events:
            raise asyncio.QueueEmpty
        return self._events.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        return await self.get()

    def close(self) -> None:
        self._hub._subscriptions.discard(self)


class EventHub:
    """Fan-out of events from any thread to subscribers on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscriptions: set[Subscription] = set()
        # Batches published but not yet delivered; while some wait, the loop has been called
        # already, so a busy loop is woken once for all of them, not once a poll read.
        self._lock = threading.Lock()
        self._waiting: list[tuple[Any, ...]] = []

    def subscribe(self, *kinds: type, maxsize: int = 10_000) -> Subscription:
        """Events of the given kinds (all kinds when none are given), from now on."""
        subscription = Subscription(self, kinds, maxsize)
        self._subscriptions.add(subscription)
        return subscription

    def watched(self, kind: type[Shown]) -> Container[tuple[int, int]]:
        """The (address, register) pairs some subscriber takes events of this kind about (see
        `Subscription.show_only`): for a publisher that would rather not make the events nobody
        takes. Nothing when no subscriber takes the kind; everything when one takes all of them."""
        shown = [s.values for s in tuple(self._subscriptions) if s._taken({kind})]
        if None in shown:
            return _EVERYTHING
        shown = [values for values in shown if values]  # a face that shows nothing yet is asked nothing
        if not shown:
            return frozenset()
        return shown[0] if len(shown) == 1 else _AnyOf(shown)  # type: ignore[arg-type,return-value]

    def publish(self, events: Iterable[object]) -> None:
        """Deliver a batch of events; safe to call from any thread.

        What no subscriber would take is left out here, on the publisher's thread, and a batch
        left empty does not wake the loop at all: most poll reads change only values nobody shows.
        """
        batch = tuple(events)
        subscriptions = tuple(self._subscriptions)
        classes = set(map(type, batch))
        shown = {kind for kind in classes if _is_shown(kind)}
        if shown:
            batch = _shown(batch, [s.values for s in subscriptions if s._taken(shown)])
            classes = set(map(type, batch))
        if not any(s._taken(classes) for s in subscriptions):
            return
        with self._lock:
            self._waiting.append(batch)
            if len(self._waiting) > 1:
                return  # the loop has been called for the first of them
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the main loop has closed: nobody listens
            with self._lock:
                self._waiting.clear()

    def _deliver(self) -> None:
        with self._lock:
            batches, self._waiting = self._waiting, []
        subscriptions = tuple(self._subscriptions)
        for batch in batches:
            classes = set(map(type, batch))
            for subscription in subscriptions:
                subscription._offer(batch, classes)


class _Everything:
    def __contains__(self, _: object) -> bool:
        return True


_EVERYTHING = _Everything()


class _AnyOf:
    """What any of these containers holds."""

    def __init__(self, containers: list[Container[tuple[int, int]]]) -> None:
        self._containers = containers

    def __contains__(self, item: object) -> bool:
        return any(item in container for container in self._containers)


@functools.cache
def _is_shown(kind: type) -> bool:
    return issubclass(kind, Shown)


def _shown(batch: tuple[Any, ...], values: list[Container[tuple[int, int]] | None]) -> tuple[Any, ...]:
    """The batch less the `Shown` events that none of these subscribers' `values` takes (None: all)."""
    shown = [taken for taken in values if taken is not None]
    if len(shown) < len(values):
        return batch
    return tuple(event for event in batch if not isinstance(event, Shown) or any(event.shown_as in v for v in shown))
