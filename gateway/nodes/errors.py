"""What a face gets when a write or a pass-through request does not succeed.

The node layer speaks for the bus: a face never sees a bus error, only these.

    try:
        await nodes.write_value(3, 2001, 200)
    except OutOfRange:
        ...  # refused by the point map: nothing was sent
    except MeterRefused as refused:
        ...  # the meter answered with Modbus exception refused.code
    except NodeUnavailable:
        ...  # no answer (or a garbled one), offline, or not found by discovery
    except LineUnavailable:
        ...  # the serial line is stopped or too busy to take the request
"""

from __future__ import annotations

from gateway.errors import GatewayError


class NodeError(GatewayError):
    """A write or pass-through request that did not succeed."""


class WriteRefused(NodeError):
    """A write the point map does not allow; nothing was sent to the meter."""


class UnknownTarget(WriteRefused):
    pass


class NotWritable(WriteRefused):
    pass


class OutOfRange(WriteRefused):
    pass


class ScanRefused(NodeError):
    """A rescan asked for where the gateway never scans (locked mode)."""


class NodeUnavailable(NodeError):
    """The meter did not answer, or not validly; or it is offline or was not found by discovery."""


class LineUnavailable(NodeError):
    """The serial line cannot take the request: the bus is stopped, or its queue is full."""


class MeterRefused(NodeError):
    """The meter answered with a Modbus exception; `code` is the exception code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)
