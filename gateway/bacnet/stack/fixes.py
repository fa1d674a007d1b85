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
- `StatusFlagsCov`: Status_Flags is computed from Reliability and Event_State, so a change of
  either never reaches the COV detection: a node going offline, or a channel going into alarm,
  would notify nobody. Its objects' detection (`StatusFlagsCovCriteria`) watches both.
- `WildcardDeviceInstance`: device instance 4194303 ("this device") is compared with a string
  and never matches, so ReadProperty of it gives unknown-object.
- `UnconfirmedServicesSupported`: Protocol_Services_Supported maps unconfirmed services with the
  confirmed choice numbers (Who-Is shows up as some other service), and lists ReadRange, which
  fails on every object the gateway has: it lists what the application executes (a handler set to
  None is not executed).
- `MultiStateCov`: a Multi-state object cannot be subscribed (operational-problem): bacpypes3
  gives it the COV_Increment criteria, and it has no COV_Increment.
- `StandardPropertyList`: Property_List includes Object_Identifier, Object_Name, Object_Type and
  Property_List itself, which the standard leaves out (12.1.1.4.1).
- `WriteDecodingErrors`: a WriteProperty of a property the object lacks is carried out (it adds
  the property) or becomes operational-problem, and a value of the wrong datatype gets a Reject;
  the standard wants unknown-property and invalid-data-type errors.
- `WritePropertyMultipleErrors`: a WritePropertyMultiple with one refused write gets no answer at
  all (bacpypes3 raises its WritePropertyMultiple-Error PDU as if it were an exception), so the
  client retries and the writes before the refused one are applied again; a request naming no
  known object gets a plain Error the client cannot decode. Here the writes are applied in order
  up to the first failure, which is answered with a WritePropertyMultiple-Error naming it
  (firstFailedWriteAttempt), with the same checks as WriteProperty.
- `RejectUndecodable`: a confirmed request that does not decode (a required parameter missing, a
  bad tag, cut short) gets no answer (the Abort meant for the client goes up to the application
  instead); the standard wants a Reject with the reason. A service the application does not
  execute is rejected unrecognized-service before its body is decoded (bacpypes3 fails on the
  choices it has no class for, 30 and above, as on a bad tag).
- `DccEnableDisableRequired`: bacpypes3 takes Enable/Disable, which DeviceCommunicationControl
  requires, as optional, so a request without it reached the password check; the standard wants
  Reject missing-required-parameter.
- `RejectUnreachableNetwork`: a message for a network the router cannot reach (its own
  Who-Is-Router-To-Network got no answer) is dropped with a traceback; the standard wants a
  Reject-Message-To-Network back to the sender.
- `NetworkNumberFlags`: Network-Number-Is carries bacpypes3's number quality as its flag (3 for
  a configured number, 1 "configured" for a learned one; the flag is 1 configured, 0 learned), a
  router answers What-Is-Network-Number with a number it does not know, and every device answers
  it, router or not; a Network-Number-Is from another network teaches a number, and a learned
  flag is kept as a quality. Here only a router that knows its number answers, with the right
  flag, and a number learned is learned or learned-configured.
- `DccOnUndecodedPdu`: while DeviceCommunicationControl disables a device, the access point's
  check reads the APDU type and service off the PDU before decoding it, where neither exists:
  every datagram then fails, and a broadcast stops at the disabled device before it reaches the
  others on the virtual network. Here the two are read from the PDU's first octets first.
- `FirstSegmentRetry`: when the client does not acknowledge the first segment of a segmented
  answer, the retry fails on an assertion in `fill_window` (no window is known before the first
  Segment-ACK): three tracebacks per request, and the segment is never sent again. The retry sends
  the first segment again, as the standard asks (a `RejectUndecodable` too).
- `SegmentsWithinMaxApdu`: a segmented answer carries the client's whole max APDU of data in each
  segment, with the segment header on top (5 bytes more than the client accepts; ASHRAE 135
  bounds the whole APDU), and an unsegmented one up to 3 bytes more. Here each APDU, header
  included, fits the client's max APDU and the device's own Max_APDU_Length_Accepted (bacpypes3
  uses the client's alone, so an MS/TP port's 480 would not bound it; a `FirstSegmentRetry` too).
`install_rejects()` installs these process-wide: bacpypes3 builds them by module name.
- `count_failed_datagrams`: every datagram the stack fails on (malformed, or routed to a network
  it does not know) is logged at ERROR with a traceback, so any peer could fill the journal; it is
  counted instead, with one warning a minute.
