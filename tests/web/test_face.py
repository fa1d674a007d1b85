"""The web face over real HTTPS on loopback: login, sessions, CSRF, limits, pages, API, actions."""

from __future__ import annotations

import asyncio
import html
import re
import socket
import ssl
from dataclasses import replace
from ipaddress import IPv4Address

import aiohttp
import pytest
import structlog

from gateway.app import running, serve
from gateway.errors import GatewayError, ListenError
from gateway.findings import NetworkFinding
from gateway.pointmap import load
from gateway.state import StateStore
from gateway.web.tls import CERT_NAME, KEY_NAME, server_context, write_self_signed
from tests.support import eventually, eventually_async, free_port, gateway_config
from tests.web.conftest import PASSWORD, PASSWORD_HASH, Endpoint

PM = load()
CURRENT_7 = PM.find("current", group="branch", channel=7)
ALARM_7 = PM.find("alarm_status", group="alarms", channel=7)


async def test_without_a_password_the_pages_say_how_to_set_one_and_nothing_runs(web_site) -> None:
    site = await web_site(password_hash="")
    async with site.client() as client:
        async with client.get("/nodes") as reply:
            assert str(reply.url).endswith("/login")  # redirected
            assert "bcpm-gateway set-password --config" in await reply.text()
        async with client.post("/login", data={"user": "admin", "password": ""}) as reply:
            assert reply.status == 403
        async with client.get("/api/nodes") as reply:
            assert reply.status == 401
        async with client.post("/actions/restart", data={"csrf": ""}, allow_redirects=False) as reply:
            assert reply.status == 303 and reply.headers["location"] == "/login"
    assert not site.gateway.restart.is_set()


async def test_login_sets_a_secure_cookie_and_logout_ends_the_session(web_site) -> None:
    site = await web_site()
    async with site.client() as client:
        async with client.post("/login", data={"user": "admin", "password": PASSWORD}, allow_redirects=False) as reply:
            assert reply.status == 303
            cookie = reply.headers["set-cookie"]
        for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
            assert flag in cookie
        async with client.get("/") as reply:
            page = await reply.text()
            assert reply.status == 200 and "RS-485 bus" in page
            assert reply.headers["strict-transport-security"].startswith("max-age=")
            assert "default-src 'self'" in reply.headers["content-security-policy"]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
        async with client.post("/logout", data={"csrf": csrf}, allow_redirects=False) as reply:
            assert reply.status == 303
        async with client.get("/api/nodes") as reply:
            assert reply.status == 401


async def test_wrong_passwords_are_refused_and_then_rate_limited(web_site) -> None:
    site = await web_site(login_attempts=3)
    async with site.client() as client:
        statuses = []
        for _ in range(4):
            async with client.post("/login", data={"user": "admin", "password": "guess"}) as reply:
                statuses.append(reply.status)
        async with client.post("/login", data={"user": "admin", "password": PASSWORD}) as reply:
            statuses.append(reply.status)  # the right one too, while the limit holds
        async with client.post("/login", data={"user": "root", "password": PASSWORD}) as reply:
            statuses.append(reply.status)
    assert statuses == [403, 403, 403, 429, 429, 429]
    assert site.face.limiter.refused == 3


async def test_plain_http_on_the_same_port_only_redirects_to_https(web_site) -> None:
    site = await web_site()
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{site.port}/nodes/1?x=2", allow_redirects=False) as reply:
            assert reply.status == 308
            assert reply.headers["location"] == f"https://127.0.0.1:{site.port}/nodes/1?x=2"
            assert await reply.read() == b""
        async with client.post(
            f"http://127.0.0.1:{site.port}/login", data={"user": "admin", "password": PASSWORD}, allow_redirects=False
        ) as reply:
            assert reply.status == 308 and "set-cookie" not in reply.headers


