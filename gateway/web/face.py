"""The web face: status pages, the JSON API and /metrics over HTTPS, actions behind a login.

    GET  /  /nodes  /events  /config  /downloads      pages (logged in)
    GET  /nodes/{a}[/values|/trends|/names]           a node: its panel, every value, trends, circuit names
    GET  /nodes/{a}/chart  /nodes/{a}/trends.csv      a trend chart (for the page's script), the history as CSV
    GET  /api/nodes  /api/nodes/{a}[/panel|/trends]   the same data as JSON (logged in; the panel with an ETag)
    GET  /settings  /settings/download[?secrets=1]    the settings form; the configuration as TOML
    POST /settings  /settings/revert                  change settings; take back the ones before the last change
    POST /settings/upload|bdt|certificate             a configuration, a BBMD table, a certificate and key
    GET  /downloads/{file}                            the MIB module, the EDE list, the PICS
    GET  /metrics                                     Prometheus text (gzip if asked), no login, web.metrics_allow
                                                      (or web.allow while that is empty) only
    GET  /login  POST /login  POST /logout
    GET  /confirm/{action}  POST /actions/{action}    restart, clear-alarms, forget, rescan, names (logged in,
                                                      CSRF token)

Everything is read from the node cache and the history as they stand; nothing here waits on the
bus, except an action's own write (forget and rescan hop to the bus thread, but send nothing
themselves). Every POST needs the session's CSRF token; settings and uploads go through
`gateway.config_file` and land at fixed names beside the state file, never at a path a request
names.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from ipaddress import IPv4Address
from typing import Any

import structlog

from gateway.audit import AUDIT_FILE, Actor, AuditLog
from gateway.config import Config
from gateway.errors import GatewayError, ListenError
from gateway.findings import NetworkFinding
from gateway.hub import EventHub
from gateway.logging import peer_events
from gateway.nodes.api import NodeAPI
from gateway.pointmap import AUX_CIRCUITS, CIRCUITS
from gateway.ratelimit import RateLimit
from gateway.web import pages
from gateway.web.auth import (
    USER,
    CheckerBusy,
    LoginLimiter,
    PasswordChecker,
    PasswordHashError,
    Session,
    Sessions,
    check_hash,
)
from gateway.web.configuring import Configuring
from gateway.web.metrics import CONTENT_TYPE, Collector, Metrics, decompressed
from gateway.web.pages import MAINS
from gateway.web.panel import panel_page
from gateway.web.server import HttpsServer, Limits, Request, Response, ServerStats, within
from gateway.web.source import CLEAR_LATCHED, GLOBAL_RESET, Source, Wiring, describe, finding
from gateway.web.tls import server_context
from gateway.web.trends import chart, csv_parts, trends_page

log = structlog.get_logger(__name__)

COOKIE = "bcpm_session"
EVENTS_KEPT = 200
METRICS_RATE, METRICS_BURST = 1, 5  # scrapes a second from one address, and in a burst
#: Requests that carry a body: (path or path prefix ending in "/", most bytes, login needed). The
#: body is read only after the session is checked (when needed). Any other request takes none.
BODIES = (
    ("/login", 4096, False),
    ("/logout", 1024, True),
    ("/actions/", 8192, True),  # a node's 46 circuit names, every character escaped, and some
    ("/settings", 16384, True),  # a section's keys
    ("/settings/", 65536, True),  # an upload: a configuration, a BBMD table, a certificate chain and key
)
STATIC = {
    f"/static/{name}": (name, kind)
    for name, kind in (
        ("app.js", "text/javascript; charset=utf-8"),
        ("panel.js", "text/javascript; charset=utf-8"),
        ("trends.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    )
}
DOWNLOADS = {  # name -> (content type, what it is)
    "BCPM-GATEWAY-MIB.txt": "text/plain; charset=utf-8",
    "PICS.md": "text/markdown; charset=utf-8",
    "bcpm-gateway-ede.csv": "text/csv; charset=utf-8",
}
SECURITY_HEADERS = (
    ("strict-transport-security", "max-age=31536000"),
    ("content-security-policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),  # "no-referrer" would make browsers send "Origin: null" with forms
    ("cache-control", "no-store"),
)


class WebFace:
    def __init__(self, config: Config, nodes: NodeAPI, hub: EventHub, wiring: Wiring) -> None:
        self.settings = config.web
        self.listening = asyncio.Event()  # set once the socket is bound
        self.source = Source(config, nodes, hub, wiring)
        self.sessions = Sessions(self.settings.session_minutes)
        self.limiter = LoginLimiter(self.settings.login_attempts)
        self.checker = PasswordChecker()
        self.audit = AuditLog(config.gateway.state_file.parent / AUDIT_FILE)
        self.configuring = Configuring(self.source, self.audit, self._log_action)
        self._audits: set[asyncio.Future[None]] = set()  # audit records being written
        self._scrapes = RateLimit(METRICS_RATE, METRICS_BURST)
        self._login_failures = peer_events("web login failed")
        self._logins_refused = peer_events("web login refused: too many failures or checks")
        self.events: deque[tuple[str, str]] = deque(maxlen=EVENTS_KEPT)  # (UTC time, what), newest first
        self._findings: set[str] = set()  # what the BACnet network doctor finds now
        self.server: HttpsServer | None = None
        self.stats = ServerStats()
        self.metrics = Metrics(Collector(self.source, self.stats, lambda: self.limiter.refused), self._poll_cycle)
        self._static = {
            path: resources.files(__package__).joinpath("static", name).read_bytes()
            for path, (name, _) in STATIC.items()
        }

    async def run(self) -> None:
        if self.settings.password_hash is not None:
            try:
                check_hash(self.settings.password_hash)
            except PasswordHashError as error:
                raise GatewayError(f"web.password_hash: {error}") from None
        tls = await server_context(self.source.config)
        listener = self._bind()
        self.listening.set()
        # Prometheus need not be among the hosts that see the pages: either list lets a client in.
        web = self.settings
        admitted = web.allow + web.metrics_clients if web.allow and web.metrics_clients else ()
        limits = Limits(web.max_connections, min(web.max_connections_per_client, web.max_connections), web.rate_limit)
        self.server = HttpsServer(self._handle, self._admit, tls, admitted, limits, self.stats)
        host, port = listener.getsockname()[:2]
        log.info(
            "web listening",
            url=f"https://{host}:{port}/",
            login="set" if self.settings.password_hash else "no password set: nobody can log in",
        )
        events = self.source.subscribe_events()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.server.serve(listener))
                async for event in events:
                    self._record(describe(event))
                    if isinstance(event, NetworkFinding) and event.cleared:
                        self._findings.discard(finding(event))
                    elif isinstance(event, NetworkFinding):
                        self._findings.add(finding(event))
        finally:
            events.close()
            listener.close()
            self.metrics.close()

    def _bind(self) -> socket.socket:
        try:
            listener = socket.create_server((self.settings.address, self.settings.port), backlog=128)
        except OSError as error:
            raise ListenError(
                f"web cannot listen on {self.settings.address}:{self.settings.port} "
                f"(web.address, web.port): {error.strerror}"
            ) from error
        return listener

    def _poll_cycle(self) -> float:
        """Seconds a /metrics snapshot serves: a poll cycle (the last one's, at least the interval
        and a second)."""
        last = self.source.bus()["cycle_s"] or 0.0
        return max(1.0, self.source.config.serial.poll_interval, last)

    def _record(self, what: str) -> None:
        self.events.appendleft((datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"), what))

    # --- requests ---

    def _admit(self, request: Request) -> int | Response:
        """Before a request's body is read: how much of it its route takes, or the answer now."""
        found = [(most, login) for route, most, login in BODIES if _on(request.path, route)]
        if not found:
            return 0
        most, login_needed = found[0]
        if not within(IPv4Address(request.client), self.settings.allow):
            return _outside_allow()
        if request.method != "POST":
            return 0  # the handler answers it without a body
        if login_needed and self.sessions.find(request.cookie(COOKIE)) is None:
            self._refused(request, None, "no session")
            return self._not_logged_in(request)
        return most

    async def _handle(self, request: Request) -> Response:
        response = await self._route(request)
        return replace(response, headers=response.headers + SECURITY_HEADERS)

    async def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/metrics" and method == "GET":
            return await self._metrics(request)
        if not within(IPv4Address(request.client), self.settings.allow):
            return _outside_allow()
        if path in STATIC and method == "GET":
            return Response(200, self._static[path], STATIC[path][1])
        if path == "/login":
            return (
                await self._login(request)
                if method == "POST"
                else _html(pages.login("", password_set=self.settings.password_hash is not None))
            )
        session = self.sessions.find(request.cookie(COOKIE))
        if session is None:
            return self._not_logged_in(request)
        if method == "POST" and path == "/logout" and self._csrf_ok(request, session):
            self.sessions.end(session.token)
            return _redirect("/login", cookie=_cookie("", 0))
        response = await self._as_logged_in(request, session)
        # The cookie lives as long as the session: its idle time restarted, never past its end.
        return replace(
            response, headers=(*response.headers, ("set-cookie", _cookie(session.token, session.seconds_left())))
        )

    async def _as_logged_in(self, request: Request, session: Session) -> Response:
        path, method = request.path, request.method
        if method == "POST":
            if not self._csrf_ok(request, session):
                self._refused(request, session, "csrf token or origin")
                return Response(
                    403, b"refused: the form is stale or came from another site; reload the page", "text/plain"
                )
            if path.startswith("/actions/"):
                return await self._act(path.removeprefix("/actions/"), request, session)
            if path == "/settings" or path.startswith("/settings/"):
                return await self.configuring.post(path.removeprefix("/settings").lstrip("/"), request, session)
        elif method == "GET":
            page = await self._page(path, request, session)
            if page is not None:
                return page
        if method not in ("GET", "POST"):
            return Response(405, b"only GET, HEAD and POST", "text/plain", (("allow", "GET, HEAD, POST"),))
        return Response(404, b"not found", "text/plain")

    def _not_logged_in(self, request: Request) -> Response:
        if request.path.startswith("/api/"):
            return _json(401, {"error": "log in first: POST /login with user and password"})
        return _redirect("/login")

    async def _page(self, path: str, request: Request, session: Session) -> Response | None:
        csrf = session.csrf
        source = self.source
        if path == "/":
            bacnet = source.config.bacnet
            doctor = sorted(self._findings) if bacnet.enabled and bacnet.doctor_interval else None
            return _html(pages.overview(time.time() - source.started, source.faces(), source.bus(), doctor, csrf))
        if path == "/nodes":
            return _html(pages.nodes(source.node_list(), csrf))
        if path == "/api/nodes":
            return _json(200, source.node_list())
        if path.startswith("/nodes/"):
            return self._node_page(path.removeprefix("/nodes/"), request, csrf)
        if path.startswith("/api/nodes/"):
            return self._node_api(path.removeprefix("/api/nodes/"), request)
        if path == "/events":
            return _html(pages.events(list(self.events), csrf))
        if path == "/config":
            return _html(pages.configuration(source.running_settings(), csrf))
        if path == "/settings":
            return _html(self.configuring.page(csrf))
        if path == "/settings/download":
            return self.configuring.download(request, session)
        if path == "/downloads":
            return _html(pages.downloads(csrf, ede=source.config.bacnet.enabled))
        if path.startswith("/downloads/"):
            return await self._download(path.removeprefix("/downloads/"))
        if path.startswith("/confirm/"):
            return self._confirm(path.removeprefix("/confirm/"), request, csrf)
        return None

    def _node_page(self, rest: str, request: Request, csrf: str) -> Response | None:
        """A node's pages: its panel, every value, its trends (chart, CSV), its circuits' names."""
        number, _, view = rest.partition("/")
        address, source = _address(number), self.source
        if address is None or address not in source.nodes:
            return None
        if view == "":
            panel = source.panel(address) or {}
            return _html(panel_page(panel, source.summary(address), source.refresh_seconds(), csrf))
        if view == "values":
            return _html(pages.node(source.node_detail(address) or {}, csrf))
        if view == "names":
            return _html(pages.names_page(address, dict(source.circuit_names(address)), csrf))
        history = source.wiring.history
        names = source.circuit_names(address)
        if view == "trends":
            chosen = _channel(request.query.get("channel", "")) or 1
            charts = {
                "Mains (AUX inputs)": self._chart(address, list(AUX_CIRCUITS), names),
                _labels(names)[chosen]: self._chart(address, [chosen], names),
            }
            return _html(trends_page(address, names, chosen, charts if history else None, csrf))
        if view == "chart":
            channels = _channels(request.query.get("channels", ""))
            if not channels:
                return Response(400, b"channels=1,2,... (CT channels 1-46)", "text/plain")
            return _html(self._chart(address, channels, names)[1])
        if view == "trends.csv" and history is not None:
            parts = csv_parts(history, address, source.circuit_names(address))
            attachment = ("content-disposition", f'attachment; filename="bcpm-node-{address}-trends.csv"')
            return Response(200, content_type="text/csv; charset=utf-8", headers=(attachment,), parts=parts)
        return None

    def _chart(self, address: int, channels: list[int], names: Mapping[int, str]) -> tuple[str, str]:
        """A trend chart's own address (for the page's script) and its markup now."""
        source = f"/nodes/{address}/chart?channels={','.join(map(str, channels))}"
        return source, chart(*self.source.trends(address, channels), _labels(names))

    def _node_api(self, rest: str, request: Request) -> Response:
        number, _, view = rest.partition("/")
        address, source = _address(number), self.source
        if address is None or address not in source.nodes:
            return _json(404, {"error": "no such node"})
        if view == "":
            return _json(200, source.node_detail(address))
        if view == "panel":
            # Values change once a poll cycle at most, often not at all: an unchanged panel costs a 304.
            panel = json.dumps(source.panel(address), separators=(",", ":"))
            etag = f'"{hashlib.blake2s(panel.encode(), digest_size=8).hexdigest()}"'
            headers = (("etag", etag),)
            if request.headers.get("if-none-match") == etag:
                return Response(304, headers=headers)
            body = f'{{"refresh_s":{source.refresh_seconds()},"panel":{panel}}}'.encode()
            return Response(200, body, "application/json", headers)
        if view == "trends":
            channels = _channels(request.query.get("channels", ""))
            times, series = source.trends(address, channels)
            return _json(200, {"times": times, "currents": {str(c): values for c, values in series.items()}})
        return _json(404, {"error": "no such view of a node"})

    async def _download(self, name: str) -> Response | None:
        """A shipped file, or the EDE list of the devices as they are now (made off the event loop)."""
        content_type = DOWNLOADS.get(name)
        if content_type is None:
            return None
        wiring = self.source.wiring
        if name.endswith(".csv"):
            if not self.source.config.bacnet.enabled:
                return None
            body = (await asyncio.to_thread(wiring.ede)).encode()
        else:
            body = await asyncio.to_thread(wiring.shipped, name)
        return Response(200, body, content_type, (("content-disposition", f'attachment; filename="{name}"'),))

    async def _metrics(self, request: Request) -> Response:
        if not within(IPv4Address(request.client), self.settings.metrics_clients):
            return Response(403, b"metrics are not served to this address (web.metrics_allow, web.allow)", "text/plain")
        if not self._scrapes.allow(request.client):
            return Response(429, b"at most one scrape a second", "text/plain", (("retry-after", "1"),))
        snapshot = await self.metrics.snapshot()
        vary = ("vary", "accept-encoding")
        if _takes_gzip(request.headers.get("accept-encoding", "")):
            return Response(200, snapshot, CONTENT_TYPE, (("content-encoding", "gzip"), vary))
        return Response(200, content_type=CONTENT_TYPE, headers=(vary,), parts=decompressed(snapshot))

    async def _login(self, request: Request) -> Response:
        stored = self.settings.password_hash
        if stored is None:
            return _html(pages.login("", password_set=False), 403)
        actor = Actor(USER, request.client)
        attempt = self.limiter.attempt(request.client)
        if attempt is None:
            self._logins_refused.count(request.client, "too many failed logins")
            self._audit(actor, "log in", "refused: too many failed logins")
            return _html(pages.login("Too many failed logins: wait a minute.", password_set=True), 429)
        form = request.form()
        try:
            good = await self.checker.check(form.get("user", ""), form.get("password", ""), stored)
        except CheckerBusy:
            self.limiter.succeeded(request.client, attempt)  # not checked: it takes no place
            self._logins_refused.count(request.client, "too many logins waiting")
            return _html(pages.login("The gateway is busy checking logins: try again.", password_set=True), 503)
        if not good:
            self._login_failures.count(request.client, "wrong user or password")
            self._audit(actor, "log in", "refused: wrong user or password")
            return _html(pages.login("Wrong user or password.", password_set=True), 403)
        self.limiter.succeeded(request.client, attempt)
        session = self.sessions.create()
        log.info("web login", client=request.client, session=session.id)
        self._audit(replace(actor, session=session.id), "log in", "done")
        return _redirect("/", cookie=_cookie(session.token, session.seconds_left()))

    def _csrf_ok(self, request: Request, session: Session) -> bool:
        """The form's token is the session's, and a browser that names its origin names ours."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"https://{request.headers.get('host', '')}":
            return False
        return request.form().get("csrf") == session.csrf

    def _confirm(self, action: str, request: Request, csrf: str) -> Response | None:
        if action == "restart":
            return _html(
                pages.confirm(
                    "Restart the gateway? Every face stops and starts again; the meters are "
                    "polled again within seconds.",
                    "/actions/restart",
                    {},
                    csrf,
                    "/",
                )
            )
        if action == "rescan":
            return _html(
                pages.confirm(
                    "Scan the addresses of serial.scan that no node holds now? Polling keeps at least 90 % of the "
                    "line meanwhile; meters found appear on every face.",
                    "/actions/rescan",
                    {},
                    csrf,
                    "/",
                )
            )
        address = _address(request.query.get("address", ""))
        if address not in self.source.nodes:
            return None
        if action == "clear-alarms":
            return _html(
                pages.confirm(
                    f"Clear every latched alarm of node {address} (register {GLOBAL_RESET} = {CLEAR_LATCHED:d})? "
                    "Alarms whose condition persists latch again.",
                    "/actions/clear-alarms",
                    {"address": str(address)},
                    csrf,
                    f"/nodes/{address}",
                )
            )
        if action == "forget":
            return _html(
                pages.confirm(
                    f"Forget node {address}? It is no longer polled, its BACnet device, SNMP rows and Modbus TCP unit "
                    "go, and the state file drops it. A meter still on the line is found again by the next rescan.",
                    "/actions/forget",
                    {"address": str(address)},
                    csrf,
                    f"/nodes/{address}",
                )
            )
        return None

    async def _act(self, action: str, request: Request, session: Session) -> Response:
        form = request.form()
        if action == "restart":
            self._log_action(request, session, "restart the gateway")
            self.source.restart()
            return _html(
                pages.outcome(
                    "Restarting",
                    "The gateway is restarting; this page answers again in a few seconds.",
                    "/",
                    session.csrf,
                    ok=True,
                )
            )
        if action == "rescan":
            return await self._attempt(
                request,
                session,
                "rescan the bus",
                self.source.rescan(),
                "A rescan of the unused addresses runs now; meters found appear on the Nodes page.",
                "/",
            )
        address = _address(form.get("address", ""))
        if address is not None and address in self.source.nodes:
            if action == "names":
                return await self._name_circuits(address, form, request, session)
            if action == "clear-alarms":
                return await self._attempt(
                    request,
                    session,
                    f"clear latched alarms of node {address}",
                    self.source.clear_latched_alarms(address),
                    f"Latched alarms of node {address} cleared; the next poll shows it.",
                    f"/nodes/{address}",
                )
            if action == "forget":
                return await self._attempt(
                    request,
                    session,
                    f"forget node {address}",
                    self.source.forget(address),
                    f"Node {address} is forgotten: no longer polled, served or saved.",
                    "/nodes",
                )
        self._refused(request, session, "no such action or node")
        return Response(404, b"no such action or node", "text/plain")

    async def _name_circuits(
        self, address: int, form: Mapping[str, str], request: Request, session: Session
    ) -> Response:
        """Names from the form (n1 ... n46; empty removes one), saved in the state file."""
        names = {c: form[f"n{c}"].strip() or None for c in CIRCUITS if f"n{c}" in form}
        before = self.source.circuit_names(address)
        changed = sorted(c for c, name in names.items() if name != before.get(c))
        try:
            await self.source.name_circuits(address, names)
        except GatewayError as error:
            self._log_action(request, session, f"name circuits of node {address}", f"refused: {error}")
            return _html(pages.names_page(address, dict(before), session.csrf, str(error)), 400)
        if changed:
            self._log_action(request, session, f"name circuits {changed} of node {address}")
        return _html(
            pages.outcome(
                "Saved",
                f"Names of node {address} saved; every face shows them.",
                f"/nodes/{address}",
                session.csrf,
                ok=True,
            )
        )

    async def _attempt(
        self, request: Request, session: Session, what: str, work: Awaitable[None], done: str, back: str
    ) -> Response:
        """Run an action and log it; a refusal (point map, locked mode, a meter or line that did not
        answer) is reported on the page, and the face goes on."""
        try:
            await work
        except GatewayError as error:
            self._log_action(request, session, what, f"failed: {error}")
            return _html(
                pages.outcome("Not done", f"The gateway did not take it: {error}", back, session.csrf, ok=False), 502
            )
        self._log_action(request, session, what)
        return _html(pages.outcome("Done", done, back, session.csrf, ok=True))

    def _log_action(
        self, request: Request, session: Session, what: str, outcome: str = "done", *, audited: bool = False
    ) -> None:
        """An action run: in the log, the events page and the audit (unless `audited` already, key
        by key, as `gateway.config_file` does)."""
        shown = what if outcome == "done" else f"{what}: {outcome}"
        log.info("web action", action=shown, client=request.client, session=session.id)
        self._record(f"{USER} from {request.client}: {shown}")
        if not audited:
            self._audit(Actor(USER, request.client, session.id), what, outcome)

    def _refused(self, request: Request, session: Session | None, why: str) -> None:
        """An action refused before it ran (no session, a stale or forged form): in the audit."""
        actor = Actor(USER, request.client, session.id if session else "-")
        self._audit(actor, f"{request.method} {request.path}", f"refused: {why}")

    def _audit(self, actor: Actor, action: str, outcome: str) -> None:
        """Into the audit log, off the event loop (a write and an fsync: milliseconds of disk)."""
        written = asyncio.get_running_loop().run_in_executor(None, self.audit.record, actor, action, outcome)
        self._audits.add(written)
        written.add_done_callback(self._audits.discard)


def _channel(text: str) -> int | None:
    number = _address(text)
    return number if number in CIRCUITS else None


def _channels(text: str) -> list[int]:
    """CT channels from "43,44,45"; nothing for any other text."""
    found = [_channel(part) for part in text.split(",")[: len(CIRCUITS)]]
    return [] if None in found else [c for c in found if c is not None]


def _labels(names: Mapping[int, str]) -> dict[int, str]:
    return {c: f"Ch {c}" + (f" {names[c]}" if c in names else f" ({MAINS[c]})" if c in MAINS else "") for c in CIRCUITS}


def _outside_allow() -> Response:
    return Response(403, b"only /metrics is served to this address (web.allow)", "text/plain")


def _html(text: str, status: int = 200) -> Response:
    return Response(status, text.encode())


def _json(status: int, data: Any) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json")


def _redirect(location: str, cookie: str | None = None) -> Response:
    headers = (("location", location),) + ((("set-cookie", cookie),) if cookie else ())
    return Response(303, b"", "text/plain", headers)


def _address(text: str) -> int | None:
    # ASCII digits only: str.isdigit() is also true of "²", which int() refuses.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 3 else None


def _on(path: str, route: str) -> bool:
    """Whether a path is a route, or under it when the route ends in "/"."""
    return path == route or (route.endswith("/") and path.startswith(route))


def _cookie(token: str, seconds: int) -> str:
    return f"{COOKIE}={token}; Max-Age={seconds}; Path=/; Secure; HttpOnly; SameSite=Strict"


def _takes_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (named, or "*", with a weight above 0)."""
    for coding in accept_encoding.lower().split(","):
        name, _, weight = coding.partition(";")
        if name.strip() in ("gzip", "*"):
            quality = weight.strip().removeprefix("q=")
            try:
                return not weight or float(quality) > 0
            except ValueError:
                return False
    return False
