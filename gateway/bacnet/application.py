"""The bacpypes3 applications: one per device, the router's with the gateway-wide services.

A node's application builds its meter objects when a request first names one (`NodeApplication`):
a model-A node has 1,828 objects, and as bacpypes3 objects they cost about 5 KB and 1.5 ms each,
so building all of them for eight nodes would take some 80 MB and many seconds of start-up. The
device still lists every object (Object_List, Who-Has), and at most `ObjectPool.capacity` built
objects are kept over the whole gateway, the least recently used dropped first, never one a COV
subscription watches (those are kept on top). A built object takes its values from the node
cache at once, so a rebuilt object is as fresh as a kept one.

Every device's application carries the bacpypes3 fixes (`fixes.py`) and bounded COV: at most
`bacnet.max_cov_subscriptions` over all devices and `bacnet.max_cov_per_client` for one
subscriber (`CovLimits`, shared by every application of the gateway), and
`MAX_NOTIFICATIONS_IN_FLIGHT` unanswered confirmed notifications per subscription (a slow
subscriber misses intermediate values, never the gateway's memory). Every device executes
DeviceCommunicationControl (`CommunicationControl`), and with `bacnet.read_only` refuses every
write (`Protection`). The router's application also answers TimeSynchronization and
UTCTimeSynchronization (recorded; applied to the gateway's clock when rtc_control = "bacnet"; a
global broadcast reaches every device, and only the router acts on it) and ReinitializeDevice
(warmstart or coldstart: the gateway acknowledges, then restarts in-process), and binds the link
layer its BACnet/IP port brings (BBMD or foreign device, see `ip_port.py`).

DeviceCommunicationControl and ReinitializeDevice need `bacnet.reinit_password`, and are refused
(password-failure) while none is configured: anyone on the network could otherwise silence or
restart the gateway.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from bacpypes3.apdu import (
    DeviceCommunicationControlRequest,
    ReinitializeDeviceRequest,
    ReinitializeDeviceRequestReinitializedStateOfDevice,
    SimpleAckPDU,
    SubscribeCOVRequest,
    TimeSynchronizationRequest,
    UTCTimeSynchronizationRequest,
    WhoHasRequest,
)
from bacpypes3.app import Application
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

from gateway.bacnet.clock import Clock, epoch_of
from gateway.bacnet.doctor import HearsIAm
from gateway.bacnet.local_objects import MeterInput, MeterReset, MeterValue, PointBinding, meter_object
from gateway.bacnet.objects import ObjectSpec
from gateway.bacnet.reads import BoundedReads, MeterEncodings
from gateway.bacnet.shares import SavedWriteLimit, source_host
from gateway.bacnet.stack import LinkedPort, bind_port
from gateway.bacnet.stack.fixes import (
    CancelOnlyWhatExists,
    CovConfirmationGuard,
    DccEnableDisableRequired,
    IndefiniteCovLifetime,
    UnconfirmedServicesSupported,
    WildcardDeviceInstance,
    WriteDecodingErrors,
    WritePropertyMultipleErrors,
)
from gateway.logging import peer_events
from gateway.nodes.api import NodeAPI, NodeView

__all__ = [
    "CovLimits",
    "DeviceApplication",
    "NodeApplication",
    "ObjectIndex",
    "ObjectPool",
    "Protection",
    "RouterApplication",
]

log = structlog.get_logger(__name__)

MAX_NOTIFICATIONS_IN_FLIGHT = 4
RESTART_DELAY = 0.2  # seconds between the ReinitializeDevice acknowledgement and the restart
_RESTARTS = (
    ReinitializeDeviceRequestReinitializedStateOfDevice.coldstart,
    ReinitializeDeviceRequestReinitializedStateOfDevice.warmstart,
)


@dataclass
class CovLimits:
    """The COV subscription caps of the whole gateway, and the applications they count over.

    A subscriber is its IP address, whatever the port (or routed path) it subscribes from;
    indefinite subscriptions, which only a cancellation ends, have a cap of their own."""

    total: int
    per_client: int
    indefinite: int
    apps: list[BoundedCov] = field(default_factory=list)

    def refuses(self, client: Any, indefinite: bool, renewed: Subscription | None) -> bool:
        subscriptions = [cov for app in self.apps for cov in app.subscriptions()]
        host = source_host(client)
        if renewed is None and (
            len(subscriptions) >= self.total
            or sum(1 for cov in subscriptions if source_host(cov.client_addr) == host) >= self.per_client
        ):
            return True
        return (
            indefinite
            and (renewed is None or bool(renewed.lifetime))
            and sum(1 for cov in subscriptions if not cov.lifetime) >= self.indefinite
        )


@dataclass(frozen=True, slots=True)
class Protection:
    """What guards a device against its clients: the password of DeviceCommunicationControl and
    ReinitializeDevice ("" = both refused), and whether every write is refused."""

    password: str
    read_only: bool

    def check_password(self, given: Any) -> None:
        if not self.password or given is None or str(given) != self.password:
            raise ExecutionError("security", "passwordFailure")


class CommunicationControl:
    """DeviceCommunicationControl: enable, disable or disable-initiation, for a duration in minutes
    (none = until enabled again or the gateway restarts), with the protection's password.
    bacpypes3's own handler fails (it sets the state on an `smap` its applications lack, as an
    enumeration its access point never equals).

    Where it is enforced: bacpypes3's `ApplicationServiceAccessPoint.confirmation` (working with
    `fixes.DccOnUndecodedPdu`), the first place every APDU for this device passes, before a server
    transaction exists or the service is decoded, reads `asap.dccEnableDisable`. While disabled it lets through
    DeviceCommunicationControl and ReinitializeDevice only (and Who-Is/Who-Has, whose I-Am/I-Have
    `sap_indication` then drops, as it drops everything the device would initiate; with initiation
    disabled, everything but I-Am). A fast path for requests must sit behind that point, or ask
    `communicating()`. COV notifications stop in both states (`BoundedCov`).
    """

    protection: Protection
    _dcc_end: asyncio.TimerHandle | None = None

    def communicating(self) -> bool:
        """Whether the device answers requests and initiates messages (DCC enabled)."""
        return self.asap.dccEnableDisable == "enable"  # type: ignore[attr-defined, no-any-return]

    async def do_DeviceCommunicationControlRequest(self, apdu: DeviceCommunicationControlRequest) -> None:
        self.protection.check_password(apdu.password)
        self._communicate(apdu.enableDisable.attr)
        if not self.communicating() and apdu.timeDuration:
            self._dcc_end = asyncio.get_running_loop().call_later(apdu.timeDuration * 60, self._communicate, "enable")
        await self.response(SimpleAckPDU(context=apdu))  # type: ignore[attr-defined]
        log.warning(
            "device communication control",
            device=str(self.device_object.objectIdentifier),  # type: ignore[attr-defined]
            state=apdu.enableDisable.attr,
            minutes=apdu.timeDuration,
            source=str(apdu.pduSource),
        )

    def _communicate(self, state: str) -> None:
        if self._dcc_end is not None:
            self._dcc_end.cancel()
            self._dcc_end = None
        self.asap.dccEnableDisable = state  # type: ignore[attr-defined]

    def close(self) -> None:
        self._communicate("enable")  # no end of a duration left pending
        super().close()  # type: ignore[misc]


class BoundedCov:
    cov_limits: CovLimits
    keep_subscriptions: Callable[[], None] | None = None  # told of every change (`subscriptions.py`)

    async def do_SubscribeCOVRequest(self, apdu: SubscribeCOVRequest) -> None:
        cancelling = apdu.issueConfirmedNotifications is None and apdu.lifetime is None
        renewed = self._subscription(apdu.monitoredObjectIdentifier, apdu.pduSource, apdu.subscriberProcessIdentifier)
        if not cancelling and self.cov_limits.refuses(apdu.pduSource, not apdu.lifetime, renewed):
            peer_events("bacnet cov subscriptions refused: a cap is full").count(
                str(apdu.pduSource), f"lifetime={apdu.lifetime}"
            )
            raise ExecutionError("resources", "noSpaceToAddListElement")
        await super().do_SubscribeCOVRequest(apdu)  # type: ignore[misc]
        self._cov_changed()  # new, renewed or cancelled

    def cancel_subscription(self, cov: Subscription) -> None:
        super().cancel_subscription(cov)  # type: ignore[misc]
        self._cov_changed()  # cancelled, ran out, or its subscriber went away

    def _cov_changed(self) -> None:
        if self.keep_subscriptions is not None:
            self.keep_subscriptions()

    def restore_subscription(
        self, address: Address, process: int, objid: ObjectIdentifier, confirmed: bool, lifetime: int
    ) -> str | None:
        """Take up a subscription kept across a restart, as a SubscribeCOV would make it, and
        notify the subscriber of the current value; None, or why it cannot be taken up."""
        if self._subscription(objid, address, process) is not None:
            return "subscribed already"
        obj = self.get_object_id(objid)  # type: ignore[attr-defined]
        if obj is None:
            return "no such object"
        if self.cov_limits.refuses(address, not lifetime, None):
            return "a cap is full"
        detection = self._cov_detections.get(objid)  # type: ignore[attr-defined]
        if detection is None:
            detection = self._cov_detections[objid] = obj._cov_criteria(obj)  # type: ignore[attr-defined]
        cov = Subscription(obj, address, process, objid, confirmed, lifetime, None)
        self.add_subscription(cov)  # type: ignore[attr-defined]
        asyncio.get_running_loop().call_soon(detection.send_cov_notifications, cov)
        return None

    def _subscription(self, objid: ObjectIdentifier, address: Address, process: int) -> Subscription | None:
        """The subscription of that object, subscriber and process, if any."""
        detection = self._cov_detections.get(objid)  # type: ignore[attr-defined]
        return (
            next(
                (cov for cov in detection.cov_subscriptions if cov.client_addr == address and cov.proc_id == process),
                None,
            )
            if detection
            else None
        )

    def cov_notification(self, cov: Subscription, apdu: Any) -> None:
        if not self.communicating():  # type: ignore[attr-defined]
            return  # DeviceCommunicationControl: initiation disabled
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

    def get_active_cov_subscriptions(self) -> ListOfCOVSubscription:
        """The device's Active_COV_Subscriptions (bacpypes3 asks for it and has none)."""
        now = asyncio.get_running_loop().time()
        return ListOfCOVSubscription(
            [
                COVSubscription(
                    recipient=RecipientProcess(
                        recipient=Recipient(address=DeviceAddress(cov.client_addr)), processIdentifier=cov.proc_id
                    ),
                    monitoredPropertyReference=ObjectPropertyReference(
                        objectIdentifier=cov.obj_id, propertyIdentifier="presentValue"
                    ),
                    issueConfirmedNotifications=bool(cov.confirmed),
                    timeRemaining=0 if cov.cancel_handle is None else max(0, round(cov.cancel_handle.when() - now)),
                    **({} if cov.covIncrement is None else {"covIncrement": cov.covIncrement}),
                )
                for cov in self.subscriptions()
            ]
        )

    # bacpypes3 keeps the subscriptions in `_cov_detections` (object id -> detection) and has no
    # public way to list them.
    def subscriptions(self) -> list[Subscription]:
        detections = self._cov_detections.values()  # type: ignore[attr-defined]
        return [cov for detection in detections for cov in detection.cov_subscriptions]

    def cancel_all_subscriptions(self) -> None:
        for detection in list(self._cov_detections.values()):  # type: ignore[attr-defined]
            for cov in list(detection.cov_subscriptions):
                self.cancel_subscription(cov)  # type: ignore[attr-defined]