async def test_plain_http_with_a_host_or_target_beyond_ascii_is_answered_not_failed(web_site) -> None:
    site = await web_site()
    with structlog.testing.capture_logs() as logs:
        for request, answer in (
            # the Host header is never used: the redirect goes to the address the client reached
            (b"GET / HTTP/1.1\r\nHost: caf\xe9.example\r\n\r\n", b"HTTP/1.1 308 "),
            (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 400 "),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
            writer.write(request)
            writer.write_eof()
            async with asyncio.timeout(5):
                reply = await reader.read()
            writer.close()
            assert reply.startswith(answer), reply
            assert b"caf" not in reply
    assert [entry for entry in logs if entry["log_level"] == "error"] == []


async def test_actions_need_the_session_csrf_token_and_a_matching_origin(web_site) -> None:
    site = await web_site()
    client = await site.logged_in()
    async with client:
        async with client.get("/confirm/restart") as reply:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await reply.text())[1]
        for data, headers in (({}, {}), ({"csrf": "forged"}, {}), ({"csrf": csrf}, {"Origin": "https://evil.example"})):
            async with client.post("/actions/restart", data=data, headers=headers) as reply:
                assert reply.status == 403
        assert not site.gateway.restart.is_set()
        async with client.post(
            "/actions/restart", data={"csrf": csrf}, headers={"Origin": f"https://127.0.0.1:{site.port}"}
        ) as reply:
            assert reply.status == 200
        assert site.gateway.restart.is_set()
    assert any("restart the gateway" in what for _, what in site.face.events)


async def test_the_api_gives_the_cache_and_the_node_identity(web_site) -> None:
    site = await web_site(1)
    site.line.panel(1).set_current(7, 12.5)
    node = site.gateway.nodes.nodes[1]
    await eventually(lambda: node.cache.reading(CURRENT_7).value == 12.5, what="the new current polled")
    client = await site.logged_in()
    async with client:
        async with client.get("/api/nodes") as reply:
            nodes = await reply.json()
        assert [(n["address"], n["panel"], n["board"], n["model"], n["online"]) for n in nodes] == [
            (1, 1, 1, "A", True),
            (2, 2, 1, "A", True),
        ]
        assert nodes[0]["bacnet_device_id"] == 50001 and nodes[0]["bacnet_name"] == "BCPM_1"
        assert nodes[0]["snmp_index"] == 1 and nodes[0]["serial"] == f"0x{node.profile.serial:08X}"
        async with client.get("/api/nodes/1") as reply:
            detail = await reply.json()
        row = next(r for r in detail["channels"] if r["channel"] == 7)
        assert row["current"] == {
            "register": 1342,
            "name": "Current Ch 7",
            "value": 12.5,
            "shown": "12.5",
            "units": "A",
            "quality": "good",
        }
        assert {r["channel"] for r in detail["channels"]} == set(range(1, 47))
        assert [v["name"] for v in detail["voltage"]][:2] == ["Frequency", "Voltage L-N Average"]
        assert detail["aux_totals"] and detail["meters"]
        for missing in ("/api/nodes/9", "/api/nodes/x", "/api/nodes/1234567"):
            async with client.get(missing) as reply:
                assert reply.status == 404
        async with client.get("/nodes/1/values") as reply:
            page = await reply.text()
        assert 'data-register="1342">12.5<' in page and "BCPM_1" in page
        async with client.get("/config") as reply:
            page = await reply.text()
        assert "password_hash" in page and "scrypt" not in page  # masked


async def test_clearing_latched_alarms_writes_the_global_reset_and_logs_it(web_site) -> None:
    site = await web_site(1)
    panel = site.line.panel(1)
    panel.write(165, [0, 0, 0, 0, 0, 30])  # latch at once
    node = site.gateway.nodes.nodes[1]
    panel.set_current(7, 19.0)  # 95 % of the 20 A breaker: High-High and High latch
    await eventually(lambda: node.cache.reading(ALARM_7).value == 0x0103, what="latched")
    panel.set_current(7, 10.0)
    await eventually(lambda: node.cache.reading(ALARM_7).value == 0x0003, what="only the latched bits")
    client = await site.logged_in()
    async with client:
        async with client.get("/confirm/clear-alarms?address=1") as reply:
            page = await reply.text()
        assert "register 295 = 31010" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
        async with client.post("/actions/clear-alarms", data={"csrf": csrf, "address": "1"}) as reply:
            assert reply.status == 200, await reply.text()
        assert panel.read(ALARM_7.register, 1) == [0]
        await eventually(lambda: node.cache.reading(ALARM_7).value == 0, what="the cache follows")
        async with client.post("/actions/clear-alarms", data={"csrf": csrf, "address": "9"}) as reply:
            assert reply.status == 404  # no such node: nothing sent
        async with client.get("/events") as reply:
            events = await reply.text()
        assert "clear latched alarms of node 1" in events
        assert "node 1: Branch Alarm Status Ch 7 raised 0x0103" in events
        assert "node 1: Branch Alarm Status Ch 7 cleared 0x0003 (now 0x0000)" in events


async def test_a_refused_write_is_reported_and_the_face_goes_on(web_site) -> None:
    site = await web_site(1)
    site.line.vanish(1)  # the meter stops answering: the write fails on the bus
    client = await site.logged_in()
    async with client:
        async with client.get("/confirm/clear-alarms?address=1") as reply:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await reply.text())[1]
        async with client.post("/actions/clear-alarms", data={"csrf": csrf, "address": "1"}) as reply:
            assert reply.status == 502
            assert "did not take it" in await reply.text()
        async with client.get("/api/nodes/1") as reply:
            assert reply.status == 200


