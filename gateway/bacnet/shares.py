"""Fair shares of the BACnet face: no one source can take it over.

    shares = Shares(config.bacnet)
    shares.guard(router)          # every BACnet/IP datagram (and MS/TP NPDU) of the router's ports is judged first

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

from bacpypes3.apdu import WritePropertyRequest
from bacpypes3.errors import ExecutionError
from bacpypes3.pdu import Address, IPv4Address, IPv6Address
from bacpypes3.primitivedata import PropertyIdentifier

from gateway.bacnet.local_objects import GuardedWrites
from gateway.bacnet.stack import IpSocket, MstpLinkLayer, StackApplication
from gateway.config import BacnetSettings
from gateway.logging import PeerEvents, peer_events
from gateway.ratelimit import RateLimit

__all__ = ["SavedWriteLimit", "Shares", "apdu_head", "npdu_apdu_head", "source_host"]

_CONFIRMED_REQUEST = 0
_UNCONFIRMED_REQUEST = 1
_BVLC_HEADERS = {0x04: 10, 0x09: 4, 0x0A: 4, 0x0B: 4}  # BVLC functions carrying an NPDU: header length
_NPDU_FUNCTIONS = {bytes([function]) for function in _BVLC_HEADERS}


def apdu_head(data: bytes) -> tuple[int, int] | None:
    """(PDU type, service choice) of the APDU a BACnet/IP datagram carries; None for a BVLL or
    network-layer message, or anything too short to tell (bacpypes3 then judges it)."""
    if data[:1] != b"\x81" or data[1:2] not in _NPDU_FUNCTIONS:
        return None
    return npdu_apdu_head(data, _BVLC_HEADERS[data[1]])


def npdu_apdu_head(data: bytes, at: int = 0) -> tuple[int, int] | None:
    """(PDU type, service choice) of the APDU of the NPDU at `at` in `data`; None for a
    network-layer message, or anything too short to tell."""
    try:
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

    def guard(self, app: StackApplication) -> None:
        """Judge every datagram of `app`'s BACnet/IP ports with `judge`, every NPDU of its MS/TP
        ports with `judge_npdu`. Call it as soon as `app` is built: bacpypes3 opens its sockets in
        tasks that have not run yet."""
        for socket in IpSocket.of(app):
            socket.judge_with(self.judge)
        for layer in MstpLinkLayer.of(app):
            layer.judge_with(self.judge_npdu)

    def judge(self, data: bytes, addr: tuple[str, int]) -> PeerEvents | None:
        """None to take the datagram; else the class of refusal it was counted in."""
        head = apdu_head(data)
        if head is None:
            if data[:1] == b"\x81" and data[1:2] not in _NPDU_FUNCTIONS and not self.requests.allow(addr[0]):
                self._refused.count(addr[0], f"BVLL function {data[1:2].hex()}")  # registrations, reads of tables
                return self._refused
            return None
        return self._share(head, addr[0])

    def judge_npdu(self, npdu: bytes, source: str) -> PeerEvents | None:
        """The same for an NPDU from a data link without BVLL (MS/TP); `source` names the station."""
        head = npdu_apdu_head(npdu)
        return None if head is None else self._share(head, source)

    def _share(self, head: tuple[int, int], source: str) -> PeerEvents | None:
        kind, choice = head
        if kind == _CONFIRMED_REQUEST and not self.requests.allow(source):
            self._refused.count(source, f"{choice=}")
            return self._refused
        if kind == _UNCONFIRMED_REQUEST and not self.unconfirmed.allow(None):
            self._dropped.count(source, f"{choice=}")
            return self._dropped
        return None


def source_host(address: Address) -> str:
    """The IP address of a BACnet source: of a BACnet/IP station, or of a station routed from
    a BACnet/IP network (its 6-byte MAC is IP and port); anything else as itself."""
    if isinstance(address, IPv4Address | IPv6Address):
        return str(address.addrTuple[0])
    mac = address.addrAddr  # None for a broadcast
    if isinstance(mac, bytes) and len(mac) == 6:
        return ".".join(str(byte) for byte in mac[:4])
    return str(address)


class SavedWriteLimit(StackApplication):
    """An application whose writes of a property the gateway saves in its state file (the object
    `saves` it) are charged to their source's share first."""

    shares: Shares

    async def do_WritePropertyRequest(self, apdu: WritePropertyRequest) -> None:
        obj = self.get_object_id(apdu.objectIdentifier)
        saved = isinstance(obj, GuardedWrites) and obj.saves(PropertyIdentifier(apdu.propertyIdentifier).attr)
        if saved and not self.shares.saved_writes.allow(source_host(apdu.pduSource)):
            peer_events("bacnet saved writes refused by bacnet.max_saved_writes").count(
                str(apdu.pduSource), str(apdu.propertyIdentifier)
            )
            raise ExecutionError("device", "busy")
        await super().do_WritePropertyRequest(apdu)
