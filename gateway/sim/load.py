"""Load profiles: what the circuits of a simulated panel draw, second by second.

A `Load` describes a site; `Load.start(board)` sets the board up as an installer would (breaker
sizes, the mains CT size, a short demand interval) and returns the `BoardLoad` that the board
drives on every tick. Everything random comes from one seeded generator per board, so a seed
replays the same panel.

* Branch circuits 1-42 draw a steady share of their breaker (the profile's `levels`, in percent),
  with a slow drift and noise on top, and now and then step to a new steady share. A few sit just
  under the high-current threshold; spare circuits draw nothing and have breaker size 0 (alarms
  off, as on a real panel).
* AUX channels 43-45 are the panel's mains: each carries the sum of the branch circuits on its
  phase; channel 46 (the neutral) carries their imbalance and has alarms off.
* Voltages and frequency wander within their normal band.
* With `swing`, one circuit of the board's first panel rises above the high-current threshold
  (60 % of its breaker, the meter's default) for `SWING_HOLD` seconds every `SWING_EVERY` seconds,
  first `SWING_START` seconds after start: long enough to latch the High alarm (10 s delay), so
  the faces show the alarm come, go, and stay latched until someone clears it.

Levels stay between 10 % and 50 % of the breaker (the swing aside), clear of the meter's default
thresholds (low 7.5 %, high 60 %), so no channel is in alarm at start.

A load file (`--load FILE`) is a CSV of `channel,amps` lines for branch channels 1-42 (a header
line `channel,amps` and `#` comments are allowed); every panel of every board draws those amps,
with drift and noise but no steps or swing. A channel the file does not list is a spare. Each
circuit gets the smallest standard breaker it loads to at most 40 %.

>>> circuits = DATACENTER.circuits(random.Random(0))
>>> sum(1 for c in circuits if c.breaker == 0) == DATACENTER.spares
True
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import GatewayError
from gateway.pointmap import load as load_pointmap
from gateway.sim.physics import AUX_PHASE_CHANNELS, BRANCH_CHANNELS, NEUTRAL_CHANNEL, TOP_FEED, default_phase

if TYPE_CHECKING:
    from gateway.sim.meter import Board, Panel

BREAKERS = (15, 20, 30, 40, 50, 60, 70, 80, 100, 125, 150, 175, 200, 225, 250, 300, 400, 600, 800)
BRANCH_BREAKERS = (15, 20, 20, 20, 30)  # what a branch circuit is usually protected by
MAX_BRANCH_AMPS = 100.0  # the branch CTs' rating (register 73 default)
FILE_LOADING = 40.0  # % of its breaker a file's circuit is sized to at most
MAINS_LOADING = 50.0  # % of its breaker a phase of the mains carries at most
NEAR_HIGH = (45.0, 50.0)  # % of breaker: close under the default high threshold (60 %)
SWING_LEVELS = (50.0, 66.0)  # % of breaker: under, then over the high threshold, under HIGH-HIGH (70 %)
SWING_START, SWING_HOLD, SWING_EVERY = 45.0, 30.0, 180.0  # seconds
DRIFT, DRIFT_TIME = 0.03, 60.0  # relative amplitude and time constant of a circuit's drift
NOISE = 0.02  # relative standard deviation of a circuit's noise, drawn every tick
VOLTS, VOLTS_DRIFT, VOLTS_TIME = 120.0, 1.5, 120.0  # nominal L-N, its wander (V) and time constant
VOLTS_NOISE = 0.15  # V, drawn every tick
HERTZ, HERTZ_DRIFT, HERTZ_TIME = 60.0, 0.03, 30.0
DEMAND_SUBINTERVAL, DEMAND_SUBINTERVALS = 10, 6  # a sliding one-minute demand, first value after 10 s


@dataclass(frozen=True, slots=True)
class Circuit:
    """One channel's steady load: amps, the breaker protecting it (0 = spare), its power factor."""

    channel: int
    amps: float
    breaker: int
    power_factor: float


@dataclass(frozen=True, slots=True)
class Load:
    """A kind of site: built-in (`PROFILES`) or read from a file (`read_load_file`)."""

    name: str
    levels: tuple[float, float] = (10.0, 40.0)  # % of breaker, drawn per circuit
    near: int = 0  # circuits just under the high threshold
    spares: int = 0
    power_factors: tuple[float, float] = (0.9, 0.9)
    step_every: float | None = None  # mean seconds between two steps of one circuit; None: no steps
    swing: bool = False
    fixed: tuple[Circuit, ...] = ()  # a file's circuits, instead of drawn ones
    seed: int = 0

    def circuits(self, rng: random.Random) -> list[Circuit]:
        """The branch circuits of one panel."""
        if self.fixed:
            return list(self.fixed)
        channels = list(BRANCH_CHANNELS)
        rng.shuffle(channels)
        spares, near = channels[: self.spares], channels[self.spares : self.spares + self.near]
        circuits = []
        for channel in BRANCH_CHANNELS:
            if channel in spares:
                circuits.append(Circuit(channel, 0.0, 0, 1.0))
                continue
            breaker = rng.choice(BRANCH_BREAKERS)
            level = rng.uniform(*(NEAR_HIGH if channel in near else self.levels))
            circuits.append(Circuit(channel, breaker * level / 100, breaker, rng.uniform(*self.power_factors)))
        return circuits

    def start(self, board: Board) -> BoardLoad:
        """Set the board up for this load (writing its setup registers) and return its driver."""
        rng = random.Random(f"{self.name}:{self.seed}:{board.primary_address}")
        panels = [
            PanelLoad(self, panel, self.circuits(rng), rng, swing=self.swing and panel is board.panels[0])
            for panel in board.panels
        ]
        return BoardLoad(panels, rng)


