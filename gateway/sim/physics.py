"""The electrical side of a simulated panel: phases, logical meters, voltages and demand.

Pure functions plus one small integrator; no registers here (`meter.py` turns these numbers into
words). Channels are numbered as on the meter: 1-42 branch CTs, 43-45 AUX phases 1-3, 46 the AUX
neutral. Phases are indices 0, 1, 2 for A, B, C. `ct_numbering` is register 6.

>>> default_phase(3, TOP_FEED)          # top feed: CT1 A, CT2 A, CT3 B, CT4 B, ...
1
>>> two_phase_channels(1, TOP_FEED), three_phase_channels(1, SEQUENTIAL)
((1, 3), (1, 2, 3))
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Iterator, Sequence

TOP_FEED = 0
SEQUENTIAL = 2  # register 6; 1 (bottom feed) and 3 (odd/even) are phased like top feed here

BRANCH_CHANNELS = range(1, 43)
AUX_CHANNELS = range(43, 47)
CHANNELS = range(1, 47)
AUX_PHASE_CHANNELS = (43, 44, 45)
NEUTRAL_CHANNEL = 46
TWO_PHASE_METERS = range(1, 22)
THREE_PHASE_METERS = range(1, 15)

#: Line-to-line pairs in register order 251-253 (and voltage alarms 241-243): A-B, B-C, A-C.
LINE_PAIRS = ((0, 1), (1, 2), (0, 2))


def default_phase(channel: int, ct_numbering: int) -> int | None:
    """The voltage phase the meter gives a channel when the user has not assigned one."""
    if channel == NEUTRAL_CHANNEL:
        return None  # the neutral CT has no voltage: no power on it
    if channel in AUX_CHANNELS:
        return channel - AUX_PHASE_CHANNELS[0]
    if ct_numbering == SEQUENTIAL:
        return (channel - 1) % 3
    return ((channel - 1) // 2) % 3


def two_phase_channels(meter: int, ct_numbering: int) -> tuple[int, int]:
    """The CTs of 2-phase logical meter 1-21 (vendor phasing tables, pages 28-29)."""
    if ct_numbering == SEQUENTIAL:
        return 2 * meter - 1, 2 * meter
    k, column = divmod(meter - 1, 2)
    first = 4 * k + 1 + column
    # Top feed has no CT 43: the vendor pairs CTs 41 and 42 for meter 21 ("not meaningful").
    return first, min(first + 2, BRANCH_CHANNELS[-1])


def three_phase_channels(meter: int, ct_numbering: int) -> tuple[int, int, int]:
    """The CTs of 3-phase logical meter 1-14 (vendor phasing tables, pages 39-40)."""
    if ct_numbering == SEQUENTIAL:
        return 3 * meter - 2, 3 * meter - 1, 3 * meter
    k, column = divmod(meter - 1, 2)
    first = 6 * k + 1 + column
    return first, first + 2, first + 4


@functools.cache
def logical_circuits(ct_numbering: int) -> tuple[tuple[int, ...], ...]:
    """Every group of channels the meter reports totals for: 1-phase, AUX 3-phase, 2- and 3-phase."""
    return (
        *((channel,) for channel in BRANCH_CHANNELS),
        AUX_PHASE_CHANNELS,
        *(two_phase_channels(m, ct_numbering) for m in TWO_PHASE_METERS),
        *(three_phase_channels(m, ct_numbering) for m in THREE_PHASE_METERS),
    )


def line_to_line(volts_a: float, volts_b: float) -> float:
    """The voltage between two phases 120 degrees apart (sqrt 3 times L-N when balanced)."""
    return math.sqrt(volts_a * volts_a + volts_b * volts_b + volts_a * volts_b)


def power_factor(kw: float, kva: float) -> float:
    return kw / kva if kva > 0 else 0.0


class Demand:
    """Present demand of a vector of quantities: the mean of the last `window` sub-interval averages.

    A window of 1 is block demand; 2-6 a sliding average (registers 71 and 72). A sub-interval
    length of 0 is sync-to-comms: only `close` (reset code 26012) ends a sub-interval.

    >>> d = Demand(1)
    >>> closes = list(d.advance(10.0, [4.0], length=10.0, window=1))
    >>> d.present
    [4.0]
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._sums = [0.0] * size
        self._elapsed = 0.0
        self._averages: deque[list[float]] = deque()
        self.present = [0.0] * size

    def advance(self, dt: float, sample: Sequence[float], length: float, window: int) -> Iterator[None]:
        """Integrate `sample`, constant over `dt` seconds; yield each time a sub-interval closes."""
        while dt > 0:
            if length <= 0:
                self._integrate(dt, sample)
                return
            step = max(0.0, min(dt, length - self._elapsed))
            self._integrate(step, sample)
            dt -= step
            if self._elapsed >= length - 1e-9:
                self.close(window)
                yield
                # Whole sub-intervals inside dt all average `sample`; only the last `window` count.
                skipped = int(dt // length) - window
                if skipped > 0:
                    dt -= skipped * length

    def close(self, window: int) -> None:
        """End the running sub-interval now and update the present demand."""
        if self._elapsed > 0:
            self._averages.append([total / self._elapsed for total in self._sums])
        while len(self._averages) > window:
            self._averages.popleft()
        self._sums = [0.0] * self._size
        self._elapsed = 0.0
        if self._averages:
            count = len(self._averages)
            self.present = [sum(column) / count for column in zip(*self._averages, strict=True)]

    def reset(self) -> None:
        """Forget all sub-intervals (reset code 26013): present demand reads 0 until the next close."""
        self._sums = [0.0] * self._size
        self._elapsed = 0.0
        self._averages.clear()
        self.present = [0.0] * self._size

    def _integrate(self, dt: float, sample: Sequence[float]) -> None:
        self._elapsed += dt
        self._sums = [total + value * dt for total, value in zip(self._sums, sample, strict=True)]
