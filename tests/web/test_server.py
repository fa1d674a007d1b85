"""The HTTPS server under hostile clients, over real TLS sockets on loopback: fair shares of the
connections per address, deadlines no request restarts, rate limits, and an answer (never a
traceback) for every request. Small limits and deadlines here; the face's own are tested with the
gateway (test_face.py, test_attacks.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from gateway.logging import peer_events
from gateway.web.server import HttpsServer, Limits, Request, Response
from gateway.web.tls import write_self_signed
from tests.support import eventually


@dataclass
class Running:
    server: HttpsServer
    port: int
    certificate: Path
    held: asyncio.Event  # requests to /hold wait for it

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificate))

    async def open(self, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls(), local_addr=(source, 0))

    async def exchange(self, data: bytes, source: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
        """What the server sends for `data` until it closes the connection."""
        reader, writer = await self.open(source)
        try:
            writer.write(data)
            return await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()


async def _handler(held: asyncio.Event, request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("the handler failed")
    if request.path == "/hold":
        await held.wait()
    return Response(200, f"{request.method} {request.path} {len(request.body)}".encode(), "text/plain")


def _admit(request: Request) -> int | Response:
    if request.path == "/private":
        return Response(401, b"log in first", "text/plain")
    return 10 if request.path == "/small" else 1024


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, IPv4Address("127.0.0.1"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tasks: list[asyncio.Task[None]] = []

    async def start(**limits: float) -> Running:
        held = asyncio.Event()
        chosen = {"max_connections": 8, "per_client": 4, "rate": 1000, **limits}
        server = HttpsServer(
            lambda request: _handler(held, request),
            _admit,
            context,
            (),
            Limits(**chosen),  # type: ignore[arg-type]
        )
        listener = socket.create_server(("127.0.0.1", 0))
        tasks.append(asyncio.create_task(server.serve(listener)))
        return Running(server, listener.getsockname()[1], cert, held)

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def statuses(reply: bytes) -> list[int]:
    """The status of each response in what a connection received (bodies here never hold one)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", reply)]


async def idle_connections(running: Running, source: str, count: int) -> list[asyncio.StreamWriter]:
    """`count` TLS connections from `source` that send nothing, once the server holds them all."""
    before = running.server.open_connections
    writers = [(await running.open(source))[1] for _ in range(count)]
    await eventually(lambda: running.server.open_connections == before + count, what=f"{count} from {source}")
    return writers