class DeviceApplication(  # type: ignore[misc]
    SavedWriteLimit,
    BoundedCov,
    DccEnableDisableRequired,
    CommunicationControl,
    BoundedReads,
    IndefiniteCovLifetime,
    CancelOnlyWhatExists,
    CovConfirmationGuard,
    WildcardDeviceInstance,
    UnconfirmedServicesSupported,
    WriteDecodingErrors,
    WritePropertyMultipleErrors,
    Application,
):
    """The application of one device of the gateway."""

    # Not executed, so not listed in Protocol_Services_Supported: no object of the gateway has a
    # list ReadRange could read, and its devices subscribe to nobody's COV.
    do_ReadRangeRequest = None
    do_ConfirmedCOVNotificationRequest = None
    do_UnconfirmedCOVNotificationRequest = None

    def object_identifiers(self) -> list[ObjectIdentifier]:
        """Its Object_List: every object of the device, built or not."""
        return list(self.objectIdentifier)

    def answers_reads(self) -> bool:
        """Whether DeviceCommunicationControl lets the device answer requests."""
        return self.asap.dccEnableDisable != "disable"  # type: ignore[attr-defined]


class ObjectPool:
    """The meter objects built over the whole gateway, the least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._built: OrderedDict[tuple[NodeApplication, ObjectIdentifier], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._built)

    def used(self, app: NodeApplication, objid: ObjectIdentifier) -> None:
        if (app, objid) in self._built:  # not after the app closed
            self._built.move_to_end((app, objid))

    def added(self, app: NodeApplication, objid: ObjectIdentifier) -> None:
        """Keep a new object; drop the least recently used beyond capacity, but never the new one
        (a request is about to use it) nor one a COV subscription watches (kept on top)."""
        for _ in range(len(self._built)):  # each older entry looked at once at most
            if len(self._built) < self.capacity:
                break
            oldest = next(iter(self._built))
            del self._built[oldest]
            if oldest[0].watched(oldest[1]):
                self._built[oldest] = None  # to the end: kept while subscribed
            else:
                oldest[0].drop(oldest[1])
        self._built[app, objid] = None

    def forget(self, app: NodeApplication) -> None:
        for key in [key for key in self._built if key[0] is app]:
            del self._built[key]


@dataclass(frozen=True)
class ObjectIndex:
    """The meter objects of one model, by identifier, name and the registers they show (shared
    by every node of that model)."""

    by_id: dict[ObjectIdentifier, ObjectSpec]
    by_name: dict[str, ObjectIdentifier]
    by_register: dict[int, list[ObjectIdentifier]]

    @staticmethod
    @functools.cache
    def of(specs: tuple[ObjectSpec, ...]) -> ObjectIndex:
        index = ObjectIndex({}, {}, {})
        for spec in specs:
            objid = ObjectIdentifier((spec.object_type, spec.instance))
            index.by_id[objid] = spec
            index.by_name[spec.name] = objid
            for register in (spec.point.register, *([spec.alarm.register] if spec.alarm else [])):
                index.by_register.setdefault(register, []).append(objid)
        return index


class NodeApplication(DeviceApplication):
    """The application of a node device: its meter objects are built on first use."""

    _nodes: NodeAPI
    _node: NodeView
    _index: ObjectIndex
    _pool: ObjectPool
    _cov_increments: dict[int, float]
    _encodings: MeterEncodings

    def serve(self, nodes: NodeAPI, node: NodeView, specs: tuple[ObjectSpec, ...], pool: ObjectPool) -> None:
        self._nodes, self._node, self._index, self._pool = nodes, node, ObjectIndex.of(specs), pool
        self._cov_increments = {}
        self._encodings = MeterEncodings(nodes, node, self._index.by_id, self._cov_increments)

    def read_encodings(self) -> MeterEncodings:
        return self._encodings

    def has_object(self, objid: ObjectIdentifier) -> bool:
        return objid in self._index.by_id or super().has_object(objid)

    def object_identifiers(self) -> list[ObjectIdentifier]:
        meters = self._index.by_id
        return [objid for objid in self.objectIdentifier if objid not in meters] + list(meters)

    def get_object_id(self, objid: Any) -> Any:
        obj = super().get_object_id(objid)
        spec = self._index.by_id.get(objid)
        if spec is None:
            return obj
        if obj is None:
            return self._build(spec)
        self._pool.used(self, objid)
        return obj

    def get_object_name(self, objname: Any) -> Any:
        objid = self._index.by_name.get(objname)
        return super().get_object_name(objname) if objid is None else self.get_object_id(objid)

    def names(self, name: str, device: Any) -> bool:
        """Whether one of this device's objects other than `device` has that name, built or not."""
        return name in self._index.by_name or self.objectName.get(name, device) is not device

    async def do_WhoHasRequest(self, apdu: WhoHasRequest) -> None:
        # bacpypes3 looks the object up in its dictionaries, which hold built objects only
        wanted = apdu.object
        if wanted.objectIdentifier is not None:
            self.get_object_id(wanted.objectIdentifier)
        if wanted.objectName is not None:
            self.get_object_name(wanted.objectName)
        await super().do_WhoHasRequest(apdu)

    def show(self, register: int | None = None) -> None:
        """Show the cache on the built objects of one register (of every register when None)."""
        for objid in self._index.by_id if register is None else self._index.by_register.get(register, ()):
            obj = self.objectIdentifier.get(objid)
            if obj is not None:
                obj.show()

    def watched(self, objid: ObjectIdentifier) -> bool:
        detection = self._cov_detections.get(objid)  # type: ignore[attr-defined]
        return detection is not None and bool(detection.cov_subscriptions)

    def drop(self, objid: ObjectIdentifier) -> None:
        self.delete_object(self.objectIdentifier[objid])

    def close(self) -> None:
        self._pool.forget(self)
        super().close()

    def _build(self, spec: ObjectSpec) -> MeterInput | MeterValue | MeterReset:
        obj = meter_object(PointBinding(self._nodes, self._node, spec, self._cov_increments))
        self.add_object(obj)
        self._pool.added(self, obj.objectIdentifier)
        return obj


