"""The simulated meter's registers and physics, driven directly with a synthetic clock."""

from __future__ import annotations

import math
import struct

import pytest

from gateway.pointmap import INVALID_WORD, ResetCode, load, signed
from gateway.sim import Board, IllegalAddress, IllegalValue, Panel

MAP = load()
VOLTS = 120.0
PF = 0.95


def register(key: str, group: str | None = None, channel: int | None = None, phase: int | None = None) -> int:
    return MAP.find(key, group=group, channel=channel, phase=phase).register


def value(
    panel: Panel, key: str, group: str, channel: int | None = None, phase: int | None = None
) -> float | int | str | None:
    """What a master decodes from the integer registers of a point (scale register applied)."""
    point = MAP.find(key, group=group, channel=channel, phase=phase)
    scale = signed(panel.read(point.scale_register, 1)[0]) if point.scale_register else 0
    return point.decode(panel.read(point.register, point.count), scale)


def float_copy(panel: Panel, key: str, group: str, channel: int | None = None, phase: int | None = None) -> float:
    point = MAP.find(key, group=group, channel=channel, phase=phase)
    assert point.float_register is not None
    msw, lsw = panel.read(point.float_register, 2)
    return struct.unpack(">f", struct.pack(">HH", msw, lsw))[0]


def setup(panel: Panel, **settings: int) -> None:
    for key, raw in settings.items():
        panel.write(register(key), [raw])


def status(panel: Panel, channel: int) -> int:
    return panel.read(register("alarm_status", channel=channel), 1)[0]


@pytest.fixture
def board() -> Board:
    board = Board(1, model="A")
    board.tick(0.0)
    return board


@pytest.fixture
def panel(board: Board) -> Panel:
    return board.panel(1)


def test_every_float_copy_equals_its_integer_times_scale(board: Board, panel: Panel) -> None:
    for channel, amps in ((1, 3.3), (5, 17.25), (12, 0.04), (44, 150.0)):
        panel.set_current(channel, amps)
    board.tick(1800.0)
    panel.write(register("global_reset"), [ResetCode.NEW_SUBINTERVAL])
    for point in MAP.points:
        if point.float_register is None:
            continue
        words = panel.read(point.register, point.count)
        expected = point.decode(words, signed(panel.read(point.scale_register, 1)[0]) if point.scale_register else 0)
        copy = float_copy(panel, point.key, point.group, point.channel, point.phase)
        if expected is None:
            assert math.isnan(copy), point
        else:
            assert copy == pytest.approx(expected, rel=1e-6, abs=1e-9), point


def test_scale_registers_hold_their_defaults_and_are_read_only(panel: Panel) -> None:
    for scale_register in MAP.scale_registers:
        point = MAP.point_at(scale_register)
        assert point is not None
        assert signed(panel.read(scale_register, 1)[0]) == point.default
    with pytest.raises(IllegalAddress):
        panel.write(1000, [0xFFFE])


def test_current_power_and_power_factor_follow_the_channel_phase(board: Board, panel: Panel) -> None:
    panel.set_voltage("B", 118.0)
    panel.set_current(3, 10.0)  # top feed: CT 3 is on phase B
    panel.set_power_factor(3, 0.8)
    board.tick(1.0)
    assert value(panel, "current", "branch", 3) == 10.0
    assert value(panel, "kw", "branch", 3) == pytest.approx(118 * 10 * 0.8 / 1000)
    assert value(panel, "kva", "branch", 3) == pytest.approx(1.18)
    assert value(panel, "pf", "branch", 3) == 0.8


def test_user_phase_assignment_moves_a_ct_to_another_voltage(board: Board, panel: Panel) -> None:
    panel.set_voltage("C", 100.0)
    panel.set_current(1, 10.0)
    setup(panel, advanced_features=1)
    panel.write(register("voltage_phase", channel=1), [2])
    assert value(panel, "kva", "branch", 1) == pytest.approx(1.0)


def test_voltages_line_to_line_are_sqrt3_times_line_to_neutral(panel: Panel) -> None:
    assert value(panel, "volts_ln", "voltage", phase=2) == VOLTS
    assert value(panel, "volts_ll", "voltage", phase=1) == pytest.approx(VOLTS * math.sqrt(3), abs=0.1)
    assert value(panel, "volts_ll_avg", "voltage") == pytest.approx(VOLTS * math.sqrt(3), abs=0.1)
    assert value(panel, "frequency", "voltage") == 60.0


def test_energy_accumulates(board: Board, panel: Panel) -> None:
    panel.set_current(7, 15.0)
    board.tick(3600.0)
    kwh = VOLTS * 15 * PF / 1000
    assert value(panel, "kwh", "branch", 7) == pytest.approx(kwh, abs=0.05)
    board.tick(7200.0)
    assert value(panel, "kwh", "branch", 7) == pytest.approx(2 * kwh, abs=0.05)
    assert value(panel, "kwh", "branch", 8) == 0


