"""What goes wrong on the simulated line: random fault rates, and scripted faults queued per node.

`Faults` are rates: each answered request draws its fault by chance (the `simulate` command's
--crc-errors, --silence, ...). A `Fault` is one fault, scripted: `line.script.add(fault)` queues
it for the next reply of any node, `line.script.add(fault, address=2)` for the next reply of
node 2 (a node's own queue goes first). A scripted fault is played instead of a drawn one, at a
defined point of the transaction, so a test knows exactly which reply it hits:

    line.script.add(Fault(exception=0x06))                 # the next reply: exception 06 (busy)
    line.script.add(Fault(noise=b"\\x01\\x83"), address=1)   # bytes while node 1's request is on the wire
    line.script.add(Fault(reply=request_pdu))              # an echo, for a function the meters lack

`SimulatedLine` plays every kind; `MemoryLine` carries PDUs, not frames, so it plays the faults
that change the answer (silent, exception, reply) and refuses the others.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.modbus import EXCEPTION_BIT, MAX_PDU, MAX_UNIT, SERVER_DEVICE_FAILURE

# What only a line of frames can do: a memory line hands over PDUs, at once.
FRAME_FAULTS = ("delay", "unit", "crc_error", "truncate", "garbage", "noise")


@dataclass(frozen=True, slots=True)
class Fault:
    """One reply gone wrong; any mix of the fields below, the default being a good reply.

    `exception` and `reply` replace the meter's answer (the request is then not executed); the
    others act on the reply of a request the meter executed.
    """

    silent: bool = False  # no reply at all
    exception: int | None = None  # exception reply with this code
    reply: bytes | None = None  # this reply PDU (function code and data), e.g. the request echoed
    delay: float = 0.0  # seconds the reply comes late
    unit: int | None = None  # the reply claims to come from this unit
    crc_error: bool = False  # the reply's CRC is wrong
    truncate: int | None = None  # only the first bytes of the reply frame are sent
    garbage: bytes = b""  # sent right before the reply, as if it were its start
    noise: bytes = b""  # sent while the request is still on the wire (a collision)

    def __post_init__(self) -> None:
        if self.exception is not None and not 1 <= self.exception <= 0xFF:
            raise ValueError(f"an exception code is 1-255, not {self.exception}")
        if self.reply is not None and not 1 <= len(self.reply) <= MAX_PDU:
            raise ValueError(f"a reply PDU holds 1-{MAX_PDU} bytes, not {len(self.reply)}")
        if self.exception is not None and self.reply is not None:
            raise ValueError("a fault answers with an exception or with a reply, not both")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, not {self.delay}")
        if self.unit is not None and not 0 <= self.unit <= MAX_UNIT:
            raise ValueError(f"unit must be 0-{MAX_UNIT}, not {self.unit}")
        if self.truncate is not None and self.truncate < 0:
            raise ValueError(f"truncate must not be negative, not {self.truncate}")

    def answer(self, request: bytes) -> bytes | None:
        """The reply PDU that replaces the meter's answer to `request`; None: the meter answers."""
        if self.exception is not None:
            return bytes([request[0] | EXCEPTION_BIT, self.exception])
        return self.reply

    @property
    def frame_faults(self) -> tuple[str, ...]:
        """The fields set that only a line of frames can play (FRAME_FAULTS)."""
        return tuple(name for name in FRAME_FAULTS if getattr(self, name) != getattr(GOOD_REPLY, name))


GOOD_REPLY = Fault()


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault rates of the line, each a probability per answered request; replace to change them."""

    silence: float = 0.0  # the reply is dropped (the request is still executed)
    crc_error: float = 0.0  # the reply's CRC is corrupted
    exception: float = 0.0  # the request is not executed and exception 04 comes back
    slow: float = 0.0  # the reply comes `slow_delay` seconds late
    slow_delay: float = 1.0
    echo_error: float = 0.0  # with `echo`: a chunk of the master's bytes comes back with a bit flipped

    def __post_init__(self) -> None:
        for name in ("silence", "crc_error", "exception", "slow", "echo_error"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability within 0-1, not {getattr(self, name)}")
        if self.slow_delay < 0:
            raise ValueError(f"slow_delay must not be negative, not {self.slow_delay}")

    def draw(self, rng: random.Random) -> Fault:
        """The fault of one reply, by chance (four draws whatever the rates: a seed replays them)."""
        rates = (self.silence, self.exception, self.crc_error, self.slow)
        drop, fail, corrupt, slow = (rng.random() < rate for rate in rates)
        if not (drop or fail or corrupt or slow):
            return GOOD_REPLY
        return Fault(
            silent=drop,
            exception=SERVER_DEVICE_FAILURE if fail else None,
            crc_error=corrupt,
            delay=self.slow_delay if slow else 0.0,
        )


class FaultScript:
    """Scripted faults waiting for their reply: a queue per node, and one for the whole line.

    Thread-safe: a test adds while the line's thread takes.
    """

    def __init__(self, addresses: Iterable[int], *, frames: bool = True) -> None:
        self._addresses = frozenset(addresses)
        self._frames = frames
        self._lock = threading.Lock()
        self._queues: dict[int | None, deque[Fault]] = {}

    def add(self, fault: Fault, address: int | None = None) -> None:
        """Play `fault` on the next reply of node `address`, or of any node (None)."""
        if address is not None and address not in self._addresses:
            raise KeyError(f"no board on this line serves address {address}")
        if not self._frames and (frame_faults := fault.frame_faults):
            raise ValueError(f"this line carries PDUs, not frames: it cannot play {', '.join(frame_faults)}")
        with self._lock:
            self._queues.setdefault(address, deque()).append(fault)

    def take(self, address: int) -> Fault | None:
        """The fault for node `address`'s reply now (its own queue first), or None."""
        with self._lock:
            for queue in (self._queues.get(address), self._queues.get(None)):
                if queue:
                    return queue.popleft()
        return None

    @property
    def pending(self) -> int:
        """Faults not played yet."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())
