"""A meter node: one Modbus address of a BCPM board, its poll plan, cache and health."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.nodes.cache import NodeCache
from gateway.nodes.plan import PollPlan
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import PointMap

PROBE_BACKOFF_START = 1.0  # seconds until the first probe of an offline node
PROBE_BACKOFF_MAX = 60.0


@dataclass(slots=True)
class Health:
    """How a node answers. Changed only through these methods, on the bus thread (by the
    :class:`~gateway.nodes.client.NodeClient`, which judges every transaction); faces read single fields."""

    online: bool = True
    consecutive_failures: int = 0
    last_success: float | None = None  # wall-clock time of the last transaction the node answered
    last_error: str = ""
    next_probe: float = 0.0  # monotonic time of the next probe while offline
    backoff: float = PROBE_BACKOFF_START
    transactions: int = 0
    failures: int = 0
    went_offline: int = 0

    def attempted(self) -> None:
        self.transactions += 1

    def answered(self) -> None:
        self.consecutive_failures = 0
        self.last_success = time.time()

    def missed(self) -> None:
        """One attempt got silence or a corrupt reply (retried, or judged by `failed`)."""
        self.failures += 1

    def failed(self, error: str, offline_after: int, *, force: bool = False) -> bool:
        """A transaction failed for good; whether the node went offline by it (`force`: whatever its count)."""
        self.consecutive_failures += 1
        self.last_error = error
        if not self.online or not (force or self.consecutive_failures >= offline_after):
            return False
        self.online = False
        self.went_offline += 1
        self.backoff = PROBE_BACKOFF_START
        self.next_probe = time.monotonic() + self.backoff
        return True

    def probe_failed(self, error: str) -> None:
        """An offline node's probe went unanswered: the next one waits twice as long."""
        self.backoff = min(self.backoff * 2, PROBE_BACKOFF_MAX)
        self.next_probe = time.monotonic() + self.backoff
        self.last_error = error

    def replaced(self, detail: str) -> None:
        """Another meter answers at the node's address: kept offline, asked again rarely."""
        self.last_error = detail
        self.next_probe = time.monotonic() + PROBE_BACKOFF_MAX

    def restored(self) -> None:
        self.online = True
        self.backoff = PROBE_BACKOFF_START
        self.last_error = ""

    def probe_now(self) -> None:
        """The line is back: probe at once, from the shortest back-off."""
        self.next_probe = 0.0
        self.backoff = PROBE_BACKOFF_START


@dataclass(slots=True)
class Node:
    profile: NodeProfile
    plan: PollPlan
    cache: NodeCache
    health: Health = field(default_factory=Health)
    slow_cursor: int = 0  # next slow read to run
    needs_full_sweep: bool = True  # read every slow block in the first cycle

    @classmethod
    def create(cls, profile: NodeProfile, plan: PollPlan, pointmap: PointMap) -> Node:
        return cls(profile, plan, NodeCache(pointmap, profile.model, plan))

    @property
    def address(self) -> int:
        return self.profile.address
