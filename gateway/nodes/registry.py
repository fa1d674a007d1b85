"""The known nodes: one registry, held by reference by every part of the node service.

The poller polls `nodes`, the scanner skips their addresses, writes look their targets up, and the
faces read them through the node API. Only the bus thread changes the registry, and never in place:
each change puts a new mapping in `nodes`, so a face on the main loop that iterates the old one
finishes with it undisturbed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from gateway.bus import LineSettings
from gateway.nodes.node import Node
from gateway.nodes.plan import LineCost, PollPlan, poll_plan
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import PointMap

#: What the planner assumes a meter needs to start answering (the BCPM's is not published).
ASSUMED_TURNAROUND = 0.005


def line_cost(line: LineSettings) -> LineCost:
    return LineCost(char_time=line.wire_time(1), fixed=ASSUMED_TURNAROUND + line.silence)


class NodeRegistry:
    """The meter nodes by Modbus address, each with the poll plan of its model at the line's speed."""

    def __init__(self, pointmap: PointMap, line: Callable[[], LineSettings]) -> None:
        self.pointmap = pointmap
        self._line = line  # the line settings now (found later with ``serial.baudrate = "auto"``)
        self._plans: dict[str, PollPlan] = {}  # by model
        self.nodes: Mapping[int, Node] = {}

    def profiles(self) -> dict[int, NodeProfile]:
        return {address: node.profile for address, node in self.nodes.items()}

    def add(self, profiles: Iterable[NodeProfile]) -> None:
        """Serve these meters (a profile at a known address replaces that node)."""
        cost = line_cost(self._line())
        nodes = dict(self.nodes)
        for profile in profiles:
            if profile.model not in self._plans:
                self._plans[profile.model] = poll_plan(self.pointmap, profile.model, cost)
            nodes[profile.address] = Node.create(profile, self._plans[profile.model], self.pointmap)
        self.nodes = nodes

    def remove(self, addresses: Iterable[int]) -> None:
        gone = set(addresses)
        self.nodes = {address: node for address, node in self.nodes.items() if address not in gone}
