"""The bacpypes3 applications: one per device, the router's with the gateway-wide services.

Every device's application carries the bacpypes3 fixes (`fixes.py`) and bounded COV: at most
`bacnet.max_cov_subscriptions` over all devices and `bacnet.max_cov_per_client` for one
subscriber (`CovLimits`, shared by every application of the gateway), and
`MAX_NOTIFICATIONS_IN_FLIGHT` unanswered confirmed notifications per subscription (a slow
subscriber misses intermediate values, never the gateway's memory). The router's application also answers TimeSynchronization and
UTCTimeSynchronization (recorded; applied to the gateway's clock when rtc_control = "bacnet";
a global broadcast reaches every device, and only the router acts on it) and
ReinitializeDevice (warmstart or coldstart, with the configured password: the gateway
acknowledges, then restarts in-process), and binds the link layer its BACnet/IP port brings
(BBMD or foreign device, see `ip_port.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from bacpypes3.apdu import (
    ReinitializeDeviceRequest,
    ReinitializeDeviceRequestReinitializedStateOfDevice,
    SimpleAckPDU,
    SubscribeCOVRequest,
    TimeSynchronizationRequest,
    UTCTimeSynchronizationRequest,
)
from bacpypes3.app import Application
from bacpypes3.errors import ExecutionError
from bacpypes3.service.cov import Subscription

from gateway.bacnet.clock import Clock, epoch_of
from gateway.bacnet.fixes import (
    CovConfirmationGuard,
    IndefiniteCovLifetime,
    UnconfirmedServicesSupported,
    WildcardDeviceInstance,
    WriteDecodingErrors,
)
from gateway.bacnet.ip_port import IPv4Port

__all__ = ["CovLimits", "DeviceApplication", "RouterApplication"]

log = structlog.get_logger(__name__)

MAX_NOTIFICATIONS_IN_FLIGHT = 4
RESTART_DELAY = 0.2  # seconds between the ReinitializeDevice acknowledgement and the restart
_RESTARTS = (
    ReinitializeDeviceRequestReinitializedStateOfDevice.coldstart,
    ReinitializeDeviceRequestReinitializedStateOfDevice.warmstart,
)


@dataclass
class CovLimits:
    """The COV subscription caps of the whole gateway, and the applications they count over."""

    total: int
    per_client: int
    apps: list[BoundedCov] = field(default_factory=list)

    def full_for(self, client: Any) -> bool:
        subscriptions = [cov for app in self.apps for cov in app.subscriptions()]
        return (len(subscriptions) >= self.total
                or sum(1 for cov in subscriptions if cov.client_addr == client) >= self.per_client)


class BoundedCov:
    cov_limits: CovLimits

    async def do_SubscribeCOVRequest(self, apdu: SubscribeCOVRequest) -> None:
        cancelling = apdu.issueConfirmedNotifications is None and apdu.lifetime is None
        if not cancelling and not self._subscribed(apdu) and self.cov_limits.full_for(apdu.pduSource):
            raise ExecutionError("resources", "noSpaceToAddListElement")
        await super().do_SubscribeCOVRequest(apdu)  # type: ignore[misc]

    def cov_notification(self, cov: Subscription, apdu: Any) -> None:
        in_flight = getattr(cov, "in_flight", 0)
        if cov.confirmed:
            if in_flight >= MAX_NOTIFICATIONS_IN_FLIGHT:
                return  # the next change sends the then current value
            cov.in_flight = in_flight + 1  # type: ignore[attr-defined]
        super().cov_notification(cov, apdu)  # type: ignore[misc]

    def cov_confirmation(self, cov: Subscription, future: asyncio.Future[Any]) -> None:
        if cov.confirmed:  # bacpypes3 calls this for unconfirmed notifications too
            cov.in_flight = getattr(cov, "in_flight", 1) - 1  # type: ignore[attr-defined]
        super().cov_confirmation(cov, future)  # type: ignore[misc]

    # bacpypes3 keeps the subscriptions in `_cov_detections` (object id -> detection) and has no
    # public way to list them.
    def subscriptions(self) -> list[Subscription]:
        detections = self._cov_detections.values()  # type: ignore[attr-defined]
        return [cov for detection in detections for cov in detection.cov_subscriptions]

    def _subscribed(self, apdu: SubscribeCOVRequest) -> bool:
        detection = self._cov_detections.get(apdu.monitoredObjectIdentifier)  # type: ignore[attr-defined]
        return detection is not None and any(
            cov.client_addr == apdu.pduSource and cov.proc_id == apdu.subscriberProcessIdentifier
            for cov in detection.cov_subscriptions
        )

    def cancel_all_subscriptions(self) -> None:
        for detection in list(self._cov_detections.values()):  # type: ignore[attr-defined]
            for cov in list(detection.cov_subscriptions):
                self.cancel_subscription(cov)  # type: ignore[attr-defined]


class DeviceApplication(  # type: ignore[misc]
    BoundedCov,
    IndefiniteCovLifetime,
    CovConfirmationGuard,
    WildcardDeviceInstance,
    UnconfirmedServicesSupported,
    WriteDecodingErrors,
    Application,
):
    """The application of one device of the gateway."""


class RouterApplication(DeviceApplication):
    _clock: Clock
    _password: str  # "" = none asked
    _restart: Callable[[], None]

    def add_object(self, obj: Any) -> None:
        link_layer = obj._link_layer if isinstance(obj, IPv4Port) else None
        if link_layer is None:
            super().add_object(obj)
            return
        # bacpypes3 builds its stock link layer for every IPv4 port, with no way to choose another
        # class: register the port and bind the one it brings the same way here.
        self.objectName[obj.objectName] = obj
        self.objectIdentifier[obj.objectIdentifier] = obj
        obj._app = self
        self.link_layers[obj.objectIdentifier] = link_layer
        self.nsap.bind(link_layer, net=obj.networkNumber, address=obj.address)

    def configure(self, clock: Clock, password: str, restart: Callable[[], None]) -> None:
        self._clock = clock
        self._password = password
        self._restart = restart

    async def do_TimeSynchronizationRequest(self, apdu: TimeSynchronizationRequest) -> None:
        self._synchronize(apdu, utc=False)

    async def do_UTCTimeSynchronizationRequest(self, apdu: UTCTimeSynchronizationRequest) -> None:
        self._synchronize(apdu, utc=True)

    def _synchronize(self, apdu: TimeSynchronizationRequest | UTCTimeSynchronizationRequest, *, utc: bool) -> None:
        told = epoch_of(apdu.time, utc=utc)
        if told is None:
            log.warning("time synchronization without a definite time, ignored", source=str(apdu.pduSource))
            return
        applied = self._clock.synchronize(told)
        log.info("time synchronization", source=str(apdu.pduSource), utc=utc, time=str(apdu.time),
                 applied=applied, reason=None if applied else 'rtc_control = "modbus"')

    async def do_ReinitializeDeviceRequest(self, apdu: ReinitializeDeviceRequest) -> None:
        if self._password and (apdu.password is None or str(apdu.password) != self._password):
            raise ExecutionError("security", "passwordFailure")
        if apdu.reinitializedStateOfDevice not in _RESTARTS:
            raise ExecutionError("services", "serviceRequestDenied")
        await self.response(SimpleAckPDU(context=apdu))
        log.warning("reinitialize device: restarting", source=str(apdu.pduSource),
                    state=str(apdu.reinitializedStateOfDevice))
        asyncio.get_running_loop().call_later(RESTART_DELAY, self._restart)
