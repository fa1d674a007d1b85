"""The web face, with the settings a site gets by default, against an attacker on the building
network: a flood of connections, logins sent at once, forged forms, odd inputs. Real HTTPS on
loopback; 127.0.0.x addresses stand for different hosts."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import replace

import aiohttp

from gateway.audit import AUDIT_FILE
from tests.support import eventually
from tests.web.conftest import PASSWORD


async def test_the_administrator_and_a_scraper_get_in_while_hosts_hold_every_connection(web_site) -> None:
    site = await web_site()  # max_connections 32, 8 an address
    flood = []
    for host in ("127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"):  # 40 tried, plain TCP
        for _ in range(8):
            flood.append(await asyncio.open_connection("127.0.0.1", site.port, local_addr=(host, 0)))
    await eventually(lambda: site.face.server.open_connections == 32, what="every connection held")
    client = await site.logged_in("127.0.0.2")
    async with client, client.get("/api/nodes") as reply:
        assert reply.status == 200
    async with site.client("127.0.0.3") as scraper, scraper.get("/metrics") as reply:
        assert reply.status == 200
    # The fifth host got its share by closing idle connections of the four before it, no more.
    assert site.face.server.open_connections <= 32 and site.face.server.stats.refused_full > 0
    for _, writer in flood:
        writer.close()


async def test_thirty_wrong_passwords_at_once_are_checked_five_times_and_others_still_log_in(web_site) -> None:
    site = await web_site()  # login_attempts 5
    in_flight = asyncio.Semaphore(8)  # as many connections as one address may hold, each asking at once
    async with site.client() as client:

        async def guess() -> int:
            async with in_flight, client.post("/login", data={"user": "admin", "password": "guess"}) as reply:
                await reply.read()  # and the connection serves the next guess
                return reply.status

        outcomes = Counter(await asyncio.gather(*(guess() for _ in range(30))))
        assert outcomes == {403: 5, 429: 25}
        async with client.post("/login", data={"user": "admin", "password": PASSWORD}) as reply:
            assert reply.status == 429  # from the same address, while the minute lasts
    assert site.face.checker.checked == 5
    other = await site.logged_in("127.0.0.2")  # another address is not refused
    await other.close()
    assert site.face.checker.checked == 6


async def test_a_wrong_user_is_checked_like_a_wrong_password(web_site) -> None:
    site = await web_site()
    async with site.client() as client:
        for user in ("root", "admin"):
            async with client.post("/login", data={"user": user, "password": "guess"}) as reply:
                assert reply.status == 403
    assert site.face.checker.checked == 2  # scrypt ran for the wrong user too: the same time


async def test_the_cookie_follows_the_session_and_a_session_ends_after_its_lifetime(web_site) -> None:
    site = await web_site(session_minutes=5)
    client = await site.logged_in()
    async with client:
        async with client.get("/nodes") as reply:
            assert reply.status == 200
            assert "Max-Age=300;" in reply.headers["set-cookie"]  # renewed with the idle time
        [session] = site.face.sessions._sessions.values()
        site.face.sessions._sessions[session.token] = replace(session, ends=time.monotonic() - 1)
        async with client.get("/api/nodes") as reply:
            assert reply.status == 401  # past its absolute end, however busy


async def test_an_action_without_a_session_is_answered_before_its_body_is_read(web_site) -> None:
    site = await web_site()
    head = f"POST /actions/restart HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\nContent-Length: 4000\r\n\r\n"
    reply = await site.raw(head.encode(), timeout=5)  # the body is never sent
    assert reply.startswith(b"HTTP/1.1 303 ") and b"location: /login" in reply
    client = await site.logged_in()
    async with client:
        async with client.post("/actions/restart", data={"csrf": "x" * 9000}) as reply:
            assert reply.status == 413  # an action's form is small
        upload = aiohttp.FormData({"csrf": "x"})
        upload.add_field("file", b"#" * 70000, filename="gateway.toml")
        async with client.post("/settings/upload", data=upload) as reply:
            assert reply.status == 413  # an upload is larger, but bounded too
    async with site.client() as client, client.post("/login", data={"password": "x" * 5000}) as reply:
        assert reply.status == 413
    assert not site.gateway.restart.is_set()


async def test_a_non_ascii_digit_as_a_node_address_is_no_node(web_site) -> None:
    site = await web_site()
    client = await site.logged_in()
    async with client:
        for page in ("/confirm/forget?address=%C2%B2", "/confirm/clear-alarms?address=%D9%A1", "/nodes/%C2%B2"):
            async with client.get(page) as reply:
                assert reply.status == 404, page
    assert site.face.server.stats.internal_errors == 0


async def test_head_on_every_page_gets_the_headers_of_get(web_site) -> None:
    site = await web_site()
    client = await site.logged_in()
    async with client:
        for page in ("/", "/nodes/1", "/api/nodes", "/static/style.css", "/login", "/metrics", "/nowhere"):
            async with client.head(page, allow_redirects=False) as head, client.get(page) as got:
                assert head.status == got.status, page
                assert await head.read() == b""
    assert site.face.server.stats.internal_errors == 0


async def test_every_action_and_every_refusal_is_audited_with_session_address_and_kept(web_site, tmp_path) -> None:
    site = await web_site(1)
    client = await site.logged_in("127.0.0.2")
    async with client:
        async with client.get("/confirm/rescan") as reply:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await reply.text())[1]
        async with client.post("/actions/rescan", data={"csrf": "forged"}) as reply:
            assert reply.status == 403
        async with client.post("/actions/rescan", data={"csrf": csrf}) as reply:
            assert reply.status == 200
    async with site.client("127.0.0.3") as stranger, stranger.post("/login", data={"password": "guess"}) as reply:
        assert reply.status == 403
    audit = tmp_path / AUDIT_FILE
    await eventually(lambda: audit.exists() and len(audit.read_text().splitlines()) >= 4, what="audited")
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    [session] = {line["session"] for line in lines if line["client"] == "127.0.0.2"}
    assert [(line["action"], line["outcome"]) for line in lines if line["client"] == "127.0.0.2"] == [
        ("log in", "done"),
        ("POST /actions/rescan", "refused: csrf token or origin"),
        ("rescan the bus", "done"),
    ]
    token = next(cookie.value for cookie in client.cookie_jar if cookie.key == "bcpm_session")
    assert session != "-" and session not in token  # the public id, never the cookie
    assert [(line["action"], line["outcome"]) for line in lines if line["client"] == "127.0.0.3"] == [
        ("log in", "refused: wrong user or password")
    ]
    assert audit.stat().st_mode & 0o777 == 0o600
