"""Fair shares of the BACnet face: no one source can take it over.

    shares = Shares(config.bacnet)
    shares.guard(router)          # every BACnet/IP datagram of the router's port is judged first

- Confirmed requests, and BVLL requests (Register-Foreign-Device, Delete-FDT-Entry, Read-BDT...):
  at most `bacnet.rate_limit` a second from one source IP address (its burst as large); more
  are dropped unanswered and counted, and the client retries later.
- Unconfirmed requests (Who-Is, Who-Has, TimeSynchronization, I-Am, anything): at most
  `bacnet.unconfirmed_rate` taken a second over the whole gateway; more are dropped and
  counted. Legitimate ones are rare, and one global Who-Is makes every device answer, so each
  costs as many I-Ams as there are nodes.
- Writes the gateway saves in its state file (a node device's name or ID, the router's AV1/AV2):
  at most `bacnet.max_saved_writes` a minute from one source IP address (`SavedWriteLimit`);
  more get Error(device, busy). Saves from many writes also share one fsync (`state_saves.py`).

Datagrams are judged on their raw bytes, before bacpypes3 decodes anything or starts a task
for them: a flood of 125,000 Who-Is a second is only survivable that way. A request forwarded
by a BBMD counts for the BBMD that sent it. Refusals are counted (`gateway.logging.PeerEvents`),
never logged one by one.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import bacpypes3.ipv4
from bacpypes3.apdu import WritePropertyRequest
from bacpypes3.errors import ExecutionError
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import PropertyIdentifier

from gateway.config import BacnetSettings
from gateway.logging import PeerEvents, peer_events
from gateway.ratelimit import RateLimit

__all__ = ["SavedWriteLimit", "Shares", "apdu_head", "source_host"]

_CONFIRMED_REQUEST = 0
_UNCONFIRMED_REQUEST = 1
DRAIN_BATCH = 256  # datagrams read at once after one was refused
MAX_DATAGRAM = 65536
_BVLC_HEADERS = {0x04: 10, 0x09: 4, 0x0A: 4, 0x0B: 4}  # BVLC functions carrying an NPDU: header length
_NPDU_FUNCTIONS = {bytes([function]) for function in _BVLC_HEADERS}


def apdu_head(data: bytes) -> tuple[int, int] | None:
    """(PDU type, service choice) of the APDU a BACnet/IP datagram carries; None for a BVLL or
    network-layer message, or anything too short to tell (bacpypes3 then judges it)."""
    try:
        if data[0] != 0x81 or data[1] not in _BVLC_HEADERS:
            return None
        at = _BVLC_HEADERS[data[1]]
        control = data[at + 1]
        if control & 0x80:  # a network-layer message
            return None
        at += 2
        if control & 0x20:  # DNET, DLEN, DADR
            at += 3 + data[at + 2]
        if control & 0x08:  # SNET, SLEN, SADR
            at += 3 + data[at + 2]
        if control & 0x20:  # hop count
            at += 1
        kind = data[at] >> 4
        if kind == _CONFIRMED_REQUEST:  # flags, sizes, invoke ID (and segment number, window)
            return kind, data[at + (5 if data[at] & 0x08 else 3)]
        return kind, data[at + 1]
    except IndexError:
        return None


class Shares:
    """The gateway's BACnet rate limits, shared by every device."""

    def __init__(self, settings: BacnetSettings) -> None:
        self.requests = RateLimit(settings.rate_limit, settings.rate_limit)
        self.unconfirmed = RateLimit(settings.unconfirmed_rate, settings.unconfirmed_rate)
        self.saved_writes = RateLimit(settings.max_saved_writes / 60, settings.max_saved_writes)
        self._refused = peer_events("bacnet requests refused by bacnet.rate_limit")
        self._dropped = peer_events("bacnet unconfirmed requests dropped by bacnet.unconfirmed_rate", "info")

    def guard(self, app: Any) -> None:
        """Judge every datagram of `app`'s BACnet/IP ports with `judge`. Call it as soon as `app`
        is built: bacpypes3 opens its sockets in tasks that have not run yet."""
        _install()
        for link_layer in app.link_layers.values():
            server = getattr(link_layer, "server", None)
            if server is not None:
                server.judge = self.judge

    def judge(self, data: bytes, addr: tuple[str, int]) -> PeerEvents | None:
        """None to take the datagram; else the class of refusal it was counted in."""
        head = apdu_head(data)
        if head is None:
            if data[:1] == b"\x81" and data[1:2] not in _NPDU_FUNCTIONS and not self.requests.allow(addr[0]):
                self._refused.count(addr[0], f"BVLL function {data[1:2].hex()}")  # registrations, reads of tables
                return self._refused
            return None
        kind, choice = head
        if kind == _CONFIRMED_REQUEST and not self.requests.allow(addr[0]):
            self._refused.count(addr[0], f"{choice=}")
            return self._refused
        if kind == _UNCONFIRMED_REQUEST and not self.unconfirmed.allow(None):
            self._dropped.count(addr[0], f"{choice=}")
            return self._dropped
        return None


