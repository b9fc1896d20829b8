"""The register map of the Kamstrup module twin: which record carries which meter register.

Each :class:`Register` names its exact record header (DIF, DIFEs, VIF, VIFEs) and how the
value is coded; docs/register-map.md is the same table for people, and a test keeps the two
in step. Codes are EN 13757-3:2018 wherever the standard has one (energy VIF 04h, export by
VIFE 3Ch, the FBh reactive and FDh voltage/current tables, phase and quadrant by VIFE FCh
01h-0Bh, maxima by the DIF function field, tariffs and subunits in DIFEs, dates type F).
Manufacturer records (VIF FFh + one code byte) only carry what the standard cannot say:
power factor, transformer ratio and its lock, active tariff and a few Kamstrup counters.

Also here: the small strict parser of master-to-slave records (the module reads commands
and readout selections with it) and the selection-for-readout matching rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from ..errors import DecodeError, EncodeError
from .meter import BreakerState, DisconnectReason, MeterSnapshot

Telegram = Literal["standard", "additional"]
Coding = Literal["int", "bcd", "date", "ascii"]
RawValue = int | datetime | str | None

# DIF data field -> value length (EN 13757-3 table 4); 0Dh (LVAR) and 0Fh are handled apart
_DATA_LENGTH = {0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x5: 4, 0x6: 6, 0x7: 8, 0x8: 0,
                0x9: 1, 0xA: 2, 0xB: 3, 0xC: 4, 0xE: 6}
DIF_FILLER = 0x2F
DIF_MANUFACTURER = 0x0F
DIF_MORE_FOLLOWS = 0x1F
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


# -- value codecs ---------------------------------------------------------------------------

def encode_int(value: int, size: int) -> bytes:
    """Signed integer type B, LSB first; a register beyond the field rolls over like the
    meter's display does rather than stopping the read-out."""
    return (value % (1 << (8 * size))).to_bytes(size, "little")


def encode_bcd(value: int, size: int) -> bytes:
    digits = 2 * size
    text = f"{value % 10**digits:0{digits}d}"
    return bytes(int(text[i : i + 2], 16) for i in range(digits - 2, -2, -2))


def decode_bcd(data: bytes) -> int:
    """Packed BCD, LSB first; a nibble above 9 is an error, not a number."""
    value = 0
    for byte in reversed(data):
        hi, lo = byte >> 4, byte & 0x0F
        if hi > 9 or lo > 9:
            raise DecodeError(f"{data.hex()} is not packed BCD")
        value = value * 100 + hi * 10 + lo
    return value


def encode_type_f(when: datetime | None) -> bytes:
    """Date and time type F (EN 13757-3 annex A, CP32). None is sent with the IV bit set."""
    if when is None:
        return b"\x80\x00\x00\x00"
    if not 1900 <= when.year <= 2099:
        raise EncodeError(f"type F covers 1900-2099, not {when.year}")
    hy, y = divmod(when.year - 1900, 100)
    return bytes((
        when.minute & 0x3F,
        (when.hour & 0x1F) | (hy << 5),
        (when.day & 0x1F) | ((y & 0x07) << 5),
        (when.month & 0x0F) | ((y >> 3) << 4),
    ))


def decode_type_f(data: bytes) -> datetime:
    """Type F to a naive datetime; an invalid (IV) or impossible date is an error."""
    if len(data) != 4:
        raise DecodeError(f"type F is 4 bytes, got {len(data)}")
    if data[0] & 0x80:
        raise DecodeError("date/time marked invalid (IV bit)")
    minute = data[0] & 0x3F
    hour = data[1] & 0x1F
    hy = (data[1] >> 5) & 0x03
    day = data[2] & 0x1F
    year = 1900 + 100 * hy + ((data[2] >> 5) | ((data[3] >> 4) << 3))
    month = data[3] & 0x0F
    try:
        return datetime(year, month, day, hour, minute)
    except ValueError as exc:
        raise DecodeError(f"type F {data.hex()} is no date: {exc}") from exc


def utc(seconds: float | None) -> datetime | None:
    """The meter clock (unix seconds) as the naive date/time a type F field carries."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def encode_value(register: Register, value: RawValue) -> bytes:
    field = register.dif & 0x0F
    if register.coding == "ascii":
        text = str(value).encode("ascii", "replace")[:0xBF]
        # EN 13757-3 6.3.3: LVAR 00h-BFh = that many ASCII characters, last character first
        return bytes((len(text),)) + text[::-1]
    if register.coding == "date":
        assert value is None or isinstance(value, datetime)
        return encode_type_f(value)
    assert isinstance(value, int)
    size = _DATA_LENGTH[field]
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


# -- master-to-slave records ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as a device reads it: header split into DIB and VIB, value bytes apart."""

    dib: bytes  # DIF + DIFEs
    vib: bytes  # VIF + VIFEs (empty for special DIFs)
    data: bytes
    offset: int

    @property
    def dif(self) -> int:
        return self.dib[0]

    @property
    def header(self) -> bytes:
        return self.dib + self.vib


