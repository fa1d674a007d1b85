"""pysnmp's UDP transport, hardened: a datagram pysnmp itself fails on is dropped and counted.

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

log = structlog.get_logger(__name__)


class GuardedUdpTransport(udp.UdpAsyncioTransport):
    def __init__(self) -> None:
        super().__init__()
        self.drops = DropReport("snmp datagrams pysnmp failed on")

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
