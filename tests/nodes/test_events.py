"""The event fan-out (gateway/nodes/events.py): kinds, order, and a bounded backlog."""

from __future__ import annotations

import asyncio
import threading

from gateway.nodes.events import EventHub, NodeOffline, NodeOnline


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
