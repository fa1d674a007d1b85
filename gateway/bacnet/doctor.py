"""The network doctor: does anyone else on the BACnet internetwork use this gateway's virtual
network number or one of its device IDs? Either breaks communication (the BCPME guide: every
gateway needs a network number of its own in the whole enterprise; a BMS breaks on duplicate
device IDs).

    conflicts = await diagnose(app, network=50, instances={50000, 50001, 50002}, own=address)
    # frozenset({Conflict("device_id", 50001, "10.0.0.7")})

It asks who routes the virtual network (Who-Is-Router-To-Network: an answer from any other
router is a network conflict) and who has the device IDs (Who-Is over their range: an I-Am for one
of them from anywhere but this gateway is a device-ID conflict). The running gateway asks at start
and every `bacnet.doctor_interval` seconds (`Doctor`): a new conflict is an error logged once
(event `bacnet network conflict` or `bacnet device id conflict`, with the other party's
address), the router device shows it (Reliability configuration-error, so Status_Flags FAULT),
and its end is logged too; both are published as `NetworkFinding` events (the SNMP face sends them as
notifications). `bcpm-gateway doctor` runs the same checks once from the command line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from bacpypes3.apdu import IAmRequest
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address, IPv4Address

from gateway.bacnet.plan import DevicePlan
from gateway.bacnet.stack import StackApplication
from gateway.config import MAX_DEVICE_INSTANCE, BacnetSettings
from gateway.findings import NetworkFinding
from gateway.hub import Publish

__all__ = ["ANSWER_WAIT", "Conflict", "Doctor", "HearsIAm", "check_once", "diagnose"]

log = structlog.get_logger(__name__)

ANSWER_WAIT = 3  # seconds others get to answer a Who-Is (Who-Is-Router-To-Network waits 2 s)
DOCTOR_INSTANCE = MAX_DEVICE_INSTANCE - 1  # the command's own device while it asks


@dataclass(frozen=True, slots=True)
class Conflict:
    kind: Literal["network", "device_id"]
    number: int  # the network number or device instance both use
    other: str  # the other party's BACnet address

    @property
    def event(self) -> str:
        return f"bacnet {self.kind.replace('_', ' ')} conflict"

    def __str__(self) -> str:
        what = "network" if self.kind == "network" else "device ID"
        return f"{what} {self.number} is also used by {self.other}"

    def finding(self, cleared: bool) -> NetworkFinding:
        return NetworkFinding(self.kind, self.number, self.other, cleared)


class HearsIAm(StackApplication):
    """An application that can keep the I-Ams it hears for a while."""

    _heard: list[IAmRequest] | None = None

    async def do_IAmRequest(self, apdu: IAmRequest) -> None:
        if self._heard is not None:
            self._heard.append(apdu)
        await super().do_IAmRequest(apdu)

    async def i_ams(self, low: int, high: int) -> list[IAmRequest]:
        """The I-Ams heard in `ANSWER_WAIT` seconds after a Who-Is for instances `low` to `high`."""
        self._heard = []
        try:
            await self.who_is(low, high, timeout=ANSWER_WAIT)
            return self._heard
        finally:
            self._heard = None


async def diagnose(app: HearsIAm, network: int, instances: Set[int], own: Address) -> frozenset[Conflict]:
    """The conflicts over `network` and `instances` that others answer for; `app` (at `own`) asks."""
    routers = await app.nse.who_is_router_to_network(network=network)
    conflicts = {
        Conflict("network", network, str(answer.pduSource)) for _, answer in routers if answer.pduSource != own
    }
    for i_am in await app.i_ams(min(instances), max(instances)):
        instance, source = i_am.iAmDeviceIdentifier[1], i_am.pduSource
        if instance in instances and source != own and source.addrNet != network:  # not this gateway's
            conflicts.add(Conflict("device_id", instance, str(source)))
    return frozenset(conflicts)


class Doctor:
    """Runs `diagnose` every `interval` seconds for as long as the gateway serves, and tells:
    each conflict logged and published once when found and once when gone, `show(bool)` told
    whether any is."""

    def __init__(
        self,
        check: Callable[[], Any],
        interval: float,
        show: Callable[[bool], None],
        publish: Publish,
    ) -> None:
        self._check = check  # an awaitable of the conflicts
        self._interval = interval
        self._show = show
        self._publish = publish  # the event hub's
        self.conflicts: frozenset[Conflict] = frozenset()

    async def run(self) -> None:
        while True:
            self.update(await self._check())
            await asyncio.sleep(self._interval)

    def update(self, found: frozenset[Conflict]) -> None:
        new, gone = sorted(found - self.conflicts, key=str), sorted(self.conflicts - found, key=str)
        for conflict in new:
            log.error(conflict.event, number=conflict.number, other=conflict.other, detail=str(conflict))
        for conflict in gone:
            log.info(f"{conflict.event} cleared", number=conflict.number, other=conflict.other)
        self._publish([*(c.finding(cleared=False) for c in new), *(c.finding(cleared=True) for c in gone)])
        self.conflicts = found
        self._show(bool(found))


async def check_once(settings: BacnetSettings, plan: DevicePlan) -> frozenset[Conflict]:
    """`bcpm-gateway doctor`: the same checks from a device of its own at the gateway's address and
    port (bacpypes3 shares the port with a running gateway, whose own answers it then ignores)."""
    address = IPv4Address(f"{settings.address}:{settings.port}")
    app = HearsIAm.from_object_list(
        [
            DeviceObject(
                objectIdentifier=("device", DOCTOR_INSTANCE),
                objectName="bcpm-gateway doctor",
                vendorIdentifier=settings.vendor_id,
            ),
            NetworkPortObject(address, objectIdentifier=("network-port", 1), objectName="BACnet/IP"),
        ]
    )
    try:
        instances = {plan.router.instance, *(node.instance for node in plan.nodes)}
        return await diagnose(app, plan.router.network, instances, address)
    finally:
        app.close()