async def test_clients_outside_allow_and_metrics_allow_are_disconnected(web_site) -> None:
    site = await web_site(allow=["10.0.0.0/8"], metrics_allow=["10.0.0.0/8"])
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert site.face.server.stats.refused_not_allowed == 1


async def test_metrics_refused_outside_metrics_allow(web_site) -> None:
    site = await web_site(metrics_allow=["192.168.0.0/16"])
    async with site.client() as client:
        async with client.get("/metrics") as reply:
            assert reply.status == 403
        async with client.get("/login") as reply:
            assert reply.status == 200


async def test_a_host_only_in_metrics_allow_gets_metrics_and_no_pages(web_site) -> None:
    site = await web_site(allow=["10.0.0.0/8"], metrics_allow=["127.0.0.0/8"])
    async with site.client() as client:
        async with client.get("/metrics") as reply:
            assert reply.status == 200
        for page in ("/login", "/api/nodes", "/"):
            async with client.get(page) as reply:
                assert reply.status == 403
        async with client.post("/login", data={"user": "admin", "password": PASSWORD}) as reply:
            assert reply.status == 403


async def test_at_the_connection_cap_an_idle_connection_makes_room_for_a_newcomer(web_site) -> None:
    site = await web_site(max_connections=2)
    idle = [await asyncio.open_connection("127.0.0.1", site.port, local_addr=("127.0.0.2", 0)) for _ in range(2)]
    await eventually(lambda: site.face.server.open_connections == 2, what="two connections open")
    async with site.client() as client:
        async with client.get("/login") as reply:
            assert reply.status == 200
    assert site.face.server.stats.made_room == 1
    reads = [asyncio.ensure_future(reader.read()) for reader, _ in idle]
    closed, _ = await asyncio.wait(reads, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert [read.result() for read in closed] == [b""]  # the longest idle, closed for it before its deadline
    for read in reads:
        read.cancel()
    for _, writer in idle:
        writer.close()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 65536 + b"\r\n\r\n", 431),
        (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + b"a" * 20000, 413),
    ],
)
async def test_malformed_and_oversized_requests_get_an_error_and_the_face_goes_on(
    web_site, request_bytes, status
) -> None:
    site = await web_site()
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port, ssl=site.tls())
    writer.write(request_bytes)
    reply = await asyncio.wait_for(reader.read(), 5)
    assert reply.startswith(f"HTTP/1.1 {status} ".encode()), reply[:80]
    writer.close()
    async with site.client() as client:
        async with client.get("/login") as ok:
            assert ok.status == 200


async def test_a_failed_tls_handshake_costs_nothing_but_a_count(web_site) -> None:
    site = await web_site()
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    writer.write(b"\x16\x03\x01\x00\x05hello")  # a TLS record that is no ClientHello
    await asyncio.wait_for(reader.read(), 5)  # an alert, or nothing: the face closes the connection
    writer.close()
    await eventually(lambda: site.face.server.stats.bad_requests >= 1, what="counted")
    async with site.client() as client:
        async with client.get("/login") as reply:
            assert reply.status == 200


async def test_the_self_signed_certificate_is_made_once_and_kept(web_site) -> None:
    site = await web_site()
    first = site.certificate.read_bytes()
    assert (site.certificate.parent / KEY_NAME).stat().st_mode & 0o077 == 0
    with pytest.raises(aiohttp.ClientConnectorCertificateError):  # a client that trusts only public CAs
        async with aiohttp.ClientSession() as client:
            await client.get(f"{site.url}/login")
    await server_context(site.gateway.config)  # what the next start does
    assert site.certificate.read_bytes() == first


async def test_a_configured_certificate_is_served_instead(web_site, tmp_path) -> None:
    cert, key = tmp_path / "own" / "cert.pem", tmp_path / "own" / "key.pem"
    write_self_signed(cert, key, IPv4Address("127.0.0.1"))
    site = await web_site(tls_cert=str(cert), tls_key=str(key))
    assert not site.certificate.exists()  # none made in the state folder
    context = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as client:
        async with client.get(f"{site.url}/login") as reply:
            assert reply.status == 200


