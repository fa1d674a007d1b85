"""Load profiles: seeded circuits that move, alarms only where the profile puts them, load files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.pointmap import load as load_pointmap
from gateway.sim import Board
from gateway.sim.load import (
    DATACENTER,
    DEMAND_SUBINTERVAL,
    PROFILES,
    SWING_EVERY,
    SWING_HOLD,
    SWING_START,
    LoadFileError,
    breaker_for,
    load_named,
    read_load_file,
)
from gateway.sim.physics import AUX_PHASE_CHANNELS, BRANCH_CHANNELS, CHANNELS, TOP_FEED, default_phase

POINTS = load_pointmap()
STEP = 0.5  # seconds between ticks of a simulated run


def value(
    board: Board, address: int, key: str, group: str | None = None, channel: int | None = None, phase: int | None = None
) -> float:
    """A measurement as a master reads it: the float copy of the point."""
    point = POINTS.find(key, group=group, channel=channel, phase=phase)
    panel = board.panel(address)
    words = panel.read(point.register, point.count)
    exponent = point.exponent if point.exponent is not None else _signed(panel.read(point.scale_register, 1)[0])
    decoded = point.decode(words, exponent)
    assert isinstance(decoded, float | int)
    return float(decoded)


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def current(board: Board, address: int, channel: int) -> float:
    group = "branch" if channel in BRANCH_CHANNELS else "aux"
    return value(board, address, "current", group, channel, None if group == "branch" else channel - 42)


def alarm_status(board: Board, address: int, channel: int) -> int:
    return board.panel(address).read(POINTS.find("alarm_status", group="alarms", channel=channel).register, 1)[0]


def run(board: Board, seconds: float, start: float = 0.0) -> dict[tuple[int, int], list[tuple[float, int]]]:
    """Tick the board from `start` for `seconds`; every alarm status change, by (address, channel)."""
    changes: dict[tuple[int, int], list[tuple[float, int]]] = {}
    now = start
    while now <= start + seconds:
        board.tick(now)
        for address in board.addresses:
            for channel in CHANNELS:
                status = alarm_status(board, address, channel)
                seen = changes.get((address, channel))
                if (seen[-1][1] if seen else 0) != status:
                    changes.setdefault((address, channel), []).append((now, status))
        now += STEP
    return changes


@pytest.mark.parametrize("name", list(PROFILES))
def test_only_the_swinging_channel_alarms_and_its_high_alarm_comes_goes_and_stays_latched(name: str) -> None:
    board = Board(1, load=load_named(name))
    assert board.load is not None and board.load.swing is not None
    address, channel = board.load.swing
    changes = run(board, SWING_START + SWING_EVERY + SWING_HOLD + 5)
    assert list(changes) == [(address, channel)]  # nothing else, and nothing at start
    times = [t for t, _ in changes[(address, channel)]]
    statuses = [s for _, s in changes[(address, channel)]]
    # non-latching high (bit 8) at once, latching High (bit 1) after its 10 s delay, the non-latching
    # bit gone once the load is back while the latched one stays; then the next swing, the same way.
    assert statuses == [0x100, 0x102, 0x002, 0x102, 0x002]
    assert times[0] == pytest.approx(SWING_START, abs=STEP)
    assert times[1] - times[0] == pytest.approx(10, abs=STEP)
    assert times[2] == pytest.approx(SWING_START + SWING_HOLD, abs=STEP)
    assert times[3] == pytest.approx(SWING_START + SWING_EVERY, abs=STEP)
    assert times[4] == pytest.approx(SWING_START + SWING_EVERY + SWING_HOLD, abs=STEP)


def test_a_cleared_alarm_stays_clear_until_the_next_swing() -> None:
    board = Board(1, load=load_named("datacenter"))
    assert board.load is not None and board.load.swing is not None
    address, channel = board.load.swing
    run(board, SWING_START + SWING_HOLD + 5)
    register = POINTS.find("alarm_status", group="alarms", channel=channel).register
    board.panel(address).write(register, [0])
    after = run(board, 30, start=SWING_START + SWING_HOLD + 5 + STEP)
    assert after == {}


def test_values_move_every_poll_and_stay_in_their_bands() -> None:
    board = Board(1, load=load_named("office"))
    readings = []
    for second in range(61):
        board.tick(float(second))
        readings.append(
            (
                [current(board, 1, c) for c in BRANCH_CHANNELS],
                [value(board, 1, "volts_ln", "voltage", phase=p) for p in (1, 2, 3)],
                value(board, 1, "frequency", "voltage"),
            )
        )
    loaded = [c for c in BRANCH_CHANNELS if readings[-1][0][c - 1] > 0]
    pairs = list(zip(readings, readings[1:], strict=False))
    for before, after in pairs:
        assert sum(before[0][c - 1] != after[0][c - 1] for c in loaded) > len(loaded) / 3
    assert sum(before[1] != after[1] for before, after in pairs) > 0.9 * len(pairs)
    assert all(115 < volts < 125 for _, phases, _ in readings for volts in phases)
    assert all(59.9 < hertz < 60.1 for _, _, hertz in readings)
    assert len({hertz for _, _, hertz in readings}) >= 3


def test_energy_accumulates_demand_shows_within_a_minute_and_maxima_are_kept() -> None:
    board = Board(1, load=load_named("datacenter"))
    board.tick(0.0)
    assert value(board, 1, "kw_demand", "aux") == 0
    for second in range(1, DEMAND_SUBINTERVAL + 2):
        board.tick(float(second))
    assert value(board, 1, "kw_demand", "aux") > 0
    energy = value(board, 1, "kwh_total", "aux")
    board.tick(3600.0)  # an hour at this load
    assert value(board, 1, "kwh_total", "aux") > energy + 1
    for channel in AUX_PHASE_CHANNELS:
        assert value(board, 1, "max_current", "aux", channel, channel - 42) >= current(board, 1, channel) > 0


def test_most_circuits_sit_at_10_to_40_percent_of_their_breaker_and_spares_have_alarms_off() -> None:
    board = Board(1, load=DATACENTER)
    board.tick(0.0)
    panel = board.panel(1)
    levels = []
    for channel in BRANCH_CHANNELS:
        breaker = panel.read(POINTS.find("breaker_size", group="setup", channel=channel).register, 1)[0]
        if breaker == 0:
            assert current(board, 1, channel) == 0
        else:
            levels.append(100 * current(board, 1, channel) / breaker)
    assert len(levels) == len(BRANCH_CHANNELS) - DATACENTER.spares
    assert sum(10 <= level <= 42 for level in levels) >= len(levels) - DATACENTER.near - 1
    assert max(levels) < 60  # under the high threshold until the swing


def test_the_mains_carry_the_sum_of_their_phase() -> None:
    board = Board(1, load=DATACENTER)
    board.tick(0.0)
    for phase, channel in enumerate(AUX_PHASE_CHANNELS):
        branches = [c for c in BRANCH_CHANNELS if default_phase(c, TOP_FEED) == phase]
        assert current(board, 1, channel) == pytest.approx(sum(current(board, 1, c) for c in branches), abs=0.5)


def test_a_seed_replays_the_same_panel_and_another_seed_does_not() -> None:
    def sample(seed: int) -> list[float]:
        board = Board(1, load=load_named("office", seed))
        for second in range(5):
            board.tick(float(second))
        return [current(board, address, c) for address in board.addresses for c in BRANCH_CHANNELS]

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


def test_a_load_file_gives_fixed_amps_and_spares(tmp_path: Path) -> None:
    path = tmp_path / "panel.csv"
    path.write_text("channel,amps\n# lighting\n1, 6.0\n2,12\n\n7,0\n")
    load = read_load_file(path)
    board = Board(1, load=load)
    board.tick(0.0)
    assert current(board, 1, 1) == pytest.approx(6.0, rel=0.15)
    assert current(board, 2, 2) == pytest.approx(12.0, rel=0.15)
    assert current(board, 1, 3) == current(board, 1, 7) == 0
    assert board.load is not None and board.load.swing is None
    breaker = board.panel(1).read(POINTS.find("breaker_size", group="setup", channel=2).register, 1)[0]
    assert breaker == breaker_for(12.0) == 30
    assert run(board, 30) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,6\n1,7\n", "line 2: channel 1 is listed twice"),
        ("43,5\n", "line 1: '43,5': channel must be 1-42 and amps 0-100"),
        ("1,-2\n", "amps 0-100"),
        ("1\n", "line 1: '1' is not 'channel,amps'"),
        ("a,b\n", "is not 'channel,amps'"),
        ("1,2,3\n", "channel must be"),
    ],
)
def test_a_bad_load_file_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LoadFileError, match=message):
        read_load_file(path)


def test_a_missing_load_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LoadFileError, match="cannot read it"):
        load_named(str(tmp_path / "nope.csv"))
