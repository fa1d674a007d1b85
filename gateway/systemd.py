"""systemd service notifications: READY when the gateway serves, WATCHDOG while it is healthy.

The protocol is one datagram to the socket named by $NOTIFY_SOCKET (see sd_notify(3)); without
that variable (not started by systemd) every call is a no-op. The watchdog is fed from the main
event loop, and only while the bus thread's loop answers too, so a wedged loop on either side
stops the feeding and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


def notify(message: str) -> bool:
    """Send one notification; False when not under systemd or the socket is gone."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as error:
        log.warning("systemd notification failed", error=str(error))
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 messages systemd expects (half its timeout), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


async def feed_watchdog(healthy: Callable[[], Awaitable[bool]]) -> None:
    """Tell systemd the gateway is alive, as long as ``healthy()`` says so; runs until cancelled."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        if await healthy():
            notify("WATCHDOG=1")
        else:
            log.error("not feeding the systemd watchdog: the gateway is unhealthy")
        await asyncio.sleep(interval)
