"""EN 13757-3 value codecs: the bytes of one data field to a value and back.

Everything here codes a value whose type and length the record structure has already fixed
(``records`` walks the DIF/DIFE/VIF/VIFE and calls in here); nothing here knows a DIF or a
VIF, so this module imports no other codec module and ``records`` imports it, never the
other way.

* BCD, EN 13757-3:2018 annex A type A: digits least significant byte first; a high nibble F
  in the most significant byte is negative. Any other non-decimal digit gives ``None`` (the
  caller marks the record invalid and keeps the bytes).
* Integers, annex A types B (signed) / C and D (unsigned): little-endian two's complement.
* real32, annex A type H: IEEE 754 single precision, little-endian.
* Dates, annex A: 2 bytes type G (date), 3 bytes type J (time of day), 4 bytes type F (date
  and time to the minute), 6 bytes type I (to the second). Type F years use the hundred-year
  bits: year = 1900 + 100 * HY + YY, except HY = 0 and YY <= 80, which old meters send for
  2000-2080. Types G and I carry no century: YY <= 80 is 20YY, else 19YY. The invalid bit
  (IV) or an impossible date decodes to ``None``.
* Variable length (data field D), EN 13757-3:2018 table 5: LVAR 0x00-0xBF is text of LVAR
  bytes sent last character first (we reverse it, as libmbus does); 0xC0-0xC9 / 0xD0-0xD9 a
  positive / negative BCD number of (LVAR - 0xC0) * 2 digits, i.e. LVAR - 0xC0 bytes
  (libmbus reads twice as many bytes, a known bug we do not copy); 0xE0-0xEF binary of
  LVAR - 0xE0 bytes; 0xF0-0xF4 binary of 4 * (LVAR - 0xEC) bytes; 0xF5 48 and 0xF6 64
  binary bytes; 0xF7-0xFF are reserved and a DecodeError (the length is unknown). Binary
  values are returned as ``bytes`` in transmission order.
* Scaling by the decimal exponent the VIF and its multiplicative VIFE corrections give
  (``mbuskit.codec.vif``): value = raw * 10**exponent, an ``int`` when the exponent is >= 0,
  an exact ``Decimal`` when it is negative, a ``float`` for real32. An additive correction
  (VIFE 0x78-0x7B) adds 10**offset in the unit of the value.

The hot path of ``records.decode_records`` inlines the common cases of :func:`decode_bcd`
and :func:`scale` (a call per record costs measurably); these functions are the reference
and handle the rest.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal

from ..errors import DecodeError, EncodeError

# The value of a data record (``DataRecord.value``): int when exact and integral, Decimal
# for a negative decimal exponent, float for real32, datetime/date/time for dates, str for
# text, bytes for binary data, None when there is no value or it is invalid.
Value = int | float | Decimal | datetime | date | time | str | bytes | None

_D = Decimal  # one global lookup instead of two on every scaled value

# 10**n for every exponent a VIF and its VIFEs can reach; indexing beats ``10 ** n``.
POW10: tuple[int, ...] = tuple(10 ** n for n in range(128))


# ----------------------------------------------------------------------------------------
# BCD and integers (annex A types A, B, C, D).

def decode_bcd(data: bytes) -> int | None:
    """Type A BCD of ``data``; None when a digit is not decimal (other than a leading F)."""
    # Type A: digits LSB first; a high nibble F in the last byte marks a negative value.
    digits = data[::-1].hex()
    if digits.isdigit():
        return int(digits)
    if digits[:1] == "f" and digits[1:].isdigit():
        return -int(digits[1:]) if len(digits) > 1 else None
    return None


def encode_bcd(raw: int, size: int) -> bytes:
    """``raw`` as ``size`` bytes of type A BCD, negative with a leading F nibble."""
    digits = size * 2
    if raw < 0:
        text = str(-raw)
        if len(text) > digits - 1:
            raise EncodeError(f"{raw} needs more than {digits - 1} BCD digits plus sign")
        text = "f" + text.rjust(digits - 1, "0")
    else:
        text = str(raw)
        if len(text) > digits:
            raise EncodeError(f"{raw} needs more than {digits} BCD digits")
        text = text.rjust(digits, "0")
    return bytes.fromhex(text)[::-1]


def encode_int(raw: int, size: int, signed: bool) -> bytes:
    """``raw`` as ``size`` little-endian bytes, type B when ``signed`` else C/D."""
    try:
        return raw.to_bytes(size, "little", signed=signed)
    except OverflowError:
        raise EncodeError(f"{raw} does not fit in {size} bytes"
                          f" ({'signed' if signed else 'unsigned'})") from None


# ----------------------------------------------------------------------------------------
# Scaling by the VIF's decimal exponent and additive correction.

def scale(raw: int | float, exponent: int, offset: int | None) -> int | float | Decimal:
    """raw * 10**exponent (+ 10**offset): exact for integers, float for a float ``raw``."""
    if isinstance(raw, float):
        value = raw * POW10[exponent] if exponent >= 0 else raw / POW10[-exponent]
        return value + 10.0 ** offset if offset is not None else value
    if offset is not None:
        # Additive correction: raw * 10^exponent + 10^offset, kept exact.
        total = _D(raw).scaleb(exponent) + _D(1).scaleb(offset)
        return int(total) if exponent >= 0 and offset >= 0 else total
    if exponent >= 0:
        return raw * POW10[exponent]
    return _D(raw).scaleb(exponent)


def unscale(value: Value, exponent: int, offset: int | None) -> int:
    """The raw integer that :func:`scale` turns into ``value``; EncodeError when none does."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
        raise EncodeError(f"a number is needed, got {type(value).__name__}")
    # repr() of a float is its shortest round-tripping decimal: 0.1 stays 0.1, not
    # 0.1000000000000000055511151231257827
    number = _D(repr(value)) if isinstance(value, float) else _D(value)
    if not number.is_finite():
        raise EncodeError(f"{value} is not finite")
    if offset is not None:
        number -= _D(1).scaleb(offset)
    scaled = number.scaleb(-exponent)
    if scaled != scaled.to_integral_value():
        raise EncodeError(f"{value} is not a multiple of 10^{exponent}")
    return int(scaled)


