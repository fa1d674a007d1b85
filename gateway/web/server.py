"""A small HTTPS server: h11 parses and writes HTTP/1.1, asyncio carries it, TLS from ssl.

Why not a framework: aiohttp (the obvious asyncio choice) adds about 10 MB of resident memory to
the gateway, a sixth of its whole budget; h11 adds 0.3 MB and leaves only the socket loop here.

One port serves both: the first byte of a connection tells a TLS handshake (0x16) from plain
HTTP, which gets nothing but a redirect to the same address over HTTPS, and is closed.

No client can hold the face for itself (`Limits`):

- Clients outside `allow` are disconnected at once, before any TLS work.
- Connections: at most `max_connections` in all and `per_client` from one address. At either cap
  a newcomer closes an idle connection (none being answered) to make room: its own address's
  longest idle at the per-address cap; at the total cap, the longest idle of the address holding
  the most, if that holds more than the newcomer would. So a flooding host keeps its share and
  the administrator and a scraper still get in.
- Requests and new connections: `rate` a second from one address (a burst of twice that); beyond,
  a request gets 429 and its connection waits a second (as after any 429), a new connection is
  closed at once.
- Deadlines no request restarts: the handshake and first request within `request_timeout` of the
  accept, each later request whole within `idle_timeout` of the answer before it, and no
  connection lives longer than `lifetime` (the answer then says ``Connection: close``); each
  answer is sent within SEND_TIMEOUT.
- A request's body is read only after the handler's `admit` has seen the head (the session is
  checked there for routes that need one) and within the size `admit` gives for its route.

Every request gets an answer: a malformed one its 4xx, a failure of the handler 500 (the
traceback stays in the gateway, summarised in the log at most once a minute), HEAD the headers
of GET.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from ipaddress import IPv4Address, IPv4Network
from urllib.parse import parse_qsl

import h11
import structlog

from gateway.logging import peer_events
from gateway.ratelimit import RateLimit

log = structlog.get_logger(__name__)

TLS_RECORD_HANDSHAKE = 0x16  # the first byte a TLS client sends
MAX_HEAD = 16 * 1024  # request line and headers
MAX_BODY = 16 * 1024  # what `admit` allows unless it says otherwise
MAX_FIELDS = 64  # fields of a form or query: the most a page sends (a node's 46 circuit names) and some
REQUEST_TIMEOUT = 10.0  # seconds from the accept to the first request whole (TLS handshake included)
IDLE_TIMEOUT = 10.0  # seconds from an answer to the next request whole, on a kept-alive connection
LIFETIME = 120.0  # seconds a connection may live, however busy
SEND_TIMEOUT = 30.0  # seconds an answer may take to go out
RATE_PAUSE = 1.0  # seconds a connection waits after a request refused for a rate (429)
SHUTDOWN_TIMEOUT = 2.0
ACCEPT_PAUSE = 0.5  # seconds before accepting again after the system refused a connection to us


@dataclass(frozen=True, slots=True)
class Request:
    method: str  # HEAD comes as GET (see head_only)
    target: str  # path and query, as sent
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes
    client: str  # the peer's IPv4 address
    head_only: bool = False  # a HEAD request: answered as GET, the body left out

    def cookie(self, name: str) -> str | None:
        cookies: SimpleCookie = SimpleCookie()
        with contextlib.suppress(CookieError):
            cookies.load(self.headers.get("cookie", ""))
        morsel = cookies.get(name)
        return morsel.value if morsel is not None else None

    def form(self) -> dict[str, str]:
        """The text fields of a form's body, urlencoded or multipart (a field given twice: the last)."""
        if self.headers.get("content-type", "").startswith("multipart/form-data"):
            return {name: value.decode("utf-8", "replace") for name, value in self.files().items()}
        try:
            return _fields(self.body.decode("ascii"))
        except UnicodeDecodeError:
            return {}

    def files(self) -> dict[str, bytes]:
        """The fields of a multipart/form-data body (an upload), as bytes; {} for any other body."""
        content_type = self.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return {}
        from email.parser import BytesParser  # only an upload needs it
        from email.policy import HTTP

        head = f"content-type: {content_type}\r\n\r\n".encode("latin-1")
        message = BytesParser(policy=HTTP).parsebytes(head + self.body)
        if not message.is_multipart():
            return {}
        found: dict[str, bytes] = {}
        for part in message.iter_parts():  # type: ignore[attr-defined]
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and len(found) < MAX_FIELDS:
                found[name] = payload if isinstance(payload, bytes) else b""
        return found


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    # Instead of `body`: parts made while they are sent (chunked), so a large body is never whole
    # in memory.
    parts: Iterable[bytes] | None = None


