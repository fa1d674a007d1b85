"""Who may act: the administrator's password hash, login sessions, CSRF tokens, login rate limit.

One account ("admin"); its password is kept only as a scrypt hash in the config file
(``scrypt$N$r$p$salt$hash``, base64 parts), written by ``bcpm-gateway set-password``. Sessions
live in memory: a restart logs everyone out, and nothing secret is ever written to disk.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

USER = "admin"
# scrypt cost: 2^14 x 8 x 1 takes about 50 ms and 16 MB once per login, freed straight after.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
MAX_SESSIONS = 64  # logins kept at once; the oldest goes first
MIN_PASSWORD = 4


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
    expires: float  # monotonic


class Sessions:
    """Logged-in browsers, by the random token of their cookie; idle ones expire."""

    def __init__(self, minutes: int) -> None:
        self.lifetime = minutes * 60.0
        self._sessions: dict[str, Session] = {}

    def create(self) -> Session:
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.monotonic() + self.lifetime)
        self._sessions[session.token] = session
        return session

    def find(self, token: str | None) -> Session | None:
        """The live session of a cookie, its idle time restarted; None if unknown or expired."""
        session = self._sessions.pop(token, None) if token else None
        if session is None or session.expires < time.monotonic():
            return None
        session = Session(session.token, session.csrf, time.monotonic() + self.lifetime)
        self._sessions[session.token] = session  # re-inserted: the dict stays in order of use
        return session

    def end(self, token: str) -> None:
        self._sessions.pop(token, None)


class LoginLimiter:
    """At most `per_minute` failed logins per client address in any 60 s; the rest are refused
    without checking the password (scrypt is costly on purpose)."""

    WINDOW = 60.0
    MAX_CLIENTS = 1024  # addresses remembered; beyond, the oldest failures are forgotten

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}
        self.refused = 0

    def allows(self, client: str) -> bool:
        failures = self._failures.get(client)
        now = time.monotonic()
        while failures and failures[0] < now - self.WINDOW:
            failures.popleft()
        if failures is not None and len(failures) >= self.per_minute:
            self.refused += 1
            return False
        return True

    def failed(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= self.MAX_CLIENTS:
            del self._failures[next(iter(self._failures))]
        self._failures.setdefault(client, deque(maxlen=self.per_minute)).append(time.monotonic())
