"""The saved state of the meter model: which registers it keeps, and how they are checked.

:meth:`Meter.to_state <mbuskit.slave.meter.Meter.to_state>` and ``Meter.from_state`` use
these. A state is ``{"format": STATE_FORMAT, "config": MeterConfig.to_dict(), "registers":
{...}}``; every register is named after the Meter attribute it restores, so the names below are
the file format: renaming an attribute breaks every state file written before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .meter_types import (
    STATE_FORMAT,
    BreakerState,
    DisconnectReason,
    MeterConfig,
    MeterConfigError,
    MeterStateError,
)

if TYPE_CHECKING:  # only for the hints: meter imports this module
    from .meter import Meter

# integer register names kept in the state (mJ on the primary side unless noted)
SCALARS = (
    "t", "clock_offset_ms", "a_plus", "a_minus", "r_plus", "r_minus",
    "res_a_plus", "res_a_minus", "win_end", "win_ap", "win_am", "win_qp", "win_qm",
    "max_p_plus", "max_p_minus", "max_q_plus", "max_q_minus",
    "acc_p_plus", "acc_p_minus", "acc_q_plus", "acc_q_minus", "debiting_periods",
    "threshold_count", "op_ms", "rtc", "special_1", "special_2", "credit",
    "pulse_count", "pulses_rejected", "ct_ratio", "debit_month",
    "sec_a_plus", "sec_a_minus", "sec_r_plus", "sec_r_minus",  # uJ at the CT secondary
)  # fmt: skip
OPTIONALS = (
    "max_p_plus_at", "max_p_minus_at", "max_q_plus_at", "max_q_minus_at",
    "auto_at", "tariff_override", "last_pulse",
)  # fmt: skip
QUADS = (
    "rq", "t_a_plus", "t_a_minus", "t_r_plus", "t_r_minus",
    "max_tp_plus", "max_tp_minus",
)  # fmt: skip
OPT_QUADS = ("max_tp_plus_at", "max_tp_minus_at")


def meter_state(meter: Meter) -> dict[str, Any]:
    """JSON-safe (ints, strings, bools, None, lists); restoring it gives the same meter."""
    regs: dict[str, Any] = {name: getattr(meter, name) for name in SCALARS + OPTIONALS}
    for name in QUADS + OPT_QUADS:
        regs[name] = list(getattr(meter, name))
    regs["ct_locked"] = meter.ct_locked
    regs["tariff_input"] = meter.tariff_input
    regs["breaker"] = meter.breaker.value
    regs["reason"] = meter.reason.value
    return {"format": STATE_FORMAT, "config": meter.config.to_dict(), "registers": regs}


def parse_state(state: dict[str, Any]) -> tuple[MeterConfig, dict[str, Any]]:
    """The config and the register object of a saved state, the format and config checked."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise MeterStateError(f"not a meter state of format {STATE_FORMAT}")
    config_data, regs = state.get("config"), state.get("registers")
    if not isinstance(config_data, dict) or not isinstance(regs, dict):
        raise MeterStateError("meter state needs 'config' and 'registers' objects")
    try:
        config = MeterConfig.from_dict(config_data)
    except MeterConfigError as exc:
        raise MeterStateError(f"saved config is invalid: {exc}") from exc
    return config, regs


def restore_registers(meter: Meter, regs: dict[str, Any],
                      month_index: Callable[[], int]) -> None:
    """Set the saved registers on a meter built from the saved config.

    ``month_index`` is the meter's month on its restored clock, for states saved before
    monthly debiting existed; it is called inside the checks because a clock restored far out
    of range makes it raise ValueError, which is a bad state like any other.
    """
    try:
        for name in SCALARS:
            if name == "debit_month" and name not in regs:
                continue  # states saved before monthly debiting existed
            setattr(meter, name, _int(regs[name], name))
        if "debit_month" not in regs:
            meter.debit_month = month_index()
        for name in OPTIONALS:
            value = regs[name]
            setattr(meter, name, None if value is None else _int(value, name))
        for name in QUADS:
            setattr(meter, name, [_int(v, name) for v in _list4(regs[name], name)])
        for name in OPT_QUADS:
            setattr(
                meter,
                name,
                [None if v is None else _int(v, name) for v in _list4(regs[name], name)],
            )
        meter.ct_locked = _bool(regs["ct_locked"], "ct_locked")
        meter.tariff_input = _bool(regs["tariff_input"], "tariff_input")
        meter.breaker = BreakerState(regs["breaker"])
        meter.reason = DisconnectReason(regs["reason"])
    except KeyError as exc:
        raise MeterStateError(f"meter state lacks register {exc.args[0]!r}") from exc
    except ValueError as exc:
        if isinstance(exc, MeterStateError):
            raise
        raise MeterStateError(f"bad value in meter state: {exc}") from exc
    if meter.tariff_override not in (None, 1, 2, 3, 4):
        raise MeterStateError("tariff_override must be 1..4 or null")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MeterStateError(f"register {name!r} must be an integer, got {value!r}")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise MeterStateError(f"{name!r} must be true or false, got {value!r}")
    return value


def _list4(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != 4:
        raise MeterStateError(f"register {name!r} must be a list of 4")
    return value


__all__ = [
    "OPTIONALS",
    "OPT_QUADS",
    "QUADS",
    "SCALARS",
    "meter_state",
    "parse_state",
    "restore_registers",
]
