"""The BACnet error a client gets when a write to a meter point fails.

    raise write_error(OutOfRange("CT size accepts 0-32767"))
    # ExecutionError property / value-out-of-range

A refused write (`WriteRefused`) never reached the meter; an unavailable node or line means it
may not have.
"""

from __future__ import annotations

from bacpypes3.errors import ExecutionError

from gateway.errors import GatewayError
from gateway.nodes.errors import LineUnavailable, MeterRefused, NodeUnavailable, NotWritable, OutOfRange, UnknownTarget

__all__ = ["write_error"]

# What the meter's own Modbus exception means for the client.
_METER_REFUSALS = {
    0x01: "writeAccessDenied",  # illegal function
    0x02: "writeAccessDenied",  # illegal data address
    0x03: "valueOutOfRange",  # illegal data value
}

# In order: the first matching type wins.
_ERRORS: tuple[tuple[type[GatewayError], str, str], ...] = (
    (OutOfRange, "property", "valueOutOfRange"),
    (NotWritable, "property", "writeAccessDenied"),
    (UnknownTarget, "object", "unknownObject"),
    (NodeUnavailable, "communication", "timeout"),
    (LineUnavailable, "device", "deviceBusy"),
)


def write_error(error: GatewayError) -> ExecutionError:
    """The BACnet error class and code for a failed write (operational-problem if nothing fits)."""
    if isinstance(error, MeterRefused) and error.code in _METER_REFUSALS:
        return ExecutionError("property", _METER_REFUSALS[error.code])
    for kind, error_class, error_code in _ERRORS:
        if isinstance(error, kind):
            return ExecutionError(error_class, error_code)
    return ExecutionError("device", "operationalProblem")