- `GuardedVirtualNetwork`: a routed request whose APDU a node cannot decode raises inside a task
  nobody awaits ("Task exception was never retrieved"); it is counted the same way.

In this package too: DeviceCommunicationControl, whose bacpypes3 handler fails (`control.py`),
and the listing, taking up and bounding of COV subscriptions, which bacpypes3 has no way to do
(`cov.py`). Two more are done where the thing is built, outside it: every analog object gets a
COV_Increment (without one the first Present_Value change raises inside the caller, see
`gateway/bacnet/local_objects.py`), and the router announces itself
(`NetworkServiceElement.startup` never awaits its announcement; see `gateway/bacnet/network.py`).
The router's application answers TimeSynchronization, UTCTimeSynchronization and
ReinitializeDevice itself (`gateway/bacnet/applications.py`): bacpypes3 has no handler for them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import bacpypes3.app
import bacpypes3.appservice
from bacpypes3.apdu import (
    APCISequence,
    ConfirmedServiceChoice,
    DeviceCommunicationControlRequest,
    RejectPDU,
    SimpleAckPDU,
    SubscribeCOVRequest,
    UnconfirmedServiceChoice,
    WritePropertyMultipleError,
    WritePropertyMultipleRequest,
    WritePropertyRequest,
    confirmed_request_types,
    unconfirmed_request_types,
)
from bacpypes3.app import Application
from bacpypes3.basetypes import (
    ErrorType,
    NetworkNumberQuality,
    ObjectPropertyReference,
    PropertyIdentifier,
    ServicesSupported,
)
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.constructeddata import Array
from bacpypes3.errors import (
    DecodingError,
    ExecutionError,
    InvalidTag,
    MissingRequiredParameter,
    RejectException,
    UnknownRoute,
    UnrecognizedService,
)
from bacpypes3.local.cov import COVIncrementCriteria, GenericCriteria
from bacpypes3.local.object import Object
from bacpypes3.netservice import NetworkAdapter, NetworkServiceAccessPoint, NetworkServiceElement
from bacpypes3.npdu import NPDU, NetworkNumberIs, RejectMessageToNetwork
from bacpypes3.pdu import PDU, LocalBroadcast
from bacpypes3.primitivedata import ObjectType, Unsigned
from bacpypes3.service.cov import Subscription
from bacpypes3.vlan import VirtualNetwork

from gateway.logging import DropReport, LibraryErrorFilter

__all__ = [
    "COV_FAILURES_TO_CANCEL",
    "CancelOnlyWhatExists",
    "FAILED_DATAGRAMS",
    "FirstSegmentRetry",
    "GuardedVirtualNetwork",
    "count_failed_datagrams",
    "CovConfirmationGuard",
    "DccEnableDisableRequired",
    "DccOnUndecodedPdu",
    "IndefiniteCovLifetime",
    "MultiStateCov",
    "NetworkNumberFlags",
    "StandardPropertyList",
    "StatusFlagsCov",
    "StatusFlagsCovCriteria",
    "UnconfirmedServicesSupported",
    "WildcardDeviceInstance",
    "RejectUndecodable",
    "RejectUnreachableNetwork",
    "SegmentsWithinMaxApdu",
    "WriteDecodingErrors",
    "WritePropertyMultipleErrors",
    "executes",
    "has_subscription",
    "install_rejects",
]

COV_FAILURES_TO_CANCEL = 3
COMPLEX_ACK_HEADER = 3  # type and flags, invoke ID, service choice
SEGMENTED_COMPLEX_ACK_HEADER = 5  # and the sequence number and window size
NETWORK_NUMBER_LEARNED, NETWORK_NUMBER_CONFIGURED = 0, 1  # the flag of Network-Number-Is
NO_ROUTE_TO_NETWORK = 1  # Reject-Message-To-Network reason: no router to DNET answered
WILDCARD_INSTANCE = 4194303


class IndefiniteCovLifetime(Application):
    async def do_SubscribeCOVRequest(self, apdu: SubscribeCOVRequest) -> None:
        if apdu.issueConfirmedNotifications is not None and apdu.lifetime is None:
            apdu.lifetime = 0
        await super().do_SubscribeCOVRequest(apdu)


class CancelOnlyWhatExists(Application):
    async def do_SubscribeCOVRequest(self, apdu: SubscribeCOVRequest) -> None:
        cancelling = apdu.issueConfirmedNotifications is None and apdu.lifetime is None
        if cancelling and not has_subscription(self, apdu):
            await self.response(SimpleAckPDU(context=apdu))
            return
        await super().do_SubscribeCOVRequest(apdu)


