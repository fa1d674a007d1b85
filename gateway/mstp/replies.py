"""Which NPDU answers a confirmed request, so a node can send it as the reply to a Data Expecting Reply
frame (ASHRAE 135 clause 9.5.6.10: how a node knows a reply is ready is a local matter).

The reply must go back to where the request came from (the request's source network address is
the reply's destination) and be a reply PDU (SimpleACK, ComplexACK, Error, Reject, Abort or
SegmentACK) with the request's invoke ID (and service, where the reply names one). The network
layer headers are read by bacpypes3.

    answers(request_npdu, reply_npdu)   # True: send it now, in the reply slot
"""

from __future__ import annotations

from bacpypes3.errors import DecodingError
from bacpypes3.npdu import NPCI
from bacpypes3.pdu import PDU, Address

CONFIRMED_REQUEST = 0x0
# Reply PDU types, and where their service choice is (None: they name none).
_SERVICE_AT = {0x2: 2, 0x3: 2, 0x4: None, 0x5: 2, 0x6: None, 0x7: None}
_SEGMENTED = 0x08


def answers(request: bytes, reply: bytes) -> bool:
    """Whether NPDU `reply` is the answer to the confirmed request NPDU `request`."""
    asked, answered = _application(request), _application(reply)
    if asked is None or answered is None:
        return False
    (source, _, apdu), (_, destination, response) = asked, answered
    if len(apdu) < 3 or apdu[0] >> 4 != CONFIRMED_REQUEST or len(response) < 2 or source != destination:
        return False
    service_at = _SERVICE_AT.get(response[0] >> 4, -1)
    if service_at == -1 or response[1] != apdu[2]:
        return False
    if service_at is None:
        return True
    asked_service = _octet(apdu, 5 if apdu[0] & _SEGMENTED else 3)
    return asked_service is not None and asked_service == _octet(
        response, service_at + 2 if response[0] & _SEGMENTED else service_at
    )


def _octet(data: bytes, index: int) -> int | None:
    return data[index] if index < len(data) else None


def _application(npdu: bytes) -> tuple[Address | None, Address | None, bytes] | None:
    """An application NPDU's source and destination network addresses and its APDU; None for others."""
    pdu = PDU(npdu)
    try:
        npci = NPCI.decode(pdu)
    except (DecodingError, IndexError, ValueError):
        return None
    if npci.npduNetMessage is not None:
        return None
    return npci.npduSADR, npci.npduDADR, bytes(pdu.pduData)