def test_earlier_tick_is_ignored(board: Board, panel: Panel) -> None:
    panel.set_current(7, 15.0)
    board.tick(3600.0)
    board.tick(10.0)
    board.tick(3600.0)
    assert value(panel, "kwh", "branch", 7) == pytest.approx(VOLTS * 15 * PF / 1000, abs=0.05)


def test_two_phase_meter_sums_its_cts(board: Board, panel: Panel) -> None:
    panel.set_current(1, 10.0)
    panel.set_current(3, 20.0)
    panel.set_current(2, 99.0)  # top feed: CT 2 belongs to 2-phase meter 2, not 1
    board.tick(3600.0)
    assert value(panel, "current", "meter2", 1, phase=1) == 10.0
    assert value(panel, "current", "meter2", 1, phase=2) == 20.0
    assert value(panel, "current_avg", "meter2", 1) == 15.0
    assert value(panel, "kw", "meter2", 1) == pytest.approx(VOLTS * 30 * PF / 1000, abs=0.001)
    assert value(panel, "kwh", "meter2", 1) == pytest.approx(VOLTS * 30 * PF / 1000, abs=0.05)
    assert value(panel, "pf", "meter2", 1) == PF


def test_logical_meters_follow_the_ct_numbering(panel: Panel) -> None:
    for channel in range(1, 7):
        panel.set_current(channel, float(channel))
    assert value(panel, "current_avg", "meter3", 1) == 3.0  # top feed: CTs 1, 3, 5
    setup(panel, ct_numbering=2)
    assert value(panel, "current_avg", "meter3", 1) == 2.0  # sequential: CTs 1, 2, 3
    assert value(panel, "current_avg", "meter2", 2) == 3.5  # sequential: CTs 3, 4


def test_top_feed_two_phase_meter_21_pairs_cts_41_and_42(panel: Panel) -> None:
    panel.set_current(41, 4.0)
    panel.set_current(42, 8.0)
    assert value(panel, "current", "meter2", 21, phase=2) == 8.0


def test_aux_three_phase_values_come_from_channels_43_to_45(board: Board, panel: Panel) -> None:
    for channel, amps in ((43, 100.0), (44, 110.0), (45, 120.0), (46, 7.0)):
        panel.set_current(channel, amps)
    board.tick(10.0)
    assert value(panel, "current_avg", "aux") == 110.0
    assert value(panel, "current", "aux", 46, phase=4) == 7.0
    assert value(panel, "kw_total", "aux") == pytest.approx(VOLTS * 330 * PF / 1000, abs=0.01)
    assert value(panel, "kva", "aux", 44, phase=2) == pytest.approx(VOLTS * 110 / 1000, abs=0.01)
    assert value(panel, "max_current", "aux", 45, phase=3) == 120.0


def test_channel_with_ct_size_0_reads_0x8000(panel: Panel) -> None:
    panel.set_current(9, 5.0)
    panel.write(register("ct_size", channel=9), [0])
    assert panel.read(register("current", "branch", 9), 1) == [INVALID_WORD]
    assert math.isnan(float_copy(panel, "current", "branch", 9))
    assert panel.read(register("kwh", "branch", 9), 2) == [INVALID_WORD, INVALID_WORD]
    assert panel.read(register("kw", "meter3", 3), 1) == [INVALID_WORD]  # top feed meter 3: CTs 7, 9, 11
    assert panel.read(register("kw", "meter3", 4), 1) != [INVALID_WORD]  # CTs 8, 10, 12


@pytest.mark.parametrize("model", ["B", "C"])
def test_branch_power_is_0x8000_outside_model_a(model: str) -> None:
    panel = Board(1, model=model).panel(1)
    panel.set_current(1, 10.0)
    assert panel.read(register("kw", "branch", 1), 1) == [INVALID_WORD]
    assert value(panel, "current", "branch", 1) == 10.0
    voltage = panel.read(register("volts_ln", "voltage", phase=1), 1)
    assert (voltage == [INVALID_WORD]) is (model == "C")


def test_values_saturate_at_the_int16_range(panel: Panel) -> None:
    panel.set_current(1, 5000.0)  # 50000 at scale -1
    assert panel.read(register("current", "branch", 1), 1) == [0x7FFF]


def test_identity_registers(board: Board) -> None:
    for panel in board.panels:
        assert panel.read(1, 5) == [board.serial >> 16, board.serial & 0xFFFF, 1023, 1031, 15172]
        assert panel.read(60000, 1) == [1]
    assert board.panel(1).read(532, 1)[0] & 1 << 15  # "branch power, model A"


