"""Workarounds for bugs of bacpypes3 0.0.110, one small override each.

Each has a test in `tests/bacnet/test_fixes.py` that shows the stock behaviour is still broken:
when an upgrade fixes one upstream, that test fails and the override here can go.

- `IndefiniteCovLifetime`: SubscribeCOV without Lifetime (indefinite) fails with
  operational-problem (`Subscription.__init__` compares None > 0); Lifetime 0 already means
  indefinite there.
- `CancelOnlyWhatExists`: a SubscribeCOV that cancels a subscription which does not exist leaves an
  empty COV detection on the object for good (a BMS cancels its old subscriptions after a
  restart), which keeps that object from ever being dropped from memory. It is acknowledged
  without one.
- `CovConfirmationGuard`: a confirmed COV notification to a subscriber that went away raises in
  `cov_confirmation` (one traceback per notification) and the subscription goes on for its whole
  lifetime, forever when indefinite. Here it is cancelled after `COV_FAILURES_TO_CANCEL` misses.
- `StatusFlagsCovCriteria`: Status_Flags is computed from Reliability and Event_State, so a change
  of either never reaches the COV detection: a node going offline, or a channel going into alarm,
  would notify nobody.
- `WildcardDeviceInstance`: device instance 4194303 ("this device") is compared with a string
  and never matches, so ReadProperty of it gives unknown-object.
- `UnconfirmedServicesSupported`: Protocol_Services_Supported maps unconfirmed services with the
  confirmed choice numbers (Who-Is shows up as some other service).
- `WriteDecodingErrors`: a WriteProperty of a property the object lacks is carried out (it adds
  the property) or becomes operational-problem, and a value of the wrong datatype gets a Reject;
  the standard wants unknown-property and invalid-data-type errors.
- `count_failed_datagrams`: every datagram the stack fails on (malformed, or routed to a network
  it does not know) is logged at ERROR with a traceback, so any peer could fill the journal; it is
  counted instead, with one warning a minute.
- `GuardedVirtualNetwork`: a routed request whose APDU a node cannot decode raises inside a task
  nobody awaits ("Task exception was never retrieved"); it is counted the same way.

Two more are done where the thing is built: every analog object gets a COV_Increment (without
one the first Present_Value change raises inside the caller, see `local_objects.py`), and the
router announces itself (`NetworkServiceElement.startup` never awaits its announcement; see
`network.py`). The application answers TimeSynchronization, UTCTimeSynchronization and
ReinitializeDevice itself (`application.py`): bacpypes3 has no handler for them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bacpypes3.apdu import (
    ConfirmedServiceChoice,
    SimpleAckPDU,
    SubscribeCOVRequest,
    UnconfirmedServiceChoice,
    WritePropertyRequest,
    confirmed_request_types,
    unconfirmed_request_types,
)
from bacpypes3.basetypes import ServicesSupported
from bacpypes3.errors import DecodingError, ExecutionError, InvalidTag
from bacpypes3.local.cov import COVIncrementCriteria
from bacpypes3.primitivedata import ObjectType
from bacpypes3.service.cov import Subscription
from bacpypes3.vlan import VirtualNetwork

from gateway.logging import DropReport, LibraryErrorFilter

__all__ = [
    "COV_FAILURES_TO_CANCEL",
    "CancelOnlyWhatExists",
    "FAILED_DATAGRAMS",
    "GuardedVirtualNetwork",
    "count_failed_datagrams",
    "CovConfirmationGuard",
    "IndefiniteCovLifetime",
    "StatusFlagsCovCriteria",
    "UnconfirmedServicesSupported",
    "WildcardDeviceInstance",
    "WriteDecodingErrors",
    "has_subscription",
]

COV_FAILURES_TO_CANCEL = 3
WILDCARD_INSTANCE = 4194303


class IndefiniteCovLifetime:
    async def do_SubscribeCOVRequest(self, apdu: SubscribeCOVRequest) -> None:
        if apdu.issueConfirmedNotifications is not None and apdu.lifetime is None:
            apdu.lifetime = 0
        await super().do_SubscribeCOVRequest(apdu)  # type: ignore[misc]


class CancelOnlyWhatExists:
    async def do_SubscribeCOVRequest(self, apdu: SubscribeCOVRequest) -> None:
        cancelling = apdu.issueConfirmedNotifications is None and apdu.lifetime is None
        if cancelling and not has_subscription(self, apdu):
            await self.response(SimpleAckPDU(context=apdu))  # type: ignore[attr-defined]
            return
        await super().do_SubscribeCOVRequest(apdu)  # type: ignore[misc]


def has_subscription(app: Any, apdu: SubscribeCOVRequest) -> bool:
    """Whether the subscription a SubscribeCOV names (object, subscriber, process) exists."""
    detection = app._cov_detections.get(apdu.monitoredObjectIdentifier)
    return detection is not None and any(
        cov.client_addr == apdu.pduSource and cov.proc_id == apdu.subscriberProcessIdentifier
        for cov in detection.cov_subscriptions
    )


class CovConfirmationGuard:
    def cov_confirmation(self, cov: Subscription, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()  # retrieved always, so asyncio does not log it
        if cov.obj_ref is None:  # cancelled meanwhile; notifications were still in flight
            return
        failures = 0 if error is None else getattr(cov, "failures", 0) + 1
        cov.failures = failures  # type: ignore[attr-defined]
        if failures >= COV_FAILURES_TO_CANCEL:
            self.cancel_subscription(cov)  # type: ignore[attr-defined]


class StatusFlagsCovCriteria(COVIncrementCriteria):
    """COV_Increment detection that also notifies when Reliability or Event_State (so Status_Flags)
    changes."""

    properties_tracked = (*COVIncrementCriteria.properties_tracked, "reliability", "eventState")

    def send_cov_notifications(self, subscription: Subscription | None = None) -> None:
        self.statusFlags = self.obj.statusFlags  # the tracked copy never sees the computed change
        super().send_cov_notifications(subscription)


class WildcardDeviceInstance:
    def get_object_id(self, objid: Any) -> Any:
        device = getattr(self, "device_object", None)
        if device is not None and objid[0] == ObjectType.device and objid[1] == WILDCARD_INSTANCE:
            return device
        return super().get_object_id(objid)  # type: ignore[misc]


class UnconfirmedServicesSupported:
    def get_services_supported(self) -> ServicesSupported:
        supported = ServicesSupported([])
        for choices, request_types in (
            (ConfirmedServiceChoice, confirmed_request_types),
            (UnconfirmedServiceChoice, unconfirmed_request_types),
        ):
            for choice, request_type in request_types.items():
                if hasattr(self, "do_" + request_type.__name__):
                    supported[getattr(supported, choices(choice).attr)] = 1
        return supported


class WriteDecodingErrors:
    async def do_WritePropertyRequest(self, apdu: WritePropertyRequest) -> None:
        obj = self.get_object_id(apdu.objectIdentifier)  # type: ignore[attr-defined]
        if obj is not None and (
            obj.get_property_type(apdu.propertyIdentifier) is None
            or apdu.propertyIdentifier not in obj.propertyList  # a property of the type, not of this object
        ):
            raise ExecutionError("property", "unknownProperty")
        try:
            await super().do_WritePropertyRequest(apdu)  # type: ignore[misc]
        except (InvalidTag, DecodingError):
            raise ExecutionError("property", "invalidDataType") from None


FAILED_DATAGRAMS = LibraryErrorFilter(DropReport("bacnet datagrams bacpypes3 failed on"),
                                       "error processing incoming PDU", "error processing loopback PDU")


def count_failed_datagrams() -> None:
    """bacpypes3 logs every datagram it cannot handle (malformed, or routed to an unknown network)
    at ERROR with a traceback: count them instead, and say so once a minute."""
    logging.getLogger("bacpypes3.ipv4.IPv4DatagramServer").addFilter(FAILED_DATAGRAMS)


class GuardedVirtualNetwork(VirtualNetwork):
    async def process_pdu(self, pdu: Any) -> None:
        try:
            await super().process_pdu(pdu)
        except Exception as error:  # the PDU is lost; the network goes on
            FAILED_DATAGRAMS.report.drop(str(pdu.pduSource), repr(error))
