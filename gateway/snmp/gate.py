"""Who may talk to the agent, and how often: snmp.allow and snmp.rate_limit.

Both are decided on the source address alone, before a datagram is decoded, so a refused one
costs a few µs. Refusals are counted and reported once a minute per kind (`DropReport`): a flood
must not turn into a flood of log lines. A request the fast path leaves to pysnmp costs about ten
times the CPU (~1-3 ms), and any source can send such requests (SNMPv1, unusual encodings), so
it counts as `SLOW_COST` requests toward the limit (`charge`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Network, ip_address

from gateway.logging import DropReport

_KNOWN_SOURCES = 1024  # allow decisions remembered; forgotten all at once past that
SLOW_COST = 10  # requests that one request answered by pysnmp counts as


class Gate:
    def __init__(
        self, allow: tuple[IPv4Network, ...], rate_limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.allow = allow  # empty: any source
        self.rate_limit = rate_limit  # requests per source in each second
        self.refused = DropReport("snmp datagrams from sources not in snmp.allow")
        self.limited = DropReport("snmp datagrams over snmp.rate_limit")
        self._clock = clock
        self._allowed: dict[str, bool] = {}
        self._second = 0
        self._counts: dict[str, int] = {}  # datagrams per source in the current second

    def admit(self, source: str) -> bool:
        if self.allow and not self._is_allowed(source):
            self.refused.drop(source, "not in snmp.allow")
            return False
        second = int(self._clock())
        if second != self._second:  # a new second: every source starts again (bounded state)
            self._second = second
            self._counts.clear()
        count = self._counts[source] = self._counts.get(source, 0) + 1
        if count > self.rate_limit:
            self.limited.drop(source, f"more than {self.rate_limit} in one second")
            return False
        return True

    def charge(self, source: str, requests: int) -> None:
        """Count ``requests`` more for ``source`` in the current second."""
        self._counts[source] = self._counts.get(source, 0) + requests

    def _is_allowed(self, source: str) -> bool:
        allowed = self._allowed.get(source)
        if allowed is None:
            if len(self._allowed) >= _KNOWN_SOURCES:
                self._allowed.clear()
            address = ip_address(source)
            allowed = self._allowed[source] = any(address in network for network in self.allow)
        return allowed
