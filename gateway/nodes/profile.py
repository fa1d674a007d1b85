"""A meter node's profile: what discovery learned, and what a locked gateway starts from."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.pointmap import Model


@dataclass(frozen=True, slots=True)
class NodeProfile:
    """What discovery learned about the meter at one Modbus address.

    A board answers at `primary_address` and `primary_address + 1` (panels 1 and 2, same serial).
    `device_id` is the meter's own device ID register (15170/15171/15172 = model C/B/A).
    """

    address: int
    serial: int
    model: Model
    device_id: int
    firmware_rs: int
    firmware_os: int
    primary_address: int

    @property
    def panel(self) -> int:
        """1 for the board's first address, 2 for the second."""
        return self.address - self.primary_address + 1
