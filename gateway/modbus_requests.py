"""What the gateway answers to a Modbus request for a meter, whatever carries the frames.

The Modbus TCP face and the upstream port's Modbus RTU slave call the same handler, so both serve
the same cache with the same register map and the same exceptions; each adds only its framing.
Unit = the meter's Modbus address. A read (FC03/FC04) of registers the poller keeps fresh is
answered from the cache while every register in it is younger than ``cache_max_age``; any other
request, of any function code, goes to the meter through the node API in its turn (pass-through
priority: behind writes, taking turns with polling while both wait), and a write that succeeds is
read back so every face sees it.

Errors, as a Modbus gateway reports them: a node that does not answer, is offline, or was not
found by discovery gives exception 0x0B (gateway target device failed to respond), the last two
without using the line; a unit no serial slave can have, or a stopped or overloaded line, 0x0A
(gateway path unavailable); a standard request that does not parse 0x03; a meter's own exception
goes back as it came. With ``read_only`` only the read function codes (`READ_FUNCTIONS`) pass;
any other gets 0x01 and never reaches the line.

    requests = ModbusRequests(nodes, cache_max_age=2.0, read_only=False)
    counts = RequestCounts()
    reply = await requests.answer(1, bytes.fromhex("0305370002"), counts)   # b"\\x03\\x04...", counted
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from gateway.modbus import (
    ENCAPSULATED_INTERFACE,
    EXCEPTION_BIT,
    GATEWAY_PATH_UNAVAILABLE,
    GATEWAY_TARGET_FAILED,
    GET_COMM_EVENT_COUNTER,
    GET_COMM_EVENT_LOG,
    ILLEGAL_FUNCTION,
    MAX_READ_REGISTERS,
    READ_COILS,
    READ_DISCRETE_INPUTS,
    READ_EXCEPTION_STATUS,
    READ_FIFO_QUEUE,
    READ_FILE_RECORD,
    READ_HOLDING_REGISTERS,
    READ_INPUT_REGISTERS,
    REPORT_SERVER_ID,
    UNIT_ADDRESSES,
)
from gateway.nodes.api import NodeAPI
from gateway.nodes.errors import LineUnavailable, MeterRefused, NodeUnavailable

#: What a read-only face lets through: reads of coils, inputs and registers, exception status,
#: comm event counter and log, Report Slave ID, file records, FIFO queue; 43 only as Read Device ID.
READ_FUNCTIONS = frozenset(
    {
        READ_COILS,
        READ_DISCRETE_INPUTS,
        READ_HOLDING_REGISTERS,
        READ_INPUT_REGISTERS,
        READ_EXCEPTION_STATUS,
        GET_COMM_EVENT_COUNTER,
        GET_COMM_EVENT_LOG,
        REPORT_SERVER_ID,
        READ_FILE_RECORD,
        READ_FIFO_QUEUE,
    }
)
READ_DEVICE_ID = bytes([ENCAPSULATED_INTERFACE, 0x0E])

_RESPONSES = {READ_HOLDING_REGISTERS: ReadHoldingRegistersResponse, READ_INPUT_REGISTERS: ReadInputRegistersResponse}


class Counts(Protocol):
    """Where a face counts how its requests were answered (per master, or for the port)."""

    requests: int
    cache_hits: int
    bus_trips: int  # requests that went to the meter, counted as they leave (whatever comes back)
    exceptions: int
    refused_writes: int  # answered 0x01 by a read-only face


@dataclass(slots=True)
class RequestCounts:
    requests: int = 0
    cache_hits: int = 0
    bus_trips: int = 0
    exceptions: int = 0
    refused_writes: int = 0


class ModbusRequests:
    """Answers Modbus request PDUs for the meters: from the cache, or through the node API."""

    def __init__(self, nodes: NodeAPI, *, cache_max_age: float, read_only: bool) -> None:
        self.nodes = nodes
        self.cache_max_age = cache_max_age
        self.read_only = read_only
        self._decoder = DecodePDU(is_server=True)

    async def answer(self, unit: int, pdu: bytes, counts: Counts) -> bytes:
        """The reply PDU (a normal reply or an exception) to request `pdu` for `unit`, counted in `counts`."""
        counts.requests += 1
        if self.read_only and not reads_only(pdu):
            counts.refused_writes += 1
            return self._refused(pdu, ILLEGAL_FUNCTION, counts)
        cached = self._from_cache(unit, pdu)
        if cached is not None:
            counts.cache_hits += 1
            return cached
        if unit not in UNIT_ADDRESSES:
            return self._refused(pdu, GATEWAY_PATH_UNAVAILABLE, counts)  # no device lives there on a serial bus
        counts.bus_trips += 1
        try:
            return await self.nodes.passthrough(unit, pdu)
        except MeterRefused as error:
            code = error.code
        except NodeUnavailable:
            code = GATEWAY_TARGET_FAILED
        except LineUnavailable:
            code = GATEWAY_PATH_UNAVAILABLE
        return self._refused(pdu, code, counts)

    @staticmethod
    def _refused(pdu: bytes, code: int, counts: Counts) -> bytes:
        counts.exceptions += 1
        return exception_pdu(pdu[0], code)

    def _from_cache(self, unit: int, pdu: bytes) -> bytes | None:
        """The reply to a read of fresh, polled registers; None when the meter must answer."""
        response = _RESPONSES.get(pdu[0])
        node = self.nodes.nodes.get(unit)
        if response is None or node is None or not node.health.online:
            return None
        request = self._decoder.decode(pdu)
        if request is None or not 1 <= request.count <= MAX_READ_REGISTERS:
            return None
        found = node.cache.block(range(request.address + 1, request.address + 1 + request.count))
        if found is None or found[1] < time.time() - self.cache_max_age:
            return None
        reply = response(registers=found[0])
        return reply.function_code.to_bytes(1, "big") + reply.encode()


def exception_pdu(function: int, code: int) -> bytes:
    """The exception reply to a request of `function`."""
    return bytes([(function | EXCEPTION_BIT) & 0xFF, code])


def reads_only(pdu: bytes) -> bool:
    """Whether a request only reads (a read-only face lets it pass)."""
    return pdu[0] in READ_FUNCTIONS or pdu[:2] == READ_DEVICE_ID
