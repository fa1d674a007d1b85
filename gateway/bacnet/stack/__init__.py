"""The BACnet stack: bacpypes3 0.0.110, mended and sped up for the gateway.

The one place in the gateway that knows how bacpypes3 works inside: its workarounds
(`fixes.py`), its speed-up (`speedups.py`), the hooks in front of its BACnet/IP sockets
(`datagrams.py`), the ports and the link layers the router binds (`ports.py`: where a new port
plugs in; `bbmd.py`, `foreign.py`) and the virtual network of the nodes (`virtual.py`). Some
workarounds are process-wide (bacpypes3 looks classes up by module name), so the composition
root calls `install()` once, before any BACnet application is built.
"""

from __future__ import annotations

from gateway.bacnet.stack import datagrams, fixes, speedups
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
    "MultiStateCov",
    "NetworkSide",
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
    datagrams.install()