RATE_REFUSED = Response(429, b"too many requests from this address", "text/plain", (("retry-after", "1"),))
Handler = Callable[[Request], Awaitable[Response]]
#: Sees a request's head (its body empty) before the body is read: the most body bytes its route
#: takes, or the answer to send at once without reading any.
Admit = Callable[[Request], "int | Response"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int
    per_client: int
    rate: int  # requests, and new connections, a second from one address
    request_timeout: float = REQUEST_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    lifetime: float = LIFETIME


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    requests: int = 0
    refused_not_allowed: int = 0
    refused_full: int = 0  # at a cap with no idle connection to close
    refused_rate: int = 0  # requests and connections beyond an address's rate
    made_room: int = 0  # idle connections closed for a newcomer
    timed_out: int = 0  # connections closed at a deadline
    bad_requests: int = 0  # malformed HTTP, too large, or a failed TLS handshake
    redirected: int = 0  # plain HTTP requests sent to HTTPS
    accept_errors: int = 0
    internal_errors: int = 0  # answered 500, or a connection that failed in the server itself


@dataclass(eq=False, slots=True)
class _Connection:
    client: str
    accepted: float  # loop time
    idle_since: float
    busy: bool = False  # a request is being answered
    started: bool = False  # its task has begun (and so closes the socket however it ends)
    task: asyncio.Task[None] | None = None


@dataclass
class HttpsServer:
    handler: Handler
    admit: Admit
    tls: ssl.SSLContext
    allow: tuple[IPv4Network, ...]  # () = any
    limits: Limits
    stats: ServerStats = field(default_factory=ServerStats)
    _open: dict[str, set[_Connection]] = field(default_factory=dict)  # by client address
    _rate: RateLimit = field(init=False)

    def __post_init__(self) -> None:
        self._rate = RateLimit(self.limits.rate, 2 * self.limits.rate)
        self._failed = peer_events("web request failed", level="error")

    @property
    def open_connections(self) -> int:
        return sum(len(connections) for connections in self._open.values())

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
                elif not self._rate.allow(host):
                    self.stats.refused_rate += 1
                    sock.close()
                elif not self._room_for(host):
                    self.stats.refused_full += 1
                    sock.close()
                else:
                    self._start(sock, host, loop.time())
        finally:
            tasks = [c.task for connections in self._open.values() for c in connections if c.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, sock: socket.socket, client: str, now: float) -> None:
        self.stats.connections += 1
        connection = _Connection(client, now, now)
        self._open.setdefault(client, set()).add(connection)
        connection.task = asyncio.create_task(self._connection(sock, connection))
        connection.task.add_done_callback(lambda _: self._ended(connection, sock))

    def _ended(self, connection: _Connection, sock: socket.socket) -> None:
        self._drop(connection)
        if not connection.started:  # cancelled before it ran (closed to make room): nobody closed it
            sock.close()

    def _drop(self, connection: _Connection) -> None:
        held = self._open.get(connection.client)
        if held is not None:
            held.discard(connection)
            if not held:
                del self._open[connection.client]

    def _room_for(self, client: str) -> bool:
        """Whether a new connection from `client` may open, closing an idle one to make room."""
        own = len(self._open.get(client, ()))
        if own >= self.limits.per_client:
            return self._close_idlest(client)
        if self.open_connections < self.limits.max_connections:
            return True
        heaviest = max(self._open, key=lambda address: len(self._open[address]))
        return len(self._open[heaviest]) > own + 1 and self._close_idlest(heaviest)

    def _close_idlest(self, client: str) -> bool:
        idle = [c for c in self._open.get(client, ()) if not c.busy and c.task is not None]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.idle_since)
        assert victim.task is not None
        victim.task.cancel()
        self._drop(victim)  # its place is free now; its task ends on its own
        self.stats.made_room += 1
        return True

    async def _connection(self, sock: socket.socket, connection: _Connection) -> None:
        connection.started = True
        loop = asyncio.get_running_loop()
        deadline = connection.accepted + self.limits.request_timeout
        try:
            async with asyncio.timeout_at(deadline):
                first = await _peek(loop, sock)
        except (OSError, TimeoutError):
            self.stats.bad_requests += 1  # silent or gone
            sock.close()
            return
        except asyncio.CancelledError:  # closed to make room, or the face stops
            sock.close()
            raise
        secure = first == bytes([TLS_RECORD_HANDSHAKE])
        reader = asyncio.StreamReader(limit=MAX_HEAD)
        protocol = asyncio.StreamReaderProtocol(reader)
        # From here the transport asyncio makes owns the socket, and closes it whatever happens:
        # closed here as well, its number could come back with the next client while the
        # transport (shutting TLS down) still held it.
        try:
            async with asyncio.timeout_at(deadline):
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol,
                    sock,
                    ssl=self.tls if secure else None,
                    ssl_handshake_timeout=self.limits.request_timeout if secure else None,
                    ssl_shutdown_timeout=SHUTDOWN_TIMEOUT if secure else None,
                )
        except (OSError, TimeoutError, ssl.SSLError):
            self.stats.bad_requests += 1  # a handshake the client gave up on, or failed
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            await self._exchange(reader, writer, connection, secure)
        except TimeoutError:  # before OSError, of which it is a kind
            self.stats.timed_out += 1
        except (OSError, ssl.SSLError):
            pass  # the client went away mid-request
        except Exception as error:  # a fault of the server itself: counted, summarised in the log
            self._fault(connection.client, error)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                    await writer.wait_closed()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: _Connection, secure: bool
    ) -> None:
        """Requests and responses on one connection, kept alive while the client wants and the
        deadlines allow."""
        loop = asyncio.get_running_loop()
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        limits = self.limits
        ends = connection.accepted + limits.lifetime
        deadline = connection.accepted + limits.request_timeout
        while True:
            read_by = min(deadline, ends)
            try:
                async with asyncio.timeout_at(read_by):
                    request = await self._next_request(parser, reader, connection.client)
                if request is None:
                    return
                connection.busy = True
                response, unread = await self._respond(request, parser, reader, read_by, writer if not secure else None)
            except (h11.RemoteProtocolError, _Refused) as error:
                self.stats.bad_requests += 1
                status = error.status if isinstance(error, _Refused) else error.error_status_hint
                if parser.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(parser, writer, Response(status, b"", "text/plain"), closing=True)
                return
            last = not secure or unread or loop.time() >= ends - limits.idle_timeout
            async with asyncio.timeout(SEND_TIMEOUT):
                sent = await self._send(parser, writer, response, closing=last, head_only=request.head_only)
            if not sent or last or parser.our_state is not h11.DONE or parser.their_state is not h11.DONE:
                return
            parser.start_next_cycle()
            connection.busy = False
            connection.idle_since = loop.time()
            if response.status == HTTPStatus.TOO_MANY_REQUESTS:  # the server's or a route's limit
                await asyncio.sleep(RATE_PAUSE)
            deadline = connection.idle_since + limits.idle_timeout

    async def _next_request(self, parser: h11.Connection, reader: asyncio.StreamReader, client: str) -> Request | None:
        """The head of the next request (its body not read yet); None when the client closed."""
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(await reader.read(8192))
            elif isinstance(event, h11.Request):
                return _request(event, client)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def _respond(
        self,
        request: Request,
        parser: h11.Connection,
        reader: asyncio.StreamReader,
        read_by: float,
        plain: asyncio.StreamWriter | None,
    ) -> tuple[Response, bool]:
        """The answer to a request (on a `plain` HTTP connection, the redirect), and whether the
        request's body was left unread (the connection must then close)."""
        self.stats.requests += 1
        unread = "content-length" in request.headers or "transfer-encoding" in request.headers
        if plain is not None:
            return self._redirect(request, plain), unread
        if not self._rate.allow(request.client):
            self.stats.refused_rate += 1
            return RATE_REFUSED, unread
        admitted = self.admit(request)
        if isinstance(admitted, Response):
            return admitted, unread
        if int(request.headers.get("content-length", "0")) > admitted:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        async with asyncio.timeout_at(read_by):
            request = replace(request, body=await _read_body(parser, reader, admitted))
        try:
            return await self.handler(request), False
        except Exception as error:
            self._fault(request.client, error)
            return Response(500, b"internal error; see the gateway's log", "text/plain"), False

    def _redirect(self, request: Request, writer: asyncio.StreamWriter) -> Response:
        """To the same path over HTTPS, at the address and port the client reached (never the
        Host header's: a client must not make the gateway send anyone elsewhere)."""
        self.stats.redirected += 1
        host, port = writer.get_extra_info("sockname")[:2]
        return Response(308, b"", "text/plain", (("location", f"https://{host}:{port}{request.target}"),))

    async def _send(
        self,
        parser: h11.Connection,
        writer: asyncio.StreamWriter,
        response: Response,
        *,
        closing: bool,
        head_only: bool = False,
    ) -> bool:
        """Send a response; False when a body made while it was sent failed (the client sees it cut
        short, the server logs it)."""
        length = [] if response.parts is not None else [("content-length", str(len(response.body)))]
        close = [("connection", "close")] if closing else []
        headers = [("content-type", response.content_type), *length, *response.headers, *close]
        reason = HTTPStatus(response.status).phrase.encode()
        writer.write(parser.send(h11.Response(status_code=response.status, headers=headers, reason=reason)))
        parts = () if head_only else (response.body,) if response.parts is None else response.parts
        try:
            for part in parts:
                if part:
                    writer.write(parser.send(h11.Data(data=part)))
                    await writer.drain()  # the client takes each part before the next is made
        except (OSError, ssl.SSLError, TimeoutError):
            raise  # the client went away, or did not take the answer in time
        except Exception as error:
            self._fault("-", error)
            return False
        writer.write(parser.send(h11.EndOfMessage()))
        await writer.drain()
        return True

    def _fault(self, client: str, error: Exception) -> None:
        self.stats.internal_errors += 1
        where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        place = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
        self._failed.count(client, f"{error!r}{place}")


