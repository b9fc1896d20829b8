"""The record bytes of the Kamstrup twin: mbuskit.codec, and the twin's rules where they differ.

The module reads its commands with the codec's :func:`~mbuskit.codec.records.decode_records`
(``from_master``: VIFE 00h-0Fh are object actions) into the codec's
:class:`~mbuskit.codec.records.DataRecord`, and writes its values with the value codecs of
:mod:`mbuskit.codec.values`. The twin had its own copies of both before, and every byte it sends
and every command it accepts or refuses has to stay as it was; where the copies behaved
differently from the codec, the twin's behaviour is kept by one small wrapper here:

* integers and BCD too large for their field roll over, as the meter's display does, where the
  codec's encoders refuse them (a register never stops the read-out);
* type F dates: the twin writes an absent time (no maximum yet) with the IV bit and covers
  1900-2099, and reads a command's date by its hundred-year bits alone, strictly;
* command records: the twin's framing is stricter than the codec's and reads a few things
  differently (see :func:`command_records`);
* BCD in a command must be digits only.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ..codec import values
from ..codec.records import DataRecord, Diagnostic, RecordKind, decode_records
from ..codec.vif import VIF_PLAIN_TEXT, VIF_THIRD_EXTENSION
from ..errors import DecodeError, EncodeError

# -- values the twin writes --------------------------------------------------------------------


def encode_int(value: int, size: int) -> bytes:
    """Integer type B, LSB first, rolled over at the field size: a register beyond its field
    rolls over like the meter's display rather than stopping the read-out (the codec's
    ``encode_int`` refuses such a value)."""
    return values.encode_int(value % (1 << (8 * size)), size, signed=False)


def encode_bcd(value: int, size: int) -> bytes:
    """Packed BCD, LSB first, rolled over at the field size like :func:`encode_int` (the
    codec's ``encode_bcd`` refuses too many digits and writes negative numbers with an F)."""
    return values.encode_bcd(value % 10 ** (2 * size), size)


def encode_text(text: str) -> bytes:
    """LVAR ASCII text (EN 13757-3 6.3.3: length, then the characters last first). The twin
    sends what it can: other characters become "?" and the text is cut at 191 characters
    (the codec's ``encode_lvar`` refuses both)."""
    sendable = text.encode("ascii", "replace")[:0xBF].decode("ascii")
    return values.encode_lvar(sendable, 0, None)


_IV_DATE = b"\x80\x00\x00\x00"  # type F with the invalid bit set


def encode_type_f(when: datetime | None) -> bytes:
    """Date and time type F (EN 13757-3 annex A, CP32), as the twin has always sent it.

    None (a time that does not exist yet, e.g. no maximum registered) is sent with the IV bit,
    which the codec's ``encode_type_f`` has no input for. The twin covers 1900-2099 by the
    hundred-year bits 0 and 1; the codec covers 1981-2299 and refuses 1900-1980, because it
    reads hundred-year bits 0 with years up to 80 as 2000-2080 (what old meters send). Those
    years keep their old bytes: the codec's bytes of the same day a century later, with the
    hundred-year bits cleared.
    """
    if when is None:
        return _IV_DATE
    if not 1900 <= when.year <= 2099:
        raise EncodeError(f"type F covers 1900-2099, not {when.year}")
    if when.year >= 1981:
        return values.encode_type_f(when)
    # 1900-1980 and 2000-2080 have the same leap years but 1900 and 2000, and 1900 has no 29 Feb
    later = bytearray(values.encode_type_f(when.replace(year=when.year + 100)))
    later[1] &= 0x9F
    return bytes(later)


# -- values the twin reads ---------------------------------------------------------------------


def decode_type_f(data: bytes) -> datetime:
    """The date and time of a command, type F to a naive datetime, read as the twin writes it.

    Not the codec's ``decode_type_f``: a command's year is 1900 + 100 x hundred-year bits +
    year bits, exactly what :func:`encode_type_f` wrote, so that the meter refuses a clock
    outside 2000-2099 instead of taking hundred-year bits 0 as 20xx (the codec's reading for
    old meters); year bits above 99 count as they are; and an invalid (IV) or impossible date
    is an error the master hears of, where the codec's reader gives None.
    """
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


def bcd_digits(record: DataRecord) -> int:
    """The BCD value of a command record, digits only.

    The codec gives None for a non-decimal digit but reads a high nibble F in the last byte
    as a minus sign (``F0 00 00 00`` is 0); to the twin that nibble is as wrong in a meter
    number as any other non-digit.
    """
    value = record.value
    if not isinstance(value, int) or not record.data or record.data[-1] >> 4 > 9:
        raise DecodeError(f"{record.data.hex()} is not packed BCD")
    return value


# -- command records ---------------------------------------------------------------------------

# What the twin reads a plain-text VIF as: the reserved VIF 6Fh, an unknown code like any other
_UNKNOWN_VIF = VIF_THIRD_EXTENSION
_MAX_EXTENSIONS = 10  # DIFEs and VIFEs per record, EN 13757-3


def command_records(data: bytes) -> list[DataRecord]:
    """The records of a command (SND_UD application data), without idle fillers.

    Decoded by the codec with ``from_master``; strict. The twin's framing differs from the
    codec's in three ways, kept here because they decide which commands are refused and with
    which application error:

    * a DIF with data field D (LVAR) or F (manufacturer data, reserved), other than the filler
      2Fh and the global readout 7Fh, is refused at that DIF: no command uses one;
    * a plain-text VIF (7Ch/FCh) is an ordinary, unknown VIF followed by its VIFEs and value,
      not a length byte and text: the record is decoded with the VIF read as 6Fh and keeps its
      own bytes (such a record names no command and selects no register);
    * an 11th DIFE or VIFE asked for by an extension bit is "more than 10" even where the data
      ends, where the codec reports a premature end.

    Raises DecodeError at the first problem.
    """
    buf = bytearray(data)
    read_as_code: set[int] = set()  # offsets of plain-text VIFs read as _UNKNOWN_VIF
    out: list[DataRecord] = []
    pos = 0
    while pos < len(buf):
        found: list[Diagnostic] = []
        for record in decode_records(buf, pos, strict=False, diagnostics=found,
                                     from_master=True):
            if record.kind is RecordKind.FILLER:
                pos += 1
                continue
            _check_dif(buf, pos)
            if record.plain_unit is not None:
                break
            size = len(record.raw)
            vif_at = pos + 1 + len(record.dife)
            if record.vif is not None and vif_at in read_as_code:
                out.append(replace(record, raw=bytes(data[pos : pos + size]), vif=data[vif_at]))
            else:
                out.append(record)
            pos += size
        else:
            if not found:
                return out
            _check_dif(buf, pos)
        # a plain-text VIF at pos (decoded as text, or the text did not fit), or the codec gave up
        at = _vif_offset(buf, pos)
        if at is None or buf[at] & 0x7F != VIF_PLAIN_TEXT:
            raise _framing_error(buf, pos, at)
        buf[at] = (buf[at] & 0x80) | _UNKNOWN_VIF
        read_as_code.add(at)
    return out


def _check_dif(buf: bytearray, pos: int) -> None:
    dif = buf[pos]
    if dif & 0x0F in (0x0D, 0x0F) and dif != 0x7F:  # LVAR, manufacturer data, reserved specials
        raise DecodeError(f"DIF {dif:02X} is not accepted in a command", offset=pos)


def _vif_offset(buf: bytearray, pos: int) -> int | None:
    """Where the VIF of the record at ``pos`` is; None when its DIB does not end inside ``buf``."""
    at = pos + 1
    while buf[at - 1] & 0x80:
        if at >= len(buf):
            return None
        at += 1
    return at if at < len(buf) else None


def _framing_error(buf: bytearray, pos: int, vif_at: int | None) -> DecodeError:
    """Why the record at ``pos`` cannot be read (the codec stopped there)."""
    end = len(buf)
    for start, what in ((pos, "DIFE"), (vif_at, "VIFE")):
        # the DIF or VIF and all 10 extensions have bit 7 set and the data ends right after
        if start is not None and end - start == _MAX_EXTENSIONS + 1 and all(
                b & 0x80 for b in buf[start:]):
            return DecodeError(f"more than {_MAX_EXTENSIONS} {what}s", offset=end)
    try:
        decode_records(buf, pos, from_master=True)
    except DecodeError as exc:
        # without the record index, which counts from ``pos`` here; the offset is absolute
        return DecodeError(exc.reason, offset=exc.offset, expected=exc.expected)
    raise AssertionError("the codec decoded a record it had stopped at")


__all__ = [
    "bcd_digits",
    "command_records",
    "decode_type_f",
    "encode_bcd",
    "encode_int",
    "encode_text",
    "encode_type_f",
]