def encode_real32(value: Value, exponent: int, offset: int | None) -> bytes:
    """Type H: ``value`` unscaled to the VIF's unit as a little-endian IEEE 754 single."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise EncodeError(f"real32 needs a number, got {type(value).__name__}")
    number = float(value) - (10.0 ** offset if offset is not None else 0.0)
    number = number / 10 ** exponent if exponent >= 0 else number * 10 ** -exponent
    try:
        return struct.pack("<f", number)
    except OverflowError:
        raise EncodeError(f"{value} overflows real32") from None


# ----------------------------------------------------------------------------------------
# Dates and times (annex A types F, G, I, J).

def _century(yy: int) -> int:
    # Types G and I have no century bits; 81-99 are the years meters were made before 2000.
    return 2000 + yy if yy <= 80 else 1900 + yy


def _two_digit_year(year: int) -> int:
    # The inverse of _century: the years a type G or I date can carry.
    if not 1981 <= year <= 2080:
        raise EncodeError(f"a date without century bits covers 1981-2080, not {year}")
    return year % 100


def decode_type_g(data: bytes) -> date | None:
    """Type G (CP16) date, or None when the date is impossible."""
    b0, b1 = data[0], data[1]
    yy = (b0 >> 5) | ((b1 >> 1) & 0x78)
    try:
        return date(_century(yy), b1 & 0x0F, b0 & 0x1F) if yy <= 99 else None
    except ValueError:
        return None


def decode_type_f(data: bytes) -> datetime | None:
    """Type F (CP32) date and time; None when the IV bit is set or the date is impossible."""
    b0, b1, b2, b3 = data[0], data[1], data[2], data[3]
    if b0 & 0x80:
        return None
    yy = (b2 >> 5) | ((b3 >> 1) & 0x78)
    hy = (b1 >> 5) & 0x03
    if yy > 99:
        return None
    year = 2000 + yy if hy == 0 and yy <= 80 else 1900 + 100 * hy + yy
    try:
        return datetime(year, b3 & 0x0F, b2 & 0x1F, b1 & 0x1F, b0 & 0x3F)
    except ValueError:
        return None


def decode_type_i(data: bytes) -> datetime | None:
    """Type I (CP48) date and time with seconds; None when IV (byte 1 bit 7) is set."""
    if data[1] & 0x80:
        return None
    yy = (data[3] >> 5) | ((data[4] >> 1) & 0x78)
    if yy > 99:
        return None
    try:
        return datetime(_century(yy), data[4] & 0x0F, data[3] & 0x1F, data[2] & 0x1F,
                        data[1] & 0x3F, data[0] & 0x3F)
    except ValueError:
        return None


def decode_type_j(data: bytes) -> time | None:
    """Type J (CP24) time of day."""
    try:
        return time(data[2] & 0x1F, data[1] & 0x3F, data[0] & 0x3F)
    except ValueError:
        return None


# Data length -> date type decoder, for a VIF (or combinable VIFE) that names a date.
DATE_DECODERS: dict[int, Callable[[bytes], date | time | None]] = {
    2: decode_type_g, 3: decode_type_j, 4: decode_type_f, 6: decode_type_i,
}
DATE_SIZES = frozenset((2, 3, 4, 6))


def encode_type_g(value: date) -> bytes:
    """Type G (CP16): day, month, two-digit year (1981-2080)."""
    yy = _two_digit_year(value.year)
    return bytes(((value.day & 0x1F) | ((yy & 0x07) << 5),
                  (value.month & 0x0F) | ((yy & 0x78) << 1)))


def encode_type_f(value: datetime) -> bytes:
    """Type F (CP32) to the minute, with the hundred-year bits (years 1981-2299)."""
    if not 1981 <= value.year <= 2299:
        raise EncodeError(f"type F cannot carry year {value.year} (1981-2299)")
    hy, yy = divmod(value.year - 1900, 100)
    return bytes((
        value.minute & 0x3F,
        (value.hour & 0x1F) | (hy << 5),
        (value.day & 0x1F) | ((yy & 0x07) << 5),
        (value.month & 0x0F) | ((yy & 0x78) << 1),
    ))


def encode_type_i(value: datetime) -> bytes:
    """Type I (CP48) to the second; day of week filled in, week number 0 (not given)."""
    yy = _two_digit_year(value.year)
    return bytes((
        value.second & 0x3F,
        value.minute & 0x3F,
        (value.hour & 0x1F) | (value.isoweekday() << 5),
        (value.day & 0x1F) | ((yy & 0x07) << 5),
        (value.month & 0x0F) | ((yy & 0x78) << 1),
        0,
    ))


def encode_type_j(value: time) -> bytes:
    """Type J (CP24) time of day."""
    return bytes((value.second, value.minute, value.hour))


def encode_date(value: Value, size: int) -> bytes:
    """``value`` in the date type of a ``size``-byte data field (one of DATE_SIZES)."""
    if size == 3:
        if not isinstance(value, time):
            raise EncodeError("a type J record needs a datetime.time")
        return encode_type_j(value)
    if size == 2:
        if not isinstance(value, date) or isinstance(value, datetime):
            raise EncodeError("a type G record needs a datetime.date")
        return encode_type_g(value)
    if not isinstance(value, datetime):
        raise EncodeError("a type F/I record needs a datetime.datetime")
    if size == 4:
        if value.second or value.microsecond:
            raise EncodeError("type F has no seconds")
        return encode_type_f(value)
    if value.microsecond:
        raise EncodeError("type I has no fractions of a second")
    return encode_type_i(value)


# ----------------------------------------------------------------------------------------
# Variable length values (data field D, EN 13757-3:2018 table 5).

def lvar_length(lvar: int, pos: int, index: int) -> int:
    """Value bytes after LVAR ``lvar``; ``pos`` (just after the LVAR) and ``index`` (the
    record number) only place the DecodeError of a reserved LVAR."""
    if lvar <= 0xBF:
        return lvar
    if 0xC0 <= lvar <= 0xC9:
        return lvar - 0xC0
    if 0xD0 <= lvar <= 0xD9:
        return lvar - 0xD0
    if 0xE0 <= lvar <= 0xEF:
        return lvar - 0xE0
    if 0xF0 <= lvar <= 0xF4:
        return 4 * (lvar - 0xEC)
    if lvar == 0xF5:
        return 48
    if lvar == 0xF6:
        return 64
    raise DecodeError(f"reserved LVAR {lvar:02X}", offset=pos - 1, record=index,
                      expected="LVAR 00-C9, D0-D9, E0-F6")


def lvar_value(lvar: int | None, data: bytes, exponent: int, offset: int | None,
               valid: bool) -> tuple[Value, bool]:
    """The value of LVAR bytes ``data`` and ``valid``, which turns False on a bad BCD digit."""
    assert lvar is not None
    if lvar <= 0xBF:
        return data[::-1].decode("latin-1"), valid
    if lvar <= 0xD9:
        digits = data[::-1].hex()
        if not digits.isdigit() and digits:
            return None, False
        number = int(digits) if digits else 0
        if lvar >= 0xD0:
            number = -number
        return scale(number, exponent, offset), valid
    return data, valid


def encode_lvar(value: Value, exponent: int, offset: int | None) -> bytes:
    """LVAR byte and value bytes: text for a str, binary for bytes, else signed BCD."""
    if isinstance(value, str):
        text = value.encode("latin-1", errors="strict") if value.isascii() else None
        if text is None or len(text) > 0xBF:
            raise EncodeError("LVAR text must be ASCII of at most 191 characters")
        return bytes((len(text),)) + text[::-1]
    if isinstance(value, (bytes, bytearray)):
        n = len(value)
        if n <= 15:
            return bytes((0xE0 + n,)) + bytes(value)
        for code, size in ((0xF0, 16), (0xF1, 20), (0xF2, 24), (0xF3, 28), (0xF4, 32),
                           (0xF5, 48), (0xF6, 64)):
            if n == size:
                return bytes((code,)) + bytes(value)
        raise EncodeError(f"no LVAR code for {n} binary bytes")
    raw = unscale(value, exponent, offset)
    digits = str(abs(raw))
    if len(digits) % 2:
        digits = "0" + digits
    if len(digits) > 18:
        raise EncodeError(f"{raw} needs more than 18 BCD digits")
    body = bytes.fromhex(digits)[::-1] if raw else b""
    return bytes(((0xD0 if raw < 0 else 0xC0) + len(body),)) + body


__all__ = [
    "DATE_DECODERS",
    "DATE_SIZES",
    "POW10",
    "Value",
    "decode_bcd",
    "decode_type_f",
    "decode_type_g",
    "decode_type_i",
    "decode_type_j",
    "encode_bcd",
    "encode_date",
    "encode_int",
    "encode_lvar",
    "encode_real32",
    "encode_type_f",
    "encode_type_g",
    "encode_type_i",
    "encode_type_j",
    "lvar_length",
    "lvar_value",
    "scale",
    "unscale",
]
