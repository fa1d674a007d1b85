"""Who may act: the administrator's password hash, its check, login sessions, CSRF tokens, login limit.

One account ("admin"); its password is kept only as a scrypt hash in the config file
(``scrypt$N$r$p$salt$hash``, base64 parts), written by ``bcpm-gateway set-password``. Sessions
live in memory: a restart logs everyone out, and nothing secret is ever written to disk.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, replace

USER = "admin"
# scrypt cost: 2^14 x 8 x 1 takes about 50 ms and 16 MB once per login, freed straight after.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
MAX_SESSIONS = 64  # logins kept at once; the oldest goes first
MIN_PASSWORD = 4
MAX_SESSION_HOURS = 12  # a login ends after this, however busy
LARGE_BLOCK = 1024 * 1024  # glibc hands a freed block this large back to the system at once
_M_MMAP_THRESHOLD = -3


class PasswordHashError(ValueError):
    pass


def hash_password(password: str) -> str:
    """The text to keep in ``web.password_hash`` for this password."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def check_hash(stored: str) -> None:
    """Raise PasswordHashError unless ``stored`` is a hash that hash_password could have made."""
    _parse(stored)


def verify_password(password: str, stored: str) -> bool:
    n, r, p, salt, digest = _parse(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    try:
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError
        n, r, p = (int(part) for part in parts[1:4])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
        if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or 128 * n * r > SCRYPT_MAXMEM or not digest:
            raise ValueError
    except ValueError:
        raise PasswordHashError("not a hash made by `bcpm-gateway set-password` (scrypt$N$r$p$salt$hash)") from None
    return n, r, p, salt, digest


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # the cookie
    csrf: str  # the hidden field every action form carries
    id: str  # names the session in the log and the audit (the token never leaves the gateway's memory)
    expires: float  # monotonic: idle until then, restarted by each request
    ends: float  # monotonic: the login's absolute end, whatever its use

    def seconds_left(self) -> int:
        """What the cookie's Max-Age says now."""
        return max(0, round(min(self.expires, self.ends) - time.monotonic()))


class Sessions:
    """Logged-in browsers, by the random token of their cookie; idle ones expire, and every one
    after MAX_SESSION_HOURS."""

    def __init__(self, minutes: int) -> None:
        self.lifetime = minutes * 60.0
        self._sessions: dict[str, Session] = {}

    def create(self) -> Session:
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        now = time.monotonic()
        session = Session(
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_hex(4),
            now + self.lifetime,
            now + MAX_SESSION_HOURS * 3600.0,
        )
        self._sessions[session.token] = session
        return session

    def find(self, token: str | None) -> Session | None:
        """The live session of a cookie, its idle time restarted; None if unknown or expired."""
        session = self._sessions.pop(token, None) if token else None
        now = time.monotonic()
        if session is None or session.expires < now or session.ends < now:
            return None
        session = replace(session, expires=now + self.lifetime)
        self._sessions[session.token] = session  # re-inserted: the dict stays in order of use
        return session

    def end(self, token: str) -> None:
        self._sessions.pop(token, None)


class LoginLimiter:
    """At most `per_minute` logins per client address in any 60 s that failed or are being
    checked; more are refused without checking the password (scrypt is costly on purpose). A
    login that succeeds gives its place back. Addresses count apart: one address's failures never
    refuse another's login."""

    WINDOW = 60.0
    MAX_CLIENTS = 1024  # addresses remembered; beyond, the oldest failures are forgotten

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._attempts: dict[str, deque[float]] = {}
        self.refused = 0

    def attempt(self, client: str) -> float | None:
        """Take a place for a login from `client`: its stamp, or None when there is none left."""
        now = time.monotonic()
        attempts = self._attempts.pop(client, None)
        if attempts is None:
            while len(self._attempts) >= self.MAX_CLIENTS:
                del self._attempts[next(iter(self._attempts))]
            attempts = deque()
        self._attempts[client] = attempts  # last in order: the most recently seen address
        while attempts and attempts[0] <= now - self.WINDOW:
            attempts.popleft()
        if len(attempts) >= self.per_minute:
            self.refused += 1
            return None
        attempts.append(now)
        return now

    def succeeded(self, client: str, stamp: float) -> None:
        """A login that took a place succeeded: the place is free again."""
        with contextlib.suppress(KeyError, ValueError):
            self._attempts[client].remove(stamp)


class CheckerBusy(Exception):
    """Too many logins wait for their password check already."""


class PasswordChecker:
    """Checks a login, user and password, in the same time whatever is wrong: scrypt runs for a
    wrong user too. One check at a time gateway-wide, in a worker thread (each takes 16 MB for
    some 50 ms; a burst checked at once took 16 MB each, and kept them); at most MAX_WAITING wait
    their turn, more are refused at once (CheckerBusy)."""

    MAX_WAITING = 16

    def __init__(self) -> None:
        self._turn = asyncio.Semaphore(1)
        self.waiting = 0
        self.checked = 0
        _return_large_blocks()

    async def check(self, user: str, password: str, stored: str) -> bool:
        if self.waiting >= self.MAX_WAITING:
            raise CheckerBusy
        self.waiting += 1
        try:
            async with self._turn:
                self.checked += 1
                good_password = await asyncio.to_thread(verify_password, password, stored)
        finally:
            self.waiting -= 1
        return hmac.compare_digest(user.encode(), USER.encode()) and good_password


def _return_large_blocks() -> None:
    """Make glibc give a large freed block back to the system at once (nothing without glibc).

    glibc serves a block above its threshold (128 KiB at first) from a memory map of its own and
    unmaps it when freed, but only until the first such block is freed: it then raises the
    threshold to that size, and the next scrypt buffers (16 MB) come from a heap that keeps them
    resident for good, one per worker thread. A threshold set once stays fixed.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK)
