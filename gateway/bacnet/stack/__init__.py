"""The BACnet stack: bacpypes3 0.0.110, mended and sped up for the gateway.

The one place in the gateway that knows how bacpypes3 works inside: its workarounds
(`fixes.py`), its speed-up (`speedups.py`) and the hooks in front of its BACnet/IP sockets
(`datagrams.py`). Some are process-wide (bacpypes3 looks classes
up by module name), so the composition root calls `install()` once, before any BACnet
application is built.
"""

from __future__ import annotations

from gateway.bacnet.stack import datagrams, fixes, speedups
from gateway.bacnet.stack.datagrams import Intake, IpSocket, Judge, settled

__all__ = ["Intake", "IpSocket", "Judge", "install", "settled"]


def install() -> None:
    """Give bacpypes3 the gateway's workarounds and speed-up, process-wide; safe to call again."""
    speedups.install()
    fixes.count_failed_datagrams()
    fixes.install_rejects()
    datagrams.install()
