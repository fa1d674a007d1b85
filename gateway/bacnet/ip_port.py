"""The router's BACnet/IP network port, in the mode the configuration asks for.

    port = ip_port(config.bacnet, network=1, configured=False, bdt=table)
    port.link_layer()    # Bbmd, ForeignDevice, or None: bacpypes3 builds its normal link layer

- normal: bacpypes3's own link layer; BACnet_IP_Mode NORMAL.
- `bbmd = true`: a `Bbmd` with the bdt.ini table; BACnet_IP_Mode BBMD, and the port shows the
  link layer's current tables as BBMD_Broadcast_Distribution_Table and BBMD_Foreign_Device_Table.
- `foreign_bbmd` set: a `ForeignDevice`; BACnet_IP_Mode FOREIGN, FD_BBMD_Address and
  FD_Subscription_Lifetime.

No property of the port is writable remotely: its configuration is the gateway's files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bacpypes3.basetypes import BDTEntry, FDTEntry, HostNPort, NetworkNumberQuality
from bacpypes3.constructeddata import ListOf
from bacpypes3.pdu import IPv4Address
from bacpypes3.primitivedata import Unsigned16

from gateway.bacnet.bdt import BdtEntry
from gateway.bacnet.local_objects import GuardedWrites
from gateway.bacnet.stack import Bbmd, ForeignDevice, LinkedPort, network_side
from gateway.config import BacnetSettings

__all__ = ["MAX_APDU", "BbmdPort", "IPv4Port", "NumberedByTheNetworkLayer", "ip_port"]

MAX_APDU = 1476  # what fits a BACnet/IP frame
NOT_CONFIGURED = bytes(4)  # 0.0.0.0
_BdtList = ListOf(BDTEntry)
_FdtList = ListOf(FDTEntry)


class NumberedByTheNetworkLayer(LinkedPort):
    """A port whose Network_Number and its quality are the network layer's: a number learned after
    start (`bacnet.ip_network = "auto"`) shows at once; until then the number is unknown (0),
    whatever fallback the router routes with."""

    _number: int
    _quality: str

    @property
    def networkNumber(self) -> Any:
        side = network_side(self)
        if side is None:
            return self._number
        return Unsigned16(side.number if side.known else 0)

    @networkNumber.setter
    def networkNumber(self, value: Any) -> None:
        self._number = value

    @property
    def networkNumberQuality(self) -> Any:
        side = network_side(self)
        return self._quality if side is None else NetworkNumberQuality(side.quality)

    @networkNumberQuality.setter
    def networkNumberQuality(self, value: Any) -> None:
        self._quality = value


class IPv4Port(GuardedWrites, NumberedByTheNetworkLayer):
    """The router's BACnet/IP port."""


class BbmdPort(IPv4Port):
    """The port of a BBMD: its tables are read from the link layer, so they are always current."""

    _link_layer: Bbmd

    @property
    def bbmdBroadcastDistributionTable(self) -> Any:
        return _BdtList([BDTEntry(peer) for peer in self._link_layer.peers()])

    @bbmdBroadcastDistributionTable.setter
    def bbmdBroadcastDistributionTable(self, value: Any) -> None:
        pass  # computed

    @property
    def bbmdForeignDeviceTable(self) -> Any:
        return _FdtList(
            [
                FDTEntry(bacnetIPAddress=entry.address, timeToLive=entry.ttl, remainingTimeToLive=entry.remaining)
                for entry in self._link_layer.foreign_devices()
            ]
        )

    @bbmdForeignDeviceTable.setter
    def bbmdForeignDeviceTable(self, value: Any) -> None:
        pass  # computed


def ip_port(settings: BacnetSettings, network: int, configured: bool, bdt: Sequence[BdtEntry]) -> IPv4Port:
    """The BACnet/IP port at `settings.address` and `.port`, numbered `network` (configured, or a
    fallback until one is learned). Build it inside the running loop: the link layer opens its
    sockets at once."""
    address = IPv4Address(f"{settings.address}:{settings.port}")
    common: dict[str, Any] = {
        "objectIdentifier": ("network-port", 1),
        "objectName": "BACnet/IP",
        "networkNumber": network,  # the link layer is bound with it; shown as 0 while unknown
        "networkNumberQuality": "configured" if configured else "unknown",
        # Clause 12.56: every BACnet/IP port has these; the gateway routes only
        # on its own subnet and resolves no names, so none is configured.
        "apduLength": MAX_APDU,
        "ipDefaultGateway": NOT_CONFIGURED,
        "ipDNSServer": [NOT_CONFIGURED],
    }
    port: IPv4Port
    if settings.bbmd:
        port = BbmdPort(address, bacnetIPMode="bbmd", bbmdAcceptFDRegistrations=True, **common)
        port.bring(Bbmd(address, bdt, settings.max_foreign_devices, settings.max_foreign_ttl))
    elif settings.foreign_bbmd is not None:
        host, bbmd_port = settings.foreign_bbmd
        port = IPv4Port(
            address,
            bacnetIPMode="foreign",
            fdBBMDAddress=HostNPort(f"{host}:{bbmd_port}"),
            fdSubscriptionLifetime=settings.foreign_ttl,
            **common,
        )
        port.bring(ForeignDevice(address, settings.foreign_bbmd, settings.foreign_ttl))
    else:
        port = IPv4Port(address, **common)
    return port
