"""The gateway's applications: one per device, the router's with the gateway-wide services.

Each is a `stack.StackApplication` (bacpypes3, mended) with the gateway's policy: it counts
against the gateway's COV caps (`cov_limits.py`), charges writes it saves to their source's share
(`shares.SavedWriteLimit`), answers ReadPropertyMultiple in bounded slices (`reads.BoundedReads`),
and is guarded by the gateway's `Protection`: DeviceCommunicationControl and ReinitializeDevice
need `bacnet.reinit_password`, and are refused (password-failure) while none is configured, as
anyone on the network could otherwise silence or restart the gateway; with `bacnet.read_only`
every write is refused.

A node's application builds its meter objects when a request first names one (`NodeApplication`,
in the gateway's one `pool.ObjectPool`). The router's application also answers
TimeSynchronization and UTCTimeSynchronization (recorded; applied to the gateway's clock when
rtc_control = "bacnet"; a global broadcast reaches every device, and only the router acts on it)
and ReinitializeDevice (warmstart or coldstart: the gateway acknowledges, then restarts
in-process), and hears I-Ams for the network doctor (`doctor.HearsIAm`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from bacpypes3.apdu import (
    ReinitializeDeviceRequest,
    ReinitializeDeviceRequestReinitializedStateOfDevice,
    SimpleAckPDU,
    TimeSynchronizationRequest,
    UTCTimeSynchronizationRequest,
    WhoHasRequest,
)
from bacpypes3.errors import ExecutionError
from bacpypes3.primitivedata import ObjectIdentifier

from gateway.bacnet.clock import Clock, epoch_of
from gateway.bacnet.cov_limits import BoundedCov
from gateway.bacnet.doctor import HearsIAm
from gateway.bacnet.local_objects import MeterInput, MeterReset, MeterValue, PointBinding, meter_object
from gateway.bacnet.objects import ObjectSpec
from gateway.bacnet.pool import ObjectIndex, ObjectPool, shown_registers
from gateway.bacnet.reads import BoundedReads, KeptEncodings, MeterEncodings
from gateway.bacnet.shares import SavedWriteLimit
from gateway.logging import peer_events
from gateway.nodes.api import NodeAPI, NodeView

__all__ = ["DeviceApplication", "NodeApplication", "Protection", "RouterApplication"]

log = structlog.get_logger(__name__)

RESTART_DELAY = 0.2  # seconds between the ReinitializeDevice acknowledgement and the restart
_RESTARTS = (
    ReinitializeDeviceRequestReinitializedStateOfDevice.coldstart,
    ReinitializeDeviceRequestReinitializedStateOfDevice.warmstart,
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


class DeviceApplication(SavedWriteLimit, BoundedCov, BoundedReads):
    """The application of one device of the gateway."""

    protection: Protection

    def check_password(self, given: Any) -> None:
        self.protection.check_password(given)

    def refuses_writes(self) -> bool:
        return self.protection.read_only


class NodeApplication(DeviceApplication):
    """The application of a node device: its meter objects are built on first use."""

    _nodes: NodeAPI
    _node: NodeView
    _index: ObjectIndex
    _pool: ObjectPool
    _cov_increments: dict[int, float]
    _encodings: MeterEncodings

    def serve(
        self, nodes: NodeAPI, node: NodeView, specs: tuple[ObjectSpec, ...], pool: ObjectPool, kept: KeptEncodings
    ) -> None:
        self._nodes, self._node, self._index, self._pool = nodes, node, ObjectIndex.of(specs), pool
        self._cov_increments = {}
        self._encodings = MeterEncodings(nodes, node, self._index.by_id, self._cov_increments, kept)

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

    def drop(self, objid: ObjectIdentifier) -> None:
        self.delete_object(self.objectIdentifier[objid])

    def shown_by(self, objid: ObjectIdentifier) -> list[tuple[int, int]]:
        return [(self._node.address, register) for register in shown_registers(self._index.by_id[objid])]

    def close(self) -> None:
        self._pool.release(self)
        super().close()

    def _build(self, spec: ObjectSpec) -> MeterInput | MeterValue | MeterReset:
        self._pool.show(self, ObjectIdentifier((spec.object_type, spec.instance)))
        obj = meter_object(PointBinding(self._nodes, self._node, spec, self._cov_increments))
        self.add_object(obj)
        self._pool.added(self, obj.objectIdentifier)
        return obj


class RouterApplication(HearsIAm, DeviceApplication):
    _clock: Clock
    _restart: Callable[[], None]

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
        self.check_password(apdu.password)
        if apdu.reinitializedStateOfDevice not in _RESTARTS:
            raise ExecutionError("services", "serviceRequestDenied")
        await self.response(SimpleAckPDU(context=apdu))
        log.warning(
            "reinitialize device: restarting", source=str(apdu.pduSource), state=str(apdu.reinitializedStateOfDevice)
        )
        asyncio.get_running_loop().call_later(RESTART_DELAY, self._restart)
