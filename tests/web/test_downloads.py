"""Downloads from the web face: the MIB module and the PICS as shipped, the EDE list as the devices are now."""

from __future__ import annotations

from pathlib import Path

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


async def test_without_bacnet_there_is_no_ede_list(web_site) -> None:
    site = await web_site(1)
    client = await site.logged_in()
    async with client:
        async with client.get("/downloads") as reply:
            assert "No EDE list: BACnet is off." in await reply.text()
        async with client.get("/downloads/bcpm-gateway-ede.csv") as reply:
            assert reply.status == 404
