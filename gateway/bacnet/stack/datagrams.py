"""The BACnet/IP sockets, and the two places the gateway looks at a datagram before bacpypes3 does.

    socket = IpSocket.of(router)[0]    # bacpypes3's datagram server of the router's BACnet/IP port
    socket.judge_with(shares.judge)    # raw bytes, as each datagram is read (fair shares)
    await socket.opened(2.0)           # once bacpypes3 has opened it
    socket.take_in_with(entry.reply)   # after the judge, before bacpypes3 decodes anything
    await settled(router, 2.0)         # before closing: no socket left opening

The judge sees a datagram as the event loop reads it and may refuse it (a refusal class, which
counts it) before bacpypes3 makes a PDU or a task of it. bacpypes3 reads one datagram per turn of
the event loop, which caps what a flood costs the other faces but also what the gateway can throw
away: past some 50,000 datagrams a second the socket's buffer overflows and the kernel drops
legitimate requests with the rest. So a refused datagram, a sign of a flood, is followed by up to
`DRAIN_BATCH` more read at once from the same socket (a duplicate of its descriptor) and judged the
same way; one that repeats the last refused, from the same host, is refused again without a second
look. The intake sees what the judge let through, as bytes, and answers it itself (its reply goes
out of the socket at once), drops it (an empty reply) or leaves it to bacpypes3 (None).

`install()` gives bacpypes3 the judging protocol (process-wide: bacpypes3 builds every datagram
endpoint from its module's class); a socket without a judge takes every datagram.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import bacpypes3.ipv4
from bacpypes3.app import Application
from bacpypes3.ipv4 import IPv4DatagramServer
from bacpypes3.pdu import PDU, LocalBroadcast

from gateway.logging import PeerEvents

__all__ = ["DRAIN_BATCH", "Intake", "IpSocket", "Judge", "install", "settled"]

DRAIN_BATCH = 256  # datagrams read at once after one was refused
MAX_DATAGRAM = 65536

#: Judges a datagram (bytes, source): None to take it, else the refusal class it was counted in.
Judge = Callable[[bytes, tuple[str, int]], PeerEvents | None]
#: Takes a datagram in (bytes, source, whether it came to the socket's own address): the reply
#: to send, b"" to drop it, None to leave it to bacpypes3.
Intake = Callable[[bytes, tuple[str, int], bool], bytes | None]


class IpSocket:
    """The BACnet/IP socket of one port: bacpypes3's datagram server, with a judge and an intake."""

    def __init__(self, server: IPv4DatagramServer) -> None:
        self._server = server

    @staticmethod
    def of(app: Application) -> list[IpSocket]:
        """The BACnet/IP sockets of an application's ports. Ask as soon as the application is
        built: bacpypes3 opens them in tasks that have not run yet."""
        servers = (getattr(link_layer, "server", None) for link_layer in app.link_layers.values())
        return [IpSocket(server) for server in servers if isinstance(server, IPv4DatagramServer)]

    def judge_with(self, judge: Judge) -> None:
        """Judge every datagram the socket reads with `judge`, before anything else sees it."""
        self._server.judge = judge

    def take_in_with(self, intake: Intake) -> None:
        """Hand every datagram the judge let through to `intake` before bacpypes3 (see the module)."""
        server = self._server
        stock: Callable[[PDU], Awaitable[None]] = server.confirmation

        async def confirmation(pdu: PDU) -> None:
            source = pdu.pduSource.addrTuple
            reply = intake(bytes(pdu.pduData), source, not isinstance(pdu.pduDestination, LocalBroadcast))
            if reply is None:
                await stock(pdu)
            elif reply:
                server.local_transport.sendto(reply, source)  # out of the unicast socket, as bacpypes3's answers

        server.confirmation = confirmation

    async def opened(self, timeout: float) -> None:
        """Until the socket is open; its protocol is known once bacpypes3's callback has run."""
        async with asyncio.timeout(timeout):
            await self._server._local_transport_ready.wait()

    def opening(self) -> list[asyncio.Task[None]]:
        """The tasks bacpypes3 opens the socket in (done once open, or failed)."""
        return list(self._server._transport_tasks)


async def settled(app: Application, timeout: float) -> None:
    """Until the application's BACnet/IP sockets are open, at most `timeout` seconds.

    bacpypes3 opens them in tasks of their own, which its first send gathers: cancelling that
    send (the gateway stopping) cancels them too, and their callbacks fail; closing before they
    are open leaves them to open afterwards, never closed. `asyncio.wait` cancels nothing. A bind
    that keeps failing (bacpypes3 retries every second) is not waited for beyond `timeout`.
    """
    opening = [task for socket_ in IpSocket.of(app) for task in socket_.opening()]
    if opening:
        await asyncio.wait(opening, timeout=timeout)


class _JudgingProtocol(bacpypes3.ipv4.IPv4DatagramProtocol):
    """bacpypes3's datagram protocol, asking its server's judge (when it has one) first."""

    _drain: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._drain = sock.dup()
            self._drain.setblocking(False)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        judge: Judge | None = getattr(self.server, "judge", None)  # set by `IpSocket.judge_with`
        # its own broadcasts come back to the gateway: bacpypes3 drops them, they cost no share
        refusal = None if judge is None or addr == self.server.local_address else judge(data, addr)
        if judge is None or refusal is None:
            super().datagram_received(data, addr)
            return
        drain = self._drain
        if drain is None:
            return
        refused = (data, addr[0])  # the last refused, and its host
        for _ in range(DRAIN_BATCH):
            try:
                data, addr = drain.recvfrom(MAX_DATAGRAM)
            except OSError:  # nothing more queued (BlockingIOError), or the socket is closing
                return
            if (data, addr[0]) == refused:  # the same again from the same host, a moment later
                refusal.count(addr[0], "the same datagram again")
                continue
            judged = judge(data, addr)
            if judged is None:
                super().datagram_received(data, addr)
            else:
                refused, refusal = (data, addr[0]), judged

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drain is not None:
            self._drain.close()
        super().connection_lost(exc)


def install() -> None:
    """bacpypes3 builds every datagram endpoint from its module's protocol class: use the judging
    one. Safe to call more than once."""
    bacpypes3.ipv4.IPv4DatagramProtocol = _JudgingProtocol
