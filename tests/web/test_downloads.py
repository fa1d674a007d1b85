"""Downloads from the web face: the MIB module and the PICS as shipped, the EDE list as the devices are now;
what is off is said and not served."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bacnet.client import free_udp_port

REPO = Path(__file__).resolve().parents[2]


async def test_the_mib_the_pics_and_the_ede_list_download(web_site) -> None:
    bacnet = {"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port()}
    site = await web_site(1, sections={"bacnet": bacnet})
    await site.gateway.nodes.name_circuits(2, {12: "Rack C3 PDU B"})
    client = await site.logged_in()
    async with client:
        async with client.get("/downloads") as reply:
            page = await reply.text()
        for name in ("BCPM-GATEWAY-MIB.txt", "PICS.md", "bcpm-gateway-ede.csv"):
            assert f'href="/downloads/{name}"' in page
        for name, shipped in (("BCPM-GATEWAY-MIB.txt", "mibs"), ("PICS.md", "docs")):
            async with client.get(f"/downloads/{name}") as reply:
                assert reply.headers["content-disposition"] == f'attachment; filename="{name}"'
                assert await reply.read() == (REPO / shipped / name).read_bytes()
        async with client.get("/downloads/bcpm-gateway-ede.csv") as reply:
            ede = await reply.text()
        assert ede.startswith("#Engineering-Data-Exchange")
        assert "BCPM_2.AI1347;50002;Current Ch 12;0;1347;Rack C3 PDU B (register 1347);" in ede
        for missing in ("/downloads/../pyproject.toml", "/downloads/gateway.toml", "/downloads/"):
            async with client.get(missing) as reply:
                assert reply.status == 404, missing


@pytest.mark.parametrize(
    ("web", "page", "says", "missing"),
    [
        ({}, "/downloads", "No EDE list: BACnet is off.", "/downloads/bcpm-gateway-ede.csv"),
        ({"trend_hours": 0}, "/nodes/1/trends", "No trends: web.trend_hours = 0", "/nodes/1/trends.csv"),
    ],
    ids=["no-bacnet", "no-trends"],
)
async def test_what_is_off_is_said_on_its_page_and_its_file_is_not_served(
    web_site, web: dict[str, object], page: str, says: str, missing: str
) -> None:
    site = await web_site(1, **web)
    client = await site.logged_in()
    async with client:
        async with client.get(page) as reply:
            assert says in await reply.text()
        async with client.get(missing) as reply:
            assert reply.status == 404
