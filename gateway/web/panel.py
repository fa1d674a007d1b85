"""A node as a panel schedule: each CT channel's current against its breaker, and its state.

    panels = Panels(pointmap)          # once: where each quantity of each channel is
    panel = panels.of(node, names)
    panel["circuits"][6]     # {"channel": 7, "name": "Rack A12", "amps": 9.0, "kw": 1.9,
                             #  "breaker": 20, "share": 45.0, "state": "normal"}

Pure: it reads a node view as it stands (values and quality from the cache, no Reading objects
made) and the names users gave its circuits. Branch circuits 1-42 lie as in the breaker panel,
odd on the left and even on the right (`rows`); the AUX inputs 43-46, the mains, go on top with
the voltages and frequency. A circuit's state, first that applies:

- ``stale``: the node is offline (its last values shown);
- ``no-data``: no current now (the meter has none, or it was never read);
- ``alarm``: a non-latching alarm bit is on (the condition holds now);
- ``latched``: a latched alarm bit waits to be cleared (the condition may be gone);
- ``spare``: breaker size 0 (the installer's mark of a spare circuit);
- ``near``: at least `NEAR_MARGIN` points of its breaker below the lowest high-current threshold
  that is on (thresholds are a share of the breaker, a panel's for all its channels; 0 = off);
- ``normal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.nodes.api import NodeView
from gateway.nodes.cache import Quality
from gateway.pointmap import AUX_CIRCUITS, BRANCH_CIRCUITS, PointMap
from gateway.web.pages import MAINS, action_button, e, layout, node_tabs

__all__ = ["NEAR_MARGIN", "STATES", "Panels", "panel_page", "rows"]

NEAR_MARGIN = 10.0  # points of the breaker below the high threshold where a circuit is "near"
STATES = ("normal", "near", "alarm", "latched", "spare", "no-data", "stale")
NON_LATCHING = 0x0300  # b8 High, b9 Low: on while the condition holds
LATCHED = 0x000F  # b0-b3 High-High, High, Low, Low-Low (b4, OFF, is a state, not an alarm)
ALARMS = (
    (0x0100, "High"),
    (0x0200, "Low"),
    (0x0001, "High-High latched"),
    (0x0002, "High latched"),
    (0x0004, "Low latched"),
    (0x0008, "Low-Low latched"),
)
HIGH_THRESHOLDS = ("threshold_high_high", "threshold_high", "threshold_nl_high")


def rows() -> list[tuple[int, int]]:
    """The branch circuits as a breaker panel lays them out: (left, right) = (1, 2), (3, 4), ..."""
    return [(left, left + 1) for left in BRANCH_CIRCUITS[::2]]


class Panels:
    """Panel views of the nodes of one point map (where each quantity of each channel is, once)."""

    def __init__(self, pointmap: PointMap) -> None:
        def by_channel(key: str, *groups: str) -> dict[int, int]:
            return {p.channel: p.register for p in pointmap.points if p.key == key and p.group in groups and p.channel}

        self._current = by_channel("current", "branch", "aux")
        self._kw = by_channel("kw", "branch", "aux")
        self._breaker = by_channel("breaker_size", "setup")
        self._alarm = by_channel("alarm_status", "alarms")
        self._thresholds = [pointmap.find(key, group="setup").register for key in HIGH_THRESHOLDS]
        self._volts_ln = _phases(pointmap, "volts_ln")
        self._volts_ll = _phases(pointmap, "volts_ll")
        self._frequency = pointmap.find("frequency", group="voltage").register
        self._kw_total = pointmap.find("kw_total", group="aux").register

    def of(self, node: NodeView, names: Mapping[int, str]) -> dict[str, Any]:
        """The panel view of a node now (JSON-ready): mains and voltages, and each branch circuit."""
        cache, online = node.cache, node.health.online

        def value(register: int | None) -> float | None:
            if register is None:
                return None
            try:
                found, quality = cache.current(register)
            except KeyError:  # not a point of this model
                return None
            good = quality is Quality.GOOD or (quality is Quality.STALE and not online)
            return float(found) if good and isinstance(found, int | float) else None

        enabled = [t for t in (value(r) for r in self._thresholds) if t]
        high = min(enabled) if enabled else None

        def channel(number: int) -> dict[str, Any]:
            amps, breaker = value(self._current.get(number)), value(self._breaker.get(number))
            alarm = int(value(self._alarm.get(number)) or 0)
            share = None if amps is None or not breaker else round(100 * amps / breaker, 1)
            return {
                "channel": number,
                "name": names.get(number, ""),
                "amps": amps,
                "kw": value(self._kw.get(number)),
                "breaker": breaker,
                "share": share,
                "state": _state(online, amps, breaker, alarm, share, high),
                "alarms": ", ".join(name for bit, name in ALARMS if alarm & bit),
            }

        return {
            "address": node.address,
            "online": online,
            "high_threshold": high,
            "near_from": None if high is None else max(0.0, high - NEAR_MARGIN),
            "volts_ln": [value(r) for r in self._volts_ln],
            "volts_ll": [value(r) for r in self._volts_ll],
            "frequency": value(self._frequency),
            "kw_total": value(self._kw_total),
            "mains": [{**channel(number), "label": MAINS[number]} for number in AUX_CIRCUITS],
            "circuits": [channel(number) for number in BRANCH_CIRCUITS],
        }


def _phases(pointmap: PointMap, key: str) -> list[int]:
    return [p.register for p in sorted(pointmap.points, key=lambda p: p.phase or 0) if p.key == key]


def _state(
    online: bool, amps: float | None, breaker: float | None, alarm: int, share: float | None, high: float | None
) -> str:
    if not online:
        return "stale"
    if amps is None:
        return "no-data"
    if alarm & NON_LATCHING:
        return "alarm"
    if alarm & LATCHED:
        return "latched"
    if breaker == 0:
        return "spare"
    if share is not None and high is not None and share >= high - NEAR_MARGIN:
        return "near"
    return "normal"


# --- the page ---


def panel_page(view: dict[str, Any], node: dict[str, Any], refresh_s: float, csrf: str) -> str:
    """The panel schedule of a node (`node`: its summary), drawn complete on the server;
    panel.js keeps it live, asking every `refresh_s` seconds."""
    address = view["address"]
    volts = "".join(
        f'<span>{label} <b id="v-{key}{i}">{_number(v, 1)}</b> V</span>'
        for key, label_set in (("ln", ("A-N", "B-N", "C-N")), ("ll", ("A-B", "B-C", "A-C")))
        for i, (label, v) in enumerate(zip(label_set, view[f"volts_{key}"]))
    )
    meters = (
        f'{volts}<span><b id="v-hz">{_number(view["frequency"], 2)}</b> Hz</span>'
        f'<span>Total <b id="v-kw">{_number(view["kw_total"], 2)}</b> kW</span>'
    )
    mains = "".join(_cell(channel, "mains") for channel in view["mains"])
    circuits = view["circuits"]
    schedule = "".join(
        _cell(circuits[left - 1], "left") + _cell(circuits[right - 1], "right") for left, right in rows()
    )
    threshold = (
        "no high-current alarm is on for this panel"
        if view["high_threshold"] is None
        else f"high-current alarm at {view['high_threshold']:g} % of the breaker; near from {view['near_from']:g} %"
    )
    legend = "".join(f'<span class="s-{state}">{state}</span>' for state in STATES)
    body = (
        node_tabs(address, "panel")
        + f'<section id="panel" data-address="{address}" data-refresh="{refresh_s}">'
        + f'<p class="summary">Board {e(node["board"])}, panel {e(node["panel"])}; model {e(node["model"])}, '
        f"serial {e(node['serial'])}; BACnet device {e(node['bacnet_device_id'])}; "
        f'<span id="online">{"online" if view["online"] else "offline"}</span>.</p>'
        + f'<h2>Mains</h2><div class="meters">{meters}</div><div class="mains">{mains}</div>'
        + f'<h2>Branch circuits</h2><p class="note">Current as a share of the breaker; {e(threshold)}.</p>'
        + f'<div class="schedule">{schedule}</div><p class="legend">{legend}</p></section>'
        + action_button(f"/confirm/clear-alarms?address={address}", "Clear latched alarms")
        + action_button(f"/confirm/forget?address={address}", "Forget this node")
    )
    return layout(f"Node {address}", body, csrf=csrf, logged_in=True, script="panel.js")


def _cell(channel: dict[str, Any], side: str) -> str:
    """One circuit: its number and name, a bar of its current against the breaker, amps and kW."""
    number, share = channel["channel"], channel["share"]
    width = 0.0 if share is None else max(0.0, min(100.0, share))
    label = e(channel["name"] or channel.get("label") or "")
    return (
        f'<div class="circuit {side} s-{channel["state"]}" id="c{number}" title="{e(describe(channel))}">'
        f'<span class="num">{number}</span><span class="name">{label}</span>'
        f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
        f'<rect class="track" width="100" height="10"/><rect class="fill" width="{width:.1f}" height="10"/></svg>'
        f'<span class="amps">{_number(channel["amps"], 1)} A</span>'
        f'<span class="kw">{_number(channel["kw"], 2)} kW</span></div>'
    )


def describe(channel: dict[str, Any]) -> str:
    """What a circuit's hover text says (panel.js writes the same)."""
    name = channel["name"] or channel.get("label")
    share = "-" if channel["share"] is None else f"{channel['share']:g} %"
    breaker = "-" if channel["breaker"] is None else f"{channel['breaker']:g} A"
    alarms = f" ({channel['alarms']})" if channel.get("alarms") else ""
    return (
        f"Ch {channel['channel']}{' ' + name if name else ''}: {_number(channel['amps'], 1)} A, "
        f"{_number(channel['kw'], 2)} kW, {share} of {breaker}; {channel['state']}{alarms}"
    )


def _number(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"
