"""A BACnet/IP client for the tests: a bacpypes3 application on loopback, in the test's loop.

It sits on its own UDP port, so a broadcast of its own would reach only itself: it talks to the
gateway's router by unicast, learns the virtual network from it with Who-Is-Router-To-Network
(as a BMS does), and reaches the meters as "<network>:<modbus address>". With `foreign_ttl` it
registers with the gateway as a foreign device (bacpypes3's own foreign link layer), so its
broadcasts reach the gateway through the BBMD. It also speaks BVLL to the gateway: Read-BDT,
Read-FDT, Write-BDT (bacpypes3's `BVLLServiceElement`).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from bacpypes3.apdu import (
    ConfirmedCOVNotificationRequest,
    SimpleAckPDU,
    SubscribeCOVRequest,
    UnconfirmedCOVNotificationRequest,
    WritePropertyRequest,
)
from bacpypes3.app import Application
from bacpypes3.basetypes import HostNPort, PropertyIdentifier, StatusFlags
from bacpypes3.comm import bind
from bacpypes3.ipv4.bvll import FDTEntry
from bacpypes3.ipv4.service import BVLLServiceElement
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address, IPv4Address
from bacpypes3.primitivedata import ObjectIdentifier, Real

from tests.support import free_port

CLIENT_INSTANCE = 4000000


def free_udp_port() -> int:
    """A UDP port nobody listens on at 127.0.0.1 right now."""
    return free_port(socket.SOCK_DGRAM)


Notification = ConfirmedCOVNotificationRequest | UnconfirmedCOVNotificationRequest


class RecordingApplication(Application):
    """Keeps every COV notification it gets (and acknowledges the confirmed ones)."""

    notifications: asyncio.Queue[Notification]

    async def do_ConfirmedCOVNotificationRequest(self, apdu: ConfirmedCOVNotificationRequest) -> None:
        self.notifications.put_nowait(apdu)
        await self.response(SimpleAckPDU(context=apdu))

    async def do_UnconfirmedCOVNotificationRequest(self, apdu: UnconfirmedCOVNotificationRequest) -> None:
        self.notifications.put_nowait(apdu)


def reported(notification: Notification) -> dict[str, Any]:
    """The values a COV notification carries: present-value (float) and status-flags (a list of
    in-alarm, fault, overridden, out-of-service)."""
    types = {"present-value": Real, "status-flags": StatusFlags}
    values = {}
    for item in notification.listOfValues:
        name = str(item.propertyIdentifier)
        values[name] = item.value.cast_out(types[name])
    values["status-flags"] = list(values["status-flags"])
    return values


class Client:
    def __init__(
        self,
        router_port: int,
        instance: int = CLIENT_INSTANCE,
        *,
        foreign_ttl: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.port = free_udp_port()
        self.router = Address(f"127.0.0.1:{router_port}")
        self.gateway = IPv4Address(f"127.0.0.1:{router_port}")  # where BVLL requests go
        device = DeviceObject(
            objectIdentifier=("device", instance), objectName=f"test client {instance}", vendorIdentifier=999
        )
        mode = (
            {}
            if foreign_ttl is None
            else {
                "bacnetIPMode": "foreign",
                "fdBBMDAddress": HostNPort(f"127.0.0.1:{router_port}"),
                "fdSubscriptionLifetime": foreign_ttl,
            }
        )
        port = NetworkPortObject(
            f"{host}/8:{self.port}", objectIdentifier=("network-port", 1), objectName="BACnet/IP", **mode
        )
        self.app = RecordingApplication.from_object_list([device, port])
        self.app.notifications = asyncio.Queue()
        self.link_layer = self.app.nsap.local_adapter.clientPeer
        self.bvll = BVLLServiceElement()
        bind(self.bvll, self.link_layer)
        self.network: int | None = None

    async def find_router(self, timeout: float = 20.0) -> int:
        """Ask the router which network it routes to, until it answers; returns that network."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            answers = await self.app.nse.who_is_router_to_network(destination=self.router)
            if answers:
                self.network = answers[0][1].iartnNetworkList[0]
                return self.network
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the gateway's router did not answer Who-Is-Router-To-Network")
            await asyncio.sleep(0.2)

    def node(self, address: int) -> Address:
        assert self.network is not None, "find_router() first"
        return Address(f"{self.network}:{address}")

    async def read(self, address: Address, objid: str, prop: str) -> Any:
        return await self.app.read_property(address, ObjectIdentifier(objid), prop)

    async def write(self, address: Address, objid: str, prop: str, value: Any, priority: int | None = None) -> Any:
        return await self.app.write_property(address, ObjectIdentifier(objid), prop, value, priority=priority)

    async def write_raw(self, address: Address, objid: str, prop: str, value: Any) -> None:
        """WriteProperty with `value` as given, where `write` would convert it to the property's type."""
        await self.app.request(
            WritePropertyRequest(
                objectIdentifier=ObjectIdentifier(objid),
                propertyIdentifier=PropertyIdentifier(prop),
                propertyValue=value,
                destination=address,
            )
        )

    async def subscribe(
        self,
        address: Address,
        objid: str,
        process: int = 1,
        *,
        confirmed: bool | None = True,
        lifetime: int | None = 60,
    ) -> None:
        """SubscribeCOV as given: `lifetime=None` leaves Lifetime out (indefinite); `confirmed=None`
        with `lifetime=None` cancels."""
        request = SubscribeCOVRequest(
            subscriberProcessIdentifier=process, monitoredObjectIdentifier=ObjectIdentifier(objid), destination=address
        )
        if confirmed is not None:
            request.issueConfirmedNotifications = confirmed
        if lifetime is not None:
            request.lifetime = lifetime
        await self.app.request(request)

    async def notification(self, timeout: float = 10.0) -> Notification:
        return await asyncio.wait_for(self.app.notifications.get(), timeout)

    async def notification_where(self, check: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The values of the first notification for which `check(values)` holds."""
        async with asyncio.timeout(timeout):
            while True:
                values = reported(await self.app.notifications.get())
                if check(values):
                    return values

    async def read_bdt(self) -> list[str]:
        """The gateway's broadcast distribution table, as "ip:port mask" lines."""
        table = await self.bvll.read_broadcast_distribution_table(self.gateway)
        assert table is not None, "no answer to Read-BDT"
        return [f"{entry.ip}:{entry.addrPort} mask {entry.netmask}" for entry in table]

    async def read_fdt(self) -> list[FDTEntry]:
        table = await self.bvll.read_foreign_device_table(self.gateway)
        assert table is not None, "no answer to Read-FDT"
        return list(table)

    def close(self) -> None:
        self.app.close()
