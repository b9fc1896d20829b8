"""The electricity meter model: energy balance over simulated days, breaker paths, demand,
prepayment, CT ratio lock, inputs, state round trip and determinism."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mbuskit.errors import MBusError
from mbuskit.slave.meter import (
    MJ_PER_WH,
    BreakerState,
    CommandRefused,
    DisconnectReason,
    Meter,
    MeterConfig,
    MeterConfigError,
    MeterStateError,
    MeterStatus,
    MeterTimeError,
    RtcStatus,
)
from mbuskit.slave.meter_profile import (
    LoadProfile,
    ProfileError,
    ProfileSampler,
    noise3,
    splitmix64,
    stream_key,
)

T0 = 1_763_942_400.0  # 2025-11-24 00:00:00 UTC, a multiple of 15 min
DAY = 86_400

# Solar export at midday, and enough capacitive reactive load that all four quadrants occur.
SOLAR = LoadProfile(solar_peak_w=4000.0, capacitive_var=300.0, noise=0.3)


def flat(watts: float, *, pf: float = 1.0, cap: float = 0.0) -> LoadProfile:
    """A constant load without noise: expected values can be worked out by hand."""
    return LoadProfile(
        base_load_w=watts, variable_load_w=0.0, noise=0.0, power_factor=pf, capacitive_var=cap
    )


def config(**kw: Any) -> MeterConfig:
    kw.setdefault("serial_number", 12345678)
    kw.setdefault("meter_number", 87654321)
    return MeterConfig(**kw)


def regs(meter: Meter) -> dict[str, Any]:
    registers: dict[str, Any] = meter.to_state()["registers"]
    return registers


# ---- energy balance -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def solar_day() -> Meter:
    """One day with the tariff input switching and tariffs 3/4 set by command."""
    m = Meter(config(profile=SOLAR, seed=7), T0)
    m.advance(T0 + 6 * 3600)
    m.set_tariff_input(True, T0 + 6 * 3600)  # T2 by day
    m.set_tariff(3, T0 + 8 * 3600)
    m.set_tariff(4, T0 + 10 * 3600)
    m.set_tariff(None, T0 + 16 * 3600)  # back to the input: T2
    m.set_tariff_input(False, T0 + 22 * 3600)
    m.advance(T0 + DAY)
    return m


def test_day_tariffs_sum_exactly_to_totals(solar_day: Meter) -> None:
    r = regs(solar_day)
    for total, tariffs in (
        ("a_plus", "t_a_plus"),
        ("a_minus", "t_a_minus"),
        ("r_plus", "t_r_plus"),
        ("r_minus", "t_r_minus"),
    ):
        assert sum(r[tariffs]) == r[total], total
        # the night (T1) never exports and midday (T4) hardly imports, but the day is split
        assert sum(1 for v in r[tariffs] if v > 0) >= 3, f"{tariffs} was split over tariffs"


def test_day_quadrants_make_up_reactive_totals(solar_day: Meter) -> None:
    r = regs(solar_day)
    q1, q2, q3, q4 = r["rq"]
    assert q1 + q2 == r["r_plus"]
    assert q3 + q4 == r["r_minus"]
    assert min(q1, q2, q3, q4) > 0, "the solar day passes through all four quadrants"


def test_day_registers_shown_in_wh_within_resolution(solar_day: Meter) -> None:
    s = solar_day.snapshot()
    for total, tariffs in (
        (s.a_plus_wh, s.a_plus_tariff_wh),
        (s.a_minus_wh, s.a_minus_tariff_wh),
        (s.r_plus_varh, s.r_plus_tariff_varh),
        (s.r_minus_varh, s.r_minus_tariff_varh),
    ):
        # each shown register is floored to 1 Wh: four floors lose less than 4 Wh
        assert 0 <= total - sum(tariffs) < 4
    q = s.r_quadrant_varh
    assert 0 <= s.r_plus_varh - (q[0] + q[1]) < 2
    assert 0 <= s.r_minus_varh - (q[2] + q[3]) < 2
    assert s.a_plus_resettable_wh == s.a_plus_wh
    assert s.a_minus_resettable_wh == s.a_minus_wh
    assert s.hour_counter == 24


def test_day_matches_independent_integration(solar_day: Meter) -> None:
    # Re-integrate the same samples by hand: each phase's positive part to import, 1 s each.
    sampler = ProfileSampler(SOLAR, 7, 3)
    imp = exp = 0
    for k in range(int(T0), int(T0) + DAY):
        ps, _ = sampler.power(k, k)
        imp += sum(p for p in ps if p > 0)
        exp -= sum(p for p in ps if p < 0)
    r = regs(solar_day)
    assert r["a_plus"] == imp * 1000  # W x 1000 ms = mJ
    assert r["a_minus"] == exp * 1000
    s = solar_day.snapshot()
    assert s.a_plus_wh == imp // 3600
    assert s.a_minus_wh == exp // 3600
    assert s.a_minus_wh > 1000, "the solar peak exports"


def test_phases_sum_to_totals_at_every_read(solar_day: Meter) -> None:
    m = Meter(config(profile=SOLAR, seed=3), T0)
    for minute in range(0, DAY // 60, 7):
        m.advance(T0 + minute * 60 + 0.5)
        s = m.snapshot()
        assert sum(s.p_phase_w) == s.p_plus_w - s.p_minus_w
        assert sum(s.q_phase_var) == s.q_plus_var - s.q_minus_var
        assert s.p_plus_w == sum(p for p in s.p_phase_w if p > 0)
        for p, q, u, i, pf in zip(
            s.p_phase_w, s.q_phase_var, s.voltage_mv, s.current_ma, s.power_factor_phase,
            strict=True,
        ):
            assert 200_000 < u < 260_000
            assert i == pytest.approx(math.hypot(p, q) / u * 1e6, abs=1)
            assert 0 <= pf <= 1000
        assert bool(s.meter_status & MeterStatus.EXPORTING) == (s.p_minus_w > 0)


def test_single_phase_meter_uses_l1_only() -> None:
    m = Meter(config(phases=1, profile=flat(1000.0)), T0)
    m.advance(T0 + 3600)
    s = m.snapshot()
    assert s.p_phase_w == (1000, 0, 0)
    assert s.voltage_mv[1:] == (0, 0)
    assert s.a_plus_wh == 1000


def test_chunked_advance_lands_on_the_same_registers() -> None:
    cfg = config(profile=SOLAR, seed=11)
    whole = Meter(cfg, T0)
    whole.advance(T0 + 5 * 3600 + 0.25)
    pieces = Meter(cfg, T0)
    t = T0
    step = 0.0
    while t < T0 + 5 * 3600:
        step = step % 97.3 + 0.731
        t = min(t + step, T0 + 5 * 3600 + 0.25)
        pieces.advance(t)
    assert regs(pieces) == regs(whole)


def test_determinism_by_seed() -> None:
    runs = []
    for seed in (5, 5, 6):
        m = Meter(config(profile=SOLAR, seed=seed), T0)
        m.advance(T0 + 3 * 3600)
        runs.append(regs(m))
    assert runs[0] == runs[1]
    assert runs[0]["a_plus"] != runs[2]["a_plus"]


def test_clock_going_back_is_ignored() -> None:
    m = Meter(config(profile=flat(3600.0)), T0)
    m.advance(T0 + 100)
    before = regs(m)
    m.advance(T0 + 50)
    assert regs(m) == before
    m.advance(T0 + 101)
    assert m.snapshot().a_plus_wh == 101


# ---- breaker --------------------------------------------------------------------------------


def test_open_breaker_registers_no_energy() -> None:
    m = Meter(config(profile=flat(3600.0)), T0)
    m.advance(T0 + 3600)
    assert m.snapshot().a_plus_wh == 3600
    assert m.breaker_disconnect(T0 + 3600) is BreakerState.DISCONNECTED
    m.advance(T0 + 3 * 3600)
    s = m.snapshot()
    assert s.a_plus_wh == 3600
    assert s.p_phase_w == (0, 0, 0) and s.current_ma == (0, 0, 0)
    assert s.voltage_mv[0] > 0  # the supply side is still live
    assert s.hour_counter == 3  # the meter itself keeps running
    assert s.meter_status & MeterStatus.BREAKER_OPEN


def test_button_disconnects_and_reconnects() -> None:
    m = Meter(config(profile=flat(3600.0)), T0)
    assert m.press_button(T0 + 10) is BreakerState.DISCONNECTED
    assert m.snapshot().breaker_reason is DisconnectReason.BUTTON
    assert m.press_button(T0 + 20) is BreakerState.CONNECTED
    m.advance(T0 + 30)
    assert regs(m)["a_plus"] == 3600 * 20 * 1000  # 10 s before, 10 s after


def test_button_cannot_undo_a_command_disconnect() -> None:
    m = Meter(config(), T0)
    m.breaker_disconnect(T0 + 1)
    assert m.press_button(T0 + 2) is BreakerState.DISCONNECTED
    assert m.snapshot().breaker_reason is DisconnectReason.COMMAND


def test_release_then_button_reconnects() -> None:
    m = Meter(config(), T0)
    m.breaker_disconnect(T0 + 1)
    assert m.breaker_release(T0 + 2) is BreakerState.RELEASED
    m.advance(T0 + 100)
    assert m.snapshot().a_plus_wh == 0  # released is still open
    assert m.press_button(T0 + 101) is BreakerState.CONNECTED


def test_two_commands_reconnect_and_order_matters() -> None:
    m = Meter(config(), T0)
    m.breaker_disconnect(T0 + 1)
    with pytest.raises(CommandRefused, match="breaker_arm must come first"):
        m.breaker_connect(T0 + 2)
    assert m.breaker_arm(T0 + 3) is BreakerState.ARMED
    assert m.press_button(T0 + 4) is BreakerState.ARMED  # arming is remote only
    assert m.breaker_connect(T0 + 5) is BreakerState.CONNECTED


def test_reconnect_commands_refused_when_connected_or_not_allowed() -> None:
    m = Meter(config(remote_reconnect=False), T0)
    with pytest.raises(CommandRefused, match="already connected"):
        m.breaker_release(T0)
    m.breaker_disconnect(T0 + 1)
    with pytest.raises(CommandRefused, match="remote reconnect"):
        m.breaker_arm(T0 + 2)
    with pytest.raises(CommandRefused) as info:
        m.breaker_arm(T0 + 2)
    assert isinstance(info.value, MBusError) and info.value.command == "breaker_arm"


def test_button_disconnect_can_be_configured_off() -> None:
    m = Meter(config(button_disconnect=False), T0)
    assert m.press_button(T0 + 1) is BreakerState.CONNECTED


def test_meter_without_breaker_refuses_breaker_commands() -> None:
    m = Meter(config(breaker=False), T0)
    for command in (m.breaker_disconnect, m.breaker_release, m.breaker_arm, m.breaker_connect):
        with pytest.raises(CommandRefused, match="no breaker"):
            command(T0 + 1)
    assert m.press_button(T0 + 2) is BreakerState.CONNECTED


def test_smart_disconnect_on_current_with_auto_reconnect() -> None:
    # 3000 W split 40/35/25 %: L1 draws 1200 W, about 5.2 A at 230 V; the limit is 5 A.
    m = Meter(
        config(profile=flat(3000.0), smart_disconnect_current_a=5.0, smart_auto_reconnect_s=60),
        T0,
    )
    s = m.snapshot()
    assert s.breaker is BreakerState.DISCONNECTED
    assert s.breaker_reason is DisconnectReason.SMART
    assert s.meter_status & MeterStatus.SMART_DISCONNECT
    m.advance(T0 + 59)
    assert m.snapshot().a_plus_wh == 0
    # at 60 s it recloses, sees the same overload in the same sample, and trips again
    m.advance(T0 + 60.5)
    assert m.snapshot().breaker is BreakerState.DISCONNECTED
    assert regs(m)["a_plus"] == 0


def test_smart_disconnect_on_power_then_button() -> None:
    profile = LoadProfile(
        base_load_w=500.0, variable_load_w=4000.0, noise=0.0, power_factor=1.0, capacitive_var=0
    )
    m = Meter(
        config(profile=profile, smart_disconnect_power_w=3000.0, smart_auto_reconnect_s=None),
        T0,
    )
    assert m.snapshot().breaker is BreakerState.CONNECTED
    m.advance(T0 + 20 * 3600)  # the evening peak crosses 3 kW
    s = m.snapshot()
    assert s.breaker is BreakerState.DISCONNECTED
    assert s.breaker_reason is DisconnectReason.SMART
    frozen = s.a_plus_wh
    m.advance(T0 + 23.9 * 3600)
    assert m.snapshot().a_plus_wh == frozen  # no automatic reconnect configured
    # the load has fallen below the limit by night: the consumer reconnects with the button
    assert m.press_button(T0 + 23.9 * 3600) is BreakerState.CONNECTED


def test_smart_disconnect_recloses_by_itself_once_the_load_falls() -> None:
    profile = LoadProfile(
        base_load_w=500.0, variable_load_w=4000.0, noise=0.0, power_factor=1.0, capacitive_var=0
    )
    m = Meter(
        config(profile=profile, smart_disconnect_power_w=3000.0, smart_auto_reconnect_s=600),
        T0 + 17 * 3600,
    )
    reasons = set()
    for minute in range(1, 6 * 60):
        m.advance(T0 + 17 * 3600 + minute * 60)
        reasons.add(m.snapshot().breaker_reason)
    assert DisconnectReason.SMART in reasons
    s = m.snapshot()  # 23:00: the evening peak is over
    assert s.breaker is BreakerState.CONNECTED and s.breaker_reason is DisconnectReason.NONE
    assert 0 < s.p_plus_w <= 3000


def test_smart_trip_time_is_where_the_load_crosses_the_limit() -> None:
    profile = LoadProfile(
        base_load_w=500.0, variable_load_w=4000.0, noise=0.0, power_factor=1.0, capacitive_var=0
    )
    limit = 3000.0
    start = int(T0) + 15 * 3600
    m = Meter(config(profile=profile, smart_disconnect_power_w=limit), start)
    sampler = ProfileSampler(profile, 0, 3)
    first = next(k for k in range(start, start + DAY) if sum(sampler.power(k, k)[0]) > limit)
    m.advance(first - 0.001)
    assert m.snapshot().breaker is BreakerState.CONNECTED
    m.advance(first + 0.001)
    assert m.snapshot().breaker is BreakerState.DISCONNECTED


# ---- prepayment -----------------------------------------------------------------------------


def test_prepayment_debits_and_disconnects_when_empty() -> None:
    m = Meter(config(profile=flat(3600.0), prepayment=True, prepayment_credit_wh=1000), T0)
    m.advance(T0 + 500)
    s = m.snapshot()
    assert s.prepayment_wh == 500 and s.a_plus_wh == 500
    m.advance(T0 + 3600)
    s = m.snapshot()
    assert s.breaker is BreakerState.DISCONNECTED
    assert s.breaker_reason is DisconnectReason.PREPAYMENT
    assert s.prepayment_wh == 0
    assert s.a_plus_wh == 1000  # cut off at the second the credit ran out
    assert s.meter_status & MeterStatus.PREPAYMENT_EMPTY


def test_empty_prepayment_blocks_every_reconnect_until_top_up() -> None:
    m = Meter(
        config(profile=flat(3600.0), prepayment=True, prepayment_auto_reconnect=False), T0
    )
    assert m.snapshot().breaker_reason is DisconnectReason.PREPAYMENT  # empty from the start
    assert m.press_button(T0 + 1) is BreakerState.DISCONNECTED
    for command in (m.breaker_release, m.breaker_arm):
        with pytest.raises(CommandRefused, match="prepayment register is empty"):
            command(T0 + 2)
    assert m.prepayment_top_up("0.5", T0 + 3) == 500
    assert m.snapshot().breaker is BreakerState.RELEASED  # the button must confirm
    assert m.press_button(T0 + 4) is BreakerState.CONNECTED
    m.advance(T0 + 1000)
    assert m.snapshot().a_plus_wh == 500


def test_top_up_recloses_automatically_when_configured() -> None:
    m = Meter(config(profile=flat(3600.0), prepayment=True), T0)
    m.advance(T0 + 100)
    assert m.snapshot().a_plus_wh == 0
    m.prepayment_top_up(2, T0 + 100)
    assert m.snapshot().breaker is BreakerState.CONNECTED
    m.advance(T0 + 200)
    assert m.snapshot().prepayment_wh == 1900


def test_top_up_does_not_undo_a_command_disconnect() -> None:
    m = Meter(config(prepayment=True), T0)
    m.breaker_disconnect(T0 + 1)
    m.prepayment_top_up(1, T0 + 2)
    assert m.snapshot().breaker is BreakerState.DISCONNECTED


@pytest.mark.parametrize("amount", [0, -1, "abc", "nan", float("inf"), 10_000_000])
def test_bad_top_up_is_refused(amount: Any) -> None:
    m = Meter(config(prepayment=True), T0)
    with pytest.raises(CommandRefused):
        m.prepayment_top_up(amount, T0)
    assert m.snapshot().prepayment_wh == 0


def test_top_up_without_prepayment_is_refused() -> None:
    m = Meter(config(), T0)
    with pytest.raises(CommandRefused, match="not configured"):
        m.prepayment_top_up(1, T0)
    assert m.snapshot().prepayment_wh is None


# ---- max demand, debiting, threshold --------------------------------------------------------


def window_means(profile: LoadProfile, seed: int, start: int, end: int) -> list[tuple[int, int]]:
    """(end of window, mean import W) for every 15-min window, computed independently."""
    sampler = ProfileSampler(profile, seed, 3)
    out = []
    for w in range(start, end, 900):
        energy = sum(sum(p for p in sampler.power(k, k)[0] if p > 0) for k in range(w, w + 900))
        out.append((w + 900, energy // 900))
    return out


def test_max_demand_over_integration_periods_per_tariff() -> None:
    profile = LoadProfile(noise=0.2)
    m = Meter(config(profile=profile, seed=2), T0)
    m.set_tariff_input(True, T0 + 12 * 3600)  # T2 from noon
    m.advance(T0 + DAY)
    means = window_means(profile, 2, int(T0), int(T0) + DAY)
    s = m.snapshot()
    best_at, best = max(means, key=lambda x: (x[1], -x[0]))
    assert (s.max_p_plus_w, s.max_p_plus_at) == (best, best_at)
    t1 = [x for x in means if x[0] <= T0 + 12 * 3600]
    t2 = [x for x in means if x[0] > T0 + 12 * 3600]
    t1_at, t1_max = max(t1, key=lambda x: (x[1], -x[0]))
    t2_at, t2_max = max(t2, key=lambda x: (x[1], -x[0]))
    assert s.max_p_plus_tariff_w == (t1_max, t2_max, 0, 0)
    assert s.max_p_plus_tariff_at == (t1_at, t2_at, None, None)
    assert s.max_p_minus_w == 0 and s.max_p_minus_at is None
    assert s.max_q_plus_var > 0


def test_debiting_stop_accumulates_and_clears_maxima() -> None:
    m = Meter(config(profile=flat(2000.0, pf=0.8)), T0)
    m.advance(T0 + 3600)
    s = m.snapshot()
    assert s.max_p_plus_w == 2000
    assert s.max_q_plus_var == 1500  # tan(acos 0.8) = 0.75
    assert m.debiting_stop(T0 + 3600) == 1
    s = m.snapshot()
    assert (s.max_p_plus_w, s.max_p_plus_at, s.max_p_plus_tariff_w) == (0, None, (0, 0, 0, 0))
    assert s.acc_max_p_plus_w == 2000 and s.acc_max_q_plus_var == 1500
    m.advance(T0 + 7200)
    m.debiting_stop(T0 + 7200)
    s = m.snapshot()
    assert s.acc_max_p_plus_w == 4000 and s.debiting_periods == 2


def test_export_demand() -> None:
    profile = LoadProfile(
        base_load_w=0, variable_load_w=0, noise=0, solar_peak_w=3000, sunrise_h=0, sunset_h=24
    )
    m = Meter(config(profile=profile), T0)
    m.advance(T0 + DAY)
    s = m.snapshot()
    assert s.a_plus_wh == 0
    # the half sine peaks at noon: the best window is 11:45-12:00 or 12:00-12:15, about 3 kW
    assert 2990 <= s.max_p_minus_w <= 3000
    assert s.max_p_minus_at in (int(T0) + 12 * 3600, int(T0) + 12 * 3600 + 900)


def test_power_threshold_counts_periods_above_it() -> None:
    profile = LoadProfile(noise=0.1)
    noon = int(T0) + DAY // 2
    m = Meter(config(profile=profile, seed=4, power_threshold_w=1500), noon)
    m.advance(T0 + DAY)
    expected = sum(1 for _, mean in window_means(profile, 4, noon, int(T0) + DAY) if mean > 1500)
    assert expected > 0
    assert m.snapshot().power_threshold_count == expected


# ---- CT variant -----------------------------------------------------------------------------


def test_ct_ratio_lock_is_one_way() -> None:
    m = Meter(config(variant="ct", ct_ratio=50, profile=flat(50_000.0)), T0)
    assert m.set_ct_ratio(100, T0 + 1) == 100
    m.lock_ct_ratio(T0 + 2)
    with pytest.raises(CommandRefused, match="locked"):
        m.set_ct_ratio(200, T0 + 3)
    restored = Meter.from_state(json.loads(json.dumps(m.to_state())))
    with pytest.raises(CommandRefused, match="locked"):
        restored.set_ct_ratio(200, T0 + 4)
    s = restored.snapshot()
    assert s.ct_ratio == 100 and s.ct_ratio_locked
    assert s.meter_status & MeterStatus.CT_RATIO_LOCKED


def test_ct_secondary_registers_follow_the_ratio() -> None:
    m = Meter(config(variant="ct", ct_ratio=50, profile=flat(36_000.0)), T0)
    m.advance(T0 + 3600)
    m.set_ct_ratio(100, T0 + 3600)
    m.advance(T0 + 7200)
    s = m.snapshot()
    assert s.a_plus_wh == 72_000
    assert s.secondary_a_plus_wh == 36_000 // 50 + 36_000 // 100


def test_ct_commands_refused_on_direct_meter_and_bad_ratio() -> None:
    direct = Meter(config(), T0)
    with pytest.raises(CommandRefused):
        direct.set_ct_ratio(5, T0)
    with pytest.raises(CommandRefused):
        direct.lock_ct_ratio(T0)
    assert direct.snapshot().secondary_a_plus_wh is None
    ct = Meter(config(variant="ct", ct_ratio=5), T0)
    for bad in (0, 10_000):
        with pytest.raises(CommandRefused):
            ct.set_ct_ratio(bad, T0)


# ---- inputs and simple commands -------------------------------------------------------------


def test_tariff_input_and_command() -> None:
    m = Meter(config(), T0)
    assert m.snapshot().tariff == 1
    assert m.set_tariff_input(True, T0 + 1) == 2
    assert m.set_tariff(4, T0 + 2) == 4
    assert m.snapshot().meter_status & MeterStatus.TARIFF_BY_COMMAND
    assert m.set_tariff_input(False, T0 + 3) == 4  # the command wins over the input
    assert m.set_tariff(None, T0 + 4) == 1
    with pytest.raises(CommandRefused):
        m.set_tariff(5, T0 + 5)
    inverted = Meter(config(tariff_input_inverted=True), T0)
    assert inverted.snapshot().tariff == 2
    assert inverted.set_tariff_input(True, T0 + 1) == 1


def test_pulse_input_caps_at_25_hz() -> None:
    m = Meter(config(), T0)
    assert m.pulse(1, T0) == 1
    assert m.pulse(1, T0 + 0.02) == 0  # 20 ms later: faster than 25 Hz, lost
    assert m.pulse(50, T0 + 1.0) == 25  # at most 25 in the second since the last one
    assert m.pulse(3, T0 + 2.0) == 3
    with pytest.raises(CommandRefused):
        m.pulse(-1, T0 + 3)
    s = m.snapshot()
    assert (s.pulse_count, s.pulses_rejected) == (29, 26)


def test_resettable_counters_reset_alone() -> None:
    m = Meter(config(profile=flat(3600.0)), T0)
    m.advance(T0 + 100)
    m.reset_resettable_counters(T0 + 100)
    m.advance(T0 + 130)
    s = m.snapshot()
    assert (s.a_plus_wh, s.a_plus_resettable_wh, s.a_minus_resettable_wh) == (130, 30, 0)


def test_meter_clock_set_and_adjust() -> None:
    m = Meter(config(), T0)
    s = m.snapshot()
    assert s.meter_time == T0 and s.rtc_status == RtcStatus.NOT_SET
    target = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert m.set_clock(target, T0 + 10) == target.timestamp()
    m.advance(T0 + 70)
    assert m.snapshot().meter_time == target.timestamp() + 60
    assert m.adjust_clock(-30, T0 + 70) == target.timestamp() + 30
    s = m.snapshot()
    assert s.rtc_status == RtcStatus.ADJUSTED
    naive = datetime(2030, 1, 1)  # taken as UTC
    assert m.set_clock(naive, T0 + 70) == naive.replace(tzinfo=UTC).timestamp()


def test_clock_out_of_range_or_not_a_number_is_refused() -> None:
    m = Meter(config(), T0)
    with pytest.raises(CommandRefused, match="2000-2099"):
        m.set_clock(datetime(2100, 1, 1, tzinfo=UTC), T0)
    with pytest.raises(CommandRefused, match="2000-2099"):
        m.adjust_clock(-30 * 365 * DAY, T0)
    with pytest.raises(CommandRefused, match="finite"):
        m.adjust_clock(float("nan"), T0)
    assert m.snapshot().meter_time == T0 and m.snapshot().rtc_status == RtcStatus.NOT_SET
    for bad in (float("nan"), float("inf"), "10"):
        with pytest.raises(MeterTimeError):
            m.advance(bad)  # type: ignore[arg-type]
    with pytest.raises(MeterTimeError):
        Meter(config(), float("nan"))


def test_command_arguments_of_the_wrong_type_are_refused() -> None:
    m = Meter(config(), T0)
    with pytest.raises(CommandRefused):
        m.pulse(2.5, T0)  # type: ignore[arg-type]
    with pytest.raises(CommandRefused):
        m.set_tariff(True, T0)
    with pytest.raises(CommandRefused):
        m.set_special_data(1, "7", T0)  # type: ignore[arg-type]
    assert m.snapshot().tariff == 1


def test_demand_windows_follow_the_meter_clock() -> None:
    m = Meter(config(profile=flat(1000.0)), T0)
    m.adjust_clock(300, T0)  # meter runs 5 min ahead: its windows close 10 min after T0
    m.advance(T0 + 601)
    s = m.snapshot()
    assert s.max_p_plus_at == int(T0) + 900
    assert s.max_p_plus_w == 1000 * 600 // 900  # mean over the period, partial first window


def test_special_data_and_software_version() -> None:
    m = Meter(config(software_version="3.21", special_data_1=42), T0)
    m.set_special_data(2, 7, T0)
    with pytest.raises(CommandRefused):
        m.set_special_data(3, 1, T0)
    s = m.snapshot()
    assert (s.software_version, s.special_data_1, s.special_data_2) == ("3.21", 42, 7)


# ---- state ----------------------------------------------------------------------------------


def test_state_round_trip_is_exact_and_continues_identically() -> None:
    cfg = config(
        profile=SOLAR, seed=9, prepayment=True, prepayment_credit_wh=3000,
        smart_disconnect_power_w=2000.0, smart_auto_reconnect_s=300, variant="ct", ct_ratio=20,
        power_threshold_w=900,
    )  # fmt: skip
    a = Meter(cfg, T0 + 6 * 3600)
    b = Meter.from_state(a.to_state())
    a.set_tariff(3, T0 + 9 * 3600 + 0.2)
    b.set_tariff(3, T0 + 9 * 3600 + 0.2)
    for m in (a, b):
        m.pulse(5, T0 + 9 * 3600 + 0.3)
        m.adjust_clock(12.5, T0 + 9 * 3600 + 0.4)
    seen = set()
    t = T0 + 9 * 3600 + 0.123
    while t < T0 + 22 * 3600:
        t += 433.3
        a.advance(t)
        b.advance(t)
        # b lives through a JSON round trip at every step; a never does
        state = json.loads(json.dumps(b.to_state()))
        b = Meter.from_state(state)
        assert b.to_state() == state
        assert b.to_state() == a.to_state()
        assert b.snapshot() == a.snapshot()
        seen.add(a.snapshot().breaker_reason)
    assert {DisconnectReason.SMART, DisconnectReason.PREPAYMENT} <= seen


def test_state_without_debit_month_still_loads() -> None:
    m = Meter(config(debiting_stop_monthly=True), T0)
    state = m.to_state()
    del state["registers"]["debit_month"]
    assert Meter.from_state(state).to_state() == m.to_state()


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.update(format=99),
        lambda s: s.pop("config"),
        lambda s: s["registers"].pop("a_plus"),
        lambda s: s["registers"].update(a_plus="12"),
        lambda s: s["registers"].update(a_plus=True),
        lambda s: s["registers"].update(rq=[1, 2]),
        lambda s: s["registers"].update(breaker="half-open"),
        lambda s: s["registers"].update(tariff_override=7),
        lambda s: s["registers"].update(ct_locked=1),
        lambda s: s["config"].update(phases=2),
        lambda s: s["config"].update(colour="red"),
        lambda s: s["config"]["profile"].update(power_factor=2),
    ],
)
def test_damaged_state_is_a_clear_error(damage: Any) -> None:
    state = Meter(config(), T0).to_state()
    damage(state)
    with pytest.raises(MeterStateError):
        Meter.from_state(state)


# ---- configuration and profile --------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"serial_number": 100_000_000},
        {"meter_number": -1},
        {"variant": "wireless"},
        {"phases": 2},
        {"sample_period_s": 0},
        {"integration_period_s": 600},
        {"sample_period_s": 7},
        {"smart_disconnect_current_a": 0},
        {"smart_auto_reconnect_s": -5},
        {"smart_disconnect_power_w": float("inf")},
        {"smart_disconnect_current_a": float("nan")},
        {"breaker": False, "prepayment": True},
        {"ct_ratio": 5},
        {"variant": "ct", "ct_ratio": 0},
        {"power_threshold_w": -1},
        {"special_data_2": 10**8},
        {"seed": 1.5},
        {"phases": True},
        {"prepayment": "yes"},
        {"software_version": 3},
    ],
)
def test_bad_config_is_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(MeterConfigError):
        config(**kw)


def test_config_dict_round_trip() -> None:
    cfg = config(profile=SOLAR, variant="ct", ct_ratio=40, smart_disconnect_current_a=63.0)
    assert MeterConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert dataclasses.replace(cfg, seed=1) != cfg


@pytest.mark.parametrize(
    "kw",
    [
        {"base_load_w": -1},
        {"daily_shape": (1.0,) * 23},
        {"phase_share": (1.0, 1.0)},
        {"power_factor": 0},
        {"noise": 1.0},
        {"sunrise_h": 20, "sunset_h": 6},
        {"base_load_w": float("nan")},
        {"solar_peak_w": float("inf")},
        {"daily_shape": (float("nan"),) * 24},
    ],
)
def test_bad_profile_is_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ProfileError):
        LoadProfile(**kw)


def test_noise_is_uniform_in_range_and_keyed() -> None:
    key = stream_key(1, 0)
    values = [v for i in range(5000) for v in noise3(key, i)]
    assert all(-1 <= v < 1 for v in values)
    mean = sum(values) / len(values)
    assert abs(mean) < 0.03
    assert sum(1 for v in values if v > 0.5) / len(values) == pytest.approx(0.25, abs=0.02)
    assert noise3(stream_key(2, 0), 0) != noise3(key, 0)
    assert splitmix64(0) == 0xE220A8397B1DCDAF  # the reference value of splitmix64 for seed 0


def test_profile_shape_and_solar() -> None:
    sampler = ProfileSampler(SOLAR, 0, 3)
    assert sampler.shape(0) == SOLAR.daily_shape[0]
    assert sampler.shape(1800) == pytest.approx((SOLAR.daily_shape[0] + SOLAR.daily_shape[1]) / 2)
    assert sampler.solar(3 * 3600) == 0
    assert sampler.solar(13 * 3600) == pytest.approx(4000)
    local = ProfileSampler(dataclasses.replace(SOLAR, utc_offset_s=3600), 0, 3)
    assert local.solar(12 * 3600) == pytest.approx(4000)


def test_errors_are_mbus_errors() -> None:
    for exc in (CommandRefused, MeterConfigError, MeterStateError, ProfileError):
        assert issubclass(exc, MBusError)
    assert MJ_PER_WH == 3_600_000


def test_skip_registers_nothing_but_the_clock_runs_on() -> None:
    m = Meter(config(profile=flat(3600.0)), T0)
    m.advance(T0 + 450)
    m.skip(T0 + 30 * DAY)
    s = m.snapshot()
    assert s.a_plus_wh == 450 and s.hour_counter == 0
    assert s.meter_time == T0 + 30 * DAY
    assert s.max_p_plus_w == 3600 * 450 // 900  # the interrupted period was closed
    m.advance(T0 + 30 * DAY + 10)
    assert m.snapshot().a_plus_wh == 460
    m.skip(T0)  # backwards: nothing happens
    assert m.snapshot().time == T0 + 30 * DAY + 10


def test_skip_performs_a_due_automatic_reconnect() -> None:
    m = Meter(config(profile=flat(3000.0), smart_disconnect_current_a=5.0), T0)
    assert m.snapshot().breaker_reason is DisconnectReason.SMART
    state = m.to_state()
    state["config"]["profile"] = flat(1000.0).to_dict()  # the load fell while the twin was down
    restored = Meter.from_state(state)
    restored.skip(T0 + 3600)
    assert restored.snapshot().breaker is BreakerState.CONNECTED
    restored.advance(T0 + 3600 + 36)
    assert restored.snapshot().a_plus_wh == 10


def test_monthly_debiting_stop() -> None:
    start = datetime(2025, 11, 30, 22, 0, tzinfo=UTC).timestamp()
    m = Meter(config(profile=flat(2000.0), debiting_stop_monthly=True), start)
    m.advance(start + 2 * 3600 - 1)  # just before 1 December 00:00
    assert m.snapshot().debiting_periods == 0
    m.advance(start + 2 * 3600)
    s = m.snapshot()
    assert s.debiting_periods == 1
    assert s.acc_max_p_plus_w == 2000 and s.max_p_plus_w == 0
    m.skip(datetime(2026, 2, 3, tzinfo=UTC).timestamp())  # a long pause crosses two more
    assert m.snapshot().debiting_periods == 2  # one stop per observed month change
    off = Meter(config(profile=flat(2000.0)), start)
    off.advance(start + 3 * 3600)
    assert off.snapshot().debiting_periods == 0


def test_open_breaker_day_is_cheap_and_registers_nothing() -> None:
    m = Meter(config(profile=SOLAR), T0)
    m.breaker_disconnect(T0)
    m.advance(T0 + 365 * DAY)  # an open breaker skips the samples
    s = m.snapshot()
    assert (s.a_plus_wh, s.a_minus_wh, s.r_plus_varh, s.r_minus_varh) == (0, 0, 0, 0)
    assert s.hour_counter == 365 * 24


# ---- random sequences of inputs and commands ------------------------------------------------

_OPS = st.one_of(
    st.tuples(st.just("advance"), st.floats(0.001, 1800.0)),
    st.tuples(st.just("skip"), st.floats(0.001, 3 * DAY)),
    st.tuples(st.sampled_from(["button", "disconnect", "release", "arm", "connect"])),
    st.tuples(st.just("tariff"), st.sampled_from([None, 1, 2, 3, 4, 0, 9])),
    st.tuples(st.just("input"), st.booleans()),
    st.tuples(st.just("topup"), st.sampled_from([0.2, 1, 3, -1])),
    st.tuples(st.sampled_from(["debit", "reset"])),
    st.tuples(st.just("pulse"), st.integers(-1, 60)),
    st.tuples(st.just("clock"), st.floats(-7200.0, 7200.0)),
)


def _run(m: Meter, op: tuple[Any, ...], now: float) -> None:
    name = op[0]
    try:
        if name == "button":
            m.press_button(now)
        elif name == "disconnect":
            m.breaker_disconnect(now)
        elif name == "release":
            m.breaker_release(now)
        elif name == "arm":
            m.breaker_arm(now)
        elif name == "connect":
            m.breaker_connect(now)
        elif name == "tariff":
            m.set_tariff(op[1], now)
        elif name == "input":
            m.set_tariff_input(op[1], now)
        elif name == "topup":
            m.prepayment_top_up(op[1], now)
        elif name == "debit":
            m.debiting_stop(now)
        elif name == "reset":
            m.reset_resettable_counters(now)
        elif name == "pulse":
            m.pulse(op[1], now)
        elif name == "clock":
            m.adjust_clock(op[1], now)
        elif name == "skip":
            m.skip(now)
        else:
            m.advance(now)
    except CommandRefused:
        pass  # refusing is allowed; any other exception fails the test


@settings(max_examples=30, deadline=None)
@given(ops=st.lists(_OPS, max_size=20), seed=st.integers(0, 2**64 - 1))
def test_random_operations_keep_the_books_balanced(ops: list[tuple[Any, ...]], seed: int) -> None:
    cfg = config(
        profile=SOLAR, seed=seed, sample_period_s=10, prepayment=True, prepayment_credit_wh=2000,
        smart_disconnect_current_a=9.0, smart_auto_reconnect_s=120,
    )  # fmt: skip
    m = Meter(cfg, T0)
    twin = Meter(cfg, T0)  # gets extra advance() calls between the operations
    now = T0
    for op in ops:
        if op[0] in ("advance", "skip"):
            now += op[1]
        before = regs(m)
        was_open = m.snapshot().breaker is not BreakerState.CONNECTED and m.auto_at is None
        if op[0] == "advance":
            twin.advance(now - op[1] / 3)  # splitting an advance must change nothing
        _run(m, op, now)
        _run(twin, op, now)
        r = regs(m)
        for total, tariffs in (
            ("a_plus", "t_a_plus"), ("a_minus", "t_a_minus"),
            ("r_plus", "t_r_plus"), ("r_minus", "t_r_minus"),
        ):  # fmt: skip
            assert sum(r[tariffs]) == r[total]
            assert r[total] >= before[total]
        assert r["rq"][0] + r["rq"][1] == r["r_plus"]
        assert r["rq"][2] + r["rq"][3] == r["r_minus"]
        assert r["credit"] >= 0
        if was_open and op[0] == "advance":
            assert r["a_plus"] == before["a_plus"] and r["r_minus"] == before["r_minus"]
        assert r == regs(twin)
    assert Meter.from_state(json.loads(json.dumps(m.to_state()))).to_state() == m.to_state()


def test_public_api_is_pinned() -> None:
    from mbuskit.slave import meter, meter_profile

    assert set(meter.__all__) == {
        "MJ_PER_WH", "BreakerState", "CommandRefused", "DisconnectReason", "Meter",
        "MeterConfig", "MeterConfigError", "MeterSnapshot", "MeterStateError", "MeterStatus",
        "MeterTimeError", "RtcStatus",
    }  # fmt: skip
    assert set(meter_profile.__all__) == {
        "DEFAULT_DAILY_SHAPE", "NOMINAL_VOLTAGE_MV", "LoadProfile", "ProfileError",
        "ProfileSampler", "Sample", "noise3", "splitmix64", "stream_key",
    }  # fmt: skip
    # other modules map these snapshot names to M-Bus records: renaming one breaks them
    names = [f.name for f in dataclasses.fields(meter.MeterSnapshot)]
    for stable in (
        "a_plus_wh", "a_minus_wh", "r_plus_varh", "r_minus_varh", "r_quadrant_varh",
        "a_plus_tariff_wh", "max_p_plus_w", "max_p_plus_at", "acc_max_p_plus_w",
        "debiting_periods", "p_plus_w", "power_factor", "hour_counter", "meter_status",
        "rtc_status", "prepayment_wh", "pulse_count", "breaker", "breaker_reason", "ct_ratio",
        "secondary_a_plus_wh",
    ):  # fmt: skip
        assert stable in names
