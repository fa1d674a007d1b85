"""Failed meter writes as BACnet errors (gateway/bacnet/errors.py)."""

from __future__ import annotations

import pytest

from gateway.bacnet.errors import write_error
from gateway.errors import GatewayError
from gateway.nodes.errors import (
    LineUnavailable,
    MeterRefused,
    NodeUnavailable,
    NotWritable,
    OutOfRange,
    UnknownTarget,
    WriteRefused,
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OutOfRange("x"), ("property", "valueOutOfRange")),
        (NotWritable("x"), ("property", "writeAccessDenied")),
        (UnknownTarget("x"), ("object", "unknownObject")),
        (NodeUnavailable("x"), ("communication", "timeout")),
        (MeterRefused(0x03, "x"), ("property", "valueOutOfRange")),
        (MeterRefused(0x02, "x"), ("property", "writeAccessDenied")),
        (MeterRefused(0x04, "x"), ("device", "operationalProblem")),
        (LineUnavailable("x"), ("device", "deviceBusy")),
        (WriteRefused("scale not known yet"), ("device", "operationalProblem")),
        (GatewayError("x"), ("device", "operationalProblem")),
    ],
)
def test_write_errors(error, expected) -> None:
    converted = write_error(error)
    assert (converted.errorClass, converted.errorCode) == expected
