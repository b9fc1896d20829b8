"""Configuration, read-out and error types of the electricity meter model (slave.meter).

Kept apart from the model (one concept per module). Import them from slave.meter, which
re-exports the public ones; the names are stable because the Kamstrup module maps them to
M-Bus records.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ..errors import LocalError, MBusError
from .meter_profile import LoadProfile, ProfileError

MJ_PER_WH = 3_600_000  # 1 Wh = 3600 J = 3.6e6 mJ
MAX_PULSE_HZ = 25
PREPAYMENT_MAX_KWH = 9_999_999  # display format 7.0 (TD 5512-1040 6.5)
CT_RATIO_MAX = 9999
STATE_FORMAT = 1
CLOCK_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
CLOCK_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


class MeterConfigError(LocalError):
    """A MeterConfig value is out of range."""


class MeterStateError(MBusError, ValueError):
    """A saved meter state cannot be restored (missing or mistyped field)."""


class MeterTimeError(LocalError):
    """A time passed in is not a finite number, or would put the meter clock out of range."""


class CommandRefused(MBusError):
    """The meter refuses a command in its present state or configuration."""

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(f"{command} refused: {reason}")


class BreakerState(enum.Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RELEASED = "released_for_manual"  # a command allowed the push button to reconnect
    ARMED = "armed"  # first of two commands received; breaker_connect closes it


class DisconnectReason(enum.Enum):
    NONE = "none"
    BUTTON = "button"
    COMMAND = "command"
    SMART = "smart_disconnect"
    PREPAYMENT = "prepayment"


class MeterStatus(enum.IntFlag):
    BREAKER_OPEN = 0x01
    SMART_DISCONNECT = 0x02
    PREPAYMENT_EMPTY = 0x04
    EXPORTING = 0x08  # some phase delivers active energy to the grid now
    CT_RATIO_LOCKED = 0x10
    TARIFF_BY_COMMAND = 0x20


class RtcStatus(enum.IntFlag):
    NOT_SET = 0x01  # never set by command: runs on the factory/host time
    ADJUSTED = 0x02  # set or adjusted by command since the last debiting stop


_BOOL_FIELDS = (
    "breaker", "button_disconnect", "remote_reconnect", "prepayment",
    "prepayment_auto_reconnect", "tariff_input_inverted", "debiting_stop_monthly",
)  # fmt: skip
_INT_FIELDS = (
    "serial_number", "meter_number", "phases", "seed", "sample_period_s",
    "integration_period_s", "prepayment_credit_wh", "power_threshold_w", "special_data_1",
    "special_data_2", "ct_ratio",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MeterConfig:
    serial_number: int  # fabrication number, 8 digits, fixed at production
    meter_number: int  # customer/meter number, 8 digits (the M-Bus secondary address)
    variant: Literal["direct", "ct"] = "direct"
    phases: int = 3
    profile: LoadProfile = field(default_factory=LoadProfile)
    seed: int = 0
    sample_period_s: int = 1  # the load is constant over one sample
    integration_period_s: int = 900
    breaker: bool = True  # meter fitted with the bistable breaker
    button_disconnect: bool = True  # the push button may open the breaker
    remote_reconnect: bool = True  # two commands (arm, connect) may close it
    smart_disconnect_current_a: float | None = None  # per phase
    smart_disconnect_power_w: float | None = None  # total import
    smart_auto_reconnect_s: float | None = 60.0  # None: only the button or commands reconnect
    prepayment: bool = False
    prepayment_credit_wh: int = 0  # at commissioning
    prepayment_auto_reconnect: bool = True  # a top-up recloses; else it releases for the button
    tariff_input_inverted: bool = False
    power_threshold_w: int = 0  # 0: threshold counter disabled
    debiting_stop_monthly: bool = False  # automatic debiting stop on the 1st, 00:00 UTC
    software_version: str = "1.0"
    special_data_1: int = 0
    special_data_2: int = 0
    ct_ratio: int = 1

    def __post_init__(self) -> None:
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise MeterConfigError(f"{name} must be true or false")
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise MeterConfigError(f"{name} must be an integer")
        if not isinstance(self.software_version, str) or not self.software_version.isprintable():
            raise MeterConfigError("software_version must be printable text")
        for name in ("serial_number", "meter_number"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 99_999_999:
                raise MeterConfigError(f"{name} must be 0..99999999 (8 BCD digits)")
        if self.variant not in ("direct", "ct"):
            raise MeterConfigError("variant must be 'direct' or 'ct'")
        if self.phases not in (1, 3):
            raise MeterConfigError("phases must be 1 or 3")
        if not isinstance(self.profile, LoadProfile):
            raise MeterConfigError("profile must be a LoadProfile")
        if not 1 <= self.sample_period_s <= 60:
            raise MeterConfigError("sample_period_s must be 1..60")
        if self.integration_period_s not in (300, 900, 1800, 3600):
            raise MeterConfigError("integration_period_s must be 300, 900, 1800 or 3600")
        if self.integration_period_s % self.sample_period_s:
            raise MeterConfigError("integration_period_s must be a multiple of sample_period_s")
        for name in (
            "smart_disconnect_current_a", "smart_disconnect_power_w", "smart_auto_reconnect_s"
        ):
            limit = getattr(self, name)
            if limit is not None and not (
                isinstance(limit, (int, float)) and math.isfinite(limit) and limit > 0
            ):
                raise MeterConfigError(f"{name} must be a finite number > 0, or None")
        smart = (
            self.smart_disconnect_current_a is not None
            or self.smart_disconnect_power_w is not None
        )
        if (smart or self.prepayment) and not self.breaker:
            raise MeterConfigError("smart disconnect and prepayment need the breaker")
        if not 0 <= self.prepayment_credit_wh <= PREPAYMENT_MAX_KWH * 1000:
            raise MeterConfigError("prepayment_credit_wh out of range")
        if self.power_threshold_w < 0:
            raise MeterConfigError("power_threshold_w must be >= 0")
        if not 1 <= self.ct_ratio <= CT_RATIO_MAX:
            raise MeterConfigError(f"ct_ratio must be 1..{CT_RATIO_MAX}")
        if self.variant == "direct" and self.ct_ratio != 1:
            raise MeterConfigError("a direct meter has ct_ratio 1")
        for name in ("special_data_1", "special_data_2"):
            if not 0 <= getattr(self, name) <= 99_999_999:
                raise MeterConfigError(f"{name} must be 0..99999999")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, LoadProfile) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeterConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise MeterConfigError(f"unknown meter config fields: {sorted(unknown)}")
        kwargs = dict(data)
        if "profile" in kwargs:
            if not isinstance(kwargs["profile"], dict):
                raise MeterConfigError("profile must be an object")
            try:
                kwargs["profile"] = LoadProfile.from_dict(kwargs["profile"])
            except ProfileError as exc:
                raise MeterConfigError(str(exc)) from exc
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise MeterConfigError(f"bad meter config: {exc}") from exc


Quad = tuple[int, int, int, int]
Tri = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class MeterSnapshot:
    """Every register and instantaneous value at one instant. Names are stable (other modules
    map them to M-Bus records). Energy in Wh / varh, primary side; power in W / var; times are
    the meter's clock as unix seconds; tuples of 4 are tariffs 1-4 (or quadrants Q1-Q4), tuples
    of 3 are phases L1-L3; power factors in thousandths.
    """

    time: float  # the caller's clock at the snapshot
    meter_time: float  # the meter's own clock
    serial_number: int
    meter_number: int
    variant: str
    tariff: int  # active tariff 1..4
    tariff_input: bool  # 230 V present on terminal 13
    a_plus_wh: int
    a_minus_wh: int
    r_plus_varh: int
    r_minus_varh: int
    r_quadrant_varh: Quad  # R1..R4
    a_plus_tariff_wh: Quad
    a_minus_tariff_wh: Quad
    r_plus_tariff_varh: Quad
    r_minus_tariff_varh: Quad
    a_plus_resettable_wh: int
    a_minus_resettable_wh: int
    max_p_plus_w: int
    max_p_plus_at: int | None
    max_p_minus_w: int
    max_p_minus_at: int | None
    max_p_plus_tariff_w: Quad
    max_p_plus_tariff_at: tuple[int | None, int | None, int | None, int | None]
    max_p_minus_tariff_w: Quad
    max_p_minus_tariff_at: tuple[int | None, int | None, int | None, int | None]
    max_q_plus_var: int
    max_q_plus_at: int | None
    max_q_minus_var: int
    max_q_minus_at: int | None
    acc_max_p_plus_w: int
    acc_max_p_minus_w: int
    acc_max_q_plus_var: int
    acc_max_q_minus_var: int
    debiting_periods: int
    power_threshold_w: int
    power_threshold_count: int
    p_plus_w: int
    p_minus_w: int
    q_plus_var: int
    q_minus_var: int
    p_phase_w: Tri  # signed, import positive
    q_phase_var: Tri  # signed, inductive positive
    voltage_mv: Tri
    current_ma: Tri
    power_factor: int  # |P| / S of the meter, thousandths (1000 when S = 0)
    power_factor_phase: Tri
    hour_counter: int
    meter_status: MeterStatus
    rtc_status: RtcStatus
    software_version: str
    special_data_1: int
    special_data_2: int
    prepayment_enabled: bool
    prepayment_wh: int | None
    pulse_count: int
    pulses_rejected: int
    breaker: BreakerState
    breaker_reason: DisconnectReason
    ct_ratio: int
    ct_ratio_locked: bool
    secondary_a_plus_wh: int | None  # CT variant only: energy seen at the CT secondary
    secondary_a_minus_wh: int | None
    secondary_r_plus_varh: int | None
    secondary_r_minus_varh: int | None


__all__ = [
    "CLOCK_MAX_MS",
    "CLOCK_MIN_MS",
    "CT_RATIO_MAX",
    "MAX_PULSE_HZ",
    "MJ_PER_WH",
    "PREPAYMENT_MAX_KWH",
    "STATE_FORMAT",
    "BreakerState",
    "CommandRefused",
    "DisconnectReason",
    "MeterConfig",
    "MeterConfigError",
    "MeterSnapshot",
    "MeterStateError",
    "MeterStatus",
    "MeterTimeError",
    "Quad",
    "RtcStatus",
    "Tri",
]