async def test_an_unusable_certificate_stops_the_gateway_with_a_clear_error(make_line, tmp_path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    config = gateway_config(
        make_line(1),
        tmp_path,
        web={
            "enabled": True,
            "address": "127.0.0.1",
            "port": free_port(),
            "tls_cert": str(tmp_path / "cert.pem"),
            "tls_key": str(tmp_path / "cert.pem"),
        },
    )
    with pytest.raises(GatewayError, match="web: cannot use the certificate"):
        async with running(config) as gateway:
            await gateway.face_tasks[0]


async def test_a_taken_port_stops_the_gateway_with_a_clear_error(make_line, tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = gateway_config(make_line(1), tmp_path, web={"enabled": True, "address": "127.0.0.1", "port": port})
        with pytest.raises(ListenError, match=f"web cannot listen on 127.0.0.1:{port}"):
            async with running(config) as gateway:
                await gateway.face_tasks[0]


async def test_the_restart_action_restarts_the_gateway_in_process_and_the_face_serves_again(
    make_line, tmp_path
) -> None:
    port = free_port()
    config = gateway_config(
        make_line(1),
        tmp_path,
        web={"enabled": True, "address": "127.0.0.1", "port": port, "password_hash": PASSWORD_HASH},
    )
    server = asyncio.create_task(serve(lambda: config))
    site = Endpoint(port, tmp_path / CERT_NAME)
    try:
        await eventually(site.certificate.exists, what="the face started")
        client = await eventually_logged_in(site)
        async with client:
            async with client.get("/confirm/restart") as reply:
                csrf = re.search(r'name="csrf" value="([^"]+)"', await reply.text())[1]
            async with client.post("/actions/restart", data={"csrf": csrf}) as reply:
                assert reply.status == 200 and "restarting" in await reply.text()

            async def old_session_refused() -> bool:
                try:
                    async with client.get("/api/nodes") as reply:
                        return reply.status == 401  # the new life knows no session of the old one
                except aiohttp.ClientError:
                    return False  # between the two lives

            await eventually_async(old_session_refused, what="the gateway back, sessions gone")
        again = await eventually_logged_in(site)
        async with again, again.get("/api/nodes") as reply:
            assert reply.status == 200
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def eventually_logged_in(site: Endpoint) -> aiohttp.ClientSession:
    for _ in range(200):
        try:
            return await site.logged_in()
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    pytest.fail("the face never accepted a login")


async def test_unknown_pages_and_methods_are_refused_with_their_status(web_site) -> None:
    site = await web_site()
    client = await site.logged_in()
    async with client:
        async with client.get("/nowhere") as reply:
            assert reply.status == 404
        async with client.put("/nodes") as reply:
            assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD, POST"
        async with client.get("/confirm/format-disk") as reply:
            assert reply.status == 404
        async with client.get("/confirm/clear-alarms?address=99") as reply:
            assert reply.status == 404  # no such node


async def test_the_overview_shows_what_the_bacnet_network_doctor_finds_now(web_site) -> None:
    bacnet = {"enabled": True, "address": "127.0.0.1/8", "port": free_port(socket.SOCK_DGRAM), "doctor_interval": 3600}
    site = await web_site(1, sections={"bacnet": bacnet})
    client = await site.logged_in()
    async with client:
        async with client.get("/") as reply:
            assert "No other router to the virtual network" in await reply.text()
        found = NetworkFinding("device_id", 50001, "10.0.0.7", cleared=False)
        site.gateway.hub.publish([found])  # as the doctor publishes what it finds
        await eventually(lambda: "device ID 50001 is also used by 10.0.0.7" in site.face._findings, what="heard")
        async with client.get("/") as reply:
            assert '<li class="error">device ID 50001 is also used by 10.0.0.7</li>' in await reply.text()
        site.gateway.hub.publish([replace(found, cleared=True)])
        await eventually(lambda: not site.face._findings, what="cleared")
        async with client.get("/events") as reply:
            events = await reply.text()
        assert "BACnet network doctor: device ID 50001 is also used by 10.0.0.7<" in events
    assert "BACnet network doctor: cleared: device ID 50001 is also used by 10.0.0.7" in events


async def test_without_bacnet_the_doctor_is_shown_as_not_running(web_site) -> None:
    site = await web_site()
    client = await site.logged_in()
    async with client, client.get("/") as reply:
        assert "Not running (BACnet off" in await reply.text()


async def confirmed(client: aiohttp.ClientSession, confirm: str) -> str:
    """The CSRF token of an action's confirmation page."""
    async with client.get(confirm) as reply:
        assert reply.status == 200
        return re.search(r'name="csrf" value="([^"]+)"', await reply.text())[1]


async def test_forgetting_a_node_from_its_page_drops_it_from_the_gateway_and_the_state(web_site, tmp_path) -> None:
    site = await web_site(1, sections={"serial": {"rescan_interval": 0}})  # no background pass finds it again
    client = await site.logged_in()
    async with client:
        async with client.get("/nodes/2") as reply:
            assert "/confirm/forget?address=2" in await reply.text()
        csrf = await confirmed(client, "/confirm/forget?address=2")
        async with client.post("/actions/forget", data={"csrf": "forged", "address": "2"}) as reply:
            assert reply.status == 403
        assert 2 in site.gateway.nodes.nodes
        async with client.post("/actions/forget", data={"csrf": csrf, "address": "2"}) as reply:
            assert reply.status == 200
            assert "Node 2 is forgotten" in await reply.text()
        assert sorted(site.gateway.nodes.nodes) == [1]
        assert sorted(StateStore(tmp_path / "state.json").load().profiles) == [1]
        async with client.get("/api/nodes/2") as reply:
            assert reply.status == 404
        async with client.get("/confirm/forget?address=2") as reply:
            assert reply.status == 404
        async with client.post("/actions/forget", data={"csrf": csrf, "address": "2"}) as reply:
            assert reply.status == 404  # no such node any more: nothing done
        async with client.get("/events") as reply:
            assert "forget node 2" in await reply.text()


async def test_a_rescan_from_the_overview_finds_a_meter_the_gateway_does_not_know(web_site) -> None:
    site = await web_site(1, sections={"serial": {"rescan_interval": 0}})  # only a rescan asked for scans
    await site.gateway.nodes.forget([2])
    client = await site.logged_in()
    async with client:
        async with client.get("/") as reply:
            page = await reply.text()
            assert "/confirm/rescan" in page
            assert re.search(r"Search for meters</td><td>last pass took [0-9.]+ s, finished 20", page), page
        csrf = await confirmed(client, "/confirm/rescan")
        async with client.post("/actions/rescan", data={"csrf": csrf}) as reply:
            assert reply.status == 200
            assert "rescan of the unused addresses runs now" in await reply.text()
        await eventually(lambda: 2 in site.gateway.nodes.nodes, what="the rescan finding node 2")
        async with client.get("/events") as reply:
            assert "rescan the bus" in await reply.text()


async def test_a_rescan_is_refused_in_locked_mode_and_the_face_goes_on(web_site) -> None:
    site = await web_site(1, sections={"gateway": {"operating_mode": "locked"}})
    client = await site.logged_in()
    async with client:
        csrf = await confirmed(client, "/confirm/rescan")
        async with client.post("/actions/rescan", data={"csrf": csrf}) as reply:
            assert reply.status == 502
            assert "locked mode" in await reply.text()
        async with client.get("/events") as reply:
            assert "rescan the bus: failed" in await reply.text()


async def test_the_overview_shows_the_snmp_versions_and_users_on_and_no_key_anywhere(web_site) -> None:
    keys = {"auth_passphrase": "nms-auth-passphrase", "priv_passphrase": "nms-priv-passphrase"}
    users = {"nms": {**keys, "access": "read-write"}, "mon": {"auth_passphrase": "mon-passphrase", "priv": "none"}}
    snmp = {"enabled": True, "address": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM), "v2c": False, "users": users}
    site = await web_site(1, sections={"snmp": snmp})
    client = await site.logged_in()
    async with client:
        async with client.get("/") as reply:
            overview = html.unescape(await reply.text())
        async with client.get("/config") as reply:
            settings = html.unescape(await reply.text())
    shown = "SNMP v3: nms (sha256, aes128, authPriv, read-write), mon (sha256, no privacy, authNoPriv, read-only)"
    assert shown in overview and "SNMP v2c" not in overview  # snmp.v2c = false
    for page in (overview, settings):
        assert not any(secret in page for secret in ("nms-auth-passphrase", "nms-priv-passphrase", "mon-passphrase"))
