"""What the MS/TP tests put on a line beside the gateway's data link: rusty-bacnet stations (an
independent BACnet stack with an MS/TP endpoint of its own), a small network layer on our link that
answers ReadProperty (encoded and decoded by bacpypes3), and what arrived."""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bacpypes3.apdu import APDU, ReadPropertyACK, ReadPropertyRequest, complex_ack_types, confirmed_request_types
from bacpypes3.constructeddata import Any as AnyValue
from bacpypes3.npdu import NPDU
from bacpypes3.pdu import PDU
from bacpypes3.primitivedata import ObjectIdentifier, Real

from gateway.mstp import MstpLink, MstpSettings, Received
from gateway.serialport import PortSettings

try:
    import rusty_bacnet
except ImportError:  # pragma: no cover - the [test] extra installs it
    rusty_bacnet = None

BAUD = 38400


def rusty() -> Any:
    if rusty_bacnet is None:
        import pytest

        pytest.fail("rusty-bacnet is not installed (the [test] extra pins it)")
    return rusty_bacnet


def npdu_of(apdu: Any, *, expecting_reply: bool) -> bytes:
    npdu = NPDU(apdu.encode().encode().pduData)
    npdu.pduExpectingReply = expecting_reply
    return bytes(npdu.encode().pduData)


def read_property(invoke: int, objid: str = "analog-input,1", prop: str = "present-value") -> bytes:
    """A ReadProperty request NPDU."""
    request = ReadPropertyRequest(objectIdentifier=ObjectIdentifier(objid), propertyIdentifier=prop)
    request.apduInvokeID, request.apduSeg, request.apduMor, request.apduSA = invoke, False, False, False
    request.apduMaxSegs, request.apduMaxResp = 0, 5
    return npdu_of(request, expecting_reply=True)


def apdu_of(npdu: bytes) -> APDU:
    return APDU.decode(PDU(NPDU.decode(PDU(npdu)).pduData))


def read_value(npdu: bytes) -> tuple[int, float]:
    """The invoke ID and the REAL value of a ReadProperty-ACK NPDU."""
    apdu = apdu_of(npdu)
    ack = complex_ack_types[apdu.apduService].decode(apdu)
    return apdu.apduInvokeID, ack.propertyValue.cast_out(Real)


@dataclass
class NetworkLayer:
    """The upper layer of our link in the tests: answers ReadProperty of REAL values, keeps the rest."""

    values: dict[tuple[str, int], float] = field(default_factory=lambda: {("analog-input", 1): 42.5})
    link: MstpLink | None = None
    inbox: queue.Queue[Received] = field(default_factory=queue.Queue)
    answer: bool = True

    def __call__(self, received: Received) -> None:
        if received.expecting_reply and self.answer and self.link is not None:
            apdu = apdu_of(received.npdu)
            request = confirmed_request_types[apdu.apduService].decode(apdu)
            if isinstance(request, ReadPropertyRequest):
                objid = request.objectIdentifier
                ack = ReadPropertyACK(
                    objectIdentifier=objid,
                    propertyIdentifier=request.propertyIdentifier,
                    propertyValue=AnyValue(Real(self.values[(str(objid[0]), objid[1])])),
                )
                ack.apduInvokeID, ack.apduSeg, ack.apduMor = apdu.apduInvokeID, False, False
                self.link.send(received.source, npdu_of(ack, expecting_reply=False))
                return
        self.inbox.put(received)

    def next(self, timeout: float = 10.0, matching: Callable[[Received], bool] = lambda _: True) -> Received:
        while True:
            received = self.inbox.get(timeout=timeout)
            if matching(received):
                return received


def gateway_link(path: str, station: int, upper: NetworkLayer, *, echo: bool = False, **settings: Any) -> MstpLink:
    """Our data link on `path` at 38400 baud, started, with `upper` above it."""
    port = PortSettings(path, BAUD, echo=echo, section="upstream")
    link = MstpLink(MstpSettings(port, station, **settings), upper)
    upper.link = link
    link.start()
    return link
