"""A simulated BCPM board: two Modbus nodes (panels) that answer the vendor register map.

A `Board` at DIP address N serves panel 1 (CTs 1-42 and AUX 1-4 of strips 1A/1B) at N and panel
2 at N+1; both carry the same map and serial number. Each `Panel` keeps a register file built from
the point map (setup registers start at their `default`, scale registers stay at theirs) and
computes measurements from its physics: currents you set, voltages per phase, power factors,
energy, demand, maxima, logical 2- and 3-phase meters, AUX totals and alarms.

The meter's rules, as the vendor map gives them:

* FC03 and FC04 read the same words; a read touching a register outside the map is refused
  (exception 02); a float copy always equals its integer times 10**scale, NaN where the integer
  reads 0x8000;
* points outside the board's model, and the measurements of a channel with CT size 0, read 0x8000;
* writes go to integer setup registers (and the location string) only, within the point's valid
  values (else exception 03); read-only, unmapped, float and other-model registers give 02;
* alarm status words clear only the latching bits written 0; reset registers act on write.

>>> board = Board(1, model="A")
>>> panel = board.panel(1)
>>> panel.set_current(12, 17.5)
>>> board.tick(0.0)
>>> panel.read(1347, 1)          # current of channel 12, scale -1
[175]
"""

from __future__ import annotations

import functools
import math
import operator
import threading
from collections.abc import Iterable, Sequence

from gateway.errors import GatewayError
from gateway.modbus import (
    ILLEGAL_DATA_ADDRESS,
    ILLEGAL_DATA_VALUE,
    ILLEGAL_FUNCTION,
    MAX_READ_REGISTERS,
    SERVER_DEVICE_FAILURE,
)
from gateway.pointmap import (
    DEVICE_ID_BY_MODEL,
    INVALID_WORD,
    MODELS,
    Access,
    Encoding,
    Point,
    ResetCode,
    float_words,
    load,
    signed,
    unscale_value,
)
from gateway.sim.alarms import (
    LATCHING_MASK,
    LATCHING_NAMES,
    VOLTAGE_LATCHING_MASK,
    AlarmSettings,
    ChannelAlarms,
    VoltageAlarms,
    VoltageAlarmSettings,
    bits,
    bump,
)
from gateway.sim.load import BoardLoad, Load
from gateway.sim.physics import (
    AUX_CHANNELS,
    AUX_PHASE_CHANNELS,
    CHANNELS,
    LINE_PAIRS,
    NEUTRAL_CHANNEL,
    Demand,
    default_phase,
    line_to_line,
    logical_circuits,
    power_factor,
    three_phase_channels,
    two_phase_channels,
)

MAX_READ = MAX_READ_REGISTERS
MAX_WRITE = 123


DEFAULT_VOLTS = 120.0
DEFAULT_POWER_FACTOR = 0.95
FREQUENCY = 60.0
MIN_FREQUENCY_VOLTS = 20.0  # below this on phase A the meter cannot measure frequency
DEFAULT_FIRMWARE = (1023, 1031)
DEFAULT_LOCATION = "NOT_ASSIGNED"
PHASES = "ABC"

# Register 532 model bits; register 539 reuses them beside split-core (b1) and V-phase capable (b12).
_MODEL_BITS = {"A": 1 << 15, "B": 1 << 14, "C": 1 << 13}
_SPLIT_CORE = 1 << 1
_CUSTOM_V_PHASE = 1 << 12
_HEALTH_NO_FREQUENCY = 1 << 1
_HEALTH_CURRENT_CLIPPING = 1 << 5

_SLOTS = CHANNELS[-1] + 1  # per-channel lists are indexed by channel number; slot 0 is unused


class MeterRefusal(GatewayError):
    """The meter refuses a request; `code` is the Modbus exception code it answers with."""

    code = SERVER_DEVICE_FAILURE


class IllegalFunction(MeterRefusal):
    code = ILLEGAL_FUNCTION


class IllegalAddress(MeterRefusal):
    code = ILLEGAL_DATA_ADDRESS


class IllegalValue(MeterRefusal):
    code = ILLEGAL_DATA_VALUE


def model_token(model: str) -> str:
    """The model name in the Report Slave ID text.

    The map is the split-core BCPMSC's (device IDs 15170-15172, product ID bit 1), whose Veris
    twin is the E31 series, so model A reads "E31A".
    """
    return f"E31{model}"


