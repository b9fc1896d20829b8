"""Property tests of the record codec: round trips and "only MBusError escapes"."""

from __future__ import annotations

from datetime import date, datetime, time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mbuskit.codec.records import (
    DataRecord,
    Diagnostic,
    FunctionField,
    RecordKind,
    build_record,
    decode_records,
    encode_records,
)
from mbuskit.errors import DecodeError, MBusError

# VIBs covering primary, FD, FB, plain text, corrections, qualifiers and manufacturer codes.
VIBS = [bytes.fromhex(x) for x in (
    "03", "06", "04", "05", "13", "16", "2B", "2E", "22", "5B", "67", "FD48", "FDD9FC01",
    "FB8275", "FB82F53C", "843C", "833B", "FD17", "78", "7A", "FD3A", "F3" "7D", "86" "78",
    "96" "76", "AB3C", "FB14", "FB2E", "7F", "FFE1FF01", "7C024556", "FC0241428322",
    "FDFD02", "93" "16", "E8" "22",
)]
INT_FIELDS = (1, 2, 3, 4, 6, 7)
BCD_FIELDS = (9, 10, 11, 12, 14)
SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 6: 6, 7: 8, 9: 1, 10: 2, 11: 3, 12: 4, 14: 6}
SAMPLE = bytes.fromhex(
    "04 06 00 00 00 00 04 22 09 00 00 00 04 2B 00 00 00 00 14 2B 00 00 00 00"
    " 84 50 06 00 00 00 00 84 60 06 00 00 00 00 04 FB 82 F5 3C CA 01 00 00"
    " 04 FD C8 FC 01 17 09 00 00 0D FD 0B 06 35 33 32 44 56 52 02 FC 03 48 52 25 74 22 15"
    " 2F 04 6D 0A 2D 82 09 42 6C BF 1C 0F 00 01 02"
)


def _check_fields(rec: DataRecord) -> None:
    # The decoded parts are the wire bytes: DIF, DIFEs, VIF, (text), VIFEs, (LVAR), data.
    assert rec.raw[0] == rec.dif and rec.raw.endswith(rec.data)
    if rec.kind in (RecordKind.DATA, RecordKind.SELECTION):
        assert rec.raw[1:1 + len(rec.dife)] == bytes(rec.dife)
        assert rec.raw[1 + len(rec.dife)] == rec.vif
        tail = bytes(rec.vife) + (bytes((rec.lvar,)) if rec.lvar is not None else b"") + rec.data
        assert rec.raw.endswith(tail)
        assert (rec.dif & 0x0F == 0x0D) == (rec.lvar is not None)


def _check_partial(buf: bytes, records: list[DataRecord], diags: list[Diagnostic]) -> None:
    for rec in records:
        _check_fields(rec)
    joined = encode_records(records)
    if diags:
        assert len(diags) == 1
        assert buf[: diags[0].offset] == joined
    else:
        assert joined == buf


@given(st.binary(max_size=80))
@settings(max_examples=400)
def test_random_bytes_only_mbus_errors(buf: bytes) -> None:
    try:
        records = decode_records(buf)
    except MBusError as exc:
        assert isinstance(exc, DecodeError)
        records = None
    if records is not None:
        assert encode_records(records) == buf
    diags: list[Diagnostic] = []
    partial = decode_records(buf, strict=False, diagnostics=diags)
    _check_partial(buf, partial, diags)
    decode_records(buf, strict=False, from_master=True)


@given(st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)), max_size=4),
       st.integers(0, len(SAMPLE)))
@settings(max_examples=400)
def test_mutated_real_records_only_mbus_errors(changes: list[tuple[int, int]], cut: int) -> None:
    buf = bytearray(SAMPLE)
    for where, byte in changes:
        buf[where] = byte
    data = bytes(buf[:cut])
    try:
        assert encode_records(decode_records(data)) == data
    except DecodeError as exc:
        assert exc.offset is not None and 0 <= exc.offset <= len(data)
        assert exc.record is not None
    diags: list[Diagnostic] = []
    _check_partial(data, decode_records(data, strict=False, diagnostics=diags), diags)


@st.composite
def number_records(draw: st.DrawFn) -> bytes:
    field = draw(st.sampled_from(INT_FIELDS + BCD_FIELDS))
    size = SIZES[field]
    if field in BCD_FIELDS:
        digits = draw(st.text("0123456789", min_size=size * 2, max_size=size * 2))
        if draw(st.booleans()) and int(digits[1:]) != 0:
            digits = "f" + digits[1:]  # negative BCD (a negative zero would not round-trip)
        data = bytes.fromhex(digits)[::-1]
    else:
        data = draw(st.binary(min_size=size, max_size=size))
    function = draw(st.integers(0, 3))
    storage = draw(st.integers(0, 1 << 20))
    tariff = draw(st.integers(0, 255))
    subunit = draw(st.integers(0, 15))
    head = build_record(vif=b"\x03", value=0, data_field=field, function=FunctionField(function),
                        storage=storage, tariff=tariff, subunit=subunit).raw
    dib = head[: len(head) - 1 - size]
    return dib + draw(st.sampled_from(VIBS)) + data


@given(number_records())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_build_from_meaning_reproduces_the_bytes(raw: bytes) -> None:
    (rec,) = decode_records(raw)
    assert rec.raw == raw and rec.valid is not None
    vib = raw[len(rec.dife) + 1: len(raw) - len(rec.data)]
    rebuilt = build_record(vif=vib, value=rec.value, data_field=rec.dif & 0x0F,
                           function=rec.function, storage=rec.storage, tariff=rec.tariff,
                           subunit=rec.subunit)
    assert rebuilt == rec
    assert decode_records(rebuilt.raw) == [rebuilt]


@given(st.datetimes(min_value=datetime(1981, 1, 1), max_value=datetime(2080, 12, 31, 23, 59)))
def test_dates_round_trip(moment: datetime) -> None:
    f = build_record(vif=b"\x6d", value=moment.replace(second=0, microsecond=0), data_field=4)
    assert f.value == moment.replace(second=0, microsecond=0) and f.valid
    i = build_record(vif=b"\x6d", value=moment.replace(microsecond=0), data_field=6)
    assert i.value == moment.replace(microsecond=0)
    g = build_record(vif=b"\x6c", value=moment.date(), data_field=2)
    assert g.value == moment.date() and isinstance(g.value, date)
    j = build_record(vif=b"\x6d", value=moment.time().replace(microsecond=0), data_field=3)
    assert j.value == moment.time().replace(microsecond=0) and isinstance(j.value, time)
    assert decode_records(f.raw + i.raw + g.raw + j.raw) == [f, i, g, j]


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
       st.binary(max_size=15), st.integers(-(10**18) + 1, 10**18 - 1))
def test_lvar_values_round_trip(text: str, blob: bytes, number: int) -> None:
    t = build_record(vif=b"\xfd\x0c", value=text, data_field=0x0D)
    assert t.value == text and t.lvar == len(text)
    b = build_record(vif=b"\x7f", value=blob, data_field=0x0D)
    assert b.value == blob
    n = build_record(vif=b"\x03", value=number, data_field=0x0D)
    assert n.value == number
    assert decode_records(t.raw + b.raw + n.raw) == [t, b, n]


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_real32_round_trip(number: float) -> None:
    r = build_record(vif=b"\x2b", value=number, data_field=5)
    assert r.value == number


def test_selection_records_have_no_value() -> None:
    for vib in VIBS:
        rec = build_record(vif=vib, value=None, data_field=8)
        assert rec.kind is RecordKind.SELECTION and rec.data == b""
        assert decode_records(rec.raw) == [rec]
