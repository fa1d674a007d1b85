"""Alarm state machines of a simulated panel, as the vendor map describes registers 165-243.

Current alarms, one `ChannelAlarms` per channel (status registers 178-223):

* the level is the current as a percentage of the channel's breaker size;
* latching alarms (bits 0-4) arm only once the ON state is declared (level above Low-Low for the
  ON time); then High-High / High latch after the level stays above their threshold for their
  delay, Low / Low-Low after it stays below; bit 4 latches when the level stays below Low-Low for
  the OFF time, which also ends the ON state; a latched bit stays until written 0;
* non-latching High (bit 8) and Low (bit 9) follow the level at once, and return to normal only
  past the threshold by the hysteresis (a percentage of the threshold);
* a threshold of 0 disables that alarm.

Voltage alarms, one `VoltageAlarms` per line-to-line pair (registers 241-243): over-voltage latches
bit 0 and under-voltage bit 1 after their timers; bits 8 and 9 are their non-latching twins.

>>> alarms = ChannelAlarms()
>>> settings = AlarmSettings(delays=(0, 0, 0, 0), on_time=0, off_time=30,
...                          thresholds=(70, 60, 7.5, 2.5), high=60, low=5, hysteresis=5)
>>> alarms.step(80.0, 0.0, settings)      # (newly latched, newly non-latching) bits
(3, 256)
"""

from __future__ import annotations

from dataclasses import dataclass

HIGH_HIGH, HIGH, LOW, LOW_LOW, OFF = range(5)
#: Latching alarm names in bit order; also the order of the counters (301, 347, 393, 439, 485).
LATCHING_NAMES = ("high_high", "high", "low", "low_low", "off")
LATCHING_MASK = 0x1F
VOLTAGE_LATCHING_MASK = 0x03  # bit 0 over-voltage, bit 1 under-voltage
NONLATCHING_HIGH = 1 << 8
NONLATCHING_LOW = 1 << 9
COUNTER_LIMIT = 32767


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """Registers 165-177 in engineering units: seconds and percent."""

    delays: tuple[float, float, float, float]  # High-High, High, Low, Low-Low
    on_time: float
    off_time: float
    thresholds: tuple[float, float, float, float]  # High-High, High, Low, Low-Low; % of breaker
    high: float  # non-latching thresholds, % of breaker
    low: float
    hysteresis: float  # % of the non-latching threshold


@dataclass(frozen=True, slots=True)
class VoltageAlarmSettings:
    """Registers 236-240 in engineering units: seconds, volts L-L and percent."""

    over_delay: float
    under_delay: float
    over: float
    under: float
    hysteresis: float


def high_alarm(active: bool, level: float, threshold: float, hysteresis: float) -> bool:
    """A non-latching high alarm: on above the threshold, off once below it by the hysteresis."""
    if threshold <= 0:
        return False
    return level > threshold or (active and level >= threshold * (1 - hysteresis / 100))


def low_alarm(active: bool, level: float, threshold: float, hysteresis: float) -> bool:
    """A non-latching low alarm: on below the threshold, off once above it by the hysteresis."""
    if threshold <= 0:
        return False
    return level < threshold or (active and level <= threshold * (1 + hysteresis / 100))


def held(timer: float, condition: bool, dt: float) -> float:
    """How long a condition has held: grows while it holds, restarts when it does not."""
    return timer + dt if condition else 0.0


def bump(count: int) -> int:
    """The next value of an alarm counter; counters roll over to 1."""
    return 1 if count >= COUNTER_LIMIT else count + 1


def bits(mask: int) -> list[int]:
    return [bit for bit in range(mask.bit_length()) if mask >> bit & 1]