async def closed_soon(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(reader.read(), within) == b""
    return False


async def test_a_host_at_its_share_closes_its_own_idlest_connection_and_never_another_hosts(serve) -> None:
    running = await serve(max_connections=8, per_client=2)
    other = await running.open("127.0.0.2")
    first = await running.open("127.0.0.3")
    await asyncio.sleep(0.05)
    second = await running.open("127.0.0.3")
    await eventually(lambda: running.server.open_connections == 3, what="three open")
    reply = await running.exchange(get("/", "Connection: close"), source="127.0.0.3")
    assert statuses(reply) == [200]
    assert await closed_soon(first[0])  # the longest idle of the same address
    assert running.server.stats.made_room == 1
    second[1].write(get("/", "Connection: close"))
    assert statuses(await asyncio.wait_for(second[0].read(), 5)) == [200]
    other[1].write(get("/", "Connection: close"))
    assert statuses(await asyncio.wait_for(other[0].read(), 5)) == [200]


async def test_at_the_total_cap_the_administrator_gets_in_past_a_flood_from_several_hosts(serve) -> None:
    running = await serve(max_connections=8, per_client=4)
    flood = [*await idle_connections(running, "127.0.0.4", 4), *await idle_connections(running, "127.0.0.5", 4)]
    for attempt in range(3):  # the administrator, then a scraper, then the administrator again
        source = "127.0.0.2" if attempt != 1 else "127.0.0.3"
        assert statuses(await running.exchange(get("/", "Connection: close"), source=source)) == [200]
    assert running.server.stats.made_room == 2  # the third came when the first two had left
    assert running.server.stats.refused_full == 0
    for writer in flood:
        writer.close()


async def test_connections_being_answered_are_never_closed_to_make_room(serve) -> None:
    running = await serve(max_connections=2, per_client=2)
    busy = [await running.open("127.0.0.4") for _ in range(2)]
    for _, writer in busy:
        writer.write(get("/hold", "Connection: close"))
    await eventually(
        lambda: sum(c.busy for held in running.server._open.values() for c in held) == 2, what="both being answered"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port, local_addr=("127.0.0.2", 0))
    assert await closed_soon(reader)  # no room: closed at once, before any TLS
    writer.close()
    assert running.server.stats.refused_full == 1
    running.held.set()
    for reader, _ in busy:
        assert statuses(await asyncio.wait_for(reader.read(), 5)) == [200]


async def test_a_connection_ends_at_its_lifetime_however_often_it_asks(serve) -> None:
    running = await serve(lifetime=4.0, idle_timeout=2.0)  # the last answer comes 2 s before the end
    reader, writer = await running.open()
    answers = b""
    for _ in range(40):  # one request every 0.2 s: each restarts nothing
        writer.write(get("/"))
        with contextlib.suppress(TimeoutError):
            answers += await asyncio.wait_for(reader.read(65536), 2)
        if reader.at_eof():
            break
        await asyncio.sleep(0.2)
    assert reader.at_eof() or await closed_soon(reader)
    assert b"connection: close" in answers.lower()
    assert 3 <= len(statuses(answers)) < 30


async def test_a_request_sent_a_byte_at_a_time_is_cut_at_its_deadline(serve) -> None:
    running = await serve(request_timeout=1.0)
    reader, writer = await running.open()
    started = asyncio.get_running_loop().time()
    for byte in get("/", "X-Slow: " + "a" * 100):
        writer.write(bytes([byte]))
        if reader.at_eof():
            break
        await asyncio.sleep(0.05)
    assert await closed_soon(reader)
    assert asyncio.get_running_loop().time() - started < 7  # well before the 128 bytes were all sent
    await eventually(lambda: running.server.stats.timed_out == 1, what="counted")


async def test_requests_beyond_an_address_rate_get_429_and_other_addresses_are_served(serve) -> None:
    running = await serve(rate=2)  # 2 a second, 4 in a burst: the connection takes one
    reply = await running.exchange(get("/") * 5 + get("/", "Connection: close"), timeout=15)
    assert statuses(reply)[:3] == [200, 200, 200] and 429 in statuses(reply)
    assert b"retry-after: 1" in reply.lower()
    assert statuses(await running.exchange(get("/", "Connection: close"), source="127.0.0.2")) == [200]
    assert running.server.stats.refused_rate >= 1


async def test_head_gets_the_headers_of_get_and_the_connection_goes_on(serve) -> None:
    running = await serve()
    reply = await running.exchange(get("/page", method="HEAD") + get("/page", "Connection: close"))
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 11" in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"GET /page 0")  # HEAD sent no body
    assert running.server.stats.internal_errors == 0


@pytest.mark.parametrize(
    "target, status",
    [
        (b"//[/", 200),  # a path like any other
        (b"/%C2%B2?address=%C2%B2", 200),
        (b"/\xc2\xb2", 400),  # raw UTF-8: a target is ASCII
        (b"*", 400),
        (b"http://elsewhere.example/", 400),
        (b"?x=1", 400),
    ],
)
async def test_odd_targets_get_an_answer(serve, target, status) -> None:
    running = await serve()
    reply = await running.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(reply) == [status], reply[:200]
    assert running.server.stats.internal_errors == 0


async def test_content_length_with_transfer_encoding_is_refused(serve) -> None:
    running = await serve()
    smuggled = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert statuses(await running.exchange(smuggled)) == [400]


async def test_a_body_is_read_only_once_admitted_and_within_its_route_limit(serve) -> None:
    running = await serve()
    # Never sent, and not waited for: the route refuses before any body is read.
    refused = await running.exchange(b"POST /private HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", timeout=3)
    assert statuses(refused) == [401]
    too_big = await running.exchange(b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n" + b"a" * 11)
    assert statuses(too_big) == [413]
    chunk = b"8\r\naaaaaaaa\r\n"
    chunked = b"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2 + b"0\r\n\r\n"
    assert statuses(await running.exchange(chunked)) == [413]
    fits = await running.exchange(
        b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n" + b"a" * 10
    )
    assert statuses(fits) == [200] and fits.endswith(b"POST /small 10")


async def test_a_failing_handler_is_answered_500_and_said_in_the_log_once(serve) -> None:
    running = await serve()
    failures = peer_events("web request failed", level="error")
    reported = failures.reported
    reply = await running.exchange(get("/boom") + get("/boom", "Connection: close"))
    assert statuses(reply) == [500, 500] and b"Traceback" not in reply
    assert running.server.stats.internal_errors == 2
    assert failures.reported - reported <= 1


async def test_plain_http_is_redirected_to_the_address_reached_never_to_the_host_header(serve) -> None:
    running = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"GET /nodes/1?x=2 HTTP/1.1\r\nHost: evil.example\r\n\r\n" + get("/"))
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert statuses(reply) == [308]  # one answer, then closed: plain HTTP holds nothing
    assert f"location: https://127.0.0.1:{running.port}/nodes/1?x=2\r\n".encode() in reply.lower()


async def test_a_deadline_met_as_the_handshake_ends_leaves_the_socket_to_its_transport(serve, monkeypatch) -> None:
    """When the deadline cancels the wait just as the TLS handshake ends, asyncio closes the
    transport it made, which owns the socket from then on. Were the server to close the socket
    as well, its number would come back with the next client while the transport still held it,
    and that client's wait for data would fail."""
    loop = asyncio.get_running_loop()
    faults: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: faults.append(context))
    made = loop.connect_accepted_socket

    async def too_late(*args: object, **kwargs: object) -> object:
        monkeypatch.setattr(loop, "connect_accepted_socket", made)  # the first connection only
        transport, _ = await made(*args, **kwargs)
        transport.close()  # as asyncio does when the wait for the handshake is cancelled
        raise TimeoutError

    monkeypatch.setattr(loop, "connect_accepted_socket", too_late)
    running = await serve()
    first = await running.open()
    assert await closed_soon(first[0])
    assert statuses(await running.exchange(get("/", "Connection: close"))) == [200]
    assert running.server.stats.bad_requests == 1
    assert faults == []
