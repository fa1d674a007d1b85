"""Findings about the gateway's networks that one face makes and the others tell.

The BACnet face's network doctor (:mod:`gateway.bacnet.doctor`) publishes them on the
:class:`~gateway.hub.EventHub`; the SNMP face sends them as notifications and the web face shows
them. They live here, below the faces, because no face may import another.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NetworkFinding:
    """A gateway-level finding a face made that others may tell too: the BACnet network doctor
    found (or no longer finds) another party using the gateway's network number or a device ID."""

    kind: str  # "network" or "device_id"
    number: int  # the network number or device instance both use
    other: str  # the other party's address
    cleared: bool  # False: found; True: gone again
