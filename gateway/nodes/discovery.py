"""Discovery: find the meter nodes on the bus and tell BCPM boards from anything else.

Each address gets one short probe of the identity registers (serial, firmware, device ID: the point
map's identity rows). A BCPM is recognised by its device ID (15170/15171/15172 = model C/B/A); its
DIP-switch address (register 60000) and serial number pair the two addresses of one board. A device that answers
but is not a BCPM is reported and left alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import structlog

from gateway.bus import (
    Bus,
    BusError,
    CorruptReply,
    ExceptionReply,
    NoResponse,
    Priority,
)
from gateway.nodes.modbus import REPORT_SLAVE_ID, read_registers, registers_of, slave_id_text
from gateway.nodes.plan import Read
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import MODEL_BY_DEVICE_ID, Point, load

log = structlog.get_logger(__name__)

PROBE_ATTEMPTS = 2  # a corrupted reply is asked again; silence is not (it would double the scan)

_POINTS = load()
_IDENTITY_POINTS = tuple(
    _POINTS.find(key, group="identity") for key in ("serial_number", "firmware_rs", "firmware_os", "device_id")
)
IDENTITY = Read(
    min(p.register for p in _IDENTITY_POINTS),
    max(p.register + p.count for p in _IDENTITY_POINTS) - min(p.register for p in _IDENTITY_POINTS),
)
"""The one read that identifies a meter: the point map's identity rows (registers 1-5)."""
DIP_ADDRESS = _POINTS.find("modbus_address", group="service")  # register 60000: pairs a board's panels


@dataclass(frozen=True, slots=True)
class Identity:
    serial: int
    firmware_rs: int
    firmware_os: int
    device_id: int


def identity_of(words: Sequence[int]) -> Identity:
    """The identity in the registers of an IDENTITY read, raw (a serial may be any 32-bit value)."""

    def raw(point: Point) -> int:
        offset = point.register - IDENTITY.start
        return functools.reduce(lambda value, word: value << 16 | word, words[offset : offset + point.count], 0)

    return Identity(*(raw(point) for point in _IDENTITY_POINTS))


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
        reply = await _ask(bus, address, read_registers(IDENTITY.start, IDENTITY.count), timeout)
    except ExceptionReply as error:
        return Found(address, None, f"answers with {error}")
    if reply is None:
        return None
    identity = identity_of(registers_of(reply, IDENTITY.count))
    model = MODEL_BY_DEVICE_ID.get(identity.device_id)
    text = await _slave_id(bus, address, timeout)
    if model is None:
        return Found(address, None, text or f"device ID {identity.device_id} is not a BCPM")
    try:
        dip = await _ask(bus, address, read_registers(DIP_ADDRESS.register, DIP_ADDRESS.count), timeout)
        primary = registers_of(dip, DIP_ADDRESS.count)[0] if dip else address
    except ExceptionReply:
        primary = address
    if primary not in (address, address - 1):
        primary = address  # a DIP address that does not fit N / N+1: treat the node as its own board
    profile = NodeProfile(
        address=address,
        serial=identity.serial,
        model=model,
        device_id=identity.device_id,
        firmware_rs=identity.firmware_rs,
        firmware_os=identity.firmware_os,
        primary_address=primary,
    )
    return Found(address, profile, text)


async def _slave_id(bus: Bus, address: int, timeout: float) -> str:
    try:
        reply = await _ask(bus, address, REPORT_SLAVE_ID, timeout)
        return slave_id_text(reply) if reply else ""
    except BusError:
        return ""


async def scan(
    bus: Bus,
    addresses: Iterable[int],
    timeout: float,
    *,
    patient_timeout: float = 0.2,
    probed: Callable[[Found | None], None] = lambda _: None,
) -> list[Found]:
    """Probe every address in turn; return what answered, in address order.

    A board answers at two addresses; when one of them answered and its partner did not, the
    partner is asked once more with ``patient_timeout``: a meter that was slow to answer its
    first request must not lose a panel. `probed` hears the outcome of each first probe.
    """
    wanted = list(addresses)
    found: dict[int, Found] = {}
    for address in wanted:
        if (result := await identify(bus, address, timeout)) is not None:
            found[address] = result
        probed(result)
    partners = {
        a for f in found.values() if f.profile for a in (f.profile.primary_address, f.profile.primary_address + 1)
    }
    for address in sorted(partners & set(wanted) - set(found)):
        if (result := await identify(bus, address, patient_timeout)) is not None:
            found[address] = result
    for address, result in sorted(found.items()):
        log.info("device found", address=address, bcpm=result.is_bcpm, detail=result.detail)
    return [found[address] for address in sorted(found)]


def boards(profiles: Iterable[NodeProfile]) -> dict[int, list[int]]:
    """Addresses grouped by board: {primary address: [addresses]}; a board's panels share a serial."""
    grouped: dict[tuple[int, int], list[int]] = {}
    for profile in profiles:
        grouped.setdefault((profile.serial, profile.primary_address), []).append(profile.address)
    return {primary: sorted(addresses) for (_, primary), addresses in sorted(grouped.items(), key=lambda kv: kv[0][1])}
