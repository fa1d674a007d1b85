"""The event fan-out (gateway/hub.py) of the node events: kinds, order, and a bounded backlog."""

from __future__ import annotations

import asyncio
import threading

from gateway.hub import EventHub
from gateway.nodes.cache import UNREAD
from gateway.nodes.events import NodeOffline, NodeOnline, RegistersRead, ValueChanged
from gateway.pointmap import load

CURRENT_1, CURRENT_2 = (load().find("current", group="branch", channel=channel) for channel in (1, 2))


async def test_a_subscriber_gets_its_kinds_in_order_and_loses_its_oldest_when_behind() -> None:
    hub = EventHub(asyncio.get_running_loop())
    online = hub.subscribe(NodeOnline, maxsize=3)
    everything = hub.subscribe()
    batch = [NodeOnline(1), NodeOffline(2, "gone"), NodeOnline(3), NodeOnline(4), NodeOnline(5)]
    publisher = threading.Thread(target=hub.publish, args=(batch,))  # the bus thread publishes
    publisher.start()
    publisher.join()
    assert [await online.get() for _ in range(3)] == [NodeOnline(3), NodeOnline(4), NodeOnline(5)]
    assert online.dropped == 1
    assert [await everything.get() for _ in range(5)] == batch and everything.dropped == 0
    online.close()
    hub.publish([NodeOnline(6)])
    assert await asyncio.wait_for(everything.get(), 5) == NodeOnline(6)
    assert not _has_events(online)  # closed: nothing more reaches it


def _has_events(subscription) -> bool:
    try:
        subscription.get_nowait()
    except asyncio.QueueEmpty:
        return False
    return True


async def test_batches_published_while_the_loop_is_busy_all_arrive_in_order_each_to_its_kinds() -> None:
    hub = EventHub(asyncio.get_running_loop())
    online, offline, everything = hub.subscribe(NodeOnline), hub.subscribe(NodeOffline), hub.subscribe()
    batches = [[NodeOnline(n), NodeOffline(n, "gone")] if n % 2 else [NodeOnline(n)] for n in range(1, 40)]
    publisher = threading.Thread(target=lambda: [hub.publish(batch) for batch in batches])
    publisher.start()
    publisher.join()  # the loop did not run meanwhile: every batch waits for one delivery
    await asyncio.sleep(0)
    flat = [event for batch in batches for event in batch]
    assert [await everything.get() for _ in flat] == flat
    assert [await online.get() for _ in range(39)] == [e for e in flat if isinstance(e, NodeOnline)]
    assert [await offline.get() for _ in range(20)] == [e for e in flat if isinstance(e, NodeOffline)]
    assert not any(map(_has_events, (online, offline, everything)))


async def test_events_published_after_the_loop_closed_are_dropped() -> None:
    loop = asyncio.new_event_loop()
    hub = EventHub(loop)
    hub.subscribe()
    loop.close()
    for n in range(3):
        hub.publish([NodeOnline(n)])  # no error, and nothing kept for a loop that is gone
    assert not hub._waiting


async def test_a_subscriber_that_shows_some_values_gets_their_changes_only() -> None:
    hub = EventHub(asyncio.get_running_loop())
    shown: set[tuple[int, int]] = set()
    values = hub.subscribe(ValueChanged, NodeOnline)
    values.show_only(shown)
    changes = [ValueChanged(1, CURRENT_1, UNREAD, UNREAD), ValueChanged(1, CURRENT_2, UNREAD, UNREAD)]
    hub.publish([*changes, RegistersRead(1, 1336, 2)])  # nothing anybody takes: the loop is not even called
    assert not hub._waiting
    shown.add((1, CURRENT_2.register))
    hub.publish([*changes, NodeOnline(1)])
    await asyncio.sleep(0)
    assert [values.get_nowait(), values.get_nowait()] == [changes[1], NodeOnline(1)]
    everything = hub.subscribe()  # a subscriber of every value change: they all go
    hub.publish(changes)
    await asyncio.sleep(0)
    assert [everything.get_nowait(), everything.get_nowait()] == changes
    assert values.get_nowait() == changes[1] and not _has_events(values)


async def test_a_publisher_learns_which_values_some_subscriber_would_take() -> None:
    """What `watched` says a publisher may leave unmade is exactly what `publish` would drop."""
    hub = EventHub(asyncio.get_running_loop())
    alarms_only = hub.subscribe(NodeOnline)
    assert (1, CURRENT_1.register) not in hub.watched(ValueChanged)  # nobody takes values
    first: set[tuple[int, int]] = set()
    hub.subscribe(ValueChanged).show_only(first)
    assert (1, CURRENT_1.register) not in hub.watched(ValueChanged)  # one shows none yet
    first.add((1, CURRENT_1.register))
    second = {(2, CURRENT_2.register)}
    hub.subscribe(ValueChanged).show_only(second)
    watched = hub.watched(ValueChanged)
    assert (1, CURRENT_1.register) in watched and (2, CURRENT_2.register) in watched
    assert (1, CURRENT_2.register) not in watched and (2, CURRENT_1.register) not in watched
    hub.subscribe()  # one that takes every event: every value is watched
    assert (3, CURRENT_2.register) in hub.watched(ValueChanged)
    alarms_only.close()
