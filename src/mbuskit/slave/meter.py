"""The electricity meter the Kamstrup M-Bus module sits in (Kamstrup 162M/382M direct, 351B CT).

A pure model driven by the caller's clock: ``advance(now)`` integrates the load profile into
the registers. Time is kept in integer milliseconds and energy in integer mJ (W x ms) on the
primary side, so every register is an exact sum: tariff registers add up to their total,
quadrants R1+R2 = R+ and R3+R4 = R-, to the mJ. Registers are shown in Wh / varh.

Registration follows Kamstrup's "individually import/export" method (TD 5512-1040 3.2.2): each
phase's positive contribution goes to A+ and its negative one to A-, never netted between
phases; the same for reactive energy, sorted into quadrants by the signs of P and Q of that
phase (Q1: P>=0 Q>0, Q2: P<0 Q>0, Q3: P<0 Q<0, Q4: P>=0 Q<0).

Vocabulary (Kamstrup's): the *integration period* (default 15 min) is the window over which
power is averaged for max demand; the *debiting period* (billing period) ends with a debiting
stop, which adds the max values to the accumulated max values, clears them and counts the
period. The breaker behaviour follows TD 5512-1040 section 6. What a saved state keeps, and
its checks, are in :mod:`mbuskit.slave.meter_state`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .meter_profile import ProfileSampler, Sample
from .meter_state import meter_state, parse_state, restore_registers
from .meter_types import (
    CLOCK_MAX_MS,
    CLOCK_MIN_MS,
    CT_RATIO_MAX,
    MAX_PULSE_HZ,
    MJ_PER_WH,
    PREPAYMENT_MAX_KWH,
    BreakerState,
    CommandRefused,
    DisconnectReason,
    MeterConfig,
    MeterConfigError,
    MeterSnapshot,
    MeterStateError,
    MeterStatus,
    MeterTimeError,
    Quad,
    RtcStatus,
    Tri,
)

_PULSE_SPACING_MS = 1000 // MAX_PULSE_HZ  # 40 ms: the input filter of the pulse input


def _ms(now: float) -> int:
    if not isinstance(now, (int, float)) or not math.isfinite(now):
        raise MeterTimeError(f"time must be a finite number of seconds, got {now!r}")
    return round(now * 1000)


def _pf(p: int, q: int) -> int:
    s2 = p * p + q * q
    if s2 == 0:
        return 1000
    return round(abs(p) * 1000 / math.sqrt(s2))


_ZERO_TRI: Tri = (0, 0, 0)


class Meter:
    """The meter. Every input and command takes ``now`` and first advances the model to it."""

    def __init__(self, config: MeterConfig, now: float) -> None:
        self.config = config
        self._sampler = ProfileSampler(config.profile, config.seed, config.phases)
        self._sample_ms = config.sample_period_s * 1000
        self._int_ms = config.integration_period_s * 1000
        self._sample_k: int | None = None
        self._sample: Sample | None = None
        self._agg: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)
        t = _ms(now)
        self.t = t
        self.clock_offset_ms = 0
        self.a_plus = self.a_minus = self.r_plus = self.r_minus = 0
        self.res_a_plus = self.res_a_minus = 0
        self.rq = [0, 0, 0, 0]
        self.t_a_plus = [0, 0, 0, 0]
        self.t_a_minus = [0, 0, 0, 0]
        self.t_r_plus = [0, 0, 0, 0]
        self.t_r_minus = [0, 0, 0, 0]
        self.win_end = self._next_window_end(t)
        self.win_ap = self.win_am = self.win_qp = self.win_qm = 0
        self.max_p_plus = self.max_p_minus = self.max_q_plus = self.max_q_minus = 0
        self.max_p_plus_at: int | None = None
        self.max_p_minus_at: int | None = None
        self.max_q_plus_at: int | None = None
        self.max_q_minus_at: int | None = None
        self.max_tp_plus = [0, 0, 0, 0]
        self.max_tp_minus = [0, 0, 0, 0]
        self.max_tp_plus_at: list[int | None] = [None, None, None, None]
        self.max_tp_minus_at: list[int | None] = [None, None, None, None]
        self.acc_p_plus = self.acc_p_minus = self.acc_q_plus = self.acc_q_minus = 0
        self.debiting_periods = 0
        self.threshold_count = 0
        self.op_ms = 0
        self.rtc = int(RtcStatus.NOT_SET)
        self.special_1 = config.special_data_1
        self.special_2 = config.special_data_2
        self.credit = config.prepayment_credit_wh * MJ_PER_WH if config.prepayment else 0
        self.pulse_count = 0
        self.pulses_rejected = 0
        self.last_pulse: int | None = None
        self.ct_ratio = config.ct_ratio
        self.ct_locked = False
        self.sec_a_plus = self.sec_a_minus = self.sec_r_plus = self.sec_r_minus = 0
        self.breaker = BreakerState.CONNECTED
        self.reason = DisconnectReason.NONE
        self.auto_at: int | None = None
        self.tariff_input = False
        self.tariff_override: int | None = None
        self.debit_month = self._month_index()
        self._apply_due_events()  # an empty prepayment register opens the breaker at once

    # ---- time ---------------------------------------------------------------------------

    def _next_window_end(self, t: int) -> int:
        # windows are aligned to the meter's clock (xx:00, xx:15, ... for 15 min)
        meter = t + self.clock_offset_ms
        return (meter // self._int_ms + 1) * self._int_ms - self.clock_offset_ms

    def _ensure_sample(self) -> None:
        k = self.t // self._sample_ms
        if k == self._sample_k:
            return
        ps, qs = self._sampler.power(k, k * self.config.sample_period_s)
        self._sample_k = k
        self._sample = None  # voltages and currents are computed when asked for
        ap = am = q1 = q2 = q3 = q4 = 0
        for p, q in zip(ps, qs, strict=True):
            if p >= 0:
                ap += p
                if q > 0:
                    q1 += q
                else:
                    q4 -= q
            else:
                am -= p
                if q > 0:
                    q2 += q
                else:
                    q3 -= q
        self._agg = (ap, am, q1, q2, q3, q4)

    def _full_sample(self) -> Sample:
        self._ensure_sample()
        if self._sample is None:
            k = self.t // self._sample_ms
            self._sample = self._sampler.sample(k, k * self.config.sample_period_s)
        return self._sample

    def advance(self, now: float) -> None:
        """Integrate up to ``now``. A ``now`` before the model's time is ignored (a host clock
        stepping back must not undo registration); the model waits until time passes it."""
        target = _ms(now)
        cfg = self.config
        while self.t < target:
            self._apply_due_events()
            t = self.t
            end = min(target, self.win_end)
            if self.auto_at is not None:
                end = min(end, self.auto_at)
            live = self.breaker is BreakerState.CONNECTED
            if live:
                # the load is constant within a sample; an open breaker skips samples entirely
                end = min(end, (t // self._sample_ms + 1) * self._sample_ms)
                ap = self._agg[0]
                if cfg.prepayment and ap > 0:
                    need = -(-self.credit // ap)  # ms until the credit is used up
                    end = min(end, t + max(need, 1))
            self._integrate(end - t, live)
            self.t = end
            if end == self.win_end:
                self._close_window()
        self._apply_due_events()

    def skip(self, now: float) -> None:
        """Jump to ``now`` registering nothing, as a supply failure would: the twin was not
        running (e.g. restarted from a saved state after a long pause). The meter clock runs on
        in its backup, the hour counter does not; the running integration period is closed and
        a pending automatic reconnect happens on return."""
        target = _ms(now)
        if target <= self.t:
            return
        self._close_window()
        self.t = target
        self.win_end = self._next_window_end(target)
        if self.auto_at is not None:
            self.auto_at = min(self.auto_at, target)
        self._check_debiting_month()
        self._apply_due_events()

    def _integrate(self, dt: int, live: bool) -> None:
        self.op_ms += dt
        if not live:
            return
        ap, am, q1, q2, q3, q4 = self._agg
        e_ap, e_am = ap * dt, am * dt
        e_q = (q1 * dt, q2 * dt, q3 * dt, q4 * dt)
        e_rp, e_rm = e_q[0] + e_q[1], e_q[2] + e_q[3]
        ti = self.tariff - 1
        self.a_plus += e_ap
        self.a_minus += e_am
        self.r_plus += e_rp
        self.r_minus += e_rm
        self.t_a_plus[ti] += e_ap
        self.t_a_minus[ti] += e_am
        self.t_r_plus[ti] += e_rp
        self.t_r_minus[ti] += e_rm
        rq = self.rq
        rq[0] += e_q[0]
        rq[1] += e_q[1]
        rq[2] += e_q[2]
        rq[3] += e_q[3]
        self.res_a_plus += e_ap
        self.res_a_minus += e_am
        self.win_ap += e_ap
        self.win_am += e_am
        self.win_qp += e_rp
        self.win_qm += e_rm
        if self.config.variant == "ct":
            # the meter measures at the CT secondary: primary / ratio, kept in uJ
            r = self.ct_ratio
            self.sec_a_plus += e_ap * 1000 // r
            self.sec_a_minus += e_am * 1000 // r
            self.sec_r_plus += e_rp * 1000 // r
            self.sec_r_minus += e_rm * 1000 // r
        if self.config.prepayment:
            self.credit = max(0, self.credit - e_ap)

    def _apply_due_events(self) -> None:
        cfg = self.config
        if self.auto_at is not None and self.t >= self.auto_at:
            self.auto_at = None
            if self.breaker is BreakerState.DISCONNECTED and self.reason is DisconnectReason.SMART:
                self._close_breaker()
        if self.breaker is not BreakerState.CONNECTED:
            return
        self._ensure_sample()
        if cfg.prepayment and self.credit == 0:
            self._open_breaker(DisconnectReason.PREPAYMENT)
            return
        tripped = False
        if cfg.smart_disconnect_current_a is not None:
            limit_ma = cfg.smart_disconnect_current_a * 1000
            tripped = any(i > limit_ma for i in self._full_sample().load_current_ma)
        if cfg.smart_disconnect_power_w is not None and self._agg[0] > cfg.smart_disconnect_power_w:
            tripped = True
        if tripped:
            self._open_breaker(DisconnectReason.SMART)
            if cfg.smart_auto_reconnect_s is not None:
                self.auto_at = self.t + round(cfg.smart_auto_reconnect_s * 1000)

    def _close_window(self) -> None:
        # max power (demand) is the mean power over the integration period: mJ / ms = W
        n = self._int_ms
        at = (self.t + self.clock_offset_ms) // 1000
        ti = self.tariff - 1
        p_plus, p_minus = self.win_ap // n, self.win_am // n
        q_plus, q_minus = self.win_qp // n, self.win_qm // n
        if p_plus > self.max_p_plus:
            self.max_p_plus, self.max_p_plus_at = p_plus, at
        if p_minus > self.max_p_minus:
            self.max_p_minus, self.max_p_minus_at = p_minus, at
        if q_plus > self.max_q_plus:
            self.max_q_plus, self.max_q_plus_at = q_plus, at
        if q_minus > self.max_q_minus:
            self.max_q_minus, self.max_q_minus_at = q_minus, at
        if p_plus > self.max_tp_plus[ti]:
            self.max_tp_plus[ti], self.max_tp_plus_at[ti] = p_plus, at
        if p_minus > self.max_tp_minus[ti]:
            self.max_tp_minus[ti], self.max_tp_minus_at[ti] = p_minus, at
        threshold = self.config.power_threshold_w
        if threshold and p_plus > threshold:
            self.threshold_count += 1
        self.win_ap = self.win_am = self.win_qp = self.win_qm = 0
        self.win_end = self._next_window_end(self.t)
        self._check_debiting_month()

    def _month_index(self) -> int:
        when = datetime.fromtimestamp((self.t + self.clock_offset_ms) / 1000, UTC)
        return when.year * 12 + when.month - 1

    def _check_debiting_month(self) -> None:
        # automatic debiting stop at 00:00 UTC on the 1st of a month (meter clock), the
        # Kamstrup default billing period; windows end on that instant, so it closes cleanly
        month = self._month_index()
        if month != self.debit_month:
            self.debit_month = month
            if self.config.debiting_stop_monthly:
                self._debiting_stop()

    # ---- breaker --------------------------------------------------------------------------

    def _open_breaker(self, reason: DisconnectReason) -> None:
        self.breaker = BreakerState.DISCONNECTED
        self.reason = reason
        self.auto_at = None

    def _close_breaker(self) -> None:
        self.breaker = BreakerState.CONNECTED
        self.reason = DisconnectReason.NONE
        self.auto_at = None

    def _need_breaker(self, command: str) -> None:
        if not self.config.breaker:
            raise CommandRefused(command, "meter has no breaker")

    def _prepayment_empty(self) -> bool:
        return self.config.prepayment and self.credit == 0

    def press_button(self, now: float) -> BreakerState:
        """The push button: opens a closed breaker (if configured); closes it after a button or
        smart disconnect, or when a command released it. After a command disconnect or an empty
        prepayment register it does nothing (TD 5512-1040 6.2)."""
        self.advance(now)
        if not self.config.breaker:
            return self.breaker
        state, reason = self.breaker, self.reason
        if state is BreakerState.CONNECTED:
            if self.config.button_disconnect:
                self._open_breaker(DisconnectReason.BUTTON)
        elif self._prepayment_empty():
            pass
        elif state is BreakerState.RELEASED or (
            state is BreakerState.DISCONNECTED
            and reason in (DisconnectReason.BUTTON, DisconnectReason.SMART)
        ):
            self._close_breaker()
        self._apply_due_events()
        return self.breaker

    def breaker_disconnect(self, now: float) -> BreakerState:
        self.advance(now)
        self._need_breaker("breaker_disconnect")
        self._open_breaker(DisconnectReason.COMMAND)
        return self.breaker

    def breaker_release(self, now: float) -> BreakerState:
        """Release for manual reconnection: the next button press closes the breaker."""
        self.advance(now)
        self._check_reconnect("breaker_release")
        self.breaker = BreakerState.RELEASED
        self.auto_at = None
        return self.breaker

    def breaker_arm(self, now: float) -> BreakerState:
        """First of the two reconnect commands."""
        self.advance(now)
        self._check_reconnect("breaker_arm")
        if not self.config.remote_reconnect:
            raise CommandRefused("breaker_arm", "remote reconnect is not configured")
        self.breaker = BreakerState.ARMED
        self.auto_at = None
        return self.breaker

    def breaker_connect(self, now: float) -> BreakerState:
        """Second of the two reconnect commands; refused unless breaker_arm came first."""
        self.advance(now)
        self._need_breaker("breaker_connect")
        if self.breaker is BreakerState.CONNECTED:
            return self.breaker
        if self.breaker is not BreakerState.ARMED:
            raise CommandRefused("breaker_connect", "breaker_arm must come first")
        if self._prepayment_empty():
            raise CommandRefused("breaker_connect", "prepayment register is empty")
        self._close_breaker()
        self._apply_due_events()
        return self.breaker

    def _check_reconnect(self, command: str) -> None:
        self._need_breaker(command)
        if self.breaker is BreakerState.CONNECTED:
            raise CommandRefused(command, "breaker is already connected")
        if self._prepayment_empty():
            raise CommandRefused(command, "prepayment register is empty")

    # ---- inputs and commands ------------------------------------------------------------

    @property
    def tariff(self) -> int:
        """A tariff set by command wins over the 230 V input until cleared with set_tariff(None);
        the input selects T2 when 230 V is on terminal 13 (T1 when absent), inverse if so
        configured. T3 and T4 are reachable only by command."""
        if self.tariff_override is not None:
            return self.tariff_override
        return 2 if self.tariff_input != self.config.tariff_input_inverted else 1

    def set_tariff_input(self, on: bool, now: float) -> int:
        self.advance(now)
        self.tariff_input = bool(on)
        return self.tariff

    def set_tariff(self, tariff: int | None, now: float) -> int:
        self.advance(now)
        if tariff is not None and (isinstance(tariff, bool) or tariff not in (1, 2, 3, 4)):
            raise CommandRefused("set_tariff", "tariff must be 1..4 or None")
        self.tariff_override = tariff
        return self.tariff

    def pulse(self, count: int, now: float) -> int:
        """``count`` pulses arrived since the previous call. The input filter passes at most
        25 Hz: pulses closer than 40 ms to the last counted one are lost, as on the real input;
        returns how many were counted (the rest add to pulses_rejected)."""
        self.advance(now)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise CommandRefused("pulse", "count must be an integer >= 0")
        if count == 0:
            return 0
        if self.last_pulse is None:
            counted = count
        else:
            counted = min(count, (self.t - self.last_pulse) // _PULSE_SPACING_MS)
        self.pulse_count += counted
        self.pulses_rejected += count - counted
        if counted:
            self.last_pulse = self.t
        return counted

    def meter_time(self) -> float:
        return (self.t + self.clock_offset_ms) / 1000

    def set_clock(self, when: datetime, now: float) -> float:
        """Set the meter clock (a naive datetime is taken as UTC). Closes the running
        integration period first, so that no demand window straddles the jump."""
        self.advance(now)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return self._set_offset("set_clock", round(when.timestamp() * 1000) - self.t)

    def adjust_clock(self, delta_s: float, now: float) -> float:
        self.advance(now)
        if not isinstance(delta_s, (int, float)) or not math.isfinite(delta_s):
            raise CommandRefused("adjust_clock", f"not a finite number of seconds: {delta_s!r}")
        return self._set_offset("adjust_clock", self.clock_offset_ms + round(delta_s * 1000))

    def _set_offset(self, command: str, offset_ms: int) -> float:
        # the M-Bus date types (EN 13757-3 Annex A, types F/G) carry a two-digit year; this
        # project reads it as 20xx, so the meter clock is kept inside 2000-2099
        if not CLOCK_MIN_MS <= self.t + offset_ms < CLOCK_MAX_MS:
            raise CommandRefused(command, "meter clock must stay within 2000-2099")
        self._close_window()
        self.clock_offset_ms = offset_ms
        self.win_end = self._next_window_end(self.t)
        self.rtc = int((RtcStatus(self.rtc) & ~RtcStatus.NOT_SET) | RtcStatus.ADJUSTED)
        return self.meter_time()

    def debiting_stop(self, now: float) -> int:
        """Close the debiting (billing) period: max values go into the accumulated max values
        and are cleared. Returns the number of debiting periods."""
        self.advance(now)
        return self._debiting_stop()

    def _debiting_stop(self) -> int:
        self.acc_p_plus += self.max_p_plus
        self.acc_p_minus += self.max_p_minus
        self.acc_q_plus += self.max_q_plus
        self.acc_q_minus += self.max_q_minus
        self.max_p_plus = self.max_p_minus = self.max_q_plus = self.max_q_minus = 0
        self.max_p_plus_at = self.max_p_minus_at = None
        self.max_q_plus_at = self.max_q_minus_at = None
        self.max_tp_plus = [0, 0, 0, 0]
        self.max_tp_minus = [0, 0, 0, 0]
        self.max_tp_plus_at = [None, None, None, None]
        self.max_tp_minus_at = [None, None, None, None]
        self.debiting_periods += 1
        self.rtc = int(RtcStatus(self.rtc) & ~RtcStatus.ADJUSTED)
        return self.debiting_periods

    def reset_resettable_counters(self, now: float) -> None:
        self.advance(now)
        self.res_a_plus = self.res_a_minus = 0

    def prepayment_top_up(self, kwh: int | float | Decimal | str, now: float) -> int:
        """Add credit; returns the register in Wh. Recloses (or releases for the button, as
        configured) a breaker opened by an empty register (TD 5512-1040 6.1)."""
        self.advance(now)
        if not self.config.prepayment:
            raise CommandRefused("prepayment_top_up", "prepayment is not configured")
        try:
            amount = Decimal(str(kwh))
        except InvalidOperation as exc:
            raise CommandRefused("prepayment_top_up", f"not a number: {kwh!r}") from exc
        if not amount.is_finite() or amount <= 0:
            raise CommandRefused("prepayment_top_up", "amount must be a positive number of kWh")
        add = int(amount * 1000 * MJ_PER_WH)
        if self.credit + add > PREPAYMENT_MAX_KWH * 1000 * MJ_PER_WH:
            raise CommandRefused("prepayment_top_up", f"register max is {PREPAYMENT_MAX_KWH} kWh")
        self.credit += add
        if self.breaker is BreakerState.DISCONNECTED and (
            self.reason is DisconnectReason.PREPAYMENT
        ):
            if self.config.prepayment_auto_reconnect:
                self._close_breaker()
            else:
                self.breaker = BreakerState.RELEASED
        self._apply_due_events()
        return self.credit // MJ_PER_WH

    def set_ct_ratio(self, ratio: int, now: float) -> int:
        self.advance(now)
        if self.config.variant != "ct":
            raise CommandRefused("set_ct_ratio", "only the CT variant has a transformer ratio")
        if self.ct_locked:
            raise CommandRefused("set_ct_ratio", "transformer ratio is locked")
        if not isinstance(ratio, int) or not 1 <= ratio <= CT_RATIO_MAX:
            raise CommandRefused("set_ct_ratio", f"ratio must be 1..{CT_RATIO_MAX}")
        self.ct_ratio = ratio
        return ratio

    def lock_ct_ratio(self, now: float) -> None:
        """One way: once locked the ratio can never be changed again (calibration seal)."""
        self.advance(now)
        if self.config.variant != "ct":
            raise CommandRefused("lock_ct_ratio", "only the CT variant has a transformer ratio")
        self.ct_locked = True

    def set_special_data(self, index: int, value: int, now: float) -> None:
        self.advance(now)
        if index not in (1, 2) or not isinstance(value, int) or not 0 <= value <= 99_999_999:
            raise CommandRefused("set_special_data", "index 1 or 2, value 0..99999999")
        if index == 1:
            self.special_1 = value
        else:
            self.special_2 = value

    # ---- read-out -----------------------------------------------------------------------

    def status(self) -> MeterStatus:
        s = MeterStatus(0)
        if self.breaker is not BreakerState.CONNECTED:
            s |= MeterStatus.BREAKER_OPEN
        if self.breaker is BreakerState.DISCONNECTED and self.reason is DisconnectReason.SMART:
            s |= MeterStatus.SMART_DISCONNECT
        if self._prepayment_empty():
            s |= MeterStatus.PREPAYMENT_EMPTY
        live = self.breaker is BreakerState.CONNECTED
        if live and self._agg[1] > 0:
            s |= MeterStatus.EXPORTING
        if self.ct_locked:
            s |= MeterStatus.CT_RATIO_LOCKED
        if self.tariff_override is not None:
            s |= MeterStatus.TARIFF_BY_COMMAND
        return s

    def snapshot(self) -> MeterSnapshot:
        sample = self._full_sample()
        live = self.breaker is BreakerState.CONNECTED
        p = sample.p_w if live else _ZERO_TRI
        q = sample.q_var if live else _ZERO_TRI
        cur = sample.load_current_ma if live else _ZERO_TRI
        ap, am, q1, q2, q3, q4 = self._agg if live else (0, 0, 0, 0, 0, 0)
        ct = self.config.variant == "ct"
        uj_per_wh = MJ_PER_WH * 1000

        def wh(x: int) -> int:
            return x // MJ_PER_WH

        def quad(xs: list[int]) -> Quad:
            return (wh(xs[0]), wh(xs[1]), wh(xs[2]), wh(xs[3]))

        def sec(x: int) -> int | None:
            return x // uj_per_wh if ct else None

        return MeterSnapshot(
            time=self.t / 1000,
            meter_time=self.meter_time(),
            serial_number=self.config.serial_number,
            meter_number=self.config.meter_number,
            variant=self.config.variant,
            tariff=self.tariff,
            tariff_input=self.tariff_input,
            a_plus_wh=wh(self.a_plus),
            a_minus_wh=wh(self.a_minus),
            r_plus_varh=wh(self.r_plus),
            r_minus_varh=wh(self.r_minus),
            r_quadrant_varh=quad(self.rq),
            a_plus_tariff_wh=quad(self.t_a_plus),
            a_minus_tariff_wh=quad(self.t_a_minus),
            r_plus_tariff_varh=quad(self.t_r_plus),
            r_minus_tariff_varh=quad(self.t_r_minus),
            a_plus_resettable_wh=wh(self.res_a_plus),
            a_minus_resettable_wh=wh(self.res_a_minus),
            max_p_plus_w=self.max_p_plus,
            max_p_plus_at=self.max_p_plus_at,
            max_p_minus_w=self.max_p_minus,
            max_p_minus_at=self.max_p_minus_at,
            max_p_plus_tariff_w=_quad(self.max_tp_plus),
            max_p_plus_tariff_at=_opt_quad(self.max_tp_plus_at),
            max_p_minus_tariff_w=_quad(self.max_tp_minus),
            max_p_minus_tariff_at=_opt_quad(self.max_tp_minus_at),
            max_q_plus_var=self.max_q_plus,
            max_q_plus_at=self.max_q_plus_at,
            max_q_minus_var=self.max_q_minus,
            max_q_minus_at=self.max_q_minus_at,
            acc_max_p_plus_w=self.acc_p_plus,
            acc_max_p_minus_w=self.acc_p_minus,
            acc_max_q_plus_var=self.acc_q_plus,
            acc_max_q_minus_var=self.acc_q_minus,
            debiting_periods=self.debiting_periods,
            power_threshold_w=self.config.power_threshold_w,
            power_threshold_count=self.threshold_count,
            p_plus_w=ap,
            p_minus_w=am,
            q_plus_var=q1 + q2,
            q_minus_var=q3 + q4,
            p_phase_w=p,
            q_phase_var=q,
            voltage_mv=sample.voltage_mv,
            current_ma=cur,
            power_factor=_pf(sum(p), sum(q)),
            power_factor_phase=(_pf(p[0], q[0]), _pf(p[1], q[1]), _pf(p[2], q[2])),
            hour_counter=self.op_ms // 3_600_000,
            meter_status=self.status(),
            rtc_status=RtcStatus(self.rtc),
            software_version=self.config.software_version,
            special_data_1=self.special_1,
            special_data_2=self.special_2,
            prepayment_enabled=self.config.prepayment,
            prepayment_wh=wh(self.credit) if self.config.prepayment else None,
            pulse_count=self.pulse_count,
            pulses_rejected=self.pulses_rejected,
            breaker=self.breaker,
            breaker_reason=self.reason,
            ct_ratio=self.ct_ratio,
            ct_ratio_locked=self.ct_locked,
            secondary_a_plus_wh=sec(self.sec_a_plus),
            secondary_a_minus_wh=sec(self.sec_a_minus),
            secondary_r_plus_varh=sec(self.sec_r_plus),
            secondary_r_minus_varh=sec(self.sec_r_minus),
        )

    # ---- persistence ----------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-safe (ints, strings, bools, None, lists); from_state(to_state()) is exact."""
        return meter_state(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Meter:
        config, regs = parse_state(state)
        meter = cls(config, 0.0)
        restore_registers(meter, regs, meter._month_index)
        meter._sample_k = None
        meter._ensure_sample()
        return meter


def _quad(xs: list[int]) -> Quad:
    return (xs[0], xs[1], xs[2], xs[3])


def _opt_quad(xs: list[int | None]) -> tuple[int | None, int | None, int | None, int | None]:
    return (xs[0], xs[1], xs[2], xs[3])


__all__ = [
    "MJ_PER_WH",
    "BreakerState",
    "CommandRefused",
    "DisconnectReason",
    "Meter",
    "MeterConfig",
    "MeterConfigError",
    "MeterSnapshot",
    "MeterStateError",
    "MeterStatus",
    "MeterTimeError",
    "RtcStatus",
]
