"""EN 13757-3 data records: the DIF/DIFE/VIF/VIFE structure, its decoder and its encoders.

The record *types* below are the contract every other module codes against; fields may be
added, never renamed or removed. ``raw`` keeps the exact wire bytes, which is what makes
``encode(decode(b)) == b`` exact. The data-type codecs of EN 13757-3 annex A (BCD, integers,
real32, dates, LVAR values of table 5) and the scaling by decimal exponent are in
``mbuskit.codec.values``; this module decides from the DIF and VIF which of them applies.

Decoding rules chosen where the standard leaves room (each is tested):

* Integers (data fields 1-4, 6, 7) are signed two's complement (type B), except for VIFs
  that name identifiers or bit fields (type C/D: fabrication number, bus address, error
  flags, ..., see ``vif.KIND_UNSIGNED``) and after the combinable extension FC 0x11/0x12.
* BCD (data fields 9, A, B, C, E, LVAR C0-D9) with a high nibble F in the most significant
  byte is negative (EN 13757-3 annex A, type A). Any other non-decimal digit makes the value
  ``None`` and ``valid`` False; the bytes stay in ``data``/``raw``.
* Variable length (data field D): the LVAR byte gives length and type (EN 13757-3:2018
  table 5, see ``values``); a reserved LVAR 0xF7-0xFF is a DecodeError, the length being
  unknown. The LVAR byte is kept in ``lvar``, not in ``data``.
* Plain-text VIF 0x7C/0xFC: the length byte and the text (last character first) follow the
  VIF byte directly, then the VIFEs if the VIF has its extension bit. This is the layout of
  "The M-Bus: A Documentation" (m-bus.com: "the true VIF is represented by the following
  ASCII string with the length given in the first byte"), of libmbus, and of every real
  telegram we have (Elvaco CMa10 in the libmbus corpus). m-bus-parser reads the VIFEs first;
  no telegram that does so was found.
* Dates (EN 13757-3 annex A), chosen by the data length when the VIF (or a combinable VIFE)
  names a date: 2 bytes type G, 3 bytes type J, 4 bytes type F, 6 bytes type I (centuries
  as in ``values``). The invalid bit (IV) or an impossible date gives ``value`` None and
  ``valid`` False. Types K (daylight saving, 0xFD 0x72) and M (LVAR date-time of the 2018
  edition) could not be sourced: K decodes as an unsigned integer, M as its LVAR bytes.
* Scaling: value = raw * 10**exponent, an ``int`` when the exponent is >= 0, an exact
  ``Decimal`` when it is negative, a ``float`` for real32. Multiplicative VIFE corrections
  (0x70-0x77, 0x7D) change the exponent; an additive correction (0x78-0x7B) adds
  10**(nn-3) in the unit of the VIF, i.e. 10**(nn-3+exponent of the VIF) in ``unit``.
* A record whose VIFE carries a record error code (slave to master, E00x xxxx other than
  0x00) keeps its decoded value but has ``valid`` False and qualifier "error:<name>". The same
  codes sent master to slave are object actions ("action:<name>", ``from_master=True``).
* Reserved VIF/VIFE codes are not errors: the record's length is known from the DIF, so it
  decodes with quantity "unknown" (or a "vife:XX" qualifier) and the raw number. Only what
  leaves the record's length unknown is a DecodeError: a special DIF other than 0x0F, 0x1F,
  0x2F, 0x7F (i.e. 0x3F-0x6F and every data field F with the extension bit), a reserved
  LVAR, truncation, more than 10 DIFEs or VIFEs.
* Quantities, units and exponents come from ``mbuskit.vif`` (durations keep their own unit:
  "h" for the Kamstrup hour counter ``04 22``, not seconds).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from ..errors import DecodeError, EncodeError
from . import vif as _v

# Imported by name, not as ``values.x``: decode_records runs these per record, and a module
# global costs one dictionary lookup where an attribute of a module costs two.
from .values import (
    DATE_DECODERS,
    DATE_SIZES,
    POW10,
    Value,
    decode_bcd,
    encode_bcd,
    encode_date,
    encode_int,
    encode_lvar,
    encode_real32,
    lvar_length,
    lvar_value,
    scale,
    unscale,
)


class FunctionField(enum.IntEnum):
    """DIF bits 5-4 (EN 13757-3 6.3.2)."""

    INSTANTANEOUS = 0
    MAXIMUM = 1
    MINIMUM = 2
    ERROR = 3  # value during error state


class RecordKind(enum.Enum):
    DATA = "data"  # an ordinary DIB/VIB/value record
    MANUFACTURER = "manufacturer"  # DIF 0x0F / 0x1F: manufacturer data to the end
    FILLER = "filler"  # DIF 0x2F idle filler
    GLOBAL_READOUT = "global_readout"  # DIF 0x7F (master to slave)
    SELECTION = "selection"  # data field 0x8: selection for readout (no value bytes)


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One decoded data record.

    quantity: a stable snake_case name ("energy", "power", "reactive_energy", "voltage",
    "current", "on_time", "date_time", "fabrication_number", ...). unit: the SI unit of
    ``value`` ("Wh", "W", "varh", "var", "V", "A", "m^3", "" when dimensionless or not a
    physical value); durations keep the unit their VIF names ("s", "min", "h", "d", "month",
    "year"), see ``mbuskit.vif``. value: already scaled to ``unit``: int when exact and
    integral, Decimal when an integer/BCD value carries a negative decimal exponent, float
    for real32, datetime/date/time for dates (types F, I / G / J), str for ASCII, bytes for
    binary/manufacturer data, None when there is no value or it is invalid.
    """

    raw: bytes
    kind: RecordKind
    dif: int
    dife: tuple[int, ...] = ()
    vif: int | None = None
    vife: tuple[int, ...] = ()
    plain_unit: str | None = None  # plain-text VIF 0x7C/0xFC, as sent
    data: bytes = b""  # value bytes (without an LVAR length byte)
    function: FunctionField = FunctionField.INSTANTANEOUS
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    quantity: str = ""
    unit: str = ""
    value: Value = None
    description: str = ""
    more_records_follow: bool = False  # DIF 0x1F
    # qualifiers from combinable VIFEs in a stable vocabulary, e.g. ("phase:L1", "export"),
    # ("per:hour",), ("limit:lower",), ("quadrant:Q1",); empty when none
    qualifiers: tuple[str, ...] = ()
    valid: bool = True  # False for a date marked invalid (IV bit) or a record error VIFE
    lvar: int | None = None  # the LVAR byte of a variable-length record (data field 0xD)

    @property
    def header(self) -> bytes:
        """The DIB and VIB as sent, i.e. ``raw`` without LVAR and value bytes.

        It names the register independently of its value ("04 FB 82 75" is reactive energy
        import in 0.1 kvarh), the key wmbusmeters calls "difvif".
        """
        cut = len(self.data) + (1 if self.lvar is not None else 0)
        return self.raw[: len(self.raw) - cut] if cut else self.raw


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Why ``decode_records(strict=False)`` stopped: record index, absolute offset, reason."""

    record: int
    offset: int
    reason: str


class _Building:
    # A mutable twin of DataRecord with the identical slot layout. decode_records fills one
    # with plain attribute stores and then re-classes it to DataRecord: the frozen
    # dataclass __init__ calls object.__setattr__ once per field, which made it five times
    # slower than everything else a record costs. Nothing else ever sees a _Building.
    __slots__ = DataRecord.__slots__

    def __init__(  # noqa: PLR0917 (positional arguments are the fast path)
                 self, raw: bytes, kind: RecordKind, dif: int, dife: tuple[int, ...],
                 vif: int | None, vife: tuple[int, ...], plain_unit: str | None, data: bytes,
                 function: FunctionField, storage: int, tariff: int, subunit: int,
                 quantity: str, unit: str, value: Value, description: str,
                 more_records_follow: bool, qualifiers: tuple[str, ...], valid: bool,
                 lvar: int | None) -> None:
        self.raw = raw
        self.kind = kind
        self.dif = dif
        self.dife = dife
        self.vif = vif
        self.vife = vife
        self.plain_unit = plain_unit
        self.data = data
        self.function = function
        self.storage = storage
        self.tariff = tariff
        self.subunit = subunit
        self.quantity = quantity
        self.unit = unit
        self.value = value
        self.description = description
        self.more_records_follow = more_records_follow
        self.qualifiers = qualifiers
        self.valid = valid
        self.lvar = lvar


def _record(  # noqa: PLR0917 (positional arguments are the fast path)
            raw: bytes, kind: RecordKind, dif: int, dife: tuple[int, ...], vif: int | None,
            vife: tuple[int, ...], plain_unit: str | None, data: bytes,
            function: FunctionField, storage: int, tariff: int, subunit: int, quantity: str,
            unit: str, value: Value, description: str, more: bool,
            qualifiers: tuple[str, ...], valid: bool, lvar: int | None) -> DataRecord:
    obj = _Building(raw, kind, dif, dife, vif, vife, plain_unit, data, function, storage,
                    tariff, subunit, quantity, unit, value, description, more, qualifiers,
                    valid, lvar)
    obj.__class__ = DataRecord  # type: ignore[assignment]
    return obj  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------
# Tables indexed by byte, built once.

# Data field (DIF bits 3-0) -> value length; -1 variable (LVAR), -2 special function,
# 0 for "no data" and for 8 "selection for readout" (EN 13757-3:2018 table 4).
_DATA_LEN = (0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, -1, 6, -2)
_INT_FIELDS = frozenset((1, 2, 3, 4, 6, 7))
# Data field -> how its value is read (one tuple index instead of set lookups per record).
_VT_NONE, _VT_INT, _VT_REAL, _VT_BCD, _VT_LVAR, _VT_SELECTION, _VT_SPECIAL = range(7)
_VTYPE = (_VT_NONE, _VT_INT, _VT_INT, _VT_INT, _VT_INT, _VT_REAL, _VT_INT, _VT_INT,
          _VT_SELECTION, _VT_BCD, _VT_BCD, _VT_BCD, _VT_BCD, _VT_LVAR, _VT_BCD, _VT_SPECIAL)
_FUNCTIONS = tuple(FunctionField((dif >> 4) & 3) for dif in range(256))
_MAX_EXT = 10  # EN 13757-3: at most 10 DIFEs and 10 VIFEs

# (quantity, unit, exponent, offset, description, qualifiers, kind, error)
_Meaning = tuple[str, str, int, int | None, str, tuple[str, ...], int, bool]

_KIND_DATE = _v.KIND_DATE
_KIND_UNSIGNED = _v.KIND_UNSIGNED


def _meaning_of(vif: int, vife: bytes, from_master: bool) -> _Meaning:
    code = vif & 0x7F
    used = 0  # VIFEs consumed as table index (0xFB/0xFD and the 0xFD 0xFD second level)
    entry: _v.VifEntry | None
    if code in (_v.VIF_EXT_FB, _v.VIF_EXT_FD):
        if not vife:
            entry = None
        elif code == _v.VIF_EXT_FB:
            entry, used = _v.EXT_FB[vife[0] & 0x7F], 1
        elif vife[0] & 0x7F == _v.VIFE_FD_SECOND_LEVEL and len(vife) > 1:
            entry, used = _v.EXT_FD_SECOND[vife[1] & 0x7F], 2
        else:
            entry, used = _v.EXT_FD[vife[0] & 0x7F], 1
    else:
        entry = _v.PRIMARY[code]
    if entry is None:
        entry = _v.UNKNOWN
    quantity, unit, exponent = entry.quantity, entry.unit, entry.exponent
    description, kind = entry.description, entry.kind
    offset: int | None = None
    qualifiers: list[str] = []
    error = False
    vif_exponent = exponent
    i = used
    if code == _v.VIF_MANUFACTURER:
        # EN 13757-3: with a manufacturer specific VIF the whole VIB is the manufacturer's;
        # its VIFEs are kept raw, not read as combinable codes.
        i = len(vife)
    n = len(vife)
    while i < n:
        c = vife[i] & 0x7F
        i += 1
        item: _v.VifeEntry | None
        if c == _v.VIFE_EXT_FC:
            if i >= n:
                qualifiers.append("vife:7C")
                break
            item = _v.EXT_FC[vife[i] & 0x7F]
            if item is None:
                qualifiers.append(f"vife:FC{vife[i] & 0x7F:02X}")
                i += 1
                continue
            i += 1
        elif c == _v.VIFE_MANUFACTURER:
            # EN 13757-3: the VIFEs after 0x7F/0xFF are manufacturer specific; reading them
            # as standard codes is the scaling bug of m-bus-parser issue #114.
            qualifiers.append("manufacturer_vife")
            break
        elif from_master and c < 0x10:
            item = _v.OBJECT_ACTIONS[c]
        else:
            item = _v.COMBINABLE[c]
        if item is None:
            qualifiers.append(f"vife:{c:02X}")
            continue
        if item.qualifier:
            qualifiers.append(item.qualifier)
        exponent += item.exponent
        if item.offset is not None:
            offset = item.offset + vif_exponent
        if item.unit is not None:
            unit, exponent, vif_exponent = item.unit, 0, 0
        if item.kind is not None:
            kind = item.kind
        if item.error:
            error = True
        description = f"{description}; {item.description}"
    return (quantity, unit, exponent, offset, description, tuple(qualifiers), kind, error)


_SIMPLE: tuple[_Meaning, ...] = tuple(_meaning_of(code, b"", False) for code in range(0x80))


@lru_cache(maxsize=4096)
def _meaning_cached(vif: int, vife: bytes, from_master: bool) -> _Meaning:
    return _meaning_of(vif, vife, from_master)


# ----------------------------------------------------------------------------------------
# Decoder.

_DATA = RecordKind.DATA
_SELECTION = RecordKind.SELECTION
_D = Decimal
_from_bytes = int.from_bytes
_unpack_f = struct.Struct("<f").unpack_from


def decode_records(
    buf: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    strict: bool = True,
    diagnostics: list[Diagnostic] | None = None,
    from_master: bool = False,
) -> list[DataRecord]:
    """Decode the data records of an application-layer payload, from ``offset`` to the end.

    ``from_master`` reads VIFE codes 0x00-0x0F as object actions (SND_UD) instead of record
    errors. With ``strict=False`` a damaged record ends decoding: the records before it are
    returned and a :class:`Diagnostic` is appended to ``diagnostics``.
    """
    data_buf = bytes(buf)
    end = len(data_buf)
    if not 0 <= offset <= end:
        raise DecodeError("records offset outside the buffer", offset=offset,
                          expected=f"0..{end}")
    out: list[DataRecord] = []
    append = out.append
    new = object.__new__
    pos = offset
    start = offset
    try:
        while pos < end:
            start = pos
            dif = data_buf[pos]
            pos += 1
            vt = _VTYPE[dif & 0x0F]
            if vt == _VT_SPECIAL:
                pos = _special(data_buf, dif, start, end, out)
                continue
            storage = (dif >> 6) & 1
            tariff = subunit = 0
            if dif & 0x80:
                i = 0
                while True:
                    if pos >= end:
                        raise DecodeError("premature end of DIFE", offset=pos,
                                          record=len(out), expected="DIFE")
                    if i == _MAX_EXT:
                        raise DecodeError("more than 10 DIFEs", offset=pos, record=len(out),
                                          expected="VIF")
                    d = data_buf[pos]
                    pos += 1
                    storage |= (d & 0x0F) << (1 + 4 * i)
                    tariff |= ((d >> 4) & 0x03) << (2 * i)
                    subunit |= ((d >> 6) & 0x01) << i
                    i += 1
                    if not d & 0x80:
                        break
                dife = tuple(data_buf[start + 1:pos])
            else:
                dife = ()
            if pos >= end:
                raise DecodeError("premature end of record before VIF", offset=pos,
                                  record=len(out), expected="VIF")
            vif = data_buf[pos]
            pos += 1
            plain: str | None = None
            if vif & 0x7F == 0x7C:
                if pos >= end:
                    raise DecodeError("premature end of plain-text VIF", offset=pos,
                                      record=len(out), expected="length byte")
                n = data_buf[pos]
                if pos + 1 + n > end:
                    raise DecodeError("premature end of plain-text VIF", offset=end,
                                      record=len(out), expected=f"{n} characters")
                plain = data_buf[pos + 1:pos + 1 + n][::-1].decode("latin-1")
                pos += 1 + n
            if vif & 0x80:
                vstart = pos
                i = 0
                while True:
                    if pos >= end:
                        raise DecodeError("premature end of VIFE", offset=pos,
                                          record=len(out), expected="VIFE")
                    if i == _MAX_EXT:
                        raise DecodeError("more than 10 VIFEs", offset=pos, record=len(out),
                                          expected="data")
                    i += 1
                    pos += 1
                    if not data_buf[pos - 1] & 0x80:
                        break
                vife_bytes = data_buf[vstart:pos]
                vife = tuple(vife_bytes)
                meaning = _meaning_cached(vif, vife_bytes, from_master)
            else:
                vife = ()
                meaning = _SIMPLE[vif]
            quantity, unit, exponent, add, description, qualifiers, kind, error = meaning
            if plain is not None:
                quantity, unit = "plain_text", plain
            lvar: int | None = None
            valid = not error
            value: Value
            if vt == _VT_SELECTION:
                kind_out = _SELECTION
                data = b""
                value = None
                valid = True
            else:
                kind_out = _DATA
                length = _DATA_LEN[dif & 0x0F]
                if vt == _VT_LVAR:
                    if pos >= end:
                        raise DecodeError("premature end of data: LVAR missing", offset=pos,
                                          record=len(out), expected="LVAR")
                    lvar = data_buf[pos]
                    pos += 1
                    length = lvar_length(lvar, pos, len(out))
                if pos + length > end:
                    raise DecodeError(f"premature end of data: {end - pos} of {length} bytes",
                                      offset=end, record=len(out), expected=f"{length} bytes")
                data = data_buf[pos:pos + length]
                pos += length
                if vt == _VT_INT:
                    if kind == _KIND_DATE and length in DATE_SIZES:
                        value = DATE_DECODERS[length](data)
                        valid = valid and value is not None
                    else:
                        value = _from_bytes(data, "little", signed=kind != _KIND_UNSIGNED)
                        if add is not None:
                            value = scale(value, exponent, add)
                        elif exponent > 0:
                            value *= POW10[exponent]
                        elif exponent:
                            value = _D(value).scaleb(exponent)
                elif vt == _VT_BCD:
                    digits = data[::-1].hex()
                    # Fast path of decode_bcd(): all digits decimal (the common case).
                    value = int(digits) if digits.isdigit() else decode_bcd(data)
                    if value is None:
                        valid = False
                    elif add is not None:
                        value = scale(value, exponent, add)
                    elif exponent > 0:
                        value *= POW10[exponent]
                    elif exponent:
                        value = _D(value).scaleb(exponent)
                elif vt == _VT_REAL:
                    value = scale(_unpack_f(data)[0], exponent, add)
                elif vt == _VT_LVAR:
                    value, valid = lvar_value(lvar, data, exponent, add, valid)
                else:  # data field 0: no data
                    value = None
            # The fields of DataRecord, stored straight into a _Building (see there) and
            # re-classed: this is the hot path, a call with 20 arguments costs as much again.
            rec = new(_Building)
            rec.raw = data_buf[start:pos]
            rec.kind = kind_out
            rec.dif = dif
            rec.dife = dife
            rec.vif = vif
            rec.vife = vife
            rec.plain_unit = plain
            rec.data = data
            rec.function = _FUNCTIONS[dif]
            rec.storage = storage
            rec.tariff = tariff
            rec.subunit = subunit
            rec.quantity = quantity
            rec.unit = unit
            rec.value = value
            rec.description = description
            rec.more_records_follow = False
            rec.qualifiers = qualifiers
            rec.valid = valid
            rec.lvar = lvar
            rec.__class__ = DataRecord  # type: ignore[assignment]
            append(rec)  # type: ignore[arg-type]
    except DecodeError as exc:
        if strict:
            raise
        if diagnostics is not None:
            diagnostics.append(Diagnostic(len(out), start, str(exc)))
    return out


def _special(buf: bytes, dif: int, start: int, end: int, out: list[DataRecord]) -> int:
    # DIF with data field 0xF: special functions, EN 13757-3:2018 table 6.
    if dif == 0x2F:
        out.append(_FILLER_RECORD)
        return start + 1
    if dif in (0x0F, 0x1F):
        rest = buf[start + 1:end]
        out.append(_record(buf[start:end], RecordKind.MANUFACTURER, dif, (), None, (), None, rest,
                       FunctionField.INSTANTANEOUS, 0, 0, 0, "manufacturer_specific", "", rest,
                       "Manufacturer specific data", dif == 0x1F, (), True, None))
        return end
    if dif == 0x7F:
        out.append(_GLOBAL_RECORD)
        return start + 1
    raise DecodeError(f"reserved special DIF {dif:02X}", offset=start, record=len(out),
                      expected="DIF 0F, 1F, 2F or 7F")


_FILLER_RECORD = DataRecord(b"\x2f", RecordKind.FILLER, 0x2F, quantity="filler",
                            description="Idle filler")
_GLOBAL_RECORD = DataRecord(b"\x7f", RecordKind.GLOBAL_READOUT, 0x7F,
                            quantity="global_readout", description="Global readout request")
GLOBAL_READOUT = _GLOBAL_RECORD
FILLER = _FILLER_RECORD


def encode_records(records: list[DataRecord] | tuple[DataRecord, ...]) -> bytes:
    """The wire bytes of ``records``: their ``raw`` bytes concatenated."""
    return b"".join(r.raw for r in records)


# ----------------------------------------------------------------------------------------
# Encoder: records from meaning.

def _dib(data_field: int, function: FunctionField | int, storage: int, tariff: int,
         subunit: int) -> bytes:
    if not 0 <= data_field <= 0x0F:
        raise EncodeError(f"data field must be 0-15, got {data_field}")
    if storage < 0 or tariff < 0 or subunit < 0:
        raise EncodeError("storage, tariff and subunit must not be negative")
    func = int(function)
    if not 0 <= func <= 3:
        raise EncodeError(f"function field must be 0-3, got {func}")
    difes: list[int] = []
    rest_s, rest_t, rest_u = storage >> 1, tariff, subunit
    while rest_s or rest_t or rest_u:
        difes.append((rest_s & 0x0F) | ((rest_t & 0x03) << 4) | ((rest_u & 0x01) << 6))
        rest_s, rest_t, rest_u = rest_s >> 4, rest_t >> 2, rest_u >> 1
    if len(difes) > _MAX_EXT:
        raise EncodeError(f"storage {storage}, tariff {tariff}, subunit {subunit} need "
                          f"{len(difes)} DIFEs, at most 10")
    dif = data_field | (func << 4) | ((storage & 1) << 6) | (0x80 if difes else 0)
    for i in range(len(difes) - 1):
        difes[i] |= 0x80
    return bytes((dif, *difes))


def _check_vib(vib: bytes) -> int:
    # The VIB must be exactly one VIF, its plain text if any, and its VIFEs; returns the
    # index where the VIFEs begin.
    if not vib:
        raise EncodeError("VIF bytes are empty")
    pos = 1
    if vib[0] & 0x7F == 0x7C:
        if len(vib) < 2 or len(vib) < 2 + vib[1]:
            raise EncodeError("plain-text VIF needs a length byte and that many characters")
        pos = 2 + vib[1]
    vstart = pos
    more = bool(vib[0] & 0x80)
    while more:
        if pos >= len(vib):
            raise EncodeError("VIF bytes end while the extension bit asks for another VIFE")
        more = bool(vib[pos] & 0x80)
        pos += 1
    if pos != len(vib):
        raise EncodeError("VIF bytes continue after a VIFE without extension bit")
    if pos - vstart > _MAX_EXT:
        raise EncodeError(f"{pos - vstart} VIFEs, at most 10")
    return vstart


def _encode_value(value: Value, data_field: int, meaning: _Meaning) -> bytes:
    _, _, exponent, offset, _, _, kind, _ = meaning
    size = _DATA_LEN[data_field]
    if data_field in (0, 8):
        if value is not None:
            raise EncodeError(f"data field {data_field} carries no value, got {value!r}")
        return b""
    if data_field == 0x0F:
        raise EncodeError("data field F is a special function, not a value")
    if kind == _KIND_DATE and data_field in _INT_FIELDS and size in DATE_SIZES:
        return encode_date(value, size)
    if data_field == 5:
        return encode_real32(value, exponent, offset)
    if data_field == 0x0D:
        return encode_lvar(value, exponent, offset)
    raw = unscale(value, exponent, offset)
    if data_field in _INT_FIELDS:
        return encode_int(raw, size, kind != _KIND_UNSIGNED)
    return encode_bcd(raw, size)


def build_record(
    *,
    vif: bytes,
    value: Value,
    data_field: int,
    function: FunctionField = FunctionField.INSTANTANEOUS,
    storage: int = 0,
    tariff: int = 0,
    subunit: int = 0,
    from_master: bool = False,
) -> DataRecord:
    """Build the record that carries ``value`` (in the unit decode gives for ``vif``).

    ``vif`` is the whole VIB as sent: VIF, plain text if any, VIFEs. Returns exactly what
    :func:`decode_records` returns for the bytes; raises EncodeError when the value cannot be
    represented (overflow, not a multiple of the VIF's scale, out-of-range date, ...).
    """
    vib = bytes(vif)
    vstart = _check_vib(vib)
    if data_field == 0x0F:
        raise EncodeError("data field F is a special function; use manufacturer_record, "
                          "FILLER or GLOBAL_READOUT")
    if vib[0] & 0x80:
        meaning = _meaning_cached(vib[0], vib[vstart:], from_master)
    else:
        meaning = _SIMPLE[vib[0]]
    payload = _encode_value(value, data_field, meaning)
    raw = _dib(data_field, function, storage, tariff, subunit) + vib + payload
    (record,) = decode_records(raw, from_master=from_master)
    return record


def selection_record(
    vif: bytes,
    *,
    function: FunctionField = FunctionField.INSTANTANEOUS,
    storage: int = 0,
    tariff: int = 0,
    subunit: int = 0,
) -> DataRecord:
    """A readout-selection record (DIF data field 8, no value), EN 13757-3 6.3.4."""
    return build_record(vif=vif, value=None, data_field=8, function=function,
                        storage=storage, tariff=tariff, subunit=subunit)


def global_readout_record() -> DataRecord:
    """DIF 0x7F: request every record (master to slave)."""
    return GLOBAL_READOUT


def manufacturer_record(data: bytes, *, more_records_follow: bool = False) -> DataRecord:
    """DIF 0x0F (or 0x1F when more records follow in the next telegram) plus ``data``."""
    raw = bytes((0x1F if more_records_follow else 0x0F,)) + bytes(data)
    (record,) = decode_records(raw)
    return record


__all__ = [
    "FILLER",
    "GLOBAL_READOUT",
    "DataRecord",
    "Diagnostic",
    "FunctionField",
    "RecordKind",
    "build_record",
    "decode_records",
    "encode_records",
    "global_readout_record",
    "manufacturer_record",
    "selection_record",
]
