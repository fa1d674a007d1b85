"""pysnmp's UDP transport with the agent's front door: who may send, how often, and the fast path.

Every datagram passes `Gate` first (snmp.allow, snmp.rate_limit): one refused is dropped and
counted. Then the fast path (gateway.snmp.fast) answers the reads it fully understands, before
pysnmp sees them; pysnmp gets the rest (each counting as `SLOW_COST` requests toward the limit).

pyasn1 lets a TypeError out of BER decoding for some malformed messages (fuzzing found
``77 06 f8 5d``; pysnmp only expects PyAsn1Error there), and asyncio would log each one as
"Exception in callback" with a traceback, so any peer could fill the journal. Here such a datagram
is dropped and counted, and a warning, at most once a minute, says how many and the last error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from pysnmp.carrier.asyncio.dgram import udp

from gateway.logging import DropReport
from gateway.snmp.fast import FastResponder
from gateway.snmp.gate import SLOW_COST, Gate

log = structlog.get_logger(__name__)


class GuardedUdpTransport(udp.UdpAsyncioTransport):
    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate
        self.fast: FastResponder | None = None  # set once the agent serves
        self.drops = DropReport("snmp datagrams the agent failed on")

    def datagram_received(self, datagram: bytes, address: Any) -> None:
        source = address[0]
        if not self.gate.admit(source):
            return
        fast = self.fast
        if fast is not None:
            try:
                answer = fast.answer(datagram, source)
            except Exception as error:  # a bug: the datagram is lost, the agent goes on
                self._drop(address, error)
                return
            if answer is not None:
                if answer and self.transport is not None:
                    self.transport.sendto(answer, address)
                return
        self.gate.charge(source, SLOW_COST - 1)
        super().datagram_received(datagram, address)

    def register_callback(self, cbFun: Callable[..., None]) -> None:  # noqa: N803 - pysnmp's name
        def guarded(transport: Any, address: tuple[str, int], datagram: bytes) -> None:
            try:
                cbFun(transport, address, datagram)
            except Exception as error:  # the datagram is lost, the agent goes on
                self._drop(address, error)

        super().register_callback(guarded)

    def _drop(self, address: tuple[str, int], error: Exception) -> None:
        log.debug("snmp datagram dropped", source=f"{address[0]}:{address[1]}", error=repr(error))
        self.drops.drop(f"{address[0]}:{address[1]}", repr(error))
