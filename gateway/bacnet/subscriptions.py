"""COV subscriptions kept across restarts: a BMS that subscribed keeps its notifications when the
gateway restarts (a new start, ReinitializeDevice), without subscribing again.

    kept = KeptSubscriptions(identities.save, identities.state.cov_subscriptions, network)
    app.keep_subscriptions = kept.changed  # every device tells it of each change
    kept.restore()                         # after the first poll: each taken up, notified once
    await kept.close()                     # at the end: saved as they stand, with their time left

The subscriptions go to the state file (`cov_subscriptions`, see `gateway/state.py`) with the
time each has left as the moment it ends (UTC). A change (a subscription made, renewed, cancelled
or run out) is saved `SAVE_DELAY` seconds later, with the changes that came meanwhile, so a BMS
renewing hundreds of subscriptions costs one save every few seconds, not one each; a power cut
loses at most that much. Stopping saves them as they stand.

Once the first poll cycle is done (the meters' values are known; `network.restore_subscriptions`),
each kept subscription is taken up on its device as a SubscribeCOV would make it, for the time it
has left, and notifies its subscriber of the current value once; until then they are saved again
as they were, beside any made meanwhile. One whose time ran out meanwhile, of a node or object
that is gone, or beyond the caps (`bacnet.max_cov_*`) is dropped, and the log says how many of each.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

import structlog
from bacpypes3.pdu import Address, RemoteStation
from bacpypes3.primitivedata import ObjectIdentifier

from gateway.bacnet.applications import DeviceApplication
from gateway.bacnet.stack import Subscribed
from gateway.state import SavedSubscription, State

__all__ = ["SAVE_DELAY", "KeptSubscriptions"]

log = structlog.get_logger(__name__)

SAVE_DELAY = 5.0  # seconds from a change to its save

Change = Callable[[State], State]


class Devices(Protocol):
    """What the keeper needs of the running network (`network.BacnetNetwork`)."""

    def cov_devices(self) -> Iterable[tuple[int | None, DeviceApplication]]:
        """Each device's application: (node address, app), None for the router."""
        ...

    def ip_network(self) -> int:
        """The number the router routes its BACnet/IP side with."""
        ...


class KeptSubscriptions:
    def __init__(
        self, save: Callable[[Change], asyncio.Future[None]], kept: Iterable[SavedSubscription], devices: Devices
    ) -> None:
        self._save = save  # a save of the state file (`DeviceIdentities.save`)
        self._kept = tuple(kept)
        self._devices = devices
        self._pending: asyncio.TimerHandle | None = None
        self._restored = False  # until then the kept ones are saved again as they were
        self._closed = False

    def restore(self) -> None:
        """Take up every kept subscription that can be; the file then holds those only."""
        self._restored = True
        apps = dict(self._devices.cov_devices())
        now = time.time()
        outcome: Counter[str] = Counter()
        for kept in self._kept:
            try:
                why = self._take_up(apps.get(kept.node), kept, now)
            except ValueError:  # the state file's check passed it, bacpypes3 does not know it
                why = "no such object type or address"
            outcome[why or "restored"] += 1
        if self._kept:
            log.info("bacnet cov subscriptions restored", **{why.replace(" ", "_"): n for why, n in outcome.items()})
            self.changed()

    def _take_up(self, app: DeviceApplication | None, kept: SavedSubscription, now: float) -> str | None:
        """Take up one kept subscription on its device: None, or why it cannot be."""
        left = None if kept.expires is None else kept.expires.timestamp() - now
        if app is None:
            return "its device is gone"
        if left is not None and left < 1:
            return "its time ran out"
        lifetime = 0 if left is None else min(round(left), kept.lifetime)  # not beyond it: a clock set back
        address, objid = self._address(kept), ObjectIdentifier(kept.object)
        return app.take_up(address, kept.process, objid, kept.confirmed, lifetime)

    def changed(self) -> None:
        """A subscription was made, renewed, cancelled or ran out: save soon."""
        if not self._closed and self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(SAVE_DELAY, self._save_soon)

    async def close(self) -> None:
        """Save the subscriptions as they stand; later changes (the devices closing) are not saved."""
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        await self._save_now()

    def _save_soon(self) -> None:
        self._pending = None
        asyncio.ensure_future(self._save_now())

    async def _save_now(self) -> None:
        subscriptions = self._snapshot()
        try:
            await self._save(lambda state: state.with_cov_subscriptions(subscriptions))
        except Exception as error:  # the next change tries again; the gateway goes on
            log.error("bacnet cov subscriptions not saved", detail=str(error))

    def _snapshot(self) -> list[SavedSubscription]:
        to_wall_clock = time.time() - asyncio.get_running_loop().time()
        ip_network = self._devices.ip_network()
        running = [
            _saved(node, cov, ip_network, to_wall_clock)
            for node, app in self._devices.cov_devices()
            for cov in app.cov_subscriptions()
        ]
        return running if self._restored else [*self._kept, *running]

    def _address(self, kept: SavedSubscription) -> Address:
        """The subscriber's address as its device sees it: a node sees one on the BACnet/IP
        network behind the router, on its IP side's network."""
        address = Address(kept.subscriber)
        if kept.node is not None and address.addrNet is None:
            return RemoteStation(self._devices.ip_network(), address.addrAddr)
        return address


def _saved(node: int | None, cov: Subscribed, ip_network: int, to_wall_clock: float) -> SavedSubscription:
    """A running subscription as the state file keeps it (`to_wall_clock`: from loop to wall-clock time)."""
    ends = None if cov.ends is None else cov.ends + to_wall_clock
    address = cov.subscriber
    if node is not None and address.addrNet == ip_network:  # on the BACnet/IP network, whatever its number
        address = Address(address.addrAddr)
    return SavedSubscription(
        node=node,
        object=str(cov.object),
        subscriber=str(address),
        process=cov.process,
        confirmed=cov.confirmed,
        lifetime=cov.lifetime,
        expires=None if ends is None else datetime.fromtimestamp(ends, UTC),
    )
