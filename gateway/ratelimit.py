"""Token buckets by key: at most so many events a second for each source, in bounded bursts.

    limit = RateLimit(rate=10, burst=20)
    if not limit.allow("192.0.2.7"):
        ...  # refuse, and count the refusal

Each key's bucket holds up to `burst` tokens and refills at `rate` a second; an event takes one.
At most `max_keys` buckets are kept (the least recently used go first), so a flood of spoofed
sources costs a bounded amount of memory; a forgotten source starts again with a full bucket.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["RateLimit"]

MAX_KEYS = 4096


class RateLimit:
    def __init__(self, rate: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def allow(self, key: Hashable) -> bool:
        """Take a token from `key`'s bucket; False when it has none left."""
        now = time.monotonic()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed
