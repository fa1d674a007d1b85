"""The audit log: every change an administrator made and every action refused, kept across restarts.

    audit = AuditLog(config.gateway.state_file.parent / AUDIT_FILE)
    audit.record(Actor("admin", "192.0.2.7", "3f9c1ab2"), "change setting", "done", key="snmp.trap_rate")

One JSON object a line in ``audit.log`` beside the state file (mode 0600, owned by the owner of that
folder, so the gateway's user appends to it whoever made it), each written and fsynced whole:

    {"time": "2025-05-01T12:00:00Z", "user": "admin", "client": "192.0.2.7", "session": "3f9c1ab2",
     "action": "change setting", "key": "snmp.trap_rate", "outcome": "done", "detail": "10 -> 20"}

At `max_bytes` (MAX_BYTES) the file becomes ``audit.log.1`` (the one before is dropped), so it never fills the
disk. Refusals are what anyone on the network can cause: from one client address at most
`REFUSALS_PER_MINUTE` are written a minute; those left out are counted in the next one written
(``"left_out": n``). A change is never left out. Thread-safe: a write may come from a worker thread.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from gateway.ratelimit import RateLimit

__all__ = ["AUDIT_FILE", "Actor", "AuditLog"]

AUDIT_FILE = "audit.log"
MAX_BYTES = 1024 * 1024
REFUSALS_PER_MINUTE = 10

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked: the user, from where, in which login session (its public id, never the cookie)."""

    user: str
    client: str  # an IP address, or "local" for a command run on the gateway
    session: str = "-"


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._refusals = RateLimit(rate=REFUSALS_PER_MINUTE / 60, burst=REFUSALS_PER_MINUTE)
        self._left_out: dict[str, int] = {}
        self.failed_writes = 0

    def record(self, actor: Actor, action: str, outcome: str, *, key: str = "", detail: str = "") -> None:
        """Write one line; `outcome` "done" for a change made, else what refused it. An error of the
        disk is logged and counted, never raised: the action's own outcome stands."""
        refused = outcome != "done"
        with self._lock:
            if refused and not self._refusals.allow(actor.client):
                self._left_out[actor.client] = self._left_out.get(actor.client, 0) + 1
                return
            entry: dict[str, object] = {
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "user": actor.user,
                "client": actor.client,
                "session": actor.session,
                "action": action,
                "key": key,
                "outcome": outcome,
                "detail": detail,
            }
            left_out = self._left_out.pop(actor.client, 0) if refused else 0
            if left_out:
                entry["left_out"] = left_out
            try:
                self._append((json.dumps(entry, ensure_ascii=False) + "\n").encode())
            except OSError as error:
                self.failed_writes += 1
                log.error("audit log not written", path=str(self.path), error=str(error), **entry)

    def _append(self, line: bytes) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.geteuid() == 0:  # a command run as root: the file stays the gateway user's
                status = folder.stat()
                os.fchown(descriptor, status.st_uid, status.st_gid)
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
