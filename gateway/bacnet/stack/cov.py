"""COV subscriptions as the gateway reads, bounds and keeps them.

bacpypes3 keeps an application's subscriptions in its COV detections (object -> detection, each
with its subscriptions) and has no public way to list, find or make one. `CovService` does, on
every application of the gateway:

    app.cov_subscriptions()                  # [Subscribed(object, subscriber, process, ...), ...]
    app.subscription(objid, address, 7)      # the one of that object, subscriber and process
    app.take_up(address, 7, objid, True, 600)  # a kept one again, notified once; or why not
    app.cancel_all_subscriptions()           # a device leaving

A subclass says which subscriptions a cap refuses (`refuses_subscription`, asked before a new or
renewed one is made) and hears of every change (`subscriptions_changed`: made, renewed, cancelled,
ran out, or its subscriber went away). At most `MAX_NOTIFICATIONS_IN_FLIGHT` confirmed
notifications of one subscription are unanswered at once (a slow subscriber misses intermediate
values, never the gateway's memory), and none is sent while DeviceCommunicationControl disables
initiation (`control.CommunicationControl`). The device lists its subscriptions in
Active_COV_Subscriptions, which bacpypes3 asks for and has none of.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bacpypes3.apdu import SubscribeCOVRequest
from bacpypes3.basetypes import (
    COVSubscription,
    DeviceAddress,
    ListOfCOVSubscription,
    ObjectPropertyReference,
    Recipient,
    RecipientProcess,
)
from bacpypes3.errors import ExecutionError
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.service.cov import Subscription

from gateway.bacnet.stack.control import CommunicationControl
from gateway.logging import peer_events

__all__ = ["MAX_NOTIFICATIONS_IN_FLIGHT", "CovService", "Subscribed"]

MAX_NOTIFICATIONS_IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class Subscribed:
    """One COV subscription of a device, as it stands."""

    object: ObjectIdentifier
    subscriber: Address
    process: int  # Subscriber_Process_Identifier
    confirmed: bool
    lifetime: int  # seconds granted; 0 = indefinite
    ends: float | None  # the event loop's time it runs out; None when indefinite
    cov_increment: float | None  # the subscriber's own, if it gave one

    @staticmethod
    def of(cov: Subscription) -> Subscribed:
        return Subscribed(
            cov.obj_id,
            cov.client_addr,
            cov.proc_id,
            bool(cov.confirmed),
            int(cov.lifetime or 0),
            None if cov.cancel_handle is None else cov.cancel_handle.when(),
            cov.covIncrement,
        )


class CovService(CommunicationControl):
    """The COV subscriptions of one device: listed, found, taken up, bounded (see the module)."""

    def refuses_subscription(self, subscriber: Address, indefinite: bool, renewed: Subscribed | None) -> bool:
        """Whether a cap refuses this subscription (`renewed`: the one it renews, if any)."""
        return False

    def subscriptions_changed(self) -> None:
        """A subscription was made, renewed, cancelled or ran out."""

    async def do_SubscribeCOVRequest(self, apdu: SubscribeCOVRequest) -> None:
        cancelling = apdu.issueConfirmedNotifications is None and apdu.lifetime is None
        renewed = self.subscription(apdu.monitoredObjectIdentifier, apdu.pduSource, apdu.subscriberProcessIdentifier)
        if not cancelling and self.refuses_subscription(apdu.pduSource, not apdu.lifetime, renewed):
            peer_events("bacnet cov subscriptions refused: a cap is full").count(
                str(apdu.pduSource), f"lifetime={apdu.lifetime}"
            )
            raise ExecutionError("resources", "noSpaceToAddListElement")
        await super().do_SubscribeCOVRequest(apdu)
        self.subscriptions_changed()  # new, renewed or cancelled

    def cancel_subscription(self, cov: Subscription) -> None:
        super().cancel_subscription(cov)
        self.subscriptions_changed()  # cancelled, ran out, or its subscriber went away

    def cov_subscriptions(self) -> list[Subscribed]:
        return [Subscribed.of(cov) for cov in self._subscriptions()]

    def subscription(self, objid: ObjectIdentifier, address: Address, process: int) -> Subscribed | None:
        """The subscription of that object, subscriber and process, if any."""
        cov = self._subscription(objid, address, process)
        return None if cov is None else Subscribed.of(cov)

    def watched(self, objid: ObjectIdentifier) -> bool:
        """Whether a subscription watches that object."""
        detection = self._cov_detections.get(objid)
        return detection is not None and bool(detection.cov_subscriptions)

    def take_up(
        self, address: Address, process: int, objid: ObjectIdentifier, confirmed: bool, lifetime: int
    ) -> str | None:
        """Take up a subscription kept across a restart, as a SubscribeCOV would make it, and
        notify the subscriber of the current value; None, or why it cannot be taken up."""
        if self._subscription(objid, address, process) is not None:
            return "subscribed already"
        obj = self.get_object_id(objid)
        if obj is None:
            return "no such object"
        if self.refuses_subscription(address, not lifetime, None):
            return "a cap is full"
        detection = self._cov_detections.get(objid)
        if detection is None:
            detection = self._cov_detections[objid] = obj._cov_criteria(obj)
        cov = Subscription(obj, address, process, objid, confirmed, lifetime, None)
        self.add_subscription(cov)
        asyncio.get_running_loop().call_soon(detection.send_cov_notifications, cov)
        return None

    def cancel_all_subscriptions(self) -> None:
        for cov in self._subscriptions():
            self.cancel_subscription(cov)

    def cov_notification(self, cov: Subscription, apdu: Any) -> None:
        if not self.communicating():
            return  # DeviceCommunicationControl: initiation disabled
        in_flight = getattr(cov, "in_flight", 0)  # ours, on bacpypes3's subscription
        if cov.confirmed:
            if in_flight >= MAX_NOTIFICATIONS_IN_FLIGHT:
                return  # the next change sends the then current value
            cov.in_flight = in_flight + 1
        super().cov_notification(cov, apdu)

    def cov_confirmation(self, cov: Subscription, future: asyncio.Future[Any]) -> None:
        if cov.confirmed:  # bacpypes3 calls this for unconfirmed notifications too
            cov.in_flight = getattr(cov, "in_flight", 1) - 1
        super().cov_confirmation(cov, future)

    def get_active_cov_subscriptions(self) -> ListOfCOVSubscription:
        """The device's Active_COV_Subscriptions."""
        now = asyncio.get_running_loop().time()
        return ListOfCOVSubscription(
            [
                COVSubscription(
                    recipient=RecipientProcess(
                        recipient=Recipient(address=DeviceAddress(cov.subscriber)), processIdentifier=cov.process
                    ),
                    monitoredPropertyReference=ObjectPropertyReference(
                        objectIdentifier=cov.object, propertyIdentifier="presentValue"
                    ),
                    issueConfirmedNotifications=cov.confirmed,
                    timeRemaining=0 if cov.ends is None else max(0, round(cov.ends - now)),
                    **({} if cov.cov_increment is None else {"covIncrement": cov.cov_increment}),
                )
                for cov in self.cov_subscriptions()
            ]
        )

    def _subscriptions(self) -> list[Subscription]:
        return [cov for detection in list(self._cov_detections.values()) for cov in list(detection.cov_subscriptions)]

    def _subscription(self, objid: ObjectIdentifier, address: Address, process: int) -> Subscription | None:
        detection = self._cov_detections.get(objid)
        if detection is None:
            return None
        mine = (cov for cov in detection.cov_subscriptions if cov.client_addr == address and cov.proc_id == process)
        return next(mine, None)
