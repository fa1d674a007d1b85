"""The gateway's virtual network: bacpypes3's in-process network the node devices sit on.

    lan = VirtualLan()        # a network of its own name (bacpypes3 keeps them by name, process-wide)
    port = NetworkPortObject(..., networkType="virtual", networkInterfaceName=lan.name, ...)
    lan.leave(app)            # a forgotten node's device: its ports leave the network
    lan.close()               # once every application on it is closed

A routed request whose APDU a node cannot decode raises inside a task nobody awaits; on this
network it is counted instead (`fixes.GuardedVirtualNetwork`).
"""

from __future__ import annotations

import itertools

from bacpypes3.app import Application
from bacpypes3.vlan import VirtualNetwork

from gateway.bacnet.stack.fixes import GuardedVirtualNetwork

__all__ = ["VirtualLan"]

_names = (f"bcpm-meters-{n}" for n in itertools.count(1))


class VirtualLan:
    """A virtual network of bacpypes3, with a name no other network of the process has."""

    def __init__(self) -> None:
        self.name = next(_names)
        GuardedVirtualNetwork(self.name)

    def leave(self, app: Application) -> None:
        """The application's ports leave the network: it hears nothing more on it."""
        for link_layer in app.link_layers.values():
            link_layer.node.lan.remove_node(link_layer.node)

    def close(self) -> None:
        """Forget the network (bacpypes3 would keep it in its registry for good)."""
        VirtualNetwork._networks.pop(self.name, None)
