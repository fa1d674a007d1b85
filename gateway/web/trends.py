"""Trends of a node's currents: an SVG chart drawn on the server, and the history as CSV.

    svg = chart(times, {43: [...], 44: [...]}, {43: "Phase 1", 44: "Phase 2"})
    parts = csv_parts(history, 1, names)   # an iterator of CSV text, a block of rows at a time

The chart is plain SVG markup (lines, axes, labels; colours from the stylesheet by class), so it
needs no script nor library and passes the face's Content-Security-Policy; the page's script only
fetches it again each minute. A gap in the history (the node offline, no data) breaks the line.
The CSV holds every sample of every CT channel, its times in UTC (ISO 8601), made a block of rows
at a time while it is sent, never whole in memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from gateway.nodes.history import History
from gateway.pointmap import CIRCUITS
from gateway.web.pages import e, layout, node_tabs

__all__ = ["chart", "csv_parts", "trends_page"]

WIDTH, HEIGHT = 720, 240  # the chart's own units; it scales to the page
LEFT, BOTTOM, TOP, RIGHT = 48, 22, 8, 8
ROWS_A_PART = 60  # CSV rows made before the connection takes them


def chart(times: Sequence[float], series: Mapping[int, Sequence[float | None]], labels: Mapping[int, str]) -> str:
    """An SVG line chart of currents (A) against time, one line a channel, with its legend."""
    if len(times) < 2:
        return '<p class="empty">Not enough samples yet: one is taken every minute.</p>'
    highest = max((v for values in series.values() for v in values if v is not None), default=0.0)
    top = _nice(highest)
    start, end = times[0], times[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: float) -> float:
        return LEFT + plot_w * (at - start) / (end - start)

    def y(amps: float) -> float:
        return TOP + plot_h * (1 - amps / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="currents over time">',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for step in range(5):  # amps grid
        amps = top * step / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(amps):.1f}" y2="{y(amps):.1f}"/>'
            f'<text class="axis" x="{LEFT - 4}" y="{y(amps) + 4:.1f}" text-anchor="end">{amps:g}</text>'
        )
    for tick in _hours(start, end):  # time grid, the gateway's local time
        parts.append(
            f'<line class="grid" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>'
            f'<text class="axis" x="{x(tick):.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f"{time.strftime('%H:%M', time.localtime(tick))}</text>"
        )
    parts.append(f'<text class="axis" x="4" y="{TOP + 10}">A</text>')
    legend = []
    for number, (channel, values) in enumerate(series.items()):
        for run in _runs(times, values):
            points = " ".join(f"{column},{y(amps):.1f}" for column, amps in _peaks(run, x))
            parts.append(f'<polyline class="line t{number % 6}" points="{points}"/>')
        last = next((v for v in reversed(values) if v is not None), None)
        now = "-" if last is None else f"{last:.1f} A"
        legend.append(f'<li class="t{number % 6}">{e(labels.get(channel, f"Ch {channel}"))}: {now}</li>')
    parts.append("</svg>")
    return "".join(parts) + '<ul class="legend">' + "".join(legend) + "</ul>"


def _nice(highest: float) -> float:
    """A round top for the amps axis, at or above `highest` (1, 2 or 5 times a power of ten)."""
    if highest <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(highest))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= highest)


def _hours(start: float, end: float) -> list[float]:
    """Whole hours between start and end, at most about eight of them."""
    every = 3600 * max(1, math.ceil((end - start) / 3600 / 8))
    first = math.ceil(start / 3600) * 3600
    return [tick for tick in range(int(first), int(end) + 1, every) if start <= tick <= end]


def _runs(times: Sequence[float], values: Sequence[float | None]) -> Iterator[list[tuple[float, float]]]:
    """The stretches without a gap, each as (time, amps) points."""
    run: list[tuple[float, float]] = []
    for at, amps in zip(times, values):
        if amps is None:
            if len(run) > 1:
                yield run
            run = []
        else:
            run.append((at, amps))
    if len(run) > 1:
        yield run


def _peaks(run: list[tuple[float, float]], x: Callable[[float], float]) -> list[tuple[int, float]]:
    """One point a column of the chart (some 660 for a day's 1,440 samples): the highest current in
    it, so a peak is never drawn away."""
    columns: dict[int, float] = {}
    for at, amps in run:
        column = round(x(at))
        columns[column] = max(amps, columns.get(column, amps))
    return list(columns.items())


def csv_parts(history: History, address: int, names: Mapping[int, str]) -> Iterator[bytes]:
    """The history of every CT channel of a node as CSV: a header, then a row a sample."""

    def heading(channel: int) -> str:
        name = names.get(channel, "")
        return f"ch{channel}" + (f" {name}" if name else "") + " (A)"

    yield ("time (UTC)," + ",".join(_quoted(heading(c)) for c in CIRCUITS) + "\r\n").encode()
    rows: list[str] = []
    for at, values in history.rows(address):
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(stamp + "," + ",".join("" if math.isnan(v) else f"{v:g}" for v in values) + "\r\n")
        if len(rows) == ROWS_A_PART:
            yield "".join(rows).encode()
            rows = []
    if rows:
        yield "".join(rows).encode()


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(char in text for char in ',"\r\n') else text


def trends_page(
    address: int, names: Mapping[int, str], chosen: int, charts: Mapping[str, tuple[str, str]] | None, csrf: str
) -> str:
    """The mains and one chosen circuit over the history kept, drawn here (`charts`: title ->
    (the chart's own address, its markup); None without a history); trends.js redraws them each minute."""
    if charts is None:
        body = node_tabs(address, "trends") + "<p>No trends: web.trend_hours = 0 (Settings).</p>"
        return layout(f"Node {address}: trends", body, csrf=csrf, logged_in=True)
    options = "".join(
        f'<option value="{c}"{" selected" if c == chosen else ""}>{c}{" " + e(names[c]) if c in names else ""}</option>'
        for c in CIRCUITS
    )
    figures = [
        f'<h2>{e(title)}</h2><figure class="trend" data-src="{e(source)}">{markup}</figure>'
        for title, (source, markup) in charts.items()
    ]
    body = (
        node_tabs(address, "trends")
        + "<p>Current a minute over the last hours the gateway kept (the times are the gateway's own). "
        f'<a class="button" href="/nodes/{address}/trends.csv" download>Download CSV</a></p>'
        + figures[0]
        + f'<form method="get" class="inline"><label>Circuit <select name="channel">{options}</select></label> '
        '<button type="submit">Show</button></form>' + "".join(figures[1:])
    )
    return layout(f"Node {address}: trends", body, csrf=csrf, logged_in=True, script="trends.js")
