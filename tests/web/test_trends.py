"""Trends over real HTTPS: the history drawn as SVG by the gateway, as JSON, and as CSV."""

from __future__ import annotations

import csv
import io
import time

from gateway.pointmap import load
from tests.support import eventually

PM = load()


async def test_the_mains_and_a_chosen_circuit_are_drawn_and_the_history_downloads_as_csv(web_site) -> None:
    site = await web_site(1)
    history = site.gateway.history
    assert history is not None and history.hours == 24  # as shipped
    panel = site.line.panel(1)
    node = site.gateway.nodes.nodes[1]
    current_7 = PM.find("current", group="branch", channel=7)
    await site.gateway.nodes.name_circuits(1, {7: 'Rack, "A12"'})
    start = time.time() - 3 * 60
    for minute, amps in enumerate((4.0, 6.0, 8.0)):  # three minutes of samples, taken now
        panel.set_current(7, amps)
        await eventually(lambda amps=amps: node.cache.reading(current_7).value == amps, what=f"{amps} A read")
        history.sample(site.gateway.nodes.nodes, start + 60 * minute)
    client = await site.logged_in()
    async with client:
        async with client.get("/nodes/1/trends?channel=7") as reply:
            page = await reply.text()
        assert reply.status == 200 and page.count('<svg class="chart"') == 2 and "trends.js" in page
        assert "Ch 7 Rack, &quot;A12&quot;: 8.0 A" in page  # the chosen circuit's legend: its name, its last value
        assert 'data-src="/nodes/1/chart?channels=43,44,45,46"' in page
        async with client.get("/nodes/1/chart?channels=7") as reply:
            chart = await reply.text()
        assert chart.startswith('<svg class="chart"') and chart.count("<polyline") == 1
        async with client.get("/api/nodes/1/trends?channels=7,8") as reply:
            data = await reply.json()
        # the gateway's own sample of a whole minute may come after these, dated now
        assert data["times"][:3] == [start, start + 60, start + 120] and len(data["times"]) <= 4
        assert {c: values[:3] for c, values in data["currents"].items()} == {"7": [4.0, 6.0, 8.0], "8": [0.0] * 3}
        async with client.get("/nodes/1/trends.csv") as reply:
            assert reply.headers["content-disposition"] == 'attachment; filename="bcpm-node-1-trends.csv"'
            text = await reply.text()
        table = list(csv.reader(io.StringIO(text)))
        assert table[0][:2] == ["time (UTC)", "ch1 (A)"] and table[0][7] == 'ch7 Rack, "A12" (A)'
        assert len(table[0]) == 47 and [row[7] for row in table[1:4]] == ["4", "6", "8"]
        assert table[1][0].endswith("Z") and table[1][43] != ""  # the mains sampled too
        for bad in ("", "0", "47", "7,x", "1" * 5):
            async with client.get(f"/nodes/1/chart?channels={bad}") as reply:
                assert reply.status == 400, bad
        async with client.get("/metrics") as reply:
            scraped = await reply.text()
    assert history.nbytes == 1440 * 8 + 2 * 46 * 1440  # both nodes of the board, a day each, a byte a sample
    assert f"bcpm_web_trend_history_bytes {float(history.nbytes)}" in scraped
