"""Master nodes on a line in simulated time, for fast and exact tests of the state machine: every frame
one node sends reaches the others when its last octet would (10 bits an octet at the baud rate),
and each node acts again at its deadline. Nothing sleeps; a minute of line time takes milliseconds."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.mstp import Frame, Invalid, MasterNode, Outgoing, Received, encode


@dataclass
class Station:
    node: MasterNode
    inbox: list[Received] = field(default_factory=list)
    answer: Callable[[Received], Outgoing | None] | None = None  # the upper layer's reply, made at once
    timer: int = 0  # the sequence number of the station's pending tick; others are stale


class VirtualLine:
    def __init__(self, baudrate: int = 38400, corrupt: float = 0.0, seed: int = 1) -> None:
        self.baudrate = baudrate
        self.corrupt = corrupt
        self.now = 0.0
        self.stations: dict[int, Station] = {}
        self.sent: list[tuple[float, Frame]] = []  # every frame on the line, with the time it began
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._rng = random.Random(seed)

    def add(self, address: int, max_master: int = 127, max_info_frames: int = 1) -> Station:
        station: Station

        def deliver(received: Received) -> None:
            station.inbox.append(received)
            if station.answer is not None and (reply := station.answer(received)) is not None:
                station.node.enqueue(reply)

        node = MasterNode(address, max_master, max_info_frames, lambda f: self._send(address, f), deliver, now=self.now)
        station = self.stations[address] = Station(node)
        self._wake(address)
        return station

    def remove(self, address: int) -> None:
        del self.stations[address]

    def send_from(self, frame: Frame) -> None:
        """A frame put on the line by a station that is not one of the nodes (a rogue, a copy)."""
        self._send(None, frame)

    def enqueue(self, address: int, outgoing: Outgoing) -> None:
        self.stations[address].node.enqueue(outgoing)
        self.stations[address].node.tick(self.now)
        self._wake(address)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self._events and self._events[0][0] <= end:
            self.now, _, action = heapq.heappop(self._events)
            action()
        self.now = end

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._order), action))

    def _send(self, sender: int | None, frame: Frame) -> float:
        self.sent.append((self.now, frame))
        octets = len(encode(frame))
        ends = self.now + octets * 10 / self.baudrate
        garbled = self._rng.random() < self.corrupt
        for address in self.stations:
            if address != sender:
                self._at(ends, lambda a=address: self._hear(a, octets, Invalid("bad data CRC") if garbled else frame))
        return ends

    def _hear(self, address: int, octets: int, found: Frame | Invalid) -> None:
        station = self.stations.get(address)
        if station is None:
            return
        station.node.heard(octets, self.now)
        station.node.received(found, self.now)
        self._wake(address)

    def _wake(self, address: int) -> None:
        station = self.stations[address]
        deadline = station.node.deadline
        station.timer += 1
        if deadline is not None:
            self._at(max(deadline, self.now) + 1e-6, lambda t=station.timer: self._tick(address, t))

    def _tick(self, address: int, timer: int) -> None:
        station = self.stations.get(address)
        if station is None or station.timer != timer:
            return
        station.node.tick(self.now)
        self._wake(address)
