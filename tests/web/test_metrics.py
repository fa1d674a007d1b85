"""/metrics, read by prometheus_client's own parser and checked by promtool."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.nodes.cache import Quality
from gateway.pointmap import load
from gateway.web.source import served
from tests.support import eventually, free_port

PM = load()
CURRENT_7 = PM.find("current", group="branch", channel=7)
KW_7 = PM.find("kw", group="branch", channel=7)
PROMTOOL = shutil.which("promtool", path=str(Path(sys.executable).parent)) or shutil.which("promtool")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(site) -> str:
    async with site.client() as client, client.get("/metrics") as reply:
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        return await reply.text()


async def test_every_good_value_is_a_sample_in_base_units_with_its_labels(web_site) -> None:
    site = await web_site(1)
    site.line.panel(1).set_current(7, 12.5)
    node = site.gateway.nodes.nodes[1]
    every = [p for p in PM.for_model("A") if served(p) and p.group != "identity"]
    await eventually(
        lambda: (
            node.cache.reading(CURRENT_7).value == 12.5
            and node.cache.reading(KW_7).value
            and all(node.cache.reading(p).quality is not Quality.UNKNOWN for p in every)
        ),
        what="the new current, its power and every slow point polled",
    )
    found = samples(await scrape(site))
    channel_7 = frozenset({"address": "1", "panel": "1", "channel": "7"}.items())
    assert found["bcpm_branch_current_amperes", channel_7] == 12.5
    kw = node.cache.reading(KW_7).value
    watts = found["bcpm_branch_power_watts", channel_7]
    assert abs(watts - kw * 1000) <= abs(kw) * 1e-9 + 1  # within the poll that may have come between
    meter = frozenset({"address": "1", "panel": "1", "meter": "1", "phase": ""}.items())
    assert ("bcpm_meter2_energy_joules", meter) in found
    assert found["bcpm_node_online", frozenset({"address": "1", "panel": "1"}.items())] == 1
    info = next(labels for (name, labels) in found if name == "bcpm_node_info" and ("address", "2") in labels)
    assert dict(info) == {
        "address": "2",
        "panel": "2",
        "model": "A",
        "serial": f"0x{node.profile.serial:08X}",
        "firmware": f"RS {node.profile.firmware_rs} OS {node.profile.firmware_os}",
        "board": "1",
    }
    per_point = [
        key
        for key in found
        if key[0].startswith("bcpm_") and ("address", "1") in key[1] and not key[0].startswith("bcpm_node_")
    ]
    assert len(per_point) == len([p for p in every if node.cache.reading(p).quality is Quality.GOOD])
    assert found["bcpm_bus_transactions_total", frozenset()] > 0


async def test_an_offline_node_shows_as_offline_and_its_values_leave(web_site) -> None:
    site = await web_site(1)
    site.line.vanish(2)
    await eventually(lambda: not site.gateway.nodes.nodes[2].health.online, what="node 2 offline")
    found = samples(await scrape(site))
    assert found["bcpm_node_online", frozenset({"address": "2", "panel": "2"}.items())] == 0
    assert found["bcpm_node_poll_age_seconds", frozenset({"address": "2", "panel": "2"}.items())] > 0
    assert not [key for key in found if ("address", "2") in key[1] and not key[0].startswith("bcpm_node_")]
    assert [key for key in found if ("address", "1") in key[1] and key[0] == "bcpm_branch_current_amperes"]


async def test_the_search_for_meters_shows_the_pass_under_way_and_when_the_last_one_ended(web_site) -> None:
    site = await web_site(1)  # scan 1-10: after the first scan, a pass over 3-10 spread over rescan_interval (60 s)
    found = samples(await scrape(site))
    assert found["bcpm_scan_passes_total", frozenset()] == 1  # the first scan
    assert time.time() - 60 < found["bcpm_scan_last_finished_timestamp_seconds", frozenset()] <= time.time()
    assert found["bcpm_scan_last_seconds", frozenset()] > 0
    assert found["bcpm_scan_running", frozenset()] == 1
    assert 0 < found["bcpm_scan_addresses_left", frozenset()] <= 8


async def test_datagrams_a_face_had_no_time_to_take_are_counted_by_its_port(web_site) -> None:
    site = await web_site(
        1, sections={"snmp": {"enabled": True, "address": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM)}}
    )
    port = site.gateway.config.snmp.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for _ in range(3000):  # sent while this loop, the gateway's too, does nothing else: its buffer overflows
            client.sendto(b"\x30\x00", ("127.0.0.1", port))
    found = samples(await scrape(site))
    assert found["bcpm_datagrams_dropped_total", frozenset({"port": str(port)}.items())] > 0


async def test_promtool_accepts_the_exposition(web_site, tmp_path) -> None:
    assert PROMTOOL is not None, "promtool is missing: run .ci/install-tools"
    site = await web_site(1)
    text = await scrape(site)
    checked = await asyncio.create_subprocess_exec(
        PROMTOOL,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await checked.communicate(text.encode())
    assert checked.returncode == 0, output.decode()


async def test_gzip_when_asked_and_the_same_text_decompressed_while_sent_otherwise(web_site) -> None:
    site = await web_site(1)
    connector = aiohttp.TCPConnector(ssl=site.tls())
    async with aiohttp.ClientSession(site.url, connector=connector, auto_decompress=False) as client:
        async with client.get("/metrics", headers={"Accept-Encoding": "gzip"}) as reply:
            assert reply.headers["content-encoding"] == "gzip" and reply.headers["vary"] == "accept-encoding"
            compressed = await reply.read()
            assert int(reply.headers["content-length"]) == len(compressed)
        async with client.get("/metrics", headers={"Accept-Encoding": "identity"}) as reply:
            assert "content-encoding" not in reply.headers
            assert reply.headers["transfer-encoding"] == "chunked"
            plain = await reply.read()
    assert gzip.decompress(compressed) == plain  # one snapshot served both
    assert len(compressed) * 5 < len(plain)
    assert site.face.metrics.made == 1


async def test_a_full_segment_every_value_read_goes_in_at_most_a_megabyte_with_gzip(web_site) -> None:
    """16 boards (32 nodes, a full RS-485 segment), every point read: what Prometheus receives."""
    site = await web_site(*range(1, 33, 2), sections={"serial": {"scan": "1-32"}})
    statistics = site.gateway.nodes.statistics
    await eventually(lambda: statistics().last_cycle is not None, 60, "a poll cycle")
    first = statistics().last_cycle
    await eventually(lambda: statistics().last_cycle is not first, 60, "another poll cycle: the slow points read")
    connector = aiohttp.TCPConnector(ssl=site.tls())
    async with aiohttp.ClientSession(site.url, connector=connector, auto_decompress=False) as client:
        async with client.get("/metrics", headers={"Accept-Encoding": "gzip"}) as reply:
            assert reply.status == 200 and reply.headers["content-encoding"] == "gzip"
            compressed = await reply.read()
    text = gzip.decompress(compressed).decode()
    assert len(compressed) <= 1_000_000 and len(text) > 3_000_000
    found = samples(text)  # prometheus_client's parser: a family's HELP and TYPE once, its samples after them
    currents = {dict(labels)["address"] for name, labels in found if name == "bcpm_branch_current_amperes"}
    assert currents == {str(address) for address in range(1, 33)}
    assert len([key for key in found if key[0] == "bcpm_branch_current_amperes"]) == 32 * 42
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))


async def test_scrapes_beyond_one_a_second_from_an_address_are_refused_and_others_served(web_site) -> None:
    site = await web_site(1)
    async with site.client() as client:
        statuses = []
        for _ in range(8):
            async with client.get("/metrics") as reply:
                statuses.append(reply.status)
    assert statuses[:5] == [200] * 5 and 429 in statuses  # a burst of 5, then one a second
    async with site.client("127.0.0.2") as other, other.get("/metrics") as reply:
        assert reply.status == 200


async def test_by_default_metrics_go_to_the_clients_of_the_pages_only(web_site) -> None:
    site = await web_site(1, allow=["127.0.0.2"])  # metrics_allow = [] as shipped
    async with site.client("127.0.0.2") as client, client.get("/metrics") as reply:
        assert reply.status == 200
    with pytest.raises(aiohttp.ClientError):  # disconnected before any TLS
        async with site.client("127.0.0.3") as client:
            await client.get("/metrics")
    assert site.face.server.stats.refused_not_allowed == 1


async def test_metrics_allow_names_who_scrapes_apart_from_who_sees_the_pages(web_site) -> None:
    site = await web_site(1, allow=["127.0.0.2"], metrics_allow=["127.0.0.3"])
    async with site.client("127.0.0.3") as scraper, scraper.get("/metrics") as reply:
        assert reply.status == 200
    async with site.client("127.0.0.2") as browser, browser.get("/metrics") as reply:
        assert reply.status == 403
