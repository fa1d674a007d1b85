"""A bacpypes3 BACnet/IP client that runs as a process of its own, on a host of a `netns.Site`:

    python -m tests.bacnet.remote_client '{"address": "10.231.2.10/24:47808", "steps": [...]}'

It runs the steps in order and prints one JSON array with a result per step:

    {"op": "whoIs", "seconds": 2}          -> [[device instance, "source address"], ...]: a global Who-Is
    {"op": "listen", "seconds": 5}         -> ["source address", ...] of the Who-Is broadcasts it heard
                                              (with "until": "source address", sooner once that one answered)
    {"op": "readBDT", "bbmd": "ip:port"}   -> ["ip:port mask m", ...], {"nak": code} or null (no answer)
    {"op": "readFDT", "bbmd": "ip:port"}   -> [["ip:port", ttl, remaining], ...], {"nak": code} or null
    {"op": "writeBDT", "bbmd": "ip:port"}  -> {"nak": code} or "ok"

With "foreign": {"bbmd": "ip:port", "ttl": 60} it first registers with that BBMD as a foreign device
(bacpypes3's own foreign link layer), so its broadcasts go through the BBMD. "instance" sets its
own device instance. It writes "ready" to standard error once it can hear and send.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from bacpypes3.apdu import WhoIsRequest
from bacpypes3.app import Application
from bacpypes3.basetypes import HostNPort
from bacpypes3.comm import bind
from bacpypes3.ipv4.bvll import Result
from bacpypes3.ipv4.service import BVLLServiceElement
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import IPv4Address

INSTANCE = 3999100
REGISTRATION_TIMEOUT = 10.0
# A listener stopping on a Who-Is stays this long: its I-Am goes down bacpypes3's stack in tasks of
# their own, and a process that closed at once lost it now and then on a busy machine.
ANSWER_SENT = 0.5


class ListeningApplication(Application):
    """Notes the source of every Who-Is it hears, and answers it as usual."""

    heard: list[str]

    async def do_WhoIsRequest(self, apdu: WhoIsRequest) -> None:
        try:
            await super().do_WhoIsRequest(apdu)
        finally:  # noted once answered; the I-Am is on its way down the stack (see ANSWER_SENT)
            self.heard.append(str(apdu.pduSource))


async def run(program: dict[str, Any]) -> list[Any]:
    foreign = program.get("foreign")
    mode = (
        {}
        if foreign is None
        else {
            "bacnetIPMode": "foreign",
            "fdBBMDAddress": HostNPort(foreign["bbmd"]),
            "fdSubscriptionLifetime": foreign["ttl"],
        }
    )
    instance = program.get("instance", INSTANCE)
    device = DeviceObject(
        objectIdentifier=("device", instance), objectName=f"remote test client {instance}", vendorIdentifier=999
    )
    port = NetworkPortObject(program["address"], objectIdentifier=("network-port", 1), objectName="BACnet/IP", **mode)
    app = ListeningApplication.from_object_list([device, port])
    app.heard = []
    link_layer = app.nsap.local_adapter.clientPeer
    bvll = BVLLServiceElement()
    bind(bvll, link_layer)
    try:
        if foreign is not None:
            async with asyncio.timeout(REGISTRATION_TIMEOUT):
                while link_layer.bbmdRegistrationStatus != 0:
                    await asyncio.sleep(0.05)
        # bacpypes3 binds the sockets in tasks of its own (retrying a failed bind for ever): ready
        # means they are bound (a Who-Is sent before would go unheard), which on a busy machine can
        # take longer than any fixed pause
        async with asyncio.timeout(REGISTRATION_TIMEOUT):
            await asyncio.gather(*link_layer.server._transport_tasks)
        print("ready", file=sys.stderr, flush=True)
        return [await _step(app, bvll, step) for step in program["steps"]]
    finally:
        app.close()


async def _step(app: ListeningApplication, bvll: BVLLServiceElement, step: dict[str, Any]) -> Any:
    op = step["op"]
    if op == "whoIs":
        found = await app.who_is(timeout=step["seconds"])
        return [[i_am.iAmDeviceIdentifier[1], str(i_am.pduSource)] for i_am in found]
    if op == "listen":
        deadline = asyncio.get_running_loop().time() + step["seconds"]
        while step.get("until") not in app.heard and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(ANSWER_SENT)
        return app.heard
    bbmd = IPv4Address(step["bbmd"])
    try:
        if op == "readBDT":
            table = await bvll.read_broadcast_distribution_table(bbmd)  # None: no answer
            return table and [f"{entry.ip}:{entry.addrPort} mask {entry.netmask}" for entry in table]
        if op == "readFDT":
            table = await bvll.read_foreign_device_table(bbmd)
            return table and [
                [f"{entry.fdAddress.ip}:{entry.fdAddress.addrPort}", entry.fdTTL, entry.fdRemain] for entry in table
            ]
        if op == "writeBDT":
            await bvll.write_broadcast_distribution_table(bbmd, [IPv4Address("10.231.9.9/32:47808")])
            return "ok"
    except Result as nak:
        return {"nak": nak.bvlciResultCode}
    raise ValueError(f"unknown op {op}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