def parse_records(buf: bytes) -> list[RawRecord]:
    """Split application data into records; idle fillers (2Fh) are skipped.

    Strict: a truncated record, an LVAR or manufacturer block (no command uses one) and more
    than 10 DIFEs/VIFEs are errors that name the offset.
    """
    out: list[RawRecord] = []
    pos = 0
    while pos < len(buf):
        start = pos
        dif = buf[pos]
        if dif == DIF_FILLER:
            pos += 1
            continue
        if dif == DIF_GLOBAL_READOUT:
            out.append(RawRecord(bytes((dif,)), b"", b"", start))
            pos += 1
            continue
        if dif & 0x0F in (0x0D, 0x0F):  # LVAR, manufacturer data, reserved specials
            raise DecodeError(f"DIF {dif:02X} is not accepted in a command", offset=pos)
        pos = _extension_end(buf, pos, "DIFE")
        dib = buf[start:pos]
        vstart = pos
        if pos >= len(buf):
            raise DecodeError("record ends before its VIF", offset=pos, expected="VIF")
        pos = _extension_end(buf, pos, "VIFE")
        # after VIFE FCh (combinable extension) the next byte is its code, chained by bit 7
        vib = buf[vstart:pos]
        size = _DATA_LENGTH[dif & 0x0F]
        if pos + size > len(buf):
            raise DecodeError("record value truncated", offset=len(buf),
                              expected=f"{size} value bytes")
        out.append(RawRecord(bytes(dib), bytes(vib), bytes(buf[pos : pos + size]), start))
        pos += size
    return out


def _extension_end(buf: bytes, pos: int, what: str) -> int:
    count = 0
    while buf[pos] & 0x80:
        pos += 1
        count += 1
        if count > 10:
            raise DecodeError(f"more than 10 {what}s", offset=pos)
        if pos >= len(buf):
            raise DecodeError(f"record ends inside its {what}s", offset=pos, expected=what)
    return pos + 1


# -- readout selection ------------------------------------------------------------------------

# ranges whose low bits are the decimal exponent (EN 13757-3 tables 10, 12, 14)
_PRIMARY_SCALE = ((0x00, 0x1F, 0x07), (0x20, 0x27, 0x03), (0x28, 0x57, 0x07),
                  (0x58, 0x6B, 0x03), (0x70, 0x77, 0x03))
_FB_SCALE = ((0x00, 0x05, 0x01), (0x14, 0x17, 0x03), (0x2C, 0x2F, 0x03), (0x34, 0x37, 0x03),
             (0x78, 0x7F, 0x07))
_FD_SCALE = ((0x00, 0x07, 0x03), (0x40, 0x5F, 0x0F))


def _unscaled(code: int, table: tuple[tuple[int, int, int], ...]) -> int:
    for low, high, mask in table:
        if low <= code <= high:
            return code & ~mask
    return code


def dib_key(dib: bytes) -> tuple[int, int, int, int]:
    """(function, storage, tariff, subunit) of a DIB (EN 13757-3 6.3)."""
    dif = dib[0]
    function = (dif >> 4) & 0x03
    storage = (dif >> 6) & 0x01
    tariff = subunit = 0
    for n, dife in enumerate(dib[1:]):
        storage |= (dife & 0x0F) << (1 + 4 * n)
        tariff |= ((dife >> 4) & 0x03) << (2 * n)
        subunit |= ((dife >> 6) & 0x01) << n
    return function, storage, tariff, subunit


def vib_key(vib: bytes) -> tuple[int, ...]:
    """The quantity a VIB names, with the decimal exponent and multiplicative-correction
    VIFEs removed: a selection asks for a register, not for a resolution."""
    codes = [b & 0x7F for b in vib]
    if not codes:
        return ()
    head: list[int] = []
    rest = codes[1:]
    if codes[0] == 0x7B and rest:
        head = [0x7B, _unscaled(rest[0], _FB_SCALE)]
        rest = rest[1:]
    elif codes[0] == 0x7D and rest:
        head = [0x7D, _unscaled(rest[0], _FD_SCALE)]
        rest = rest[1:]
    elif codes[0] == 0x7F:
        return tuple(codes)
    else:
        head = [_unscaled(codes[0], _PRIMARY_SCALE)]
    tail: list[int] = []
    i = 0
    while i < len(rest):
        code = rest[i]
        if code == 0x7C and i + 1 < len(rest):  # FCh + its code
            tail += [0x7C, rest[i + 1]]
            i += 2
            continue
        if not (0x70 <= code <= 0x77 or code == 0x7D):
            tail.append(code)
        i += 1
    return (*head, *tail)


VIF_ANY = 0x7E


def selection_matches(selection: RawRecord, register: Register) -> bool:
    dib, vib = _split_header(register.header)
    if dib_key(selection.dib) != dib_key(dib):
        return False
    if selection.vib and selection.vib[0] & 0x7F == VIF_ANY:
        return True
    return vib_key(selection.vib) == vib_key(vib)


def _split_header(header: bytes) -> tuple[bytes, bytes]:
    pos = _extension_end(header, 0, "DIFE")
    return header[:pos], header[pos:]


__all__ = [
    "ADDITIONAL",
    "REGISTERS",
    "REGISTER_BY_NAME",
    "STANDARD",
    "Context",
    "RawRecord",
    "Register",
    "decode_bcd",
    "decode_type_f",
    "encode_bcd",
    "encode_int",
    "encode_register",
    "encode_type_f",
    "parse_records",
    "selection_matches",
    "vib_key",
]
