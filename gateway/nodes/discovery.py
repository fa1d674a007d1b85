"""Discovery: find the meter nodes on the bus and tell BCPM boards from anything else.

Each address gets one short probe of the identity registers (serial, firmware, device ID). A BCPM
is recognised by its device ID (15170/15171/15172 = model C/B/A); its DIP-switch address
(register 60000) and serial number pair the two addresses of one board. A device that answers
but is not a BCPM is reported and left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from gateway.bus import Bus, BusError, CorruptReply, ExceptionReply, NoResponse, Priority
from gateway.nodes.modbus import REPORT_SLAVE_ID, read_registers, registers_of, slave_id_text
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import MODEL_BY_DEVICE_ID

log = structlog.get_logger(__name__)

PROBE_ATTEMPTS = 2  # a corrupted reply is asked again; silence is not (it would double the scan)


@dataclass(frozen=True, slots=True)
class Found:
    address: int
    profile: NodeProfile | None  # None: something answered that is not a BCPM
    detail: str = ""  # Report Slave ID text, or why it is not a BCPM

    @property
    def is_bcpm(self) -> bool:
        return self.profile is not None


async def _ask(bus: Bus, address: int, pdu: bytes, timeout: float) -> bytes | None:
    """A probe reply, or None when nothing answers."""
    for _ in range(PROBE_ATTEMPTS):
        try:
            return await bus.transact(address, pdu, Priority.DISCOVERY, timeout=timeout)
        except CorruptReply:
            continue
        except NoResponse:
            return None
    return None


async def identify(bus: Bus, address: int, timeout: float) -> Found | None:
    """What answers at one address (None when nothing does)."""
    try:
        reply = await _ask(bus, address, read_registers(1, 5), timeout)
    except ExceptionReply as error:
        return Found(address, None, f"answers with {error}")
    if reply is None:
        return None
    words = registers_of(reply, 5)
    model = MODEL_BY_DEVICE_ID.get(words[4])
    text = await _slave_id(bus, address, timeout)
    if model is None:
        return Found(address, None, text or f"device ID {words[4]} is not a BCPM")
    try:
        dip = await _ask(bus, address, read_registers(60000, 1), timeout)
        primary = registers_of(dip, 1)[0] if dip else address
    except ExceptionReply:
        primary = address
    if primary not in (address, address - 1):
        primary = address  # a DIP address that does not fit N / N+1: treat the node as its own board
    profile = NodeProfile(address=address, serial=words[0] << 16 | words[1], model=model, device_id=words[4],
                          firmware_rs=words[2], firmware_os=words[3], primary_address=primary)
    return Found(address, profile, text)


async def _slave_id(bus: Bus, address: int, timeout: float) -> str:
    try:
        reply = await _ask(bus, address, REPORT_SLAVE_ID, timeout)
        return slave_id_text(reply) if reply else ""
    except BusError:
        return ""


async def scan(bus: Bus, addresses: Iterable[int], timeout: float, *, patient_timeout: float = 0.2) -> list[Found]:
    """Probe every address in turn; return what answered, in address order.

    A board answers at two addresses; when one of them answered and its partner did not, the
    partner is asked once more with ``patient_timeout``: a meter that was slow to answer its
    first request must not lose a panel.
    """
    wanted = list(addresses)
    found: dict[int, Found] = {}
    for address in wanted:
        if (result := await identify(bus, address, timeout)) is not None:
            found[address] = result
    partners = {a for f in found.values() if f.profile
                for a in (f.profile.primary_address, f.profile.primary_address + 1)}
    for address in sorted(partners & set(wanted) - set(found)):
        if (result := await identify(bus, address, patient_timeout)) is not None:
            found[address] = result
    for address, result in sorted(found.items()):
        log.info("found", address=address, bcpm=result.is_bcpm, detail=result.detail)
    return [found[address] for address in sorted(found)]


def boards(profiles: Iterable[NodeProfile]) -> dict[int, list[int]]:
    """Addresses grouped by board: {primary address: [addresses]}; a board's panels share a serial."""
    grouped: dict[tuple[int, int], list[int]] = {}
    for profile in profiles:
        grouped.setdefault((profile.serial, profile.primary_address), []).append(profile.address)
    return {primary: sorted(addresses) for (_, primary), addresses in sorted(grouped.items(), key=lambda kv: kv[0][1])}
