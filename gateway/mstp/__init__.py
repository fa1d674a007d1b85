"""BACnet MS/TP (ASHRAE 135 clause 9): the data link of the upstream port, for the BACnet router.

`frames` encodes frames and their CRCs, `receiver` is the receive state machine, `master` the
master node state machine (token passing, Poll For Master, replies), `replies` finds the reply to
a Data Expecting Reply frame, and `link` runs them on a serial port on a thread of their own.
"""

from gateway.mstp.frames import BROADCAST, Frame, FrameType, encode
from gateway.mstp.link import MstpLink, MstpSettings
from gateway.mstp.master import MasterCounts, MasterNode, Outgoing, Received, State
from gateway.mstp.receiver import Invalid, Receiver

__all__ = [
    "BROADCAST",
    "Frame",
    "FrameType",
    "Invalid",
    "MasterCounts",
    "MasterNode",
    "MstpLink",
    "MstpSettings",
    "Outgoing",
    "Received",
    "Receiver",
    "State",
    "encode",
]
