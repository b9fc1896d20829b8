"""The register map of the Kamstrup module twin: which record carries which meter register.

Each :class:`Register` names its exact record header (DIF, DIFEs, VIF, VIFEs) and how the
value is coded; docs/register-map.md is the same table for people, and a test keeps the two
in step. Codes are EN 13757-3:2018 wherever the standard has one (energy VIF 04h, export by
VIFE 3Ch, the FBh reactive and FDh voltage/current tables, phase and quadrant by VIFE FCh
01h-0Bh, maxima by the DIF function field, tariffs and subunits in DIFEs, dates type F).
Manufacturer records (VIF FFh + one code byte) only carry what the standard cannot say:
power factor, transformer ratio and its lock, active tariff and a few Kamstrup counters.

Values are written by :mod:`mbuskit.slave.kamstrup_codec` (the codec's value codecs, with the
twin's rollover and date rules). Also here: the selection-for-readout matching rule, on the
codec's reading of a selection record and of each register's header.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from ..codec.records import DataRecord, decode_records
from ..codec.vif import (
    COMBINABLE,
    EXT_FB,
    EXT_FD,
    PRIMARY,
    VIF_ANY,
    VIF_EXT_FB,
    VIF_EXT_FD,
    VIF_MANUFACTURER,
    VIFE_EXT_FC,
    VifEntry,
)
from .kamstrup_codec import encode_bcd, encode_int, encode_text, encode_type_f
from .meter import BreakerState, DisconnectReason, MeterSnapshot

Telegram = Literal["standard", "additional"]
Coding = Literal["int", "bcd", "date", "ascii"]
RawValue = int | datetime | str | None

DIF_GLOBAL_READOUT = 0x7F
DATA_FIELD_SELECTION = 0x8

BREAKER_CODES = {
    BreakerState.DISCONNECTED: 0, BreakerState.CONNECTED: 1, BreakerState.RELEASED: 2,
    BreakerState.ARMED: 3,
}
REASON_CODES = {
    DisconnectReason.NONE: 0, DisconnectReason.BUTTON: 1, DisconnectReason.COMMAND: 2,
    DisconnectReason.SMART: 3, DisconnectReason.PREPAYMENT: 4,
}


@dataclass(frozen=True, slots=True)
class Context:
    """What a register reads: the meter's snapshot plus the module's own counters."""

    snap: MeterSnapshot
    security_refusals: int


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    header: bytes  # DIF .. last VIFE, exactly as sent
    telegram: Telegram
    unit: str  # unit of the transmitted integer, e.g. "10 Wh", "0.1 V"
    description: str
    read: Callable[[Context], RawValue]  # None: the register does not exist on this meter
    coding: Coding = "int"

    @property
    def dif(self) -> int:
        return self.header[0]


# -- values -------------------------------------------------------------------------------

def utc(seconds: float | None) -> datetime | None:
    """The meter clock (unix seconds) as the naive date/time a type F field carries."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def encode_value(register: Register, value: RawValue) -> bytes:
    if register.coding == "ascii":
        return encode_text(str(value))
    if register.coding == "date":
        assert value is None or isinstance(value, datetime)
        return encode_type_f(value)
    assert isinstance(value, int)
    size = _VALUE_SIZE[register.name]
    if register.coding == "bcd":
        return encode_bcd(value, size)
    return encode_int(value, size)


def encode_register(register: Register, ctx: Context) -> bytes | None:
    value = register.read(ctx)
    if value is None and register.coding != "date":
        return None
    return register.header + encode_value(register, value)


# -- the map ----------------------------------------------------------------------------------

def _h(text: str) -> bytes:
    return bytes.fromhex(text)


def _tariff_dib(tariff: int, dif: int = 0x04) -> bytes:
    # tariff bits: two per DIFE (EN 13757-3 6.3.4); T1-T3 fit the first DIFE, T4 needs two
    if tariff < 4:
        return bytes((dif | 0x80, tariff << 4))
    return bytes((dif | 0x80, 0x80 | ((tariff & 3) << 4), (tariff >> 2) << 4))


