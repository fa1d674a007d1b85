"""The router's ports: where a data link plugs into the network layer.

    port = IpPort(address, ...)          # a `LinkedPort`: a network port object with its link layer
    port.bring(Bbmd(address, table, 64, 900))   # or ForeignDevice(...); none: bacpypes3's normal one
    router = RouterApplication.from_object_list([device, port, virtual_port, ...])
    side = network_side(port)            # what the network layer knows of the port, once bound
    side.number, side.quality            # 1, "unknown": the number it routes with, and how it knows it
    side.mark_unknown(); side.ask_number()   # ip_network = "auto": until a router of the network tells

A port is a Network Port object and a link layer bound to the network layer (bacpypes3's
network service access point) with the port's network number. bacpypes3 builds the link layer
itself from the object's Network_Type, and only its stock ones (BACnet/IP normal, foreign or
BBMD, and its in-process virtual network). A `LinkedPort` brings its own instead: the gateway's
BBMD or foreign device (`bbmd.py`, `foreign.py`), and the application binds it as bacpypes3 binds
its own (`bind_port`; `StackApplication.add_object` does it for every `LinkedPort` that brings one).

A new port plugs in here, without anything outside this package touching bacpypes3's network
layer. The BACnet MS/TP port is one: `MstpLinkLayer` (`mstp.py`) is the link layer of
`gateway.mstp`'s data link, brought by a `LinkedPort` of Network_Type mstp with its MAC address
and network number; listed in the router's object list beside the BACnet/IP and virtual ports, it
is bound like them, and the router routes between all three (Who-Is-Router-To-Network,
I-Am-Router-To-Network and Network-Number-Is cover every bound port). A link layer with a
`start()` (the MS/TP one: it opens its serial port) is started once bound, and closed with the
application. `network_side(port)` tells any bound port's number and quality.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

from bacpypes3.app import Application
from bacpypes3.basetypes import NetworkNumberQuality
from bacpypes3.local.networkport import NetworkPortObject

__all__ = ["LinkedPort", "NetworkSide", "bind_port", "network_side"]


@runtime_checkable
class Starting(Protocol):
    """A link layer that starts working once bound (its own thread, its own port)."""

    def start(self) -> None: ...


class LinkedPort(NetworkPortObject):
    """A network port that brings its own link layer; without one, bacpypes3 builds its stock one."""

    _link_layer: Any = None

    def bring(self, link_layer: Any) -> None:
        """Use `link_layer` (a bacpypes3 `Server` of PDUs) for this port; before it is added."""
        self._link_layer = link_layer

    def link_layer(self) -> Any:
        """The link layer it brings, or None."""
        return self._link_layer


def bind_port(app: Application, port: LinkedPort) -> None:
    """Add a port that brings its link layer to `app`, binding the link layer to the network layer
    with the port's network number as bacpypes3 binds its stock ones."""
    app.objectName[port.objectName] = port
    app.objectIdentifier[port.objectIdentifier] = port
    port._app = app
    app.link_layers[port.objectIdentifier] = port.link_layer()
    app.nsap.bind(port.link_layer(), net=port.networkNumber, address=port.address)
    if isinstance(port.link_layer(), Starting):
        port.link_layer().start()


class NetworkSide:
    """What the network layer knows of one port (its adapter): the network number it routes that
    port with, and the number's quality (unknown, learned, learned-configured or configured:
    `fixes.NetworkNumberFlags` keeps it up to date)."""

    def __init__(self, app: Application, adapter: Any) -> None:
        self._app = app
        self._adapter = adapter

    @property
    def number(self) -> int:
        return int(self._adapter.adapterNet)

    @property
    def quality(self) -> str:
        """The quality's BACnet name, as Network_Number_Quality shows it."""
        return str(NetworkNumberQuality(self._adapter.adapterNetConfigured))

    @property
    def known(self) -> bool:
        """Whether the number is known (configured or learned), not a fallback to route with."""
        return bool(self._adapter.adapterNetConfigured != NetworkNumberQuality.unknown)

    def mark_unknown(self) -> None:
        """The number is one to route with until the network tells the real one; bacpypes3 numbers
        every bound port "configured"."""
        self._adapter.adapterNetConfigured = NetworkNumberQuality.unknown

    def ask_number(self) -> asyncio.Future[Any]:
        """Ask the port's network its number (What-Is-Network-Number); the network layer takes the
        answer, and any later Network-Number-Is, itself. Cancel the future when done waiting."""
        future: asyncio.Future[Any] = self._app.nse.what_is_network_number(self._adapter)
        return future


def network_side(port: NetworkPortObject) -> NetworkSide | None:
    """The network layer's view of `port`, once its application has bound it."""
    app = getattr(port, "_app", None)  # bacpypes3 sets it in Object.__init__, after the first properties
    if app is None or (link_layer := app.link_layers.get(port.objectIdentifier)) is None:
        return None
    adapter = next((each for each in app.nsap.adapters.values() if each.clientPeer is link_layer), None)
    return None if adapter is None else NetworkSide(app, adapter)