class _AdmittingProtocol(bacpypes3.ipv4.IPv4DatagramProtocol):
    """bacpypes3's datagram protocol, asking its server's `judge` (when it has one) first.

    asyncio reads one datagram per turn of the event loop, which caps what a flood costs the
    other faces but also what the gateway can throw away: past some 50,000 datagrams a second
    the socket's buffer overflows and the kernel drops legitimate requests with the rest. So a
    refused datagram, a sign of a flood, is followed by up to DRAIN_BATCH more read at once from
    the same socket (a duplicate of its descriptor) and judged the same way; one that repeats
    the last refused, from the same host, is refused again without a second look.
    """

    _drain: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._drain = sock.dup()
            self._drain.setblocking(False)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        judge = getattr(self.server, "judge", None)
        # its own broadcasts come back to the gateway: bacpypes3 drops them, they cost no share
        refusal = None if judge is None or addr == self.server.local_address else judge(data, addr)
        if refusal is None:
            super().datagram_received(data, addr)
            return
        refused = (data, addr[0])  # the last refused, and its host
        for _ in range(DRAIN_BATCH if self._drain is not None else 0):
            try:
                data, addr = self._drain.recvfrom(MAX_DATAGRAM)  # type: ignore[union-attr]
            except OSError:  # nothing more queued (BlockingIOError), or the socket is closing
                return
            if (data, addr[0]) == refused:  # the same again from the same host, a moment later
                refusal.count(addr[0], "the same datagram again")
                continue
            judged = judge(data, addr)  # type: ignore[misc]
            if judged is None:
                super().datagram_received(data, addr)
            else:
                refused, refusal = (data, addr[0]), judged

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drain is not None:
            self._drain.close()
        super().connection_lost(exc)


def _install() -> None:
    """bacpypes3 builds every datagram endpoint from its module's protocol class: use ours. Safe
    to call more than once; a server without `judge` takes every datagram, as before."""
    bacpypes3.ipv4.IPv4DatagramProtocol = _AdmittingProtocol  # type: ignore[misc]


def source_host(address: Address) -> str:
    """The IP address of a BACnet source: of a BACnet/IP station, or of a station routed from
    a BACnet/IP network (its 6-byte MAC is IP and port); anything else as itself."""
    tuple_ = getattr(address, "addrTuple", None)
    if tuple_ is not None:
        return str(tuple_[0])
    mac = getattr(address, "addrAddr", None)
    if isinstance(mac, bytes) and len(mac) == 6:
        return ".".join(str(byte) for byte in mac[:4])
    return str(address)


class SavedWriteLimit:
    """Application mixin: a write to a property the gateway saves in its state file (the object
    lists it in `_saved_properties`) is charged to its source's share first."""

    shares: Shares

    async def do_WritePropertyRequest(self, apdu: WritePropertyRequest) -> None:
        obj = self.get_object_id(apdu.objectIdentifier)  # type: ignore[attr-defined]
        saved = PropertyIdentifier(apdu.propertyIdentifier).attr in getattr(obj, "_saved_properties", ())
        if saved and not self.shares.saved_writes.allow(source_host(apdu.pduSource)):
            peer_events("bacnet saved writes refused by bacnet.max_saved_writes").count(
                str(apdu.pduSource), str(apdu.propertyIdentifier)
            )
            raise ExecutionError("device", "busy")
        await super().do_WritePropertyRequest(apdu)  # type: ignore[misc]
