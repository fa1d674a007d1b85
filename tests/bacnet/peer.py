"""A plain bacpypes3 BBMD (the stock one, none of the gateway's code), the gateway's peer or
remote BBMD in the tests: in-process on loopback, or as a process in a network namespace.

    app = peer_bbmd("127.0.0.1/8:47999", ["127.0.0.1/32:47999"])
    python -m tests.bacnet.peer 10.231.2.1/24:47808 10.231.2.1/32:47808 10.231.1.1/32:47808

The second form prints "ready" once built (its sockets bind a moment later), then serves until
SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Sequence

from bacpypes3.app import Application
from bacpypes3.basetypes import BDTEntry
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject

PEER_INSTANCE = 3999000


def peer_bbmd(address: str, bdt: Sequence[str], instance: int = PEER_INSTANCE) -> Application:
    """A BBMD at `address` ("ip/prefix:port") forwarding to `bdt` ("ip/mask:port" each, itself
    included). Build it inside the running loop."""
    device = DeviceObject(
        objectIdentifier=("device", instance), objectName=f"peer BBMD {instance}", vendorIdentifier=999
    )
    port = NetworkPortObject(
        address,
        objectIdentifier=("network-port", 1),
        objectName="BACnet/IP",
        bacnetIPMode="bbmd",
        bbmdAcceptFDRegistrations=True,
        bbmdForeignDeviceTable=[],
        bbmdBroadcastDistributionTable=[BDTEntry(entry) for entry in bdt],
    )
    return Application.from_object_list([device, port])


async def serve(build: Callable[[], Application]) -> None:
    """Build the application, say "ready", and serve until SIGTERM."""
    app = build()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    app.close()


if __name__ == "__main__":
    asyncio.run(serve(lambda: peer_bbmd(sys.argv[1], sys.argv[2:])))
