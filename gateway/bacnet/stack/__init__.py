"""The BACnet stack: bacpypes3 0.0.110, mended, sped up and typed for the gateway.

The one place in the gateway that knows how bacpypes3 works inside (its private members, the
classes it looks up by module name, the hooks it calls); the rest of `gateway/bacnet` uses what
this module exports, and bacpypes3 only for its data types, PDUs, errors and objects.

    fixes.py        workarounds for bacpypes3's bugs, one small override each (tests/bacnet/test_fixes.py)
    speedups.py     a cached `inspect.getattr_static`, which bacpypes3 calls for every property
    application.py  `StackApplication`: the application of one device, every workaround it needs in
    cov.py            its COV subscriptions: listed, found, taken up, bounded (`Subscribed`)
    control.py        DeviceCommunicationControl (bacpypes3's own handler fails)
    objects.py      what the gateway needs of an object beyond its properties (`owner`, the
                    property sets of ReadPropertyMultiple, Status_Flags, bit strings by name)
    datagrams.py    the BACnet/IP sockets (`IpSocket`) and the two places a datagram is seen before
                    bacpypes3: the fair shares' judge and the fast path's intake
    ports.py        a port that brings its own link layer, and the network layer's view of a port
                    (`network_side`): where a new port, such as BACnet MS/TP, plugs in
    bbmd.py         the BBMD link layer (bounded foreign-device table, TTLs, who may delete)
    foreign.py      the foreign-device link layer (registers, renews, reports its state)
    mstp.py         the BACnet MS/TP link layer: `gateway.mstp`'s data link under the network layer
    virtual.py      the virtual network the node devices sit on

Some workarounds are process-wide (bacpypes3 builds its access points, server transactions and
datagram endpoints from classes it looks up by module name), so the composition root calls
`install()` once, before any BACnet application is built; a face never does.
"""

from __future__ import annotations

from gateway.bacnet.stack import datagrams, fixes, mstp, speedups
from gateway.bacnet.stack.application import StackApplication
from gateway.bacnet.stack.bbmd import Bbmd, BdtPeer, RegisteredDevice
from gateway.bacnet.stack.cov import Subscribed
from gateway.bacnet.stack.datagrams import Intake, IpSocket, Judge, settled
from gateway.bacnet.stack.fixes import (
    COMPLEX_ACK_HEADER,
    SEGMENTED_COMPLEX_ACK_HEADER,
    MultiStateCov,
    StandardPropertyList,
    StatusFlagsCov,
)
from gateway.bacnet.stack.foreign import ForeignDevice, Registration, RegistrationState
from gateway.bacnet.stack.mstp import MstpLinkLayer, NpduJudge
from gateway.bacnet.stack.objects import bits, owner, read_access_result, status_flags
from gateway.bacnet.stack.ports import LinkedPort, NetworkSide, network_side
from gateway.bacnet.stack.virtual import VirtualLan

__all__ = [
    "COMPLEX_ACK_HEADER",
    "SEGMENTED_COMPLEX_ACK_HEADER",
    "Bbmd",
    "BdtPeer",
    "ForeignDevice",
    "Intake",
    "IpSocket",
    "Judge",
    "LinkedPort",
    "MstpLinkLayer",
    "MultiStateCov",
    "NetworkSide",
    "NpduJudge",
    "RegisteredDevice",
    "Registration",
    "RegistrationState",
    "StackApplication",
    "StandardPropertyList",
    "StatusFlagsCov",
    "Subscribed",
    "VirtualLan",
    "bits",
    "install",
    "network_side",
    "owner",
    "read_access_result",
    "settled",
    "status_flags",
]


def install() -> None:
    """Give bacpypes3 the gateway's workarounds and speed-up, process-wide; safe to call again."""
    speedups.install()
    fixes.count_failed_datagrams()
    fixes.install_rejects()
    mstp.install()
    datagrams.install()
