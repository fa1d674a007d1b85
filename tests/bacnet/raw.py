"""BACnet/IP requests as bytes, encoded once by bacpypes3, and a client that sends them as they are.

A request is built with bacpypes3's encoders (APDU, NPDU routed to a node, BVLL) and then sent
byte for byte, so a test can compare the gateway's answers to the same request byte for byte, and
a benchmark can send many without encoding each (only the invoke ID changes).

    request = routed(50, 1, read_property_multiple([("analog-input,1336", ["present-value"])]))
    async with RawClient(port) as client:
        answer = await client.ask(request)
        apdus = await client.answer_in_segments(50, 1, invoke=0)  # each APDU as it came, acknowledged
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

from bacpypes3.apdu import (
    APCISequence,
    ComplexAckPDU,
    ConfirmedRequestPDU,
    ReadAccessSpecification,
    ReadPropertyMultipleRequest,
    ReadPropertyRequest,
    SegmentAckPDU,
    encode_max_apdu_length_accepted,
    encode_max_segments_accepted,
)
from bacpypes3.basetypes import PropertyReference
from bacpypes3.ipv4.bvll import OriginalUnicastNPDU
from bacpypes3.npdu import NPDU
from bacpypes3.pdu import RemoteStation
from bacpypes3.primitivedata import ObjectIdentifier

COMPLEX_ACK, SEGMENT_ACK, ABORT = 0x30, 0x40, 0x70
SEGMENTED, MORE_FOLLOWS = 0x08, 0x04


def read_property(objid: str, prop: str, index: int | None = None) -> ReadPropertyRequest:
    return ReadPropertyRequest(
        objectIdentifier=ObjectIdentifier(objid), propertyIdentifier=prop, propertyArrayIndex=index
    )


def read_property_multiple(
    objects: Sequence[tuple[Any, Sequence[str | tuple[str, int]]]],
) -> ReadPropertyMultipleRequest:
    """An RPM of (object, [property or (property, array index)]) pairs."""
    return ReadPropertyMultipleRequest(
        listOfReadAccessSpecs=[
            ReadAccessSpecification(
                objectIdentifier=ObjectIdentifier(objid),
                listOfPropertyReferences=[
                    PropertyReference(propertyIdentifier=prop)
                    if isinstance(prop, str)
                    else PropertyReference(propertyIdentifier=prop[0], propertyArrayIndex=prop[1])
                    for prop in props
                ],
            )
            for objid, props in objects
        ]
    )


def routed(
    network: int,
    node: int,
    request: APCISequence,
    *,
    invoke: int = 0,
    max_apdu: int = 1476,
    max_segments: int = 0,
    segmented_accepted: bool = False,
) -> bytes:
    """A confirmed request to node `node` on `network`, as a BACnet/IP datagram."""
    request.apduInvokeID, request.apduSeg, request.apduMor, request.apduSA = invoke, False, False, segmented_accepted
    request.apduMaxSegs = encode_max_segments_accepted(max_segments)
    request.apduMaxResp = encode_max_apdu_length_accepted(max_apdu)
    return _datagram(network, node, request.encode())


def segmented(
    network: int, node: int, request: APCISequence, *, invoke: int = 0, size: int = 1400, window: int = 16
) -> list[bytes]:
    """A confirmed request to node `node` on `network` in segments of `size` bytes of service data
    (the client accepts segmented answers of up to 16 segments of 1476 bytes)."""
    whole = request.encode()
    data = whole.pduData
    chunks = [data[start : start + size] for start in range(0, len(data), size)]
    datagrams = []
    for number, chunk in enumerate(chunks):
        segment = ConfirmedRequestPDU(whole.apduService, invoke)
        segment.apduSeg, segment.apduMor, segment.apduSA = True, number < len(chunks) - 1, True
        segment.apduMaxSegs = encode_max_segments_accepted(16)
        segment.apduMaxResp = encode_max_apdu_length_accepted(1476)
        segment.apduSeq, segment.apduWin = number % 256, window
        segment.put_data(chunk)
        datagrams.append(_datagram(network, node, segment))
    return datagrams


def segment_ack(network: int, node: int, invoke: int, sequence: int) -> bytes:
    """The client's Segment-ACK of segment `sequence` (and a window of one segment)."""
    return _datagram(network, node, SegmentAckPDU(False, False, invoke, sequence, 1))


def reassembled(apdus: Sequence[bytes]) -> APCISequence:
    """The Complex-ACK whose segments (or one whole APDU) these are, decoded by bacpypes3."""
    first = apdus[0]
    header = 5 if first[0] & SEGMENTED else 3
    ack = ComplexAckPDU(first[header - 1], first[1])
    ack.put_data(b"".join(apdu[header:] for apdu in apdus))
    return APCISequence.decode(ack)


def _datagram(network: int, node: int, apdu: Any) -> bytes:
    npdu = NPDU(apdu.encode().pduData)
    npdu.npduDADR, npdu.npduHopCount = RemoteStation(network, bytes([node])), 255
    return bytes(OriginalUnicastNPDU(npdu.encode().pduData).encode().pduData)


def apdu_offset(datagram: bytes | bytearray) -> int:
    """Where the APDU starts in a BACnet/IP datagram: after BVLL (4) and the NPDU header."""
    control, offset = datagram[5], 6
    if control & 0x20:  # destination network and address
        offset += 3 + datagram[offset + 2]
    if control & 0x08:  # source network and address
        offset += 3 + datagram[offset + 2]
    return offset + (1 if control & 0x20 else 0)  # hop count


class RawClient:
    """One UDP socket on loopback that sends datagrams as given and returns the answers."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self._target = ("127.0.0.1", port)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((host, 0))
        self._socket.setblocking(False)

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._socket.close()

    async def send(self, datagram: bytes) -> None:
        await asyncio.get_running_loop().sock_sendto(self._socket, datagram, self._target)

    async def receive(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self._socket, 65536), timeout)

    async def ask(self, datagram: bytes, timeout: float = 5.0) -> bytes:
        await self.send(datagram)
        return await self.receive(timeout)

    async def answer_in_segments(self, network: int, node: int, invoke: int, timeout: float = 5.0) -> list[bytes]:
        """Every APDU of the answer from node `node` on `network`: its segments, each acknowledged
        (a repeat again), or the one APDU of an unsegmented answer, an Error, Reject or Abort."""
        apdus: list[bytes] = []
        while True:
            apdu = await self.answer(timeout)
            if apdu[0] & 0xF0 != COMPLEX_ACK or not apdu[0] & SEGMENTED:
                return [apdu]
            if apdu[2] == len(apdus) % 256:  # the next one, not a repeat
                apdus.append(apdu)
            await self.send(segment_ack(network, node, invoke, apdu[2]))
            if not apdu[0] & MORE_FOLLOWS:
                return apdus

    async def answer(self, timeout: float = 5.0) -> bytes:
        """The next APDU that is not a Segment-ACK."""
        while True:
            datagram = await self.receive(timeout)
            apdu = datagram[apdu_offset(datagram) :]
            if apdu[0] & 0xF0 != SEGMENT_ACK:
                return apdu
