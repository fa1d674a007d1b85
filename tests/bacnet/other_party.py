"""Another BACnet party on the gateway's IP network for the doctor's tests: a plain bacpypes3
device with a device ID of the gateway's, or a bacpypes3 router to a network of the gateway's
number. Run as a process in a network namespace (bacpypes3 takes any 127.x on its own port for
itself, so two stacks on one loopback port cannot talk):

    python -m tests.bacnet.other_party device 10.231.1.2/24:47808 50001
    python -m tests.bacnet.other_party router 10.231.1.3/24:47808 50

It prints "ready" once built, then serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys

from bacpypes3.app import Application
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.vlan import VirtualNetwork

from tests.bacnet.peer import serve

ROUTER_INSTANCE = 3999200
OTHER_IP_NETWORK = 99


def device(address: str, instance: int) -> Application:
    """A device at `address` ("ip/prefix:port")."""
    return Application.from_object_list(
        [
            DeviceObject(objectIdentifier=("device", instance), objectName="other device", vendorIdentifier=999),
            NetworkPortObject(address, objectIdentifier=("network-port", 1), objectName="IP"),
        ]
    )


def router(address: str, network: int, interface: str, ip_network: int = OTHER_IP_NETWORK) -> Application:
    """A router from the IP network at `address` to `network`, a virtual network registered as
    `interface` (make it first)."""
    return Application.from_object_list(
        [
            DeviceObject(objectIdentifier=("device", ROUTER_INSTANCE), objectName="other router", vendorIdentifier=999),
            NetworkPortObject(
                address,
                objectIdentifier=("network-port", 1),
                objectName="IP",
                networkNumber=ip_network,
                networkNumberQuality="configured",
            ),
            NetworkPortObject(
                objectIdentifier=("network-port", 2),
                objectName="VLAN",
                networkType="virtual",
                protocolLevel="bacnet-application",
                macAddress=b"\x00",
                networkInterfaceName=interface,
                networkNumber=network,
                networkNumberQuality="configured",
            ),
        ]
    )


def _build(kind: str, address: str, number: int) -> Application:
    if kind == "device":
        return device(address, number)
    VirtualNetwork("other")
    return router(address, number, "other")


if __name__ == "__main__":
    asyncio.run(serve(lambda: _build(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
