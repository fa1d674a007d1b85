"""The panel view of a node (gateway/web/panel.py): its layout, each circuit's state, and the live
API over HTTPS with its ETag."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from gateway.nodes.cache import Quality
from gateway.pointmap import load
from gateway.web.panel import NEAR_MARGIN, Panels, rows
from tests.support import StillCache, eventually

PM = load()
PANELS = Panels(PM)


def register(key: str, group: str, channel: int | None = None) -> int:
    return next(p.register for p in PM.points if p.key == key and p.group == group and p.channel == channel)


@dataclass
class Health:
    online: bool = True


@dataclass
class Node:
    """A node view with a board set up as an installer would: 20 A breakers, High alarms at 60 % and
    70 %, the non-latching one at 60 %."""

    address: int = 1
    cache: StillCache = field(default_factory=StillCache)
    health: Health = field(default_factory=Health)

    def __post_init__(self) -> None:
        for key, value in (("threshold_high_high", 70.0), ("threshold_high", 60.0), ("threshold_nl_high", 60.0)):
            self.set(register(key, "setup"), value)
        for channel in range(1, 47):
            self.set(register("breaker_size", "setup", channel), 20.0)
            self.set(register("alarm_status", "alarms", channel), 0)

    def set(self, at: int, value: float | None, quality: Quality = Quality.GOOD) -> None:
        self.cache.values[at] = (value, quality)

    def amps(self, channel: int, value: float | None, quality: Quality = Quality.GOOD) -> None:
        self.set(register("current", "aux" if channel > 42 else "branch", channel), value, quality)


def states(node: Node) -> dict[int, str]:
    view = PANELS.of(node, {})
    return {c["channel"]: c["state"] for c in view["circuits"] + view["mains"]}


def test_the_branch_circuits_lie_as_in_the_breaker_panel_odd_left_even_right() -> None:
    assert rows()[:2] == [(1, 2), (3, 4)] and rows()[-1] == (41, 42) and len(rows()) == 21


def test_each_circuit_is_in_the_first_state_that_applies() -> None:
    node = Node()
    node.amps(1, 5.0)  # 25 % of its breaker
    node.amps(2, 10.0)  # 50 %: within NEAR_MARGIN of the 60 % threshold
    node.amps(3, 13.0)
    node.set(register("alarm_status", "alarms", 3), 0x0102)  # High latched, and non-latching High on now
    node.amps(4, 5.0)
    node.set(register("alarm_status", "alarms", 4), 0x0002)  # High latched, the condition gone
    node.amps(5, 0.0)
    node.set(register("breaker_size", "setup", 5), 0.0)  # a spare
    node.amps(6, None, Quality.NO_DATA)
    node.amps(7, 5.0)
    node.set(register("alarm_status", "alarms", 7), 0x0010)  # latching OFF state declared: not an alarm
    found = states(node)
    assert NEAR_MARGIN == 10.0
    assert [found[c] for c in range(1, 8)] == ["normal", "near", "alarm", "latched", "spare", "no-data", "normal"]
    assert PANELS.of(node, {})["circuits"][2]["alarms"] == "High, High latched"  # the hover text says which
    node.health.online = False
    for channel in range(1, 8):  # the last values stay, marked stale
        node.amps(channel, 5.0, Quality.STALE)
    offline = PANELS.of(node, {})
    assert {c["state"] for c in offline["circuits"]} == {"stale"} and offline["circuits"][0]["amps"] == 5.0


def test_near_follows_the_lowest_high_threshold_that_is_on_and_none_when_all_are_off() -> None:
    node = Node()
    node.amps(1, 13.0)  # 65 %
    node.set(register("threshold_high", "setup"), 0.0)  # off
    node.set(register("threshold_nl_high", "setup"), 0.0)
    view = PANELS.of(node, {})
    assert (view["high_threshold"], view["near_from"]) == (70.0, 60.0)
    assert view["circuits"][0]["state"] == "near"
    node.set(register("threshold_high_high", "setup"), 0.0)
    view = PANELS.of(node, {})
    assert view["high_threshold"] is None and view["circuits"][0]["state"] == "normal"


def test_a_circuit_shows_its_share_of_the_breaker_its_name_and_the_mains_their_phase() -> None:
    node = Node()
    node.amps(7, 9.0)
    node.set(register("kw", "branch", 7), 1.9)
    node.amps(43, 150.0)
    node.set(register("breaker_size", "setup", 43), 225.0)
    view = PANELS.of(node, {7: "Rack A12 PDU A"})
    assert view["circuits"][6] == {
        "channel": 7,
        "name": "Rack A12 PDU A",
        "amps": 9.0,
        "kw": 1.9,
        "breaker": 20.0,
        "share": 45.0,
        "state": "normal",
        "alarms": "",
    }
    assert [m["label"] for m in view["mains"]] == ["Phase 1", "Phase 2", "Phase 3", "Neutral"]
    assert view["mains"][0]["share"] == 66.7


async def test_the_panel_page_and_its_api_show_a_circuit_going_into_alarm_and_an_unchanged_panel_costs_a_304(
    web_site,
) -> None:
    site = await web_site(1)
    panel = site.line.panel(1)
    node = site.gateway.nodes.nodes[1]
    alarm_7 = PM.find("alarm_status", group="alarms", channel=7)
    await eventually(lambda: site.gateway.nodes.poller.cycles >= 2, what="every block read (slow ones too)")
    await site.gateway.nodes.name_circuits(1, {7: "Rack A12 <PDU>"})
    client = await site.logged_in()
    async with client:
        async with client.get("/nodes/1") as reply:
            page = await reply.text()
        assert reply.status == 200 and "panel.js" in page
        assert re.search(r'id="c7" title="Ch 7 Rack A12 &lt;PDU&gt;: 0\.0 A', page), "named and escaped"
        assert page.index('id="c1"') < page.index('id="c2"') < page.index('id="c3"')  # row by row

        async def view(etag: str | None = None) -> tuple[int, str, dict]:
            headers = {"If-None-Match": etag} if etag else {}
            async with client.get("/api/nodes/1/panel", headers=headers) as reply:
                body = await reply.json() if reply.status == 200 else {}
                return reply.status, reply.headers["etag"], body

        status, etag, body = await view()
        assert status == 200 and body["refresh_s"] >= 1 and body["panel"]["circuits"][6]["name"] == "Rack A12 <PDU>"
        assert (await view(etag))[0] == 304  # the simulated meter draws nothing: nothing changed
        panel.write(165, [0, 0, 0, 0, 0, 30])  # alarms latch at once
        panel.set_current(7, 13.0)  # 65 % of the 20 A breaker: over the 60 % High threshold
        await eventually(lambda: (node.cache.reading(alarm_7).value or 0) & 0x0100, what="in alarm")
        await asyncio.sleep(0.3)  # the current's read, in the same cycle
        status, _, body = await view(etag)
        assert status == 200 and body["panel"]["circuits"][6]["state"] == "alarm"
    async with site.client() as stranger, stranger.get("/api/nodes/1/panel") as reply:
        assert reply.status == 401
