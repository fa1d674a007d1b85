"""The gateway as a BBMD: bacpypes3's BBMD link layer, its table from bdt.ini, its FDT bounded.

    bbmd = Bbmd(IPv4Address("10.0.1.5/24:47808"), read_bdt(path, own), max_foreign_devices=64)
    bbmd.set_table(new_table)      # SIGHUP: the new bdt.ini; the socket and the FDT stay

bacpypes3's `BIPBBMD` does the forwarding (local broadcasts to the BDT peers, two-hop or
directed by each entry's mask, and to the registered foreign devices; Forwarded-NPDUs from
peers delivered and re-broadcast locally when this BBMD's own entry is in the table;
Distribute-Broadcast-To-Network from foreign devices), answers Read-BDT and Read-FDT, and
refuses Write-BDT with NAK 0x0010, which suits a table that comes from a file. This subclass adds:

- a bounded FDT: a new registration beyond `max_foreign_devices` gets NAK 0x0030 (a renewal
  always passes), where bacpypes3 takes every registration;
- the grace period of the standard (J.5.2.3): an entry lives TTL + 30 s, not TTL + 5 s;
- `close()` stops the FDT clock, which bacpypes3 leaves running forever.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from bacpypes3.ipv4.link import BBMDLinkLayer
from bacpypes3.pdu import IPv4Address

from gateway.bacnet.bdt import BdtEntry

__all__ = ["GRACE_PERIOD", "REGISTER_FOREIGN_DEVICE_NAK", "Bbmd"]

log = structlog.get_logger(__name__)

GRACE_PERIOD = 30  # seconds a foreign device may be late in renewing (BACnet J.5.2.3)
REGISTER_FOREIGN_DEVICE_NAK = 0x0030
_MAX_REMAINING = 0xFFFF  # Read-FDT carries the time remaining in 16 bits


class Bbmd(BBMDLinkLayer):
    def __init__(self, address: IPv4Address, table: Sequence[BdtEntry], max_foreign_devices: int) -> None:
        super().__init__(address)
        self.max_foreign_devices = max_foreign_devices
        self._told_full = False  # the log hears of a full table once, not at every retry
        self.set_table(table)

    def set_table(self, table: Sequence[BdtEntry]) -> None:
        """Forward to the BBMDs of `table` from now on."""
        self.bbmdBDT[:] = [IPv4Address(entry.bacpypes_address) for entry in table]

    def register_foreign_device(self, addr: IPv4Address, ttl: int) -> int:
        known = any(entry.fdAddress == addr for entry in self.bbmdFDT)
        if not known and len(self.bbmdFDT) >= self.max_foreign_devices:
            if not self._told_full:
                self._told_full = True
                log.warning("foreign device refused: the table is full", device=str(addr),
                            max_foreign_devices=self.max_foreign_devices)
            return REGISTER_FOREIGN_DEVICE_NAK
        result = super().register_foreign_device(addr, ttl)
        entry = next(entry for entry in self.bbmdFDT if entry.fdAddress == addr)
        entry.fdRemain = min(ttl + GRACE_PERIOD, _MAX_REMAINING)
        if not known:
            self._told_full = False
            log.info("foreign device registered", device=str(addr), ttl=ttl)
        return result

    def close(self) -> None:
        self._fdt_clock_handle.cancel()
        super().close()