def test_block_demand_is_the_average_of_the_last_subinterval(board: Board, panel: Panel) -> None:
    setup(panel, subinterval_length=10)
    panel.set_current(1, 10.0)
    board.tick(5.0)
    assert value(panel, "current_demand", "branch", 1) == 0  # no sub-interval completed yet
    panel.set_current(1, 30.0)
    board.tick(10.0)
    assert value(panel, "current_demand", "branch", 1) == 20.0
    board.tick(20.0)
    assert value(panel, "current_demand", "branch", 1) == 30.0
    assert value(panel, "max_current_demand", "branch", 1) == 30.0


def test_sliding_demand_averages_the_last_subintervals(board: Board, panel: Panel) -> None:
    setup(panel, subinterval_length=10, demand_subintervals=2)
    panel.set_current(1, 10.0)
    board.tick(10.0)
    panel.set_current(1, 30.0)
    board.tick(20.0)
    assert value(panel, "current_demand", "branch", 1) == 20.0
    board.tick(30.0)
    assert value(panel, "current_demand", "branch", 1) == 30.0


def test_sync_to_comms_demand_closes_on_26012_and_resets_on_26013(board: Board, panel: Panel) -> None:
    setup(panel, subinterval_length=0)
    panel.set_current(1, 12.0)
    board.tick(100.0)
    assert value(panel, "current_demand", "branch", 1) == 0
    panel.write(register("global_reset"), [ResetCode.NEW_SUBINTERVAL])
    assert value(panel, "current_demand", "branch", 1) == 12.0
    assert value(panel, "kw_demand", "meter2", 1) == pytest.approx(VOLTS * 12 * PF / 1000, abs=0.001)
    panel.write(register("global_reset"), [ResetCode.RESET_DEMAND])
    assert value(panel, "current_demand", "branch", 1) == 0
    assert value(panel, "max_current_demand", "branch", 1) == 12.0
    panel.write(register("global_reset"), [ResetCode.CLEAR_MAX_DEMAND])
    assert value(panel, "max_current_demand", "branch", 1) == 0


def test_maxima_follow_and_29877_clears_them(board: Board, panel: Panel) -> None:
    panel.set_current(2, 18.0)
    board.tick(1.0)
    panel.set_current(2, 4.0)
    board.tick(2.0)
    assert value(panel, "max_current", "branch", 2) == 18.0
    assert value(panel, "max_kw", "branch", 2) == pytest.approx(VOLTS * 18 * PF / 1000, abs=0.001)
    panel.write(register("global_reset"), [ResetCode.CLEAR_MAXIMA])
    assert value(panel, "max_current", "branch", 2) == 0
    board.tick(3.0)
    assert value(panel, "max_current", "branch", 2) == 4.0


def test_meter_reset_clears_the_matching_cts_in_the_other_maps(board: Board, panel: Panel) -> None:
    for channel in (1, 2, 3, 5):
        panel.set_current(channel, 10.0)
    board.tick(3600.0)
    per_ct = value(panel, "kwh", "branch", 1)
    panel.write(register("reset", "meter2", 1), [ResetCode.CLEAR_ENERGY])  # CTs 1 and 3
    assert value(panel, "kwh", "branch", 1) == 0
    assert value(panel, "kwh", "branch", 2) == per_ct
    assert value(panel, "kwh", "meter3", 1) == per_ct  # CTs 1, 3, 5: only CT 5 is left


def test_reset_register_rejects_unknown_codes_and_reads_0(panel: Panel) -> None:
    with pytest.raises(IllegalValue):
        panel.write(register("global_reset"), [1234])
    assert panel.read(register("global_reset"), 1) == [0]


# -- alarms ---------------------------------------------------------------------------------------


@pytest.fixture
def quick_alarms(panel: Panel) -> Panel:
    """Breaker 20 A; ON after 1 s, latching delays 2 s, OFF after 5 s."""
    setup(panel, alarm_on_time=1, delay_high_high=2, delay_high=2, delay_low=2, delay_low_low=2, alarm_off_time=5)
    return panel


def test_high_latching_alarm_sets_after_its_delay_and_stays_until_written_zero(
    board: Board, quick_alarms: Panel
) -> None:
    panel = quick_alarms
    panel.set_current(4, 13.0)  # 65 % of the 20 A breaker: above High (60 %), below High-High (70 %)
    board.tick(1.0)  # ON declared
    board.tick(2.5)
    assert status(panel, 4) & 0b10 == 0
    board.tick(3.1)
    assert status(panel, 4) & 0b10
    panel.set_current(4, 10.0)
    board.tick(60.0)
    assert status(panel, 4) & 0b10, "a latched alarm stays after the current returns"
    panel.write(register("alarm_status", channel=4), [0xFFFF])
    assert status(panel, 4) & 0b10, "writing 1 does not clear"
    panel.write(register("alarm_status", channel=4), [0])
    assert status(panel, 4) & 0b10 == 0
    assert panel.read(register("count_high", channel=4), 1) == [1]
    assert panel.read(register("global_count_high"), 1) == [1]
    assert panel.read(register("recent_latching_channel"), 1) == [4]


