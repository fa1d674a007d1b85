"""The gateway as a BBMD: bacpypes3's BBMD link layer, its table from bdt.ini, its FDT bounded.

    bbmd = Bbmd(IPv4Address("10.0.1.5/24:47808"), read_bdt(path, own), max_foreign_devices=64, max_ttl=900)
    bbmd.set_table(new_table)      # SIGHUP: the new bdt.ini; the socket and the FDT stay
    bbmd.peers()                   # ["10.0.1.5/255.255.255.255:47808", ...]: the table in use
    bbmd.foreign_devices()         # [RegisteredDevice(address, ttl, remaining), ...]: the FDT

bacpypes3's `BIPBBMD` does the forwarding (local broadcasts to the BDT peers, two-hop or
directed by each entry's mask, and to the registered foreign devices; Forwarded-NPDUs from
peers delivered and re-broadcast locally when this BBMD's own entry is in the table;
Distribute-Broadcast-To-Network from foreign devices), answers Read-BDT and Read-FDT, and
refuses Write-BDT with NAK 0x0010, which suits a table that comes from a file. This subclass adds:

- a bounded FDT: a new registration beyond `max_foreign_devices` gets NAK 0x0030 (a renewal
  always passes), where bacpypes3 takes every registration;
- a bounded time to live: a registration asking more than `max_foreign_ttl` gets that much;
- Delete-FDT-Entry only from the entry's own address or a BDT peer (NAK 0x0050 to anyone else),
  where bacpypes3 lets any host delete any entry;
- the grace period of the standard (J.5.2.3): an entry lives TTL + 30 s, not TTL + 5 s;
- `close()` stops the FDT clock, which bacpypes3 leaves running forever.

Registrations and refusals come from any host, unauthenticated: they are counted and logged at
most once a minute per kind (`gateway.logging.PeerEvents`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address as Ip
from typing import Any, Protocol

from bacpypes3.ipv4.bvll import DeleteForeignDeviceTableEntry, Result
from bacpypes3.ipv4.link import BBMDLinkLayer
from bacpypes3.pdu import IPv4Address

from gateway.logging import peer_events

__all__ = ["DELETE_FDT_ENTRY_NAK", "GRACE_PERIOD", "REGISTER_FOREIGN_DEVICE_NAK", "Bbmd", "BdtPeer", "RegisteredDevice"]

GRACE_PERIOD = 30  # seconds a foreign device may be late in renewing (BACnet J.5.2.3)
REGISTER_FOREIGN_DEVICE_NAK = 0x0030
DELETE_FDT_ENTRY_NAK = 0x0050
_MAX_REMAINING = 0xFFFF  # Read-FDT carries the time remaining in 16 bits


class BdtPeer(Protocol):
    """A BBMD of the table (`bdt.BdtEntry`): where it listens, and the mask its broadcasts go with."""

    @property
    def address(self) -> Ip: ...
    @property
    def port(self) -> int: ...
    @property
    def mask(self) -> Ip: ...


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """A foreign device in the table: its B/IP address (IP and port, 6 bytes), the time to live it
    was granted and the seconds it has left (the grace period included)."""

    address: bytes
    ttl: int
    remaining: int


class Bbmd(BBMDLinkLayer):
    def __init__(
        self, address: IPv4Address, table: Sequence[BdtPeer], max_foreign_devices: int, max_ttl: int = _MAX_REMAINING
    ) -> None:
        super().__init__(address)
        self.max_foreign_devices = max_foreign_devices
        self.max_ttl = max_ttl
        self.set_table(table)

    def set_table(self, table: Sequence[BdtPeer]) -> None:
        """Forward to the BBMDs of `table` from now on."""
        self.bbmdBDT[:] = [IPv4Address(f"{peer.address}/{peer.mask}:{peer.port}") for peer in table]

    def peers(self) -> list[str]:
        """The table in use, each BBMD as "ip/mask:port"."""
        return [f"{peer.ip}/{peer.netmask}:{peer.addrPort}" for peer in self.bbmdBDT]

    def foreign_devices(self) -> list[RegisteredDevice]:
        """The foreign devices registered now."""
        return [RegisteredDevice(entry.fdAddress.addrAddr, entry.fdTTL, entry.fdRemain) for entry in self.bbmdFDT]

    def register_foreign_device(self, addr: IPv4Address, ttl: int) -> int:
        known = any(entry.fdAddress == addr for entry in self.bbmdFDT)
        if not known and len(self.bbmdFDT) >= self.max_foreign_devices:
            peer_events("bacnet foreign devices refused: the table is full (bacnet.max_foreign_devices)").count(
                str(addr), f"max_foreign_devices={self.max_foreign_devices}"
            )
            return REGISTER_FOREIGN_DEVICE_NAK
        ttl = min(ttl, self.max_ttl)
        result = super().register_foreign_device(addr, ttl)
        entry = next(entry for entry in self.bbmdFDT if entry.fdAddress == addr)
        entry.fdRemain = min(ttl + GRACE_PERIOD, _MAX_REMAINING)
        if not known:
            peer_events("bacnet foreign devices registered", "info").count(str(addr), f"ttl={ttl}")
        return result

    async def confirmation(self, lpdu: Any) -> None:
        if isinstance(lpdu, DeleteForeignDeviceTableEntry) and not self._may_delete(lpdu.pduSource, lpdu.bvlciAddress):
            peer_events("bacnet delete-fdt-entry refused: not from the entry or a bdt peer").count(
                str(lpdu.pduSource), f"entry={lpdu.bvlciAddress}"
            )
            await self.request(
                Result(code=DELETE_FDT_ENTRY_NAK, destination=lpdu.pduSource, user_data=lpdu.pduUserData)
            )
            return
        await super().confirmation(lpdu)

    def _may_delete(self, source: IPv4Address, entry: IPv4Address) -> bool:
        return source.addrTuple == entry.addrTuple or any(source.addrTuple == peer.addrTuple for peer in self.bbmdBDT)

    def close(self) -> None:
        self._fdt_clock_handle.cancel()
        super().close()