IDLE = Load("idle", levels=(10.0, 18.0), spares=10, power_factors=(0.70, 0.90), step_every=3600.0, swing=True)
OFFICE = Load("office", levels=(10.0, 40.0), near=2, spares=6, power_factors=(0.85, 0.95), step_every=600.0, swing=True)
DATACENTER = Load(
    "datacenter", levels=(25.0, 40.0), near=3, spares=4, power_factors=(0.95, 0.99), step_every=1800.0, swing=True
)
PROFILES = {load.name: load for load in (IDLE, OFFICE, DATACENTER)}


class LoadFileError(GatewayError):
    """A load file that cannot be read, or a line of it that is not `channel,amps`."""


def breaker_for(amps: float, loading: float = FILE_LOADING) -> int:
    """The smallest standard breaker that `amps` loads to at most `loading` percent."""
    for breaker in BREAKERS:
        if amps <= breaker * loading / 100:
            return breaker
    return BREAKERS[-1]


def read_load_file(path: Path, seed: int = 0) -> Load:
    """A load from a CSV of `channel,amps` lines; LoadFileError names the line of a mistake."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LoadFileError(f"load file {path}: cannot read it: {error}") from None
    amps: dict[int, float] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not cells[0] or cells[0].startswith("#") or [c.lower() for c in cells] == ["channel", "amps"]:
            continue
        where = f"load file {path}, line {number}"
        try:
            channel, value = int(cells[0]), float(cells[1])
        except (ValueError, IndexError):
            raise LoadFileError(f"{where}: {','.join(row)!r} is not 'channel,amps', e.g. '7,4.5'") from None
        if len(cells) != 2 or channel not in BRANCH_CHANNELS or not 0 <= value <= MAX_BRANCH_AMPS:
            raise LoadFileError(
                f"{where}: {','.join(row)!r}: channel must be {BRANCH_CHANNELS[0]}-"
                f"{BRANCH_CHANNELS[-1]} and amps 0-{MAX_BRANCH_AMPS:g}"
            )
        if channel in amps:
            raise LoadFileError(f"{where}: channel {channel} is listed twice")
        amps[channel] = value
    circuits = tuple(
        Circuit(c, amps.get(c, 0.0), breaker_for(amps[c]) if amps.get(c) else 0, 0.95) for c in BRANCH_CHANNELS
    )
    return Load(path.name, fixed=circuits, seed=seed)


def load_named(name: str, seed: int = 0) -> Load:
    """A built-in profile by name, or else a load file at that path."""
    if name in PROFILES:
        return replace(PROFILES[name], seed=seed)
    return read_load_file(Path(name), seed)


def wander(value: float, mean: float, spread: float, time_constant: float, dt: float, rng: random.Random) -> float:
    """One step of a mean-reverting random walk (Ornstein-Uhlenbeck), exact for any `dt`."""
    keep = math.exp(-dt / time_constant)
    return mean + (value - mean) * keep + spread * math.sqrt(1 - keep * keep) * rng.gauss()


def _register(key: str, channel: int | None = None) -> int:
    return load_pointmap().find(key, group="setup", channel=channel).register


class PanelLoad:
    """The circuits of one panel and their drift; sets the panel's currents on every tick."""

    def __init__(self, load: Load, panel: Panel, circuits: Sequence[Circuit], rng: random.Random, swing: bool) -> None:
        self.load = load
        self.panel = panel
        self.circuits = list(circuits)
        self.swing: Circuit | None = None
        self._rng = rng
        self._drift = [0.0] * len(self.circuits)
        self._phases = [default_phase(c.channel, TOP_FEED) for c in self.circuits]
        if swing:  # a loaded circuit, held under the high threshold between its excursions above it
            index = rng.choice([i for i, c in enumerate(self.circuits) if c.breaker])
            circuit = self.circuits[index]
            self.swing = self.circuits[index] = replace(circuit, amps=circuit.breaker * SWING_LEVELS[0] / 100)
        for circuit in self.circuits:
            panel.write(_register("breaker_size", circuit.channel), [circuit.breaker])
            panel.set_power_factor(circuit.channel, circuit.power_factor)
        # Each phase of the mains is sized for the most it may carry (every circuit stepped to the top
        # of its range, the swing over its threshold); a phase that carries nothing is a spare.
        most = self._phase_sums(map(self._most, self.circuits))
        mains = [breaker_for(amps, MAINS_LOADING) if amps else 0 for amps in most]
        for channel, breaker in zip(AUX_PHASE_CHANNELS, mains, strict=True):
            panel.write(_register("ct_size", channel), [breaker or BREAKERS[0]])
            panel.write(_register("breaker_size", channel), [breaker])
        panel.write(_register("ct_size", NEUTRAL_CHANNEL), [max(mains) or BREAKERS[0]])
        panel.write(_register("breaker_size", NEUTRAL_CHANNEL), [0])
        panel.write(_register("subinterval_length"), [DEMAND_SUBINTERVAL])
        panel.write(_register("demand_subintervals"), [DEMAND_SUBINTERVALS])

    def _most(self, circuit: Circuit) -> float:
        """The most a circuit draws, drift and noise aside."""
        if circuit is self.swing:
            return circuit.breaker * SWING_LEVELS[1] / 100
        top = self.load.levels[1] if self.load.step_every else 0.0
        return max(circuit.amps, circuit.breaker * top / 100)

    def step(self, dt: float, elapsed: float) -> None:
        rng = self._rng
        step_chance = dt / self.load.step_every if self.load.step_every else 0.0
        amps = []
        for i, circuit in enumerate(self.circuits):
            if circuit.breaker and circuit is not self.swing and rng.random() < step_chance:
                circuit = self.circuits[i] = Circuit(
                    circuit.channel,
                    circuit.breaker * rng.uniform(*self.load.levels) / 100,
                    circuit.breaker,
                    circuit.power_factor,
                )
            if circuit is not self.swing:  # the swing keeps clear of its threshold's hysteresis
                self._drift[i] = wander(self._drift[i], 0.0, DRIFT, DRIFT_TIME, dt, rng)
            steady = circuit.amps
            if circuit is self.swing and swinging(elapsed):
                steady = circuit.breaker * SWING_LEVELS[1] / 100
            amps.append(max(0.0, steady * (1 + self._drift[i] + NOISE * rng.gauss())))
        for circuit, value in zip(self.circuits, amps, strict=True):
            self.panel.set_current(circuit.channel, value)
        phases = self._phase_sums(amps)
        for channel, value in zip(AUX_PHASE_CHANNELS, phases, strict=True):
            self.panel.set_current(channel, value)
        self.panel.set_current(NEUTRAL_CHANNEL, imbalance(phases))

    def _phase_sums(self, amps: Iterable[float]) -> list[float]:
        sums = [0.0, 0.0, 0.0]
        for phase, value in zip(self._phases, amps, strict=True):
            if phase is not None:
                sums[phase] += value
        return sums