def default_serial(primary_address: int) -> int:
    """A stable serial number for a board, derived from its DIP address."""
    return 0x4D150000 + primary_address


def _string_words(text: str, count: int) -> list[int]:
    """ASCII, two characters a register, first in the high byte, NUL-padded."""
    data = text.encode("ascii").ljust(2 * count, b"\0")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * count, 2)]


def _raw_words(point: Point, raw: int) -> list[int]:
    if point.count == 2:
        raw %= 1 << 32  # 32-bit accumulators roll over
        return [raw >> 16, raw & 0xFFFF]
    return [raw & 0xFFFF]


def _value_words(point: Point, value: float | None, exponent: int) -> list[int]:
    """Raw words of an engineering value; 16-bit values saturate short of 0x8000 (invalid)."""
    if value is None:
        return [INVALID_WORD] * point.count
    raw = unscale_value(value, exponent)
    if point.count == 1:
        raw = max(-0x7FFF, min(0x7FFF, raw))
    return _raw_words(point, raw)


def _or(words: Iterable[int]) -> int:
    return functools.reduce(operator.or_, words, 0)


def _required(number: int | None) -> int:
    """A point's channel, phase or float register, which its key implies."""
    if number is None:
        raise LookupError("the point map lacks a channel, phase or float register a point needs")
    return number


@functools.cache
def _point(key: str) -> Point:
    """A single (not per-channel) point."""
    return load().find(key)


@functools.cache
def _channel_registers(key: str) -> dict[int, int]:
    """Register per channel of a per-channel setup point (CT size, breaker size, voltage phase)."""
    return {p.channel: p.register for p in load().points if p.key == key and p.group == "setup" and p.channel}


class Board:
    """One BCPM main board: two panels at `primary_address` and `primary_address + 1`."""

    def __init__(
        self,
        primary_address: int,
        model: str = "A",
        serial: int | None = None,
        firmware: tuple[int, int] = DEFAULT_FIRMWARE,
        location: str = DEFAULT_LOCATION,
        baudrate: int = 19200,
        load: Load | None = None,
    ) -> None:
        if not 1 <= primary_address <= 246:
            raise ValueError(f"a board needs addresses N and N+1 within 1-247; N={primary_address} is not 1-246")
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
        serial = default_serial(primary_address) if serial is None else serial
        if not 0 <= serial <= 0xFFFFFFFF:
            raise ValueError(f"serial must fit 32 bits, not {serial}")
        if not all(0 <= part <= 0xFFFF for part in firmware):
            raise ValueError(f"firmware revisions must fit 16 bits, not {firmware}")
        if not location.isascii() or len(location) > 127:
            raise ValueError("location must be ASCII, at most 127 characters")
        self.primary_address = primary_address
        self.model = model
        self.serial = serial
        self.firmware = firmware
        self.location = location
        self.baudrate = baudrate
        # One lock for both panels: the responder thread and a test driving the physics share them.
        self._lock = threading.RLock()
        self.panels = (Panel(self, 1), Panel(self, 2))
        # A load sets the panels up as an installer would, then moves their values on every tick.
        self.load: BoardLoad | None = None if load is None else load.start(self)

    @property
    def addresses(self) -> tuple[int, int]:
        return self.primary_address, self.primary_address + 1

    def panel(self, address: int) -> Panel:
        for panel in self.panels:
            if panel.address == address:
                return panel
        raise KeyError(f"board {self.primary_address} serves addresses {self.addresses}, not {address}")

    def tick(self, now: float) -> None:
        """Advance the physics to `now` (monotonic seconds); an earlier time than the last is ignored."""
        with self._lock:
            if self.load is not None:
                self.load.drive(now)
            for panel in self.panels:
                panel.advance_to(now)