def test_writing_alarm_status_clears_only_latching_bits_written_0(board: Board, quick_alarms: Panel) -> None:
    panel = quick_alarms
    panel.set_current(4, 15.0)  # 75 %: High-High and High, plus non-latching High
    board.tick(1.0)
    board.tick(4.0)
    assert status(panel, 4) == 0b11 | 1 << 8
    panel.write(register("alarm_status", channel=4), [0b01])  # keep High-High, clear High
    assert status(panel, 4) == 0b01 | 1 << 8


def test_latching_alarms_wait_for_the_on_state(board: Board, quick_alarms: Panel) -> None:
    panel = quick_alarms
    setup(panel, alarm_on_time=100)
    panel.set_current(4, 15.0)
    board.tick(50.0)
    assert status(panel, 4) & 0x1F == 0


def test_off_state_latches_after_the_off_time_once_on_was_declared(board: Board, quick_alarms: Panel) -> None:
    panel = quick_alarms
    panel.set_current(6, 10.0)  # 50 %: no alarm
    board.tick(1.0)
    panel.set_current(6, 0.0)
    board.tick(3.1)
    assert status(panel, 6) & 0x1F == 0b1100  # Low and Low-Low after 2 s
    board.tick(6.1)
    assert status(panel, 6) & 0x1F == 0b11100
    assert panel.read(register("global_count_off"), 1) == [1]
    assert panel.read(register("channels_in_latching_alarm"), 1) == [1]


def test_non_latching_alarm_follows_current_with_hysteresis(board: Board, panel: Panel) -> None:
    setup(panel, threshold_nl_high=500, hysteresis_nl=100)  # 50 % of 20 A = 10 A; returns below 9 A
    panel.set_current(8, 10.5)
    board.tick(1.0)
    assert status(panel, 8) & 1 << 8
    assert panel.read(register("global_nonlatching_status"), 1)[0] & 1
    panel.set_current(8, 9.5)
    board.tick(2.0)
    assert status(panel, 8) & 1 << 8, "still within the hysteresis band"
    panel.set_current(8, 8.9)
    board.tick(3.0)
    assert status(panel, 8) & 1 << 8 == 0
    panel.set_current(8, 0.5)  # below the 5 % low threshold (1 A)
    board.tick(4.0)
    assert status(panel, 8) & 1 << 9
    panel.write(register("alarm_status", channel=8), [0])
    assert status(panel, 8) & 1 << 9, "writes to non-latching bits are ignored"


def test_breaker_0_or_threshold_0_disables_alarms(board: Board, quick_alarms: Panel) -> None:
    panel = quick_alarms
    panel.write(register("breaker_size", channel=10), [0])
    setup(panel, threshold_high=0)
    panel.set_current(10, 50.0)
    panel.set_current(11, 13.0)  # 65 %: would be High
    board.tick(1.0)
    board.tick(10.0)
    assert status(panel, 10) == 0
    assert status(panel, 11) & 0b10 == 0


def test_reset_31010_clears_all_latching_alarms(board: Board, quick_alarms: Panel) -> None:
    panel = quick_alarms
    for channel in (1, 2, 43):
        panel.set_current(channel, 300.0 if channel == 43 else 15.0)
    board.tick(1.0)
    board.tick(4.0)
    assert panel.read(register("channels_in_latching_alarm"), 1) == [3]
    panel.write(register("global_reset"), [ResetCode.CLEAR_LATCHED_ALARMS])
    assert panel.read(register("channels_in_latching_alarm"), 1) == [0]
    assert panel.read(register("global_latching_status"), 1) == [0]
    assert panel.read(register("count_high_high", channel=43), 1) == [1], "counters survive"


def test_undervoltage_alarm_latches_after_its_timer(board: Board, panel: Panel) -> None:
    setup(panel, undervoltage_timer=2)
    panel.set_voltage("A", 90.0)  # A-B 156 V, B-C and A-C 182 V; threshold 176 V
    panel.set_voltage("B", 90.0)
    board.tick(1.0)
    assert panel.read(register("voltage_alarm_status", channel=1), 1) == [1 << 9]
    board.tick(2.1)
    assert panel.read(register("voltage_alarm_status", channel=1), 1) == [0b10 | 1 << 9]
    assert panel.read(register("voltage_alarm_status", channel=2), 1) == [0]
    assert panel.read(register("global_latching_status"), 1)[0] & 1 << 9
    panel.write(register("voltage_alarm_status", channel=1), [0])
    assert panel.read(register("voltage_alarm_status", channel=1), 1) == [1 << 9]