def has_subscription(app: Any, apdu: SubscribeCOVRequest) -> bool:
    """Whether the subscription a SubscribeCOV names (object, subscriber, process) exists."""
    detection = app._cov_detections.get(apdu.monitoredObjectIdentifier)
    return detection is not None and any(
        cov.client_addr == apdu.pduSource and cov.proc_id == apdu.subscriberProcessIdentifier
        for cov in detection.cov_subscriptions
    )


class CovConfirmationGuard(Application):
    def cov_confirmation(self, cov: Subscription, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()  # retrieved always, so asyncio does not log it
        if cov.obj_ref is None:  # cancelled meanwhile; notifications were still in flight
            return
        failures = 0 if error is None else getattr(cov, "failures", 0) + 1
        cov.failures = failures
        if failures >= COV_FAILURES_TO_CANCEL:
            self.cancel_subscription(cov)


class StatusFlagsCovCriteria(COVIncrementCriteria):
    """COV_Increment detection that also notifies when Reliability or Event_State (so Status_Flags)
    changes."""

    properties_tracked = (*COVIncrementCriteria.properties_tracked, "reliability", "eventState")

    def send_cov_notifications(self, subscription: Subscription | None = None) -> None:
        self.statusFlags = self.obj.statusFlags  # the tracked copy never sees the computed change
        super().send_cov_notifications(subscription)


class StatusFlagsCov(Object):
    _cov_criteria = StatusFlagsCovCriteria


class MultiStateCov(Object):
    _cov_criteria = GenericCriteria


class WildcardDeviceInstance(Application):
    def get_object_id(self, objid: Any) -> Any:
        device = getattr(self, "device_object", None)
        if device is not None and objid[0] == ObjectType.device and objid[1] == WILDCARD_INSTANCE:
            return device
        return super().get_object_id(objid)


class UnconfirmedServicesSupported(Application):
    def get_services_supported(self) -> ServicesSupported:
        supported = ServicesSupported([])
        for choices, request_types in (
            (ConfirmedServiceChoice, confirmed_request_types),
            (UnconfirmedServiceChoice, unconfirmed_request_types),
        ):
            for choice, request_type in request_types.items():
                if executes(self, request_type):
                    supported[getattr(supported, choices(choice).attr)] = 1
        return supported


def executes(app: Any, request_type: type) -> bool:
    """Whether the application executes that service (a handler set to None is not executed)."""
    return getattr(app, "do_" + request_type.__name__, None) is not None


class DccEnableDisableRequired(Application):
    async def do_DeviceCommunicationControlRequest(self, apdu: DeviceCommunicationControlRequest) -> None:
        if apdu.enableDisable is None:
            raise MissingRequiredParameter("enable-disable")
        await super().do_DeviceCommunicationControlRequest(apdu)


#: Properties every object has, which Property_List does not list (BACnet 12.1.1.4.1).
NOT_IN_PROPERTY_LIST = frozenset({"objectIdentifier", "objectName", "objectType", "propertyList"})


class StandardPropertyList(Object):
    @property
    def propertyList(self) -> Any:
        listed = super().propertyList
        return type(listed)([prop for prop in listed if prop.attr not in NOT_IN_PROPERTY_LIST])

    @propertyList.setter
    def propertyList(self, value: Any) -> None:
        pass  # computed


class WriteDecodingErrors(Application):
    async def do_WritePropertyRequest(self, apdu: WritePropertyRequest) -> None:
        obj = self.get_object_id(apdu.objectIdentifier)
        if obj is None:
            raise ExecutionError("object", "unknownObject")
        await write_checked(obj, apdu.propertyIdentifier, apdu.propertyValue, apdu.propertyArrayIndex, apdu.priority)
        await self.response(SimpleAckPDU(context=apdu))


class WritePropertyMultipleErrors(Application):
    async def do_WritePropertyMultipleRequest(self, apdu: WritePropertyMultipleRequest) -> None:
        for spec in apdu.listOfWriteAccessSpecs:
            obj = self.get_object_id(spec.objectIdentifier)
            for write in spec.listOfProperties:
                try:
                    if obj is None:
                        raise ExecutionError("object", "unknownObject")
                    await write_checked(
                        obj, write.propertyIdentifier, write.value, write.propertyArrayIndex, write.priority
                    )
                except ExecutionError as error:
                    failed = ObjectPropertyReference(
                        objectIdentifier=spec.objectIdentifier, propertyIdentifier=write.propertyIdentifier
                    )
                    if write.propertyArrayIndex is not None:
                        failed.propertyArrayIndex = write.propertyArrayIndex
                    await self.response(
                        WritePropertyMultipleError(
                            errorType=ErrorType(errorClass=error.errorClass, errorCode=error.errorCode),
                            firstFailedWriteAttempt=failed,
                            context=apdu,
                        )
                    )
                    return
        await self.response(SimpleAckPDU(context=apdu))


async def write_checked(obj: Any, prop: Any, value: AnyValue, index: int | None, priority: int | None) -> None:
    """One write of WriteProperty or WritePropertyMultiple: a property the object lacks is
    unknown-property, a value of the wrong datatype invalid-data-type, one its type refuses (an
    empty name) value-out-of-range."""
    property_type = obj.get_property_type(prop)
    name = PropertyIdentifier(prop).attr
    if property_type is None or (name not in NOT_IN_PROPERTY_LIST and prop not in obj.propertyList):
        # a property of the type, not of this object
        raise ExecutionError("property", "unknownProperty")
    if issubclass(property_type, Array) and index is not None:
        property_type = Unsigned if index == 0 else property_type._subtype
    try:
        decoded = value.cast_out(property_type, null=priority is not None)
    except (InvalidTag, DecodingError, TypeError):
        raise ExecutionError("property", "invalidDataType") from None
    except ValueError:  # the right datatype, outside what the property takes (an empty name)
        raise ExecutionError("property", "valueOutOfRange") from None
    await obj.write_property(prop, decoded, index, priority)


class RejectUndecodable(bacpypes3.appservice.ServerSSM):
    """The server transaction of a confirmed request; installed by `install_rejects()`."""

    async def request(self, apdu: Any) -> None:
        """Hand a complete request to the application, decoded, or answer it with a Reject."""
        if isinstance(apdu, bacpypes3.appservice.AbortPDU):
            await super().request(apdu)
            return
        request_type = confirmed_request_types.get(apdu.apduService)
        try:
            if request_type is None or not executes(self.ssmSAP.serviceElement, request_type):
                raise UnrecognizedService()  # whatever the body: it is not decoded
            decoded = APCISequence.decode(apdu)
        except RejectException as error:
            reason = error.rejectReason
        except AttributeError:  # bacpypes3's word for a required parameter that is not there
            reason = "missingRequiredParameter"
        except Exception:
            reason = "invalidTag"
        else:
            decoded.pduSource, decoded.pduDestination = self.pdu_address, None
            await self.ssmSAP.sap_request(decoded)
            return
        await self.confirmation(RejectPDU(invoke_id=self.invokeID, reason=reason))


class FirstSegmentRetry(RejectUndecodable):
    """The server transaction of a confirmed request; installed by `install_rejects()`."""

    actualWindowSize: int | None  # bacpypes3's, set once the client's first Segment-ACK is known

    async def segmented_response_timeout(self) -> None:
        if self.actualWindowSize is None:  # no Segment-ACK: one segment went out
            self.actualWindowSize = 1
        await super().segmented_response_timeout()


class SegmentsWithinMaxApdu(FirstSegmentRetry):
    """The server transaction of a confirmed request; installed by `install_rejects()`."""

    _data_room: int | None = None

    @property
    def segmentSize(self) -> int | None:
        """The answer's data in one APDU (bacpypes3 cuts the answer into pieces of this size)."""
        return self._data_room

    @segmentSize.setter
    def segmentSize(self, max_apdu: int | None) -> None:
        # bacpypes3 sets the client's max APDU here, once the answer (segmentAPDU) is known; no
        # APDU is larger than the device's own Max_APDU_Length_Accepted either, which is what the
        # smallest of the router's networks carries (480 with an MS/TP port)
        if max_apdu is None:
            self._data_room = None
            return
        own = getattr(self.ssmSAP.device_object, "maxApduLengthAccepted", None)
        max_apdu = max_apdu if own is None else min(max_apdu, int(own))
        whole = len(self.segmentAPDU.pduData) + COMPLEX_ACK_HEADER <= max_apdu
        self._data_room = max_apdu - (COMPLEX_ACK_HEADER if whole else SEGMENTED_COMPLEX_ACK_HEADER)


class RejectUnreachableNetwork(NetworkServiceAccessPoint):
    """The network layer of every application; installed by `install_rejects()`."""

    async def process_npdu(self, adapter: NetworkAdapter, npdu: NPDU) -> None:
        try:
            await super().process_npdu(adapter, npdu)
        except UnknownRoute:
            reject = RejectMessageToNetwork(NO_ROUTE_TO_NETWORK, npdu.npduDADR.addrNet)
            reject.pduDestination = npdu.pduSource
            if npdu.npduSADR is not None:  # from behind another router: back to the station there
                reject.npduDADR = npdu.npduSADR
            await adapter.process_npdu(reject)


class NetworkNumberFlags(NetworkServiceElement):
    """The network layer's own element of every application; installed by `install_rejects()`.

    An adapter's `adapterNetConfigured` is its number's quality here, as on a Network Port:
    unknown (a number the router uses until it learns the real one), learned, learned-configured
    (from a router that has it configured) or configured."""

    async def WhatIsNetworkNumber(self, adapter: NetworkAdapter, npdu: NPDU) -> None:
        sap = self.elementService
        known = adapter.adapterNetConfigured != NetworkNumberQuality.unknown
        if known and len(sap.adapters) > 1 and npdu.npduSADR is None and npdu.npduDADR is None:
            await self.network_number_is(adapter)  # only a router that knows its number answers

    async def network_number_is(self, adapter: NetworkAdapter | None = None) -> None:
        """Broadcast Network-Number-Is on `adapter` (its number known), or on every adapter whose
        number is configured."""
        adapters = (
            [adapter]
            if adapter is not None
            else [each for each in self.elementService.adapters.values() if _configured(each)]
        )
        for each in adapters:
            flag = NETWORK_NUMBER_CONFIGURED if _configured(each) else NETWORK_NUMBER_LEARNED
            await self.request(each, NetworkNumberIs(net=each.adapterNet, flag=flag, destination=LocalBroadcast()))

    def NetworkNumberIs(self, adapter: NetworkAdapter, npdu: NetworkNumberIs) -> None:
        if npdu.npduSADR is not None or npdu.npduDADR is not None:
            return  # about another network
        waiting = self.what_is_network_number_resolution.get(adapter)
        if waiting is not None and not waiting.done():
            waiting.set_result(npdu.nniNet)
        if _configured(adapter):
            return
        sap = self.elementService
        if npdu.nniNet != adapter.adapterNet:
            asyncio.create_task(sap.router_info_cache.update_source_network(adapter.adapterNet, npdu.nniNet))
            del sap.adapters[adapter.adapterNet]
            adapter.adapterNet = npdu.nniNet
            sap.adapters[adapter.adapterNet] = adapter
        adapter.adapterNetConfigured = (
            NetworkNumberQuality.learnedConfigured
            if npdu.nniFlag == NETWORK_NUMBER_CONFIGURED
            else NetworkNumberQuality.learned
        )


def _configured(adapter: NetworkAdapter) -> bool:
    return adapter.adapterNetConfigured == NetworkNumberQuality.configured


class DccOnUndecodedPdu(bacpypes3.appservice.ApplicationServiceAccessPoint):
    """The application service access point of every application; installed by `install_rejects()`."""

    async def confirmation(self, pdu: PDU) -> None:
        if self.dccEnableDisable != "enable":
            pdu.apduType, pdu.apduService = _type_and_service(bytes(pdu.pduData[:6]))
        await super().confirmation(pdu)


def _type_and_service(head: bytes) -> tuple[int | None, int | None]:
    """The APDU type and service choice from an APDU's first octets (BACnet 20.1); None when cut short."""
    if not head:
        return None, None
    kind = head[0] >> 4
    at = {0: 5 if head[0] & 0x08 else 3, 1: 1}.get(kind)  # confirmed (segmented or not), unconfirmed
    return kind, head[at] if at is not None and at < len(head) else None


def install_rejects() -> None:
    """Give every application the Reject of an undecodable request and of an unreachable network,
    answers in segments that fit, a working DeviceCommunicationControl check and Network-Number-Is
    flags (process-wide: bacpypes3 looks these classes up by their module names); safe to call
    again."""
    bacpypes3.appservice.ServerSSM = SegmentsWithinMaxApdu
    bacpypes3.app.NetworkServiceAccessPoint = RejectUnreachableNetwork
    bacpypes3.app.ApplicationServiceAccessPoint = DccOnUndecodedPdu
    bacpypes3.app.NetworkServiceElement = NetworkNumberFlags


FAILED_DATAGRAMS = LibraryErrorFilter(
    DropReport("bacnet datagrams bacpypes3 failed on"), "error processing incoming PDU", "error processing loopback PDU"
)


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