class BoardLoad:
    """Drives both panels of a board: circuits, and the voltages and frequency they share."""

    def __init__(self, panels: Sequence[PanelLoad], rng: random.Random) -> None:
        self.panels = tuple(panels)
        self._rng = rng
        self._volts = [VOLTS] * 3
        self._hertz = HERTZ
        self._started: float | None = None
        self._clock = 0.0

    @property
    def swing(self) -> tuple[int, int] | None:
        """(Modbus address, channel) of the circuit that swings over the threshold, if any."""
        for load in self.panels:
            if load.swing is not None:
                return load.panel.address, load.swing.channel
        return None

    def drive(self, now: float) -> None:
        """Set every value for the interval that starts at `now` (monotonic seconds)."""
        if self._started is None:
            self._started = self._clock = now
        if now < self._clock:
            return  # as the panels do: an earlier time than the last is ignored
        dt = now - self._clock
        self._clock = now
        rng = self._rng
        self._volts = [wander(v, VOLTS, VOLTS_DRIFT, VOLTS_TIME, dt, rng) for v in self._volts]
        self._hertz = wander(self._hertz, HERTZ, HERTZ_DRIFT, HERTZ_TIME, dt, rng)
        for load in self.panels:
            for phase, volts in zip("ABC", self._volts, strict=True):
                load.panel.set_voltage(phase, volts + VOLTS_NOISE * rng.gauss())
            load.panel.set_frequency(self._hertz)
            load.step(dt, now - self._started)


def swinging(elapsed: float) -> bool:
    """Whether the swinging circuit is over its threshold `elapsed` seconds after start."""
    return elapsed >= SWING_START and (elapsed - SWING_START) % SWING_EVERY < SWING_HOLD


def imbalance(phases: Sequence[float]) -> float:
    """The neutral current of three phase currents 120 degrees apart."""
    a, b, c = phases
    return math.sqrt(max(0.0, a * a + b * b + c * c - a * b - b * c - a * c))
