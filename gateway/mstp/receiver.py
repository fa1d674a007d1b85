"""The MS/TP receive state machine (ASHRAE 135 clause 9.5.4): octets in, frames out.

It waits for the preamble, gathers the header and checks its CRC, then takes the data and checks
the data CRC. What it finds is a valid `Frame` or an `Invalid` one (a bad CRC, a frame cut short
by more than `frame_abort` seconds of silence between its octets, a frame longer than MS/TP
carries); octets outside any frame (noise) are only counted. It does not know which station it
belongs to: the master node decides what a frame means.

    receiver = Receiver(frame_abort=0.06)
    for found in receiver.feed(octets, time.monotonic()):
        ...                                   # Frame(...) or Invalid("bad header CRC")
    receiver.expire(time.monotonic())         # a frame left unfinished too long: Invalid, or None
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.mstp.frames import DATA_RESIDUE, HEADER_RESIDUE, MAX_DATA, Frame, data_register, header_register


@dataclass(frozen=True, slots=True)
class Invalid:
    """A frame that began but is not valid; `reason` says why."""

    reason: str


class _State(enum.Enum):
    IDLE = enum.auto()
    PREAMBLE = enum.auto()
    HEADER = enum.auto()
    DATA = enum.auto()
    SKIP = enum.auto()  # the data of a frame longer than MS/TP carries, and its CRC


class Receiver:
    def __init__(self, frame_abort: float) -> None:
        self.frame_abort = frame_abort
        self._state = _State.IDLE
        self._buffer = bytearray()  # the header (five octets and CRC), then the data and its CRC
        self._length = 0
        self._last_octet = 0.0

    @property
    def deadline(self) -> float | None:
        """When a frame begun and not finished is abandoned (None outside a frame)."""
        return None if self._state is _State.IDLE else self._last_octet + self.frame_abort

    def expire(self, now: float) -> Invalid | None:
        """Abandon a frame whose octets stopped for more than `frame_abort`; Invalid once the header began."""
        deadline = self.deadline
        if deadline is None or now <= deadline:
            return None
        began = self._state is not _State.PREAMBLE
        self._restart()
        return Invalid("frame cut short") if began else None

    def feed(self, octets: bytes, now: float) -> list[Frame | Invalid]:
        """The frames that `octets`, received at `now`, complete."""
        found: list[Frame | Invalid] = []
        if (abandoned := self.expire(now)) is not None:
            found.append(abandoned)
        self._last_octet = now
        view = memoryview(octets)
        while view:
            if self._state is _State.IDLE:
                start = octets.find(0x55, len(octets) - len(view))
                if start < 0:
                    break
                view = memoryview(octets)[start + 1 :]
                self._state = _State.PREAMBLE
            elif self._state is _State.PREAMBLE:
                octet, view = view[0], view[1:]
                if octet == 0xFF:
                    self._state = _State.HEADER
                elif octet != 0x55:  # a repeated 0x55 may still start the frame
                    self._state = _State.IDLE
            elif self._state is _State.SKIP:
                skipped = min(self._length, len(view))
                view, self._length = view[skipped:], self._length - skipped
                if not self._length:
                    self._restart()
                    found.append(Invalid(f"frame too long (over {MAX_DATA} octets of data)"))
            else:
                total = 6 if self._state is _State.HEADER else 6 + self._length + 2
                taken = total - len(self._buffer)
                self._buffer += view[:taken]
                view = view[taken:]
                if len(self._buffer) < total:
                    break
                outcome = self._header_done() if self._state is _State.HEADER else self._data_done()
                if outcome is not None:
                    found.append(outcome)
        return found

    def _header_done(self) -> Frame | Invalid | None:
        header = bytes(self._buffer)
        if header_register(header) != HEADER_RESIDUE:
            self._restart()
            return Invalid("bad header CRC")
        self._length = int.from_bytes(header[3:5], "big")
        if self._length == 0:
            self._restart()
            return Frame(header[0], header[1], header[2])
        if self._length > MAX_DATA:
            self._length += 2
            self._state = _State.SKIP
        else:
            self._state = _State.DATA
        return None

    def _data_done(self) -> Frame | Invalid:
        header, data = bytes(self._buffer[:6]), bytes(self._buffer[6:])
        self._restart()
        if data_register(data) != DATA_RESIDUE:
            return Invalid("bad data CRC")
        return Frame(header[0], header[1], header[2], data[:-2])

    def _restart(self) -> None:
        self._state = _State.IDLE
        self._buffer.clear()
        self._length = 0