def _e10(wh: int | None) -> int | None:
    return None if wh is None else wh // 10


def item(field: str, index: int, divisor: int = 1) -> Callable[[Context], RawValue]:
    """Reader of element ``index`` of a tuple field of the snapshot (tariff, phase, quadrant)."""

    def read(c: Context) -> RawValue:
        value = getattr(c.snap, field)[index]
        return None if value is None else int(value) // divisor

    return read


def moment(field: str, index: int) -> Callable[[Context], RawValue]:
    def read(c: Context) -> RawValue:
        return utc(getattr(c.snap, field)[index])

    return read


PHASES = ("L1", "L2", "L3")
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")


def _build() -> tuple[Register, ...]:
    r: list[Register] = []
    std: Telegram = "standard"
    add: Telegram = "additional"

    def reg(name: str, header: str | bytes, telegram: Telegram, unit: str,  # noqa: PLR0917
            description: str, read: Callable[[Context], RawValue],
            coding: Coding = "int") -> None:
        raw = _h(header) if isinstance(header, str) else header
        r.append(Register(name, raw, telegram, unit, description, read, coding))

    # ---- standard data telegram -------------------------------------------------------------
    reg("fabrication_number", "0C78", std, "-", "Serial number (fabrication no.), BCD8",
        lambda c: c.snap.serial_number, "bcd")
    reg("a_plus", "0404", std, "10 Wh", "Active energy A+ (import)",
        lambda c: c.snap.a_plus_wh // 10)
    reg("a_minus", "04843C", std, "10 Wh", "Active energy A- (export)",
        lambda c: c.snap.a_minus_wh // 10)
    reg("r_plus", "04FB8274", std, "10 varh", "Reactive energy R+ (import)",
        lambda c: c.snap.r_plus_varh // 10)
    reg("r_minus", "04FB82F43C", std, "10 varh", "Reactive energy R- (export)",
        lambda c: c.snap.r_minus_varh // 10)
    for t in (1, 2):
        reg(f"a_plus_t{t}", _tariff_dib(t) + b"\x04", std, "10 Wh",
            f"Active energy A+ tariff {t}",
            item("a_plus_tariff_wh", t - 1, 10))
    reg("p_plus_max", "142B", std, "W", "Max power P+ (debiting period, integration period mean)",
        lambda c: c.snap.max_p_plus_w)
    reg("p_plus", "042B", std, "W", "Actual power P+ (import)", lambda c: c.snap.p_plus_w)
    reg("p_minus", "04AB3C", std, "W", "Actual power P- (export)", lambda c: c.snap.p_minus_w)
    for i, ph in enumerate(PHASES):
        reg(f"voltage_{ph.lower()}", f"02FDC8FC0{i + 1}", std, "0.1 V", f"Voltage {ph}",
            item("voltage_mv", i, 100))
    for i, ph in enumerate(PHASES):
        reg(f"current_{ph.lower()}", f"04FDD9FC0{i + 1}", std, "mA", f"Current {ph}",
            item("current_ma", i))
    for i, ph in enumerate(PHASES):
        reg(f"power_{ph.lower()}", f"04ABFC0{i + 1}", std, "W",
            f"Actual power {ph} (signed, import positive)",
            item("p_phase_w", i))
    reg("hour_counter", "0422", std, "h", "Hour counter", lambda c: c.snap.hour_counter)
    reg("date_time", "046D", std, "type F", "Meter date and time",
        lambda c: utc(c.snap.meter_time), "date")

    # ---- additional data ----------------------------------------------------------------------
    for t in (3, 4):
        reg(f"a_plus_t{t}", _tariff_dib(t) + b"\x04", add, "10 Wh",
            f"Active energy A+ tariff {t}",
            item("a_plus_tariff_wh", t - 1, 10))
    for t in (1, 2, 3, 4):
        reg(f"a_minus_t{t}", _tariff_dib(t) + _h("843C"), add, "10 Wh",
            f"Active energy A- tariff {t}",
            item("a_minus_tariff_wh", t - 1, 10))
    for t in (1, 2, 3, 4):
        reg(f"r_plus_t{t}", _tariff_dib(t) + _h("FB8274"), add, "10 varh",
            f"Reactive energy R+ tariff {t}",
            item("r_plus_tariff_varh", t - 1, 10))
    for t in (1, 2, 3, 4):
        reg(f"r_minus_t{t}", _tariff_dib(t) + _h("FB82F43C"), add, "10 varh",
            f"Reactive energy R- tariff {t}",
            item("r_minus_tariff_varh", t - 1, 10))
    for i, q in enumerate(QUADRANTS):
        reg(f"r{i + 1}", f"04FB82F4FC{8 + i:02X}", add, "10 varh",
            f"Reactive energy R{i + 1} (quadrant {q})",
            item("r_quadrant_varh", i, 10))
    reg("a_plus_resettable", "84804004", add, "10 Wh", "Resettable A+ (subunit 2)",
        lambda c: c.snap.a_plus_resettable_wh // 10)
    reg("a_minus_resettable", "848040843C", add, "10 Wh", "Resettable A- (subunit 2)",
        lambda c: c.snap.a_minus_resettable_wh // 10)
    reg("p_plus_max_at", "146D", add, "type F", "Time of max power P+",
        lambda c: utc(c.snap.max_p_plus_at), "date")
    reg("p_minus_max", "14AB3C", add, "W", "Max power P-", lambda c: c.snap.max_p_minus_w)
    reg("p_minus_max_at", "14ED3C", add, "type F", "Time of max power P-",
        lambda c: utc(c.snap.max_p_minus_at), "date")
    reg("q_plus_max", "14FB14", add, "var", "Max reactive power Q+",
        lambda c: c.snap.max_q_plus_var)
    reg("q_plus_max_at", "14ED3B", add, "type F", "Time of max reactive power Q+",
        lambda c: utc(c.snap.max_q_plus_at), "date")
    reg("q_minus_max", "14FB943C", add, "var", "Max reactive power Q-",
        lambda c: c.snap.max_q_minus_var)
    for t in (1, 2, 3, 4):
        reg(f"p_plus_max_t{t}", _tariff_dib(t, 0x14) + b"\x2b", add, "W",
            f"Max power P+ tariff {t}",
            item("max_p_plus_tariff_w", t - 1))
        reg(f"p_plus_max_t{t}_at", _tariff_dib(t, 0x14) + b"\x6d", add, "type F",
            f"Time of max power P+ tariff {t}",
            moment("max_p_plus_tariff_at", t - 1), "date")
    reg("p_plus_max_accumulated", "04FB7B", add, "W", "Accumulated max power P+",
        lambda c: c.snap.acc_max_p_plus_w)
    reg("p_minus_max_accumulated", "04FBFB3C", add, "W", "Accumulated max power P-",
        lambda c: c.snap.acc_max_p_minus_w)
    reg("debiting_periods", "02FF0E", add, "-", "Number of debiting stops (periods closed)",
        lambda c: c.snap.debiting_periods)
    reg("q_plus", "04FB14", add, "var", "Actual reactive power Q+", lambda c: c.snap.q_plus_var)
    reg("q_minus", "04FB943C", add, "var", "Actual reactive power Q-",
        lambda c: c.snap.q_minus_var)
    for i, ph in enumerate(PHASES):
        reg(f"reactive_power_{ph.lower()}", f"04FB94FC0{i + 1}", add, "var",
            f"Actual reactive power {ph} (signed)", item("q_phase_var", i))
    reg("power_factor", "02FF01", add, "0.001", "Power factor |P|/S",
        lambda c: c.snap.power_factor)
    for i, ph in enumerate(PHASES):
        reg(f"power_factor_{ph.lower()}", f"02FF0{2 + i}", add, "0.001", f"Power factor {ph}",
            item("power_factor_phase", i))
    reg("power_threshold", "04AB48", add, "W", "Power threshold (upper limit of P+)",
        lambda c: c.snap.power_threshold_w)
    reg("power_threshold_count", "04AB49", add, "-", "Number of power threshold exceeds",
        lambda c: c.snap.power_threshold_count)
    reg("meter_status", "01FD17", add, "bits", "Meter status (error/status flags)",
        lambda c: int(c.snap.meter_status))
    reg("rtc_status", "01FF0B", add, "bits", "Clock status", lambda c: int(c.snap.rtc_status))
    reg("software_version", "0DFD0F", add, "ASCII", "Meter software version",
        lambda c: c.snap.software_version, "ascii")
    reg("active_tariff", "01FF07", add, "-", "Active tariff 1-4", lambda c: c.snap.tariff)
    reg("tariff_input", "01FD1B", add, "-", "Tariff input (230 V on terminal 13) 0/1",
        lambda c: int(c.snap.tariff_input))
    reg("prepayment_credit", "84C04004", add, "10 Wh", "Prepayment register (subunit 3)",
        lambda c: _e10(c.snap.prepayment_wh))
    reg("breaker", "01FD1A", add, "-",
        "Breaker state: 0 disconnected, 1 connected, 2 released, 3 armed",
        lambda c: BREAKER_CODES[c.snap.breaker])
    reg("breaker_reason", "01FF08", add, "-",
        "Disconnect reason: 0 none, 1 button, 2 command, 3 smart, 4 prepayment",
        lambda c: REASON_CODES[c.snap.breaker_reason])
    reg("pulse_input", "04FD61", add, "pulses", "Pulse input counter",
        lambda c: c.snap.pulse_count)
    reg("ct_ratio", "02FF05", add, "-", "Transformer (CT) ratio",
        lambda c: c.snap.ct_ratio if c.snap.variant == "ct" else None)
    reg("ct_ratio_locked", "01FF06", add, "-", "Transformer ratio locked 0/1",
        lambda c: int(c.snap.ct_ratio_locked) if c.snap.variant == "ct" else None)
    reg("secondary_a_plus", "844003", add, "Wh", "CT secondary A+ (subunit 1)",
        lambda c: c.snap.secondary_a_plus_wh)
    reg("secondary_a_minus", "8440833C", add, "Wh",
        "CT secondary A- (subunit 1)", lambda c: c.snap.secondary_a_minus_wh)
    reg("secondary_r_plus", "8440FB8273", add, "varh", "CT secondary R+ (subunit 1)",
        lambda c: c.snap.secondary_r_plus_varh)
    reg("secondary_r_minus", "8440FB82F33C", add, "varh", "CT secondary R- (subunit 1)",
        lambda c: c.snap.secondary_r_minus_varh)
    reg("special_data_1", "0CFF0C", add, "BCD8", "Special data 1",
        lambda c: c.snap.special_data_1, "bcd")
    reg("special_data_2", "0CFF0D", add, "BCD8", "Special data 2",
        lambda c: c.snap.special_data_2, "bcd")
    reg("security_refusals", "02FF09", add, "-",
        "Commands refused for missing or wrong encryption (module counter)",
        lambda c: c.security_refusals)
    return tuple(r)


REGISTERS: tuple[Register, ...] = _build()
REGISTER_BY_NAME: dict[str, Register] = {reg.name: reg for reg in REGISTERS}
STANDARD: tuple[Register, ...] = tuple(x for x in REGISTERS if x.telegram == "standard")
ADDITIONAL: tuple[Register, ...] = tuple(x for x in REGISTERS if x.telegram == "additional")


# -- the registers as the codec reads them ----------------------------------------------------

def _as_read(header: bytes) -> DataRecord:
    """The record a register header starts, as the codec decodes it (value bytes zero; 8 is
    the longest fixed-length value): its DIB and VIB fields and the length of its value."""
    return decode_records(header + bytes(8), strict=False)[0]


_READ: dict[str, DataRecord] = {reg.name: _as_read(reg.header) for reg in REGISTERS}
# value bytes of each register, from its DIF's data field (EN 13757-3 table 4)
_VALUE_SIZE: dict[str, int] = {name: len(rec.data) for name, rec in _READ.items()}


# -- readout selection ------------------------------------------------------------------------

_DURATION_UNITS = frozenset(("s", "min", "h", "d"))


def _scale_free(entry: VifEntry | None, code: int) -> tuple[str, ...] | int:
    """What a VIF code names, whatever its resolution: the codec's quantity and unit (the
    decimal exponent dropped), the quantity alone for a duration (its s/min/h/d code is its
    resolution), the code itself when the standard reserves it."""
    if entry is None:
        return code
    if entry.unit in _DURATION_UNITS:
        return (entry.quantity,)
    return (entry.quantity, entry.unit)


def _scales_only(code: int) -> bool:
    # a multiplicative correction (VIFE 70h-77h, 7Dh): changes the resolution, not the register
    entry = COMBINABLE[code]
    return entry is not None and not entry.qualifier and entry.offset is None


def vib_key(record: DataRecord) -> tuple[object, ...]:
    """The quantity a record's VIB names, with its decimal exponent and multiplicative-
    correction VIFEs removed: a selection asks for a register, not for a resolution.

    Read from the codec's VIF tables. Every other VIFE counts with its code, 7Ch (FCh) with
    the code after it; a manufacturer VIF (7Fh/FFh) counts with all its VIFEs as they are.
    """
    assert record.vif is not None
    vif = record.vif & 0x7F
    codes = [c & 0x7F for c in record.vife]
    if vif == VIF_MANUFACTURER:
        return (vif, *codes)
    if vif in (VIF_EXT_FB, VIF_EXT_FD) and codes:
        table = EXT_FB if vif == VIF_EXT_FB else EXT_FD
        head: tuple[object, ...] = (vif, _scale_free(table[codes[0]], codes[0]))
        rest = codes[1:]
    else:
        head = (_scale_free(PRIMARY[vif], vif),)
        rest = codes
    tail: list[int] = []
    i = 0
    while i < len(rest):
        code = rest[i]
        if code == VIFE_EXT_FC and i + 1 < len(rest):  # FCh + its code
            tail += [code, rest[i + 1]]
            i += 2
            continue
        if not _scales_only(code):
            tail.append(code)
        i += 1
    return (*head, *tail)


def dib_key(record: DataRecord) -> tuple[int, int, int, int]:
    """(function, storage, tariff, subunit) of a record's DIB (EN 13757-3 6.3)."""
    return int(record.function), record.storage, record.tariff, record.subunit


_KEYS: dict[str, tuple[tuple[int, int, int, int], tuple[object, ...]]] = {
    name: (dib_key(rec), vib_key(rec)) for name, rec in _READ.items()}


def selection_matches(selection: DataRecord, register: Register) -> bool:
    """Whether a selection-for-readout record (decoded by the codec) names ``register``:
    the same DIB meaning, and the same VIB meaning or VIF 7Eh ("any VIF")."""
    dib, vib = _KEYS[register.name]
    if dib_key(selection) != dib:
        return False
    if selection.vif is not None and selection.vif & 0x7F == VIF_ANY:
        return True
    return vib_key(selection) == vib


__all__ = [
    "ADDITIONAL",
    "REGISTERS",
    "REGISTER_BY_NAME",
    "STANDARD",
    "Context",
    "Register",
    "dib_key",
    "encode_register",
    "selection_matches",
    "vib_key",
]