class RouterApplication(HearsIAm, DeviceApplication):
    _clock: Clock
    _restart: Callable[[], None]

    def add_object(self, obj: Any) -> None:
        if isinstance(obj, LinkedPort) and obj.link_layer() is not None:
            bind_port(self, obj)  # bacpypes3 would build its stock link layer for the port
        else:
            super().add_object(obj)

    def configure(self, clock: Clock, restart: Callable[[], None]) -> None:
        self._clock = clock
        self._restart = restart

    async def do_TimeSynchronizationRequest(self, apdu: TimeSynchronizationRequest) -> None:
        self._synchronize(apdu, utc=False)

    async def do_UTCTimeSynchronizationRequest(self, apdu: UTCTimeSynchronizationRequest) -> None:
        self._synchronize(apdu, utc=True)

    def _synchronize(self, apdu: TimeSynchronizationRequest | UTCTimeSynchronizationRequest, *, utc: bool) -> None:
        # Any host may send these as often as it likes: counted, and logged once a minute.
        told = epoch_of(apdu.time, utc=utc)
        if told is None:
            peer_events("bacnet time synchronizations without a definite time, ignored").count(
                str(apdu.pduSource), str(apdu.time)
            )
            return
        applied = self._clock.synchronize(told)
        peer_events("bacnet time synchronizations", "info").count(
            str(apdu.pduSource),
            f"utc={utc} time={apdu.time} applied={applied}" + ("" if applied else ' (rtc_control = "modbus")'),
        )

    async def do_ReinitializeDeviceRequest(self, apdu: ReinitializeDeviceRequest) -> None:
        self.protection.check_password(apdu.password)
        if apdu.reinitializedStateOfDevice not in _RESTARTS:
            raise ExecutionError("services", "serviceRequestDenied")
        await self.response(SimpleAckPDU(context=apdu))
        log.warning(
            "reinitialize device: restarting", source=str(apdu.pduSource), state=str(apdu.reinitializedStateOfDevice)
        )
        asyncio.get_running_loop().call_later(RESTART_DELAY, self._restart)
