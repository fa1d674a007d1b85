"""Bounded requests where they enter the gateway (`fastpath.py`): size, reassembly, concurrent
segmented transactions.

bacpypes3 accepts a confirmed request of any size, evaluates an unsegmented one above the max APDU
it advertises, and reassembles a segmented one for as long as segments come (the sequence number
wraps), starting again from any segment of a transaction it does not know. `RequestLimits` looks at
each confirmed request before bacpypes3 does:

- an APDU larger than the advertised max APDU (`MAX_APDU`) is refused (Abort buffer-overflow)
  before it is evaluated;
- a segmented request is followed by client address, invoke ID and destination: its first segment
  needs a free place (`bacnet.max_segmented_requests` over the gateway and
  `bacnet.max_segmented_requests_per_client` per IP address, else Abort out-of-resources), and
  once its segments add up to more than the advertised max APDU x `bacnet.max_segments` it is
  refused (Abort buffer-overflow). A segment of a transaction that is not followed (refused, done,
  or silent for longer than `SEGMENT_TIMEOUT`) is dropped.

Every refusal is counted (`refused`, by reason) and reported in the log at most once a minute.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gateway.bacnet.ip_port import MAX_APDU  # every device advertises it
from gateway.logging import DropReport

__all__ = ["SEGMENT_TIMEOUT", "RequestLimits", "Verdict"]

#: Seconds a segmented request may stay silent; bacpypes3's server gives up after its
#: APDU_Segment_Timeout (1 s), so a transaction is never followed longer than bacpypes3 keeps it.
SEGMENT_TIMEOUT = 1.0
SEGMENTED_HEADER = 6  # type, max segments/APDU, invoke ID, sequence number, window, service choice


class Verdict(enum.StrEnum):
    """What the fast path does with a request: pass it to bacpypes3, drop it, or abort it (the values
    of the aborts are bacpypes3's AbortReason names)."""

    PASS = "pass"
    DROP = "drop"
    BUFFER_OVERFLOW = "bufferOverflow"
    OUT_OF_RESOURCES = "outOfResources"


@dataclass(slots=True)
class _Reassembly:
    client: str  # IP address
    next_sequence: int
    size: int
    heard: float  # monotonic time of the last segment


class RequestLimits:
    """The size and segmentation limits of the gateway's devices, and what they refused."""

    def __init__(self, max_segments: int, max_segmented: int, max_segmented_per_client: int) -> None:
        self.max_request = MAX_APDU * max_segments
        self.max_segmented = max_segmented
        self.max_segmented_per_client = max_segmented_per_client
        self.refused: Counter[Verdict] = Counter()
        self._report = DropReport("bacnet requests beyond the limits")
        self._reassembling: dict[tuple[Any, ...], _Reassembly] = {}

    def confirmed(self, apdu: memoryview, source: tuple[str, int], destination: Any) -> Verdict:
        """The verdict on a confirmed request APDU from `source` to `destination` (a hashable
        description of its network destination)."""
        if len(apdu) > MAX_APDU:
            return self._refuse(Verdict.BUFFER_OVERFLOW, source, f"APDU of {len(apdu)} bytes")
        if not apdu[0] & 0x08:  # not segmented
            return Verdict.PASS
        if len(apdu) < SEGMENTED_HEADER:
            return Verdict.PASS  # malformed: bacpypes3 counts it
        key = (source, destination, apdu[2])
        sequence, more, size = apdu[3], bool(apdu[0] & 0x04), len(apdu) - SEGMENTED_HEADER
        now = time.monotonic()
        ongoing = self._reassembling.get(key)
        if ongoing is not None and now - ongoing.heard > SEGMENT_TIMEOUT:
            del self._reassembling[key]
            ongoing = None
        if ongoing is None:
            if sequence != 0:
                return self._refuse(Verdict.DROP, source, "segment of no ongoing request")
            return self._begin(key, source, size, more, now)
        if sequence != ongoing.next_sequence:
            return Verdict.PASS  # a repeat or out of order: bacpypes3 asks for the right one
        ongoing.size += size
        ongoing.next_sequence = (sequence + 1) % 256
        ongoing.heard = now
        if ongoing.size > self.max_request:
            del self._reassembling[key]
            return self._refuse(Verdict.BUFFER_OVERFLOW, source, f"segmented request beyond {self.max_request} bytes")
        if not more:
            del self._reassembling[key]
        return Verdict.PASS

    def _begin(self, key: tuple[Any, ...], source: tuple[str, int], size: int, more: bool, now: float) -> Verdict:
        self._drop_silent(now)
        client = source[0]
        if (
            len(self._reassembling) >= self.max_segmented
            or sum(1 for each in self._reassembling.values() if each.client == client) >= self.max_segmented_per_client
        ):
            return self._refuse(Verdict.OUT_OF_RESOURCES, source, "too many segmented requests at once")
        if more:
            self._reassembling[key] = _Reassembly(client, 1, size, now)
        return Verdict.PASS

    def _drop_silent(self, now: float) -> None:
        for key in [key for key, each in self._reassembling.items() if now - each.heard > SEGMENT_TIMEOUT]:
            del self._reassembling[key]

    def _refuse(self, verdict: Verdict, source: tuple[str, int], why: str) -> Verdict:
        self.refused[verdict] += 1
        self._report.drop(f"{source[0]}:{source[1]}", why)
        return verdict
