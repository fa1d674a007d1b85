"""A small HTTPS server: h11 parses and writes HTTP/1.1, asyncio carries it, TLS from ssl.

Why not a framework: aiohttp (the obvious asyncio choice) adds about 10 MB of resident memory to
the gateway, a sixth of its whole budget; h11 adds 0.3 MB and leaves only the socket loop here.

One port serves both: the first byte of a connection tells a TLS handshake (0x16) from plain
HTTP, which gets nothing but a redirect to the same address over HTTPS. Clients outside `allow`
(the face's `allow` and `metrics_allow` together) are disconnected at once, before any TLS work;
beyond `max_connections` new ones are too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from ipaddress import IPv4Address, IPv4Network
from urllib.parse import parse_qsl, urlsplit

import h11
import structlog

log = structlog.get_logger(__name__)

TLS_RECORD_HANDSHAKE = 0x16  # the first byte a TLS client sends
MAX_HEAD = 16 * 1024  # request line and headers
MAX_BODY = 16 * 1024  # a login or action form is a few hundred bytes
FIRST_BYTE_TIMEOUT = 10.0  # seconds a new connection may stay silent
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0  # seconds to wait for the next request on a kept-alive connection
SHUTDOWN_TIMEOUT = 2.0
ACCEPT_PAUSE = 0.5  # seconds before accepting again after the system refused a connection to us


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # path and query, as sent
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes
    client: str  # the peer's IPv4 address

    def cookie(self, name: str) -> str | None:
        cookies: SimpleCookie = SimpleCookie()
        with contextlib.suppress(CookieError):
            cookies.load(self.headers.get("cookie", ""))
        morsel = cookies.get(name)
        return morsel.value if morsel is not None else None

    def form(self) -> dict[str, str]:
        """The fields of an application/x-www-form-urlencoded body (a field given twice: the last)."""
        try:
            return _fields(self.body.decode("ascii"))
        except UnicodeDecodeError:
            return {}


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    # Instead of `body`: parts made while they are sent (chunked), so a large body is never whole
    # in memory.
    parts: Iterable[bytes] | None = None


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    requests: int = 0
    refused_not_allowed: int = 0
    refused_full: int = 0
    bad_requests: int = 0  # malformed HTTP, too large, or a failed TLS handshake
    redirected: int = 0  # plain HTTP requests sent to HTTPS
    accept_errors: int = 0


@dataclass
class HttpsServer:
    handler: Handler
    tls: ssl.SSLContext
    allow: tuple[IPv4Network, ...]  # () = any
    max_connections: int
    stats: ServerStats = field(default_factory=ServerStats)
    _open: set[asyncio.Task[None]] = field(default_factory=set)

    async def serve(self, listener: socket.socket) -> None:
        """Accept connections on a bound, listening socket until cancelled."""
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        try:
            while True:
                try:
                    sock, (host, _) = await loop.sock_accept(listener)
                except OSError as error:  # out of file descriptors, say: wait, and the others go on
                    self.stats.accept_errors += 1
                    log.warning("web cannot accept a connection", error=str(error))
                    await asyncio.sleep(ACCEPT_PAUSE)
                    continue
                if not within(IPv4Address(host), self.allow):
                    self.stats.refused_not_allowed += 1
                    sock.close()
                elif len(self._open) >= self.max_connections:
                    self.stats.refused_full += 1
                    sock.close()
                else:
                    self.stats.connections += 1
                    task = asyncio.create_task(self._connection(sock, host))
                    self._open.add(task)
                    task.add_done_callback(self._open.discard)
        finally:
            for task in tuple(self._open):
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)

    async def _connection(self, sock: socket.socket, client: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            first = await asyncio.wait_for(_peek(loop, sock), FIRST_BYTE_TIMEOUT)
            secure = first == bytes([TLS_RECORD_HANDSHAKE])
            reader = asyncio.StreamReader(limit=MAX_HEAD)
            protocol = asyncio.StreamReaderProtocol(reader)
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=self.tls if secure else None,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if secure else None,
                ssl_shutdown_timeout=SHUTDOWN_TIMEOUT if secure else None,
            )
        except (OSError, TimeoutError, ssl.SSLError):
            self.stats.bad_requests += 1  # silent, gone, or a handshake the client gave up on
            sock.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            await self._exchange(reader, writer, client, self.handler if secure else self._redirect)
        except (OSError, TimeoutError, ssl.SSLError):
            pass  # the client went away mid-request
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                await asyncio.wait_for(writer.wait_closed(), SHUTDOWN_TIMEOUT)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str, handler: Handler
    ) -> None:
        """Requests and responses on one connection, kept alive while the client wants."""
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        while True:
            try:
                request = await asyncio.wait_for(_read_request(connection, reader, client), IDLE_TIMEOUT)
            except (h11.RemoteProtocolError, _TooLarge) as error:
                self.stats.bad_requests += 1
                status = 413 if isinstance(error, _TooLarge) else error.error_status_hint
                if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(connection, writer, Response(status, b"", "text/plain", (("connection", "close"),)))
                return
            except TimeoutError:
                return
            if request is None:
                return
            self.stats.requests += 1
            try:
                response = await handler(request)
            except Exception:
                log.exception("web request failed", method=request.method, path=request.path)
                response = Response(500, b"internal error; see the gateway's log", "text/plain")
            try:
                await _send(connection, writer, response)
            except (OSError, ssl.SSLError):
                raise  # the client went away
            except Exception:  # a body made while it is sent failed: the client sees it cut short
                log.exception("web response failed", method=request.method, path=request.path)
                return
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            connection.start_next_cycle()

    async def _redirect(self, request: Request) -> Response:
        self.stats.redirected += 1
        host = request.headers.get("host", "")
        if not host or any(char in host for char in "/\\@ "):
            return Response(400, b"plain HTTP is not served: use https://", "text/plain")
        return Response(308, b"", "text/plain", (("location", f"https://{host}{request.target}"),))


def within(address: IPv4Address, networks: tuple[IPv4Network, ...]) -> bool:
    """Whether an allow list admits an address (an empty one admits any)."""
    return not networks or any(address in network for network in networks)


def _fields(text: str) -> dict[str, str]:
    """Form or query fields; text with more fields than any page sends gives none."""
    try:
        return dict(parse_qsl(text, max_num_fields=32))
    except ValueError:
        return {}


class _TooLarge(Exception):
    pass


async def _peek(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """The first byte the client sent, left in the socket for whoever reads next."""
    while True:
        try:
            return sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            await _readable(loop, sock)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def _read_request(connection: h11.Connection, reader: asyncio.StreamReader, client: str) -> Request | None:
    """The next whole request, or None when the client closed the connection."""
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(8192))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise _TooLarge
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            text = head.target.decode("ascii", "replace")
            target = urlsplit(text)
            headers = {name.decode("ascii").lower(): value.decode("latin-1") for name, value in head.headers}
            return Request(
                head.method.decode("ascii"),
                text,
                target.path or "/",
                _fields(target.query),
                headers,
                bytes(body),
                client,
            )
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _send(connection: h11.Connection, writer: asyncio.StreamWriter, response: Response) -> None:
    length = [] if response.parts is not None else [("content-length", str(len(response.body)))]
    headers = [("content-type", response.content_type), *length, *response.headers]
    reason = HTTPStatus(response.status).phrase.encode()
    writer.write(connection.send(h11.Response(status_code=response.status, headers=headers, reason=reason)))
    for part in (response.body,) if response.parts is None else response.parts:
        if part:
            writer.write(connection.send(h11.Data(data=part)))
            await writer.drain()  # the client takes each part before the next is made
    writer.write(connection.send(h11.EndOfMessage()))
    await writer.drain()
