"""A virtual RS-485 multidrop line: every byte one station writes reaches all the others.

Each station opens its own pty (by a stable symlink, as a USB adapter's by-id name) like a serial
port; a relay thread copies what each writes to every other one, as the shared pair of wires does.
The line can pace bytes at a baud rate (a write arrives in pieces of 16 octets, each when its last
byte would), corrupt a share
of what it carries (one byte flipped, so the receivers see a CRC error), carry noise, let
stations hear their own transmission (a transceiver whose receiver stays on), and unplug a
station's adapter and plug it in again (its pty vanishes, then comes back under the same name).

    with MultidropLine(["/tmp/ttyA", "/tmp/ttyB", "/tmp/ttyC"], baudrate=38400) as line:
        line.corrupt = 0.02               # 2 % of what is written arrives garbled
        line.noise(b"\\x55\\x00\\xff")       # bytes nobody sent, to everyone
        line.unplug(0); line.plug(0)      # station 0's adapter out and back in
        line.stats.chunks, line.stats.corrupted
        line.record = []                  # from now: (when its last octet arrived, sender, octets), by piece
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from gateway.sim.line import Serving, _read_available, _replace_link, _write_all

PIECE = 16  # octets a paced line hands over at once (a USB adapter's receive FIFO, read as it fills)


@dataclass(frozen=True, slots=True)
class MultidropStats:
    chunks: int = 0  # writes relayed (each to every other station)
    octets: int = 0
    corrupted: int = 0  # chunks that arrived with a byte flipped
    noise: int = 0  # octets of noise put on the line


class _Station:
    def __init__(self, link: str) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        _replace_link(link, os.ttyname(self.slave))

    def close(self) -> None:
        if os.path.islink(self.link) and os.readlink(self.link) == os.ttyname(self.slave):
            os.unlink(self.link)
        os.close(self.master)
        os.close(self.slave)


class MultidropLine(Serving):
    """Stations at `links` on one line; `start()` relays from a daemon thread until `stop()`.

    `baudrate` None relays at once; `echo` lists the stations that hear their own bytes.
    """

    def __init__(
        self,
        links: Sequence[str],
        *,
        baudrate: int | None = None,
        corrupt: float = 0.0,
        echo: Collection[int] = (),
        seed: int | None = None,
    ) -> None:
        self.links = tuple(links)
        self.baudrate = baudrate
        self.corrupt = corrupt
        self.echo = frozenset(echo)
        self._rng = random.Random(seed)
        self._stations: list[_Station | None] = []
        self._lock = threading.Lock()  # the counters and the noise to send
        self._io = threading.Lock()  # the stations' descriptors: the relay's, or plug and unplug's
        self._stats = MultidropStats()
        self._noise: list[bytes] = []
        self._busy_until = 0.0
        self.record: list[tuple[float, int | None, bytes]] | None = None  # what the line carried, when asked
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_read, self._wake_write = -1, -1

    def start(self) -> None:
        self._stations = [_Station(link) for link in self.links]
        self._wake_read, self._wake_write = os.pipe()
        self._run(self._relay, "multidrop line")

    def stop(self) -> None:
        if not self._end():
            return
        for station in self._stations:
            if station is not None:
                station.close()
        self._stations = []
        os.close(self._wake_read)
        os.close(self._wake_write)

    @property
    def stats(self) -> MultidropStats:
        with self._lock:
            return self._stats

    def unplug(self, index: int) -> None:
        """Station `index`'s adapter is pulled out: its pty and its link vanish."""
        with self._io:
            station, self._stations[index] = self._stations[index], None
            if station is not None:
                station.close()

    def plug(self, index: int) -> None:
        """Station `index`'s adapter is back, under the same link."""
        with self._io:
            if self._stations[index] is None:
                self._stations[index] = _Station(self.links[index])
        self._poke()

    def noise(self, data: bytes) -> None:
        """Bytes nobody sent reach every station, once."""
        with self._lock:
            self._noise.append(data)
        self._poke()

    def _poke(self) -> None:
        if self._thread is not None:
            os.write(self._wake_write, b"\0")

    def _relay(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                noise, self._noise = self._noise, []
            with self._io:
                for data in noise:
                    self._deliver(None, data)
                    self._count(noise=len(data))
                readers = [station.master for station in self._stations if station is not None]
            ready, _, _ = select.select([*readers, self._wake_read], [], [], 0.5)
            if self._wake_read in ready:
                os.read(self._wake_read, 64)
            with self._io:  # a station unplugged meanwhile is no longer listed: its descriptor is not read
                for index, station in enumerate(self._stations):
                    if station is not None and station.master in ready and (data := _read_available(station.master)):
                        self._deliver(index, data)

    def _deliver(self, sender: int | None, data: bytes) -> None:
        corrupted = sender is not None and self._rng.random() < self.corrupt
        if corrupted:
            at = self._rng.randrange(len(data))
            data = data[:at] + bytes([data[at] ^ (1 << self._rng.randrange(8))]) + data[at + 1 :]
        # Paced, a write reaches the others in pieces, each when its last byte would: a long frame
        # is heard as it goes, as on a wire (its first octets within a station's usage timeout).
        step = PIECE if self.baudrate is not None else max(len(data), 1)
        for start in range(0, len(data), step):
            self._arrive(sender, data[start : start + step])
        if sender is not None:
            self._count(chunks=1, octets=len(data), corrupted=int(corrupted))

    def _arrive(self, sender: int | None, data: bytes) -> None:
        if self.baudrate is not None:
            # The line carries one thing at a time: this piece's last byte arrives a wire time later.
            due = max(time.monotonic(), self._busy_until) + len(data) * 10 / self.baudrate
            self._busy_until = due
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
        arrived = time.monotonic()
        for index, station in enumerate(self._stations):
            if station is not None and (index != sender or index in self.echo):
                _write_all(station.master, data)
        if self.record is not None:
            self.record.append((arrived, sender, data))
