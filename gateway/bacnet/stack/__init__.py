"""The BACnet stack: bacpypes3 0.0.110, mended and sped up for the gateway.

The one place in the gateway that knows how bacpypes3 works inside: its workarounds
(`fixes.py`) and its speed-up (`speedups.py`). Some are process-wide (bacpypes3 looks classes
up by module name), so the composition root calls `install()` once, before any BACnet
application is built.
"""

from __future__ import annotations

from gateway.bacnet.stack import fixes, speedups

__all__ = ["install"]


def install() -> None:
    """Give bacpypes3 the gateway's workarounds and speed-up, process-wide; safe to call again."""
    speedups.install()
    fixes.count_failed_datagrams()
    fixes.install_rejects()
