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
import signal
import sys

from bacpypes3.app import Application
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.vlan import VirtualNetwork

ROUTER_INSTANCE = 3999200
OTHER_IP_NETWORK = 99


def other_party(kind: str, address: str, number: int) -> Application:
    if kind == "device":
        device = DeviceObject(objectIdentifier=("device", number), objectName="other device", vendorIdentifier=999)
        return Application.from_object_list(
            [device, NetworkPortObject(address, objectIdentifier=("network-port", 1), objectName="IP")])
    VirtualNetwork("other")
    device = DeviceObject(objectIdentifier=("device", ROUTER_INSTANCE), objectName="other router",
                          vendorIdentifier=999)
    return Application.from_object_list([
        device,
        NetworkPortObject(address, objectIdentifier=("network-port", 1), objectName="IP",
                          networkNumber=OTHER_IP_NETWORK, networkNumberQuality="configured"),
        NetworkPortObject(objectIdentifier=("network-port", 2), objectName="VLAN", networkType="virtual",
                          protocolLevel="bacnet-application", macAddress=b"\x00", networkInterfaceName="other",
                          networkNumber=number, networkNumberQuality="configured"),
    ])


async def _serve(kind: str, address: str, number: int) -> None:
    app = other_party(kind, address, number)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    app.close()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
