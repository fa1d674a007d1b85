"""pysnmp's UDP transport, hardened: a datagram pysnmp itself fails on is dropped and counted.

pyasn1 lets a TypeError out of BER decoding for some malformed messages (fuzzing found
``77 06 f8 5d``; pysnmp only expects PyAsn1Error there), and asyncio would log each one as
"Exception in callback" with a traceback, so any peer could fill the journal. Here such a datagram
is dropped and counted, and a warning, at most once a minute, says how many and the last error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from pysnmp.carrier.asyncio.dgram import udp

log = structlog.get_logger(__name__)

REPORT_EVERY = 60.0  # seconds between warnings about dropped datagrams


class GuardedUdpTransport(udp.UdpAsyncioTransport):
    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self._reported_at: float | None = None

    def register_callback(self, cbFun: Callable[..., None]) -> None:  # noqa: N803 - pysnmp's name
        def guarded(transport: Any, address: tuple[str, int], datagram: bytes) -> None:
            try:
                cbFun(transport, address, datagram)
            except Exception as error:  # the datagram is lost, the agent goes on
                self._drop(address, error)

        super().register_callback(guarded)

    def _drop(self, address: tuple[str, int], error: Exception) -> None:
        self.dropped += 1
        log.debug("snmp datagram dropped", source=f"{address[0]}:{address[1]}", error=repr(error))
        now = time.monotonic()
        if self._reported_at is None or now - self._reported_at >= REPORT_EVERY:
            self._reported_at = now
            log.warning("snmp datagrams dropped: pysnmp failed on them", dropped=self.dropped,
                        last_source=f"{address[0]}:{address[1]}", last_error=repr(error))
