"""The MS/TP data link on a serial port: a master node with its own thread and its own clock.

`MstpLink` runs the receive state machine (`gateway.mstp.receiver`) and the master node
(`gateway.mstp.master`) on a thread of its own with its own event loop, as the meters' bus does,
so that BACnet work on the main loop cannot make it late for the token (Tusage_delay, 15 ms) or a
reply (Treply_delay, 250 ms). The port is opened, its RS-485 direction switched and its echo
dropped by `gateway.serialport`; a port that vanishes is logged once and opened again with
back-off, and the node starts afresh on it. A second station using this station's MAC address is
logged once as a conflict (and counted); the link carries on.

For the network layer above (the BACnet router), it sends an NPDU to a MAC address (255: to every
station), expecting a reply or not, and hands up every NPDU that arrives, with its source MAC, on
the link's thread (hop to your own loop from there):

    link = MstpLink(MstpSettings(PortSettings("/dev/ttyUSB1", 38400), station=3), on_receive=hand_up)
    link.start()
    link.send(7, npdu, expecting_reply=True)      # thread-safe; False if the port is down
    link.set_max_master(32)                       # thread-safe, at once
    link.counts, link.port_open                   # for the status line
    link.stop()

A reply to a Data Expecting Reply frame is an NPDU sent to its source that `gateway.mstp.replies`
finds answers it: sent within the reply delay it goes out at once, in the reply slot; later it
waits for the token, after a Reply Postponed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gateway.mstp.frames import BROADCAST, MAX_DATA, Frame, encode
from gateway.mstp.master import MasterCounts, MasterNode, Outgoing, Received
from gateway.mstp.receiver import Invalid, Receiver
from gateway.serialport import PortSettings, SerialProtocol, serve_port
from gateway.threads import LoopThread

FRAME_ABORT = 0.060  # silence inside a frame that abandons it (60 bit times to 100 ms; room for USB latency)
TURNAROUND_BITS = 40  # a station waits this long after the last octet it heard before it sends
TIMER_SLACK = 0.0002  # timers fire this late, so that a limit has surely passed

_log = structlog.get_logger("gateway.mstp")


@dataclass(frozen=True, slots=True)
class MstpSettings:
    """The port (8N1 at an MS/TP baud rate), this station's MAC, Max_Master and Max_Info_Frames."""

    port: PortSettings
    station: int
    max_master: int = 127
    max_info_frames: int = 1
    name: str = "mstp"  # in log events: "<name> port open", "<name> port lost"


class MstpLink:
    def __init__(self, settings: MstpSettings, on_receive: Callable[[Received], None]) -> None:
        self.settings = settings
        self.node = MasterNode(
            settings.station,
            settings.max_master,
            settings.max_info_frames,
            send=self._transmit,
            deliver=on_receive,
            conflict=self._conflict,
            now=time.monotonic(),
        )
        self._thread = LoopThread(f"{settings.name} link")
        self._port: _Port | None = None
        self._conflict_logged = False

    @property
    def counts(self) -> MasterCounts:
        return self.node.counts

    @property
    def port_open(self) -> bool:
        port = self._port
        return port is not None and port.made.done() and not port.lost.done()

    def start(self) -> None:
        self._thread.start(self._serve)

    def stop(self) -> None:
        self._thread.stop()

    async def wait(self) -> None:
        """Until the link's thread ends (it runs until stopped; an error of its own is raised here)."""
        await self._thread.wait()

    def set_max_master(self, max_master: int) -> None:
        """Take a new Max_Master (thread-safe; ValueError below this station's address or past 127)."""
        if not self.settings.station <= max_master <= 127:
            raise ValueError(f"max_master {max_master}: {self.settings.station}-127 (at least the station's address)")
        loop = self._thread.loop
        try:
            if loop is not None:
                loop.call_soon_threadsafe(self.node.set_max_master, max_master)
                return
        except RuntimeError:  # the loop closed meanwhile
            pass
        self.node.set_max_master(max_master)

    def send(self, destination: int, npdu: bytes, *, expecting_reply: bool = False) -> bool:
        """Queue an NPDU for `destination` (255: every station); thread-safe. False when the port is
        down (the NPDU is dropped: the network layer above retries as it would on any link).
        ValueError for an address or an NPDU that MS/TP cannot carry."""
        if not 0 <= destination <= BROADCAST:
            raise ValueError(f"an MS/TP address is 0-255, not {destination}")
        if len(npdu) > MAX_DATA:
            raise ValueError(f"an NPDU of {len(npdu)} octets: an MS/TP frame carries at most {MAX_DATA}")
        loop = self._thread.loop
        if loop is None or not self.port_open:
            return False
        outgoing = Outgoing(destination, bytes(npdu), expecting_reply)
        try:
            loop.call_soon_threadsafe(self._enqueue, outgoing)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    # on the link's thread

    async def _serve(self) -> None:
        await serve_port(self.settings.name, self.settings.port, self._new_port)

    def _new_port(self) -> _Port:
        self._port = _Port(self.settings.port, self)
        return self._port

    def _enqueue(self, outgoing: Outgoing) -> None:
        self.node.enqueue(outgoing)
        if self._port is not None:
            self._port.step(self.node.tick)

    def _transmit(self, frame: Frame) -> float:
        port = self._port
        if port is None or port.lost.done():
            return time.monotonic()  # the port is gone: the frame is lost, as on a cut cable
        return port.transmit(encode(frame))

    def _conflict(self, frame: Frame) -> None:
        if not self._conflict_logged:
            self._conflict_logged = True
            _log.warning(
                f"{self.settings.name} mac conflict",
                mac=self.settings.station,
                frame=str(frame),
                detail="another station on the trunk uses this station's MAC address",
            )


class _Port(SerialProtocol):
    """The link on one open port: octets to the receiver, frames and time to the node."""

    def __init__(self, settings: PortSettings, link: MstpLink) -> None:
        super().__init__(settings)
        self.link = link
        self.node = link.node
        self.receiver = Receiver(FRAME_ABORT)
        self.turnaround = TURNAROUND_BITS / settings.baudrate
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.step(self.node.restart)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._timer is not None:
            self._timer.cancel()

    def received(self, data: bytes) -> None:
        now = self.last_rx
        self.node.heard(len(data), now)
        for found in self.receiver.feed(data, now):
            self.node.received(found, now)
        self._schedule()

    def echo_failed(self, reason: str) -> None:
        self.step(lambda now: self.node.received(Invalid(reason), now))

    def step(self, act: Callable[[float], None]) -> None:
        """Let the node act now, then wake it when its next limit comes."""
        act(time.monotonic())
        self._schedule()

    def transmit(self, octets: bytes) -> float:
        """Send after the turnaround the last octet heard asks for; when the last bit leaves."""
        if (wait := self.last_rx + self.turnaround - time.monotonic()) > 0:
            time.sleep(wait)  # at most 40 bit times: 4.2 ms at 9600 baud
        return self.send(octets)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.lost.done():
            return
        deadlines = [d for d in (self.node.deadline, self.receiver.deadline) if d is not None]
        if deadlines:
            self._timer = asyncio.get_running_loop().call_at(min(deadlines) + TIMER_SLACK, self._wake)

    def _wake(self) -> None:
        self._timer = None
        now = time.monotonic()
        if (abandoned := self.receiver.expire(now)) is not None:
            self.node.received(abandoned, now)
        self.step(self.node.tick)