def within(address: IPv4Address, networks: tuple[IPv4Network, ...]) -> bool:
    """Whether an allow list admits an address (an empty one admits any)."""
    return not networks or any(address in network for network in networks)


def _fields(text: str) -> dict[str, str]:
    """Form or query fields; text with more fields than any page sends gives none."""
    try:
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS))
    except ValueError:
        return {}


class _Refused(Exception):
    """A request refused before its handler saw it, with the status to answer."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _request(head: h11.Request, client: str) -> Request:
    """The request of a head h11 parsed, or _Refused when it is one the face never serves."""
    target = head.target.decode("ascii", "replace")
    names = {name for name, _ in head.headers}
    # Only the origin form ("/path?query"); both framings at once is how requests are smuggled.
    if not target.startswith("/") or {b"content-length", b"transfer-encoding"} <= names:
        raise _Refused(HTTPStatus.BAD_REQUEST)
    path, _, query = target.partition("?")
    method = head.method.decode("ascii", "replace")
    return Request(
        "GET" if method == "HEAD" else method,
        target,
        path,
        _fields(query),
        {name.decode("ascii").lower(): value.decode("latin-1") for name, value in head.headers},
        b"",
        client,
        method == "HEAD",
    )


async def _read_body(parser: h11.Connection, reader: asyncio.StreamReader, most: int) -> bytes:
    body = bytearray()
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            parser.receive_data(await reader.read(8192))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > most:
                raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionResetError("the client closed mid-body")


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
