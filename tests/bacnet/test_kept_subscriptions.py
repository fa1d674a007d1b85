"""COV subscriptions kept across restarts (gateway/bacnet/subscriptions.py): a BMS that
subscribed keeps its notifications through ReinitializeDevice and a new start, each kept
subscription notifying its current value once; what ran out or cannot be taken up is dropped, and
a garbled entry of the state file costs that entry only."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import structlog

from gateway.app import serve
from gateway.state import SavedSubscription, State, StateStore
from tests.bacnet.client import Client, Notification, reported
from tests.bacnet.conftest import bacnet_config, serving
from tests.bacnet.test_lifecycle import reinitialize
from tests.support import eventually

CURRENT_1 = "analog-input,1336"


def summary(notification: Notification) -> tuple[str, str, int, bool]:
    """(object, device, process, FAULT) of a notification."""
    return (
        str(notification.monitoredObjectIdentifier),
        str(notification.initiatingDeviceIdentifier),
        notification.subscriberProcessIdentifier,
        bool(reported(notification)["status-flags"][1]),
    )


async def notifications(client: Client, count: int, timeout: float = 15.0) -> list[tuple[str, str, int, bool]]:
    """The next `count` notifications, and any that came a moment later, sorted."""
    found = []
    async with asyncio.timeout(timeout):
        while len(found) < count:
            found.append(summary(await client.app.notifications.get()))
    await asyncio.sleep(0.5)
    while not client.app.notifications.empty():
        found.append(summary(client.app.notifications.get_nowait()))
    return sorted(found)


async def test_subscriptions_survive_reinitialize_device_and_each_notifies_its_value_once(
    make_line, make_client, tmp_path
) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path, reinit_password="secret")  # otherwise the shipped settings
    server = asyncio.create_task(serve(lambda: config))
    try:
        client = make_client(config.bacnet.port)
        await client.find_router()
        await client.subscribe(client.node(1), CURRENT_1, 1, confirmed=True, lifetime=600)
        await client.subscribe(client.node(2), "analog-value,1", 2, confirmed=False, lifetime=None)  # indefinite
        await client.subscribe(client.router, "analog-value,2", 3, confirmed=True, lifetime=0)  # indefinite
        await client.subscribe(client.node(1), "analog-input,1337", 4, confirmed=True, lifetime=600)
        await client.subscribe(client.node(1), "analog-input,1337", 4, confirmed=None, lifetime=None)  # cancelled
        before = await notifications(client, 4)  # one each as they were made
        store = StateStore(config.gateway.state_file)
        await eventually(lambda: len(store.load().cov_subscriptions) == 3, 15, "the subscriptions saved")
        ends = {kept.process: kept.expires for kept in store.load().cov_subscriptions}
        assert ends[2] is None and ends[3] is None  # indefinite
        assert abs((ends[1] - datetime.now(UTC)).total_seconds() - 600) < 20

        await reinitialize(client, "warmstart", "secret")

        after = await notifications(client, 3, timeout=30)
        assert after == [entry for entry in before if entry[2] != 4]  # as they were, and once each
        [current] = await client.read(client.node(1), "device,50001", "active-cov-subscriptions")
        assert 500 < current.timeRemaining <= 600 and current.recipient.processIdentifier == 1
        line.panel(1).set_current(1, 42.0)
        assert await client.notification_where(lambda values: values["present-value"] == 42.0)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def test_a_start_takes_up_what_is_kept_and_drops_what_ran_out_is_gone_or_beyond_the_caps(
    make_line, make_client, start_gateway, tmp_path
) -> None:
    line = make_line(1)
    config = bacnet_config(line, tmp_path, max_cov_subscriptions=3)
    client = make_client(config.bacnet.port)
    now = datetime.now(UTC).replace(microsecond=0)

    def kept(node: int | None, objid: str, process: int, lifetime: int = 600, ends: float = 300) -> SavedSubscription:
        ending = None if lifetime == 0 else now + timedelta(seconds=ends)
        return SavedSubscription(node, objid, f"127.0.0.1:{client.port}", process, True, lifetime, ending)

    store = StateStore(config.gateway.state_file)
    store.save(
        State().with_cov_subscriptions(
            [
                kept(1, CURRENT_1, 1),
                kept(None, "analog-value,1", 2, lifetime=0),  # indefinite, on the router
                kept(2, "analog-input,1337", 3, ends=-5),  # ran out while the gateway was stopped
                kept(3, CURRENT_1, 4),  # node 3 is not on the line any more
                kept(1, "analog-input,999999", 5),  # no such object
                kept(1, "no-such-type,1", 8),  # passes the state file's check, not BACnet's
                kept(2, CURRENT_1, 6),
                kept(2, "analog-input,1338", 7),  # a fourth: beyond max_cov_subscriptions = 3
            ]
        )
    )
    data = json.loads(store.path.read_text())
    data["cov_subscriptions"].append({"node": 1, "object": CURRENT_1})  # garbled
    store.path.write_text(json.dumps(data))

    with structlog.testing.capture_logs() as logs:
        await serving(await start_gateway(config))
        taken_up = await notifications(client, 3)
    assert taken_up == [  # once each, with the values of the first poll (not the FAULT of none yet)
        ("analog-input,1336", "device,50001", 1, False),
        ("analog-input,1336", "device,50002", 6, False),
        ("analog-value,1", "device,50000", 2, False),
    ]
    assert [log["detail"] for log in logs if log["event"] == "state file cov subscription skipped"] == [
        "; ".join(
            f"cov_subscriptions[8].{key} is missing"
            for key in ("subscriber", "process", "confirmed", "lifetime", "expires")
        )
    ]
    [restored] = [log for log in logs if log["event"] == "bacnet cov subscriptions restored"]
    assert {key: value for key, value in restored.items() if key not in ("event", "log_level")} == {
        "restored": 3,
        "its_time_ran_out": 1,
        "its_device_is_gone": 1,
        "no_such_object": 1,
        "no_such_object_type_or_address": 1,
        "a_cap_is_full": 1,
    }
    await client.find_router()
    [current] = await client.read(client.node(1), "device,50001", "active-cov-subscriptions")
    assert 250 < current.timeRemaining <= 300  # the time it had left, not its whole lifetime
    await eventually(lambda: len(store.load().cov_subscriptions) == 3, 15, "the state file to hold what was taken up")