class ChannelAlarms:
    """Alarm status bits and latching counters of one channel."""

    def __init__(self) -> None:
        self.latched = 0
        self.nonlatching = 0
        self.counts = [0] * len(LATCHING_NAMES)
        self._on = False
        self._on_timer = 0.0
        self._off_timer = 0.0
        self._timers = [0.0] * 4  # High-High, High, Low, Low-Low

    @property
    def status(self) -> int:
        return self.latched | self.nonlatching

    def step(self, level: float | None, dt: float, settings: AlarmSettings) -> tuple[int, int]:
        """Advance by `dt` seconds at `level` (None: alarms disabled for this channel).

        Returns the latching bits and the non-latching bits that became set.
        """
        if level is None:
            self.nonlatching = 0
            self._on = False
            self._on_timer = self._off_timer = 0.0
            self._timers = [0.0] * 4
            return 0, 0
        before = self.nonlatching
        high = high_alarm(bool(before & NONLATCHING_HIGH), level, settings.high, settings.hysteresis)
        low = low_alarm(bool(before & NONLATCHING_LOW), level, settings.low, settings.hysteresis)
        self.nonlatching = (NONLATCHING_HIGH if high else 0) | (NONLATCHING_LOW if low else 0)
        return self._step_latching(level, dt, settings), self.nonlatching & ~before

    def clear(self, mask: int) -> None:
        """Clear latching bits (a write of 0 to them); a condition still present latches again after its delay."""
        mask &= LATCHING_MASK
        self.latched &= ~mask
        for bit in bits(mask & ~(1 << OFF)):
            self._timers[bit] = 0.0
        if mask & 1 << OFF:
            self._off_timer = 0.0

    def _step_latching(self, level: float, dt: float, settings: AlarmSettings) -> int:
        low_low = settings.thresholds[LOW_LOW]
        if not self._on:
            self._on_timer = held(self._on_timer, level > low_low, dt)
            if level <= low_low or self._on_timer < settings.on_time:
                return 0
            self._on = True
            dt = self._on_timer - settings.on_time  # what is left of this step runs the delays
            self._timers = [0.0] * 4
            self._off_timer = 0.0
        high_high, high, low, _ = settings.thresholds
        conditions = (
            0 < high_high < level,
            0 < high < level,
            level < low,
            level < low_low,
        )
        fired = 0
        for bit, (condition, delay) in enumerate(zip(conditions, settings.delays, strict=True)):
            self._timers[bit] = held(self._timers[bit], condition, dt)
            if condition and self._timers[bit] >= delay:
                fired |= 1 << bit
        self._off_timer = held(self._off_timer, level < low_low, dt)
        if level < low_low and self._off_timer >= settings.off_time:
            fired |= 1 << OFF
            self._on = False  # the circuit is off: ON must be declared again to re-arm
            self._on_timer = 0.0
        new = fired & ~self.latched
        self.latched |= fired
        for bit in bits(new):
            self.counts[bit] = bump(self.counts[bit])
        return new


class VoltageAlarms:
    """Over- and under-voltage alarm bits of one line-to-line pair."""

    def __init__(self) -> None:
        self.latched = 0
        self.nonlatching = 0
        self._over_timer = 0.0
        self._under_timer = 0.0

    @property
    def status(self) -> int:
        return self.latched | self.nonlatching

    def step(self, volts: float, dt: float, settings: VoltageAlarmSettings) -> None:
        over = high_alarm(bool(self.nonlatching & NONLATCHING_HIGH), volts, settings.over, settings.hysteresis)
        under = low_alarm(bool(self.nonlatching & NONLATCHING_LOW), volts, settings.under, settings.hysteresis)
        self.nonlatching = (NONLATCHING_HIGH if over else 0) | (NONLATCHING_LOW if under else 0)
        above = 0 < settings.over < volts
        below = volts < settings.under
        self._over_timer = held(self._over_timer, above, dt)
        self._under_timer = held(self._under_timer, below, dt)
        if above and self._over_timer >= settings.over_delay:
            self.latched |= 1
        if below and self._under_timer >= settings.under_delay:
            self.latched |= 2

    def clear(self, mask: int) -> None:
        mask &= VOLTAGE_LATCHING_MASK
        self.latched &= ~mask
        if mask & 1:
            self._over_timer = 0.0
        if mask & 2:
            self._under_timer = 0.0