class Panel:
    """One Modbus node of a board: its register file and the physics behind it."""

    def __init__(self, board: Board, number: int) -> None:
        self.board = board
        self.number = number
        self.address = board.primary_address + number - 1
        self._lock = board._lock
        self._map = load()
        self._model = board.model
        self._words = self._initial_words()
        self._current = [0.0] * _SLOTS
        self._power_factor = [DEFAULT_POWER_FACTOR] * _SLOTS
        self._volts = [DEFAULT_VOLTS] * 3
        self._frequency = FREQUENCY
        self._energy = [0.0] * _SLOTS  # kWh
        self._max_current = [0.0] * _SLOTS
        self._max_current_demand = [0.0] * _SLOTS
        self._max_kw: dict[tuple[int, ...], float] = {}
        self._max_kw_demand: dict[tuple[int, ...], float] = {}
        self._demand = Demand(2 * _SLOTS)  # currents, then kW
        self._alarms = [ChannelAlarms() for _ in range(_SLOTS)]
        self._voltage_alarms = [VoltageAlarms() for _ in LINE_PAIRS]
        self._global_counts = [0] * len(LATCHING_NAMES)
        self._recent_latching = 0
        self._recent_nonlatching = 0
        self._clock: float | None = None

    # -- what a test or a demo drives ---------------------------------------------------------

    def set_current(self, channel: int, amps: float) -> None:
        """Current through a CT: channels 1-42 branch, 43-45 AUX phases 1-3, 46 AUX neutral."""
        self._check_channel(channel)
        if not (math.isfinite(amps) and amps >= 0):
            raise ValueError(f"current must be a non-negative number of amps, not {amps}")
        with self._lock:
            self._current[channel] = amps

    def set_voltage(self, phase: str, volts: float) -> None:
        """Line-to-neutral voltage of phase "A", "B" or "C" (models A and B measure it)."""
        if phase not in PHASES or len(phase) != 1:
            raise ValueError(f"phase must be 'A', 'B' or 'C', not {phase!r}")
        if not (math.isfinite(volts) and volts >= 0):
            raise ValueError(f"voltage must be a non-negative number of volts, not {volts}")
        with self._lock:
            self._volts[PHASES.index(phase)] = volts

    def set_frequency(self, hertz: float) -> None:
        """Line frequency, measured on phase A (models A and B)."""
        if not (math.isfinite(hertz) and hertz > 0):
            raise ValueError(f"frequency must be a positive number of hertz, not {hertz}")
        with self._lock:
            self._frequency = hertz

    def set_power_factor(self, channel: int, power_factor: float) -> None:
        self._check_channel(channel)
        if not 0 <= power_factor <= 1:
            raise ValueError(f"power factor must be within 0-1, not {power_factor}")
        with self._lock:
            self._power_factor[channel] = power_factor

    # -- what the bus sees --------------------------------------------------------------------

    def read(self, register: int, count: int) -> list[int]:
        """Words of `count` registers from `register` (1-based, as in the vendor map); FC03 and FC04."""
        if not 1 <= count <= MAX_READ:
            raise IllegalValue(f"read count {count} is not 1-{MAX_READ}")
        end = register + count
        words: list[int] = []
        with self._lock:
            while register < end:
                if point := self._map.point_at(register):
                    block, first = self._point_words(point), point.register
                elif point := self._map.float_point_at(register):
                    block, first = self._float_words(point), _required(point.float_register)
                else:
                    raise IllegalAddress(f"register {register} is not in the map")
                taken = block[register - first : end - first]
                words.extend(taken)
                register += len(taken)
        return words

    def write(self, register: int, values: Sequence[int]) -> None:
        """Write consecutive registers (FC06 / FC16): all are checked before any is applied."""
        if not 1 <= len(values) <= MAX_WRITE:
            raise IllegalValue(f"write count {len(values)} is not 1-{MAX_WRITE}")
        with self._lock:
            targets = [(r, value, self._writable_point(r)) for r, value in enumerate(values, start=register)]
            for r, value, point in targets:
                if point.encoding is not Encoding.STRING and not point.accepts(value):
                    raise IllegalValue(f"register {r} accepts {point.valid_text()}, not {value}")
            for r, value, point in targets:
                self._apply(point, r, value)

    def report_slave_id(self) -> str:
        """The additional data text of the FC 0x11 reply."""
        location = self._map.find("location")
        with self._lock:
            text = location.decode([self._words[r] for r in location.registers])
        return (
            f"Veris Model {model_token(self._model)} Branch Circuit Monitor, "
            f'S/N=0x{self.board.serial:08X}, Location="{text}"'
        )

    def advance_to(self, now: float) -> None:
        """Advance the physics to `now`; `Board.tick` is the usual entry."""
        with self._lock:
            if self._clock is not None and now < self._clock:
                return
            dt = 0.0 if self._clock is None else now - self._clock
            self._clock = now
            self._advance(dt)

    # -- register file ------------------------------------------------------------------------

    def _initial_words(self) -> dict[int, int]:
        board = self.board
        fixed = {
            "serial_number": [board.serial >> 16, board.serial & 0xFFFF],
            "firmware_rs": [board.firmware[0]],
            "firmware_os": [board.firmware[1]],
            "device_id": [DEVICE_ID_BY_MODEL[board.model]],
            "product_id": [_SPLIT_CORE | _CUSTOM_V_PHASE | _MODEL_BITS[board.model]],
            "modbus_address": [board.primary_address],
            # The vendor map does not say how 60001 encodes the DIP baud rate: hundreds of baud here.
            "baud_rate_code": [board.baudrate // 100],
            "power_up_count": [1],
            "location": _string_words(board.location, 64),
        }
        words: dict[int, int] = {}
        for point in self._map.points:
            if point.key in fixed:
                block = fixed[point.key]
            elif isinstance(point.default, int):
                block = _raw_words(point, point.default)
            else:
                block = [0] * point.count
            words.update(zip(point.registers, block, strict=True))
        return words

    def _point_words(self, point: Point) -> list[int]:
        if self._model not in point.models:
            return [INVALID_WORD] * point.count
        if point.float_register is not None:
            return _value_words(point, self._measure(point), self._exponent(point))
        if (live := self._status_word(point)) is not None:
            return [live]
        if point.access is Access.W:
            return [0] * point.count  # reset registers act on write and read back 0
        return [self._words[r] for r in point.registers]

    def _float_words(self, point: Point) -> list[int]:
        value = point.decode(self._point_words(point), self._exponent(point))
        return list(float_words(None if isinstance(value, str) else value))

    def _exponent(self, point: Point) -> int:
        if point.exponent is not None:
            return point.exponent
        return signed(self._words[point.scale_register]) if point.scale_register else 0

    def _setting(self, key: str) -> float:
        """A single unsigned setup register in engineering units."""
        point = _point(key)
        # Point.decode leaves uint16 raw even when it has an exponent (thresholds are % x10).
        return self._words[point.register] * 10.0 ** self._exponent(point)

    def _writable_point(self, register: int) -> Point:
        point = self._map.point_at(register)
        if point is None or not point.writable or self._model not in point.models:
            raise IllegalAddress(f"register {register} is not writable on a model {self._model}")
        return point

    def _apply(self, point: Point, register: int, value: int) -> None:
        match point.key:
            case "alarm_status":
                self._alarms[_required(point.channel)].clear(~value)
            case "voltage_alarm_status":
                self._voltage_alarms[_required(point.channel) - 1].clear(~value)
            case "global_reset":
                self._global_reset(value)
            case "aux_reset":
                self._reset(tuple(AUX_CHANNELS), value)
            case "reset":
                self._reset(self._circuit(point), value)
            case _:
                self._words[register] = value

    def _status_word(self, point: Point) -> int | None:
        """Registers whose value lives in the alarm machines and the health checks, not the file."""
        match point.key:
            case "alarm_status":
                return self._alarms[_required(point.channel)].status
            case "voltage_alarm_status":
                return self._voltage_alarms[_required(point.channel) - 1].status
            case "global_latching_status":
                voltage = _or(v.latched for v in self._voltage_alarms)
                return _or(a.latched for a in self._channel_alarms) | voltage << 8
            case "global_nonlatching_status":
                voltage = _or(v.nonlatching for v in self._voltage_alarms)
                return _or(a.nonlatching for a in self._channel_alarms) >> 8 | voltage
            case "recent_latching_channel":
                return self._recent_latching
            case "recent_nonlatching_channel":
                return self._recent_nonlatching
            case "channels_in_latching_alarm":
                return sum(1 for a in self._channel_alarms if a.latched)
            case "channels_in_nonlatching_alarm":
                return sum(1 for a in self._channel_alarms if a.nonlatching)
            case key if key.startswith("global_count_"):
                return self._global_counts[LATCHING_NAMES.index(key.removeprefix("global_count_"))]
            case key if key.startswith("count_"):
                counts = self._alarms[_required(point.channel)].counts
                return counts[LATCHING_NAMES.index(key.removeprefix("count_"))]
            case "device_health":
                return self._health()
        return None

    @property
    def _channel_alarms(self) -> list[ChannelAlarms]:
        return self._alarms[CHANNELS[0] :]

    def _health(self) -> int:
        health = _MODEL_BITS[self._model]
        if self._model != "C" and self._volts[0] < MIN_FREQUENCY_VOLTS:
            health |= _HEALTH_NO_FREQUENCY
        if any(self._current[c] > self._ct_size(c) > 0 for c in CHANNELS):
            health |= _HEALTH_CURRENT_CLIPPING
        return health

    # -- measurements -------------------------------------------------------------------------

    def _circuit(self, point: Point) -> tuple[int, ...]:
        """The channels a point reports on: one CT, or all CTs of its logical meter."""
        numbering = self._words[_point("ct_numbering").register]
        match point.group:
            case "branch":
                return (_required(point.channel),)
            case "aux":
                return (point.channel,) if point.channel else AUX_PHASE_CHANNELS
            case "meter2" | "meter3":
                meter = two_phase_channels if point.group == "meter2" else three_phase_channels
                channels: tuple[int, ...] = meter(_required(point.channel), numbering)
                return channels if point.phase is None else (channels[point.phase - 1],)
        return ()

    def _measure(self, point: Point) -> float | None:
        """The engineering value of a measured point; None where the meter has no data."""
        channels = self._circuit(point)
        if any(self._ct_size(c) == 0 for c in channels):
            return None
        present = self._demand.present
        match point.key:
            case "current" | "current_avg":
                return sum(self._current[c] for c in channels) / len(channels)
            case "kw" | "kw_total":
                return sum(self._kw(c) for c in channels)
            case "kva" | "kva_total":
                return sum(self._kva(c) for c in channels)
            case "pf" | "pf_total":
                return power_factor(sum(self._kw(c) for c in channels), sum(self._kva(c) for c in channels))
            case "kwh" | "kwh_total":
                return sum(self._energy[c] for c in channels)
            case "current_demand":
                return present[channels[0]]
            case "kw_demand":
                return sum(present[_SLOTS + c] for c in channels)
            case "max_current":
                return self._max_current[channels[0]]
            case "max_current_demand":
                return self._max_current_demand[channels[0]]
            case "max_kw":
                return self._max_kw.get(channels, 0.0)
            case "max_kw_demand":
                return self._max_kw_demand.get(channels, 0.0)
            case "frequency":
                return self._frequency if self._volts[0] >= MIN_FREQUENCY_VOLTS else None
            case "volts_ln":
                return self._volts[_required(point.phase) - 1]
            case "volts_ln_avg":
                return sum(self._volts) / 3
            case "volts_ll":
                return self._line_to_line(_required(point.phase) - 1)
            case "volts_ll_avg":
                return sum(self._line_to_line(pair) for pair in range(3)) / 3
        raise LookupError(f"the simulator has no physics for point {point.key!r} at {point.register}")

    def _line_to_line(self, pair: int) -> float:
        first, second = LINE_PAIRS[pair]
        return line_to_line(self._volts[first], self._volts[second])

    def _ct_size(self, channel: int) -> int:
        return self._words[_channel_registers("ct_size")[channel]]

    def _phase(self, channel: int) -> int | None:
        if channel == NEUTRAL_CHANNEL:
            return None
        if self._words[_point("advanced_features").register] & 1:  # user CT phase assignment
            return self._words[_channel_registers("voltage_phase")[channel]]
        return default_phase(channel, self._words[_point("ct_numbering").register])

    def _kva(self, channel: int) -> float:
        phase = self._phase(channel)
        return 0.0 if phase is None else self._volts[phase] * self._current[channel] / 1000

    def _kw(self, channel: int) -> float:
        return self._kva(channel) * self._power_factor[channel]

    # -- physics over time --------------------------------------------------------------------

    def _advance(self, dt: float) -> None:
        measured = [c in CHANNELS and self._ct_size(c) > 0 for c in range(_SLOTS)]
        currents = [self._current[c] if measured[c] else 0.0 for c in range(_SLOTS)]
        kws = [self._kw(c) if measured[c] else 0.0 for c in range(_SLOTS)]
        for c in CHANNELS:
            self._energy[c] += kws[c] * dt / 3600
            self._max_current[c] = max(self._max_current[c], currents[c])
        for circuit in self._circuits():
            total = sum(kws[c] for c in circuit)
            self._max_kw[circuit] = max(self._max_kw.get(circuit, 0.0), total)
        length = self._setting("subinterval_length")
        window = int(self._setting("demand_subintervals"))
        for _ in self._demand.advance(dt, currents + kws, length, window):
            self._update_max_demand()
        self._step_alarms(dt)

    def _circuits(self) -> tuple[tuple[int, ...], ...]:
        return logical_circuits(self._words[_point("ct_numbering").register])

    def _update_max_demand(self) -> None:
        present = self._demand.present
        for c in CHANNELS:
            self._max_current_demand[c] = max(self._max_current_demand[c], present[c])
        for circuit in self._circuits():
            total = sum(present[_SLOTS + c] for c in circuit)
            self._max_kw_demand[circuit] = max(self._max_kw_demand.get(circuit, 0.0), total)

    def _alarm_level(self, channel: int) -> float | None:
        """Current as % of the breaker size; None when breaker 0 (alarms off) or no CT."""
        breaker = self._words[_channel_registers("breaker_size")[channel]]
        if breaker == 0 or self._ct_size(channel) == 0:
            return None
        return 100 * self._current[channel] / breaker

    def _step_alarms(self, dt: float) -> None:
        settings = AlarmSettings(
            delays=(
                self._setting("delay_high_high"),
                self._setting("delay_high"),
                self._setting("delay_low"),
                self._setting("delay_low_low"),
            ),
            on_time=self._setting("alarm_on_time"),
            off_time=self._setting("alarm_off_time"),
            thresholds=(
                self._setting("threshold_high_high"),
                self._setting("threshold_high"),
                self._setting("threshold_low"),
                self._setting("threshold_low_low"),
            ),
            high=self._setting("threshold_nl_high"),
            low=self._setting("threshold_nl_low"),
            hysteresis=self._setting("hysteresis_nl"),
        )
        for c in CHANNELS:
            latched, nonlatching = self._alarms[c].step(self._alarm_level(c), dt, settings)
            if latched:
                self._recent_latching = c
                for bit in bits(latched):
                    self._global_counts[bit] = bump(self._global_counts[bit])
            if nonlatching:
                self._recent_nonlatching = c
        if self._model == "C":
            return  # no voltage inputs
        voltage = VoltageAlarmSettings(
            over_delay=self._setting("overvoltage_timer"),
            under_delay=self._setting("undervoltage_timer"),
            over=self._setting("overvoltage_threshold"),
            under=self._setting("undervoltage_threshold"),
            hysteresis=self._setting("voltage_hysteresis"),
        )
        for pair, alarms in enumerate(self._voltage_alarms):
            alarms.step(self._line_to_line(pair), dt, voltage)

    # -- resets -------------------------------------------------------------------------------

    def _global_reset(self, code: int) -> None:
        match code:
            case ResetCode.NEW_SUBINTERVAL:
                self._demand.close(int(self._setting("demand_subintervals")))
                self._update_max_demand()
            case ResetCode.RESET_DEMAND:
                self._demand.reset()
            case ResetCode.CLEAR_LATCHED_ALARMS:
                for alarms in self._alarms:
                    alarms.clear(LATCHING_MASK)
                for voltage_alarms in self._voltage_alarms:
                    voltage_alarms.clear(VOLTAGE_LATCHING_MASK)
            case ResetCode.CLEAR_MAX_DEMAND:
                self._max_current_demand = [0.0] * _SLOTS
                self._max_kw_demand.clear()
            case _:
                self._reset(tuple(CHANNELS), code)

    def _reset(self, channels: tuple[int, ...], code: int) -> None:
        """Energy or maxima of some CTs; every logical meter sharing a CT is reset with it."""
        if code == ResetCode.CLEAR_ENERGY:
            for c in channels:
                self._energy[c] = 0.0
        elif code == ResetCode.CLEAR_MAXIMA:
            for c in channels:
                self._max_current[c] = 0.0
            for circuit in [k for k in self._max_kw if set(k) & set(channels)]:
                del self._max_kw[circuit]

    @staticmethod
    def _check_channel(channel: int) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be 1-42 (branch) or 43-46 (AUX), not {channel}")
