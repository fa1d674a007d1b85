"""The Modbus RTU slave on the upstream port: the meters, for a serial master.

What a request gets is `gateway.modbus_requests` (the Modbus TCP face's handler: the cache, the
meter through the node API, the same exceptions); this adds the serial framing of Modbus over
Serial Line V1.02. A request ends with t3.5 of silence, or sooner when pymodbus's `FramerRTU`
finds a whole frame with a good CRC in what arrived; its CRC is checked with pymodbus's own. A
frame with a bad CRC, a truncated one, or garbage is dropped and counted, and so is a frame for a
unit this slave does not answer (another slave on the trunk may). A broadcast (unit 0) write is
carried out for every unit answered, unanswered as the standard wants. The reply goes out t3.5
after the request at the earliest.

One request is answered at a time. A request that arrives while one is being answered (the master
gave up waiting) replaces any other still waiting, and the answer to the older one is not sent:
late, it would be taken for the answer to the newer.

    counts = SlaveCounts()
    make = lambda: RtuSlave(settings, requests, units=lambda: {1, 2}, counts=counts)
    await serve_port("upstream", settings, make)   # on the upstream thread; a new slave at each opening
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Set
from dataclasses import dataclass

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from gateway.modbus import BROADCAST, MAX_FRAME, WRITE_FUNCTIONS, crc_holds, rtu_silence
from gateway.modbus_requests import ModbusRequests, RequestCounts
from gateway.serialport import PortSettings, SerialProtocol


@dataclass(slots=True)
class SlaveCounts(RequestCounts):
    """The upstream port's counters: the requests it answered (RequestCounts) and the frames it left."""

    replies: int = 0
    broadcasts: int = 0
    bad_frames: int = 0  # CRC errors, truncated frames, garbage
    other_units: int = 0  # frames for units this slave does not answer
    superseded: int = 0  # answers not sent: a newer request came meanwhile


class RtuSlave(SerialProtocol):
    """The slave's end of the upstream port. `units()` says which units it answers now."""

    def __init__(
        self, settings: PortSettings, requests: ModbusRequests, units: Callable[[], Set[int]], counts: SlaveCounts
    ) -> None:
        super().__init__(settings)
        self.requests = requests
        self.units = units
        self.counts = counts
        self.silence = rtu_silence(settings.baudrate)
        self._framer = FramerRTU(DecodePDU(is_server=True))
        self._buffer = bytearray()
        self._frame_end: asyncio.TimerHandle | None = None
        self._waiting: tuple[int, bytes] | None = None  # the newest request not yet taken
        self._wake = asyncio.Event()

    async def serve(self) -> str:
        worker = asyncio.ensure_future(self._answer_requests())
        try:
            await asyncio.wait((worker, self.lost), return_when=asyncio.FIRST_COMPLETED)
            if worker.done():
                worker.result()  # a failure of its own is the face's
            return self.lost.result()
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    def received(self, data: bytes) -> None:
        if self._frame_end is not None:
            self._frame_end.cancel()
        self._buffer += data
        if len(self._buffer) > MAX_FRAME:
            self._buffer.clear()  # longer than any frame: noise; the silence after it ends it
            self.counts.bad_frames += 1
        used, unit, _, pdu = self._framer.decode(bytes(self._buffer))
        if pdu and used == len(self._buffer):  # one whole frame, its CRC good: no need to wait
            self._buffer.clear()
            self._take(unit, pdu)
            return
        self._frame_end = asyncio.get_running_loop().call_later(self.silence, self._end_of_frame)

    def echo_failed(self, reason: str) -> None:
        self.counts.bad_frames += 1

    def _end_of_frame(self) -> None:
        """t3.5 of silence: what arrived since the last frame is one frame, or garbage."""
        self._frame_end = None
        frame = bytes(self._buffer)
        self._buffer.clear()
        if not frame:
            return
        if not crc_holds(frame):
            self.counts.bad_frames += 1
            return
        self._take(frame[0], frame[1:-2])

    def _take(self, unit: int, pdu: bytes) -> None:
        if unit != BROADCAST and unit not in self.units():
            self.counts.other_units += 1
            return
        if self._waiting is not None:
            self.counts.superseded += 1
        self._waiting = (unit, pdu)
        self._wake.set()

    async def _answer_requests(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._waiting is None:
                continue
            unit, pdu = self._waiting
            self._waiting = None
            if unit == BROADCAST:
                await self._broadcast(pdu)
                continue
            reply = await self.requests.answer(unit, pdu, self.counts)
            if self._waiting is not None:  # the master has moved on: this answer would be taken for the next
                self.counts.superseded += 1
                continue
            await asyncio.sleep(max(0.0, max(self.last_rx, self.tx_end) + self.silence - time.monotonic()))
            self.send(self._framer.encode(reply, unit, 0))
            self.counts.replies += 1

    async def _broadcast(self, pdu: bytes) -> None:
        """A write to every unit this slave answers, in turn; nobody answers a broadcast."""
        self.counts.broadcasts += 1
        if pdu[0] not in WRITE_FUNCTIONS:
            return
        for unit in sorted(self.units()):
            await self.requests.answer(unit, pdu, self.counts)
