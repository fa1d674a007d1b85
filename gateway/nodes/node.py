"""A meter node: one Modbus address of a BCPM board, its poll plan, cache and health."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.nodes.cache import NodeCache
from gateway.nodes.plan import PollPlan
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import PointMap

PROBE_BACKOFF_START = 1.0  # seconds until the first probe of an offline node
PROBE_BACKOFF_MAX = 60.0


@dataclass(slots=True)
class Health:
    """Mutated only by the poller (bus thread); faces read single fields."""

    online: bool = True
    consecutive_failures: int = 0
    last_success: float | None = None  # wall-clock time of the last transaction the node answered
    last_error: str = ""
    next_probe: float = 0.0  # monotonic time of the next probe while offline
    backoff: float = PROBE_BACKOFF_START
    transactions: int = 0
    failures: int = 0
    went_offline: int = 0


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
