"""Failed meter writes as BACnet errors (gateway/bacnet/errors.py)."""

from __future__ import annotations

import pytest

from gateway.bacnet.errors import write_error
from gateway.bus import BusClosed, BusOverloaded, CorruptReply, ExceptionReply, NoResponse
from gateway.errors import GatewayError
from gateway.nodes.service import NotWritable, OutOfRange, UnknownTarget, WriteRefused


@pytest.mark.parametrize(("error", "expected"), [
    (OutOfRange("x"), ("property", "valueOutOfRange")),
    (NotWritable("x"), ("property", "writeAccessDenied")),
    (UnknownTarget("x"), ("object", "unknownObject")),
    (NoResponse("x"), ("communication", "timeout")),
    (CorruptReply("x"), ("communication", "timeout")),
    (ExceptionReply(0x03), ("property", "valueOutOfRange")),
    (ExceptionReply(0x02), ("property", "writeAccessDenied")),
    (ExceptionReply(0x04), ("device", "operationalProblem")),
    (BusOverloaded("x"), ("device", "deviceBusy")),
    (BusClosed("x"), ("device", "deviceBusy")),
    (WriteRefused("scale not known yet"), ("device", "operationalProblem")),
    (GatewayError("x"), ("device", "operationalProblem")),
])
def test_write_errors(error, expected) -> None:
    converted = write_error(error)
    assert (converted.errorClass, converted.errorCode) == expected
