"""EN 13757-3 record codec: decode, encode, build, errors.

Real record bytes come from /work/shared/research/kamstrup-frames.txt (Kamstrup 382 frame of
the libmbus corpus, Kamstrup OMNIPOWER and Carlo Gavazzi EM24 telegrams of wmbusmeters).
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest

from mbuskit.codec.records import (
    GLOBAL_READOUT,
    DataRecord,
    Diagnostic,
    FunctionField,
    RecordKind,
    build_record,
    decode_records,
    encode_records,
    global_readout_record,
    manufacturer_record,
    selection_record,
)
from mbuskit.codec.values import decode_type_f, encode_type_f
from mbuskit.errors import DecodeError, EncodeError, MBusError


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def one(text: str, *, from_master: bool = False) -> DataRecord:
    records = decode_records(h(text), from_master=from_master)
    assert len(records) == 1
    return records[0]


# Kamstrup 382 (module 6850-005) records, libmbus test-frames/kamstrup_382_005.hex
KAMSTRUP_382 = (
    "04 06 00 00 00 00 04 22 09 00 00 00 04 2B 00 00 00 00 14 2B 00 00 00 00"
    " 84 50 06 00 00 00 00 84 60 06 00 00 00 00"
    " 0F 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 10"
)


def test_kamstrup_382_records() -> None:
    payload = h(KAMSTRUP_382)
    recs = decode_records(payload)
    assert encode_records(recs) == payload
    assert [r.quantity for r in recs] == [
        "energy", "on_time", "power", "power", "energy", "energy", "manufacturer_specific"]
    assert recs[0].unit == "Wh" and recs[0].value == 0
    assert recs[1].unit == "h" and recs[1].value == 9
    assert recs[3].function is FunctionField.MAXIMUM
    assert (recs[4].tariff, recs[4].subunit, recs[4].storage) == (1, 1, 0)
    assert (recs[5].tariff, recs[5].subunit, recs[5].storage) == (2, 1, 0)
    assert recs[6].kind is RecordKind.MANUFACTURER
    assert recs[6].value == h("00" * 15 + "10")
    assert not recs[6].more_records_follow


def test_omnipower_import_export() -> None:
    recs = decode_records(h("04 04 1A 03 00 00 04 84 3C 05 00 00 00 04 2B 03 00 00 00"
                            " 04 AB 3C 07 00 00 00"))
    assert recs[0].value == 7940 and recs[0].unit == "Wh"
    assert recs[1].qualifiers == ("export",) and recs[1].value == 50
    assert recs[2].value == 3 and recs[2].unit == "W"
    assert recs[3].qualifiers == ("export",) and recs[3].quantity == "power"
    assert recs[3].value == 7


def test_kam_filler_frame_import_energy() -> None:
    recs = decode_records(h("2F 2F 04 83 3B 88 13 00 00 2F 2F"))
    assert [r.kind for r in recs] == [RecordKind.FILLER] * 2 + [RecordKind.DATA] + [
        RecordKind.FILLER] * 2
    assert recs[2].value == 5000 and recs[2].qualifiers == ("import",)


def test_em24_reactive_energy_and_phases() -> None:
    r = one("04 FB 82 75 3F 00 00 00")
    # FB 02 = 1 kvarh (10^(n+3) varh), VIFE 75 = x10^-1: 63 * 100 varh
    assert (r.quantity, r.unit, r.value) == ("reactive_energy", "varh", 6300)
    r = one("04 FB 82 F5 3C CA 01 00 00")
    assert r.value == 45800 and r.qualifiers == ("export",)
    r = one("04 FD C8 FC 01 17 09 00 00")
    assert (r.quantity, r.unit, r.value) == ("voltage", "V", Decimal("232.7"))
    assert r.qualifiers == ("phase:L1",)
    r = one("04 FD D9 FC 03 10 27 00 00")
    assert (r.quantity, r.unit, r.value) == ("current", "A", Decimal("10.000"))
    assert r.qualifiers == ("phase:L3",)
    r = one("02 FB 2E F4 01")
    assert (r.quantity, r.unit, r.value) == ("frequency", "Hz", Decimal("50.0"))
    r = one("01 FD 17 22")
    assert (r.quantity, r.value) == ("error_flags", 0x22)


def test_build_round_trip_basic() -> None:
    r = build_record(vif=h("06"), value=123000, data_field=4)
    assert r.raw == h("04 06 7B 00 00 00")
    assert decode_records(r.raw) == [r]
    # 1234.5 kWh in a 0.1 kWh register: values are in Wh
    r = build_record(vif=h("05"), value=1234500, data_field=0x0C, tariff=2,
                     subunit=1, storage=3)
    assert r.raw == h("CC 61 05 45 23 01 00")
    assert r.value == 1234500
    assert (r.storage, r.tariff, r.subunit) == (3, 2, 1)


def test_selection_and_global_readout() -> None:
    s = selection_record(h("83 3C"))
    assert s.raw == h("08 83 3C") and s.kind is RecordKind.SELECTION
    assert s.qualifiers == ("export",)
    assert global_readout_record() is GLOBAL_READOUT
    assert GLOBAL_READOUT.raw == b"\x7f"
    m = manufacturer_record(b"\x01\x02", more_records_follow=True)
    assert m.raw == h("1F 01 02") and m.more_records_follow


def test_type_f_flowiq_example() -> None:
    # Kamstrup flowIQ TD: 0A 2D 82 09 = 2004-09-02 13:10
    assert decode_type_f(h("0A 2D 82 09")) == datetime(2004, 9, 2, 13, 10)
    assert encode_type_f(datetime(2004, 9, 2, 13, 10)) == h("0A 2D 82 09")


def test_truncated_raises_with_offset() -> None:
    with pytest.raises(DecodeError) as exc:
        decode_records(h("04 06 00 00 00 00 04 06 00 00"))
    assert exc.value.offset == 10 and exc.value.record == 1


def test_non_strict_stops_at_damaged_record() -> None:
    diags: list[Diagnostic] = []
    recs = decode_records(h("04 06 01 00 00 00 04"), strict=False, diagnostics=diags)
    assert len(recs) == 1 and recs[0].value == 1000
    assert diags == [Diagnostic(1, 6, diags[0].reason)]
    assert "VIF" in diags[0].reason


def test_encode_errors() -> None:
    with pytest.raises(EncodeError):
        build_record(vif=h("06"), value=1500, data_field=4)  # not a multiple of 1 kWh
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value=1000, data_field=1)  # int8 overflow
    with pytest.raises(MBusError):
        build_record(vif=h("6C"), value=date(1950, 1, 1), data_field=2)
    assert build_record(vif=h("6D"), value=time(12, 30, 5), data_field=3).value == time(12, 30, 5)


# --- data field codes ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("01 03 FF", -1),  # int8, two's complement
        ("01 03 7F", 127),
        ("02 03 00 80", -32768),  # int16
        ("03 03 FF FF 7F", 0x7FFFFF),  # int24
        ("03 03 00 00 80", -0x800000),
        ("04 03 FE FF FF FF", -2),  # int32
        ("06 03 01 00 00 00 00 80", -(1 << 47) + 1),  # int48
        ("07 03 FF FF FF FF FF FF FF 7F", (1 << 63) - 1),  # int64
        ("09 03 42", 42),  # BCD2
        ("0A 03 34 12", 1234),  # BCD4
        ("0B 03 56 34 12", 123456),  # BCD6
        ("0C 03 78 56 34 12", 12345678),  # BCD8
        ("0E 03 12 90 78 56 34 12", 123456789012),  # BCD12
        ("0A 03 34 F2", -234),  # negative BCD: high nibble F
        ("0C 03 01 00 00 F0", -1),
    ],
)
def test_integer_and_bcd_fields(text: str, value: int) -> None:
    r = one(text)  # VIF 03: energy in Wh, exponent 0
    assert r.value == value and type(r.value) is int and r.valid
    assert r.data == r.raw[2:]


def test_unsigned_for_identifiers_and_bit_fields() -> None:
    assert one("01 FD 17 FF").value == 0xFF  # error flags (type D) never negative
    assert one("01 7A FE").value == 254  # bus address
    assert one("04 78 FF FF FF FF").value == 0xFFFFFFFF  # fabrication number


def test_type_c_via_combinable_extension() -> None:
    # FC 11: data presented with type C (unsigned)
    r = one("02 FD BA FC 11 FF FF")
    assert (r.quantity, r.value, r.qualifiers) == ("dimensionless", 0xFFFF, ("data_type:C",))


def test_invalid_bcd_rule() -> None:
    r = one("3C 2A DD B4 EB DD")  # abb_f95: value during error state with non-BCD digits
    assert r.value is None and not r.valid
    assert r.function is FunctionField.ERROR and r.data == h("DD B4 EB DD")
    assert encode_records([r]) == h("3C 2A DD B4 EB DD")


def test_real32_scaled() -> None:
    r = one("05 38 00 00 C0 3F")  # 1.5 in 10^-6 m^3/h units
    assert isinstance(r.value, float) and r.value == pytest.approx(1.5e-6)
    r = one("05 2E 00 00 C0 3F")  # kW
    assert r.value == 1500.0


def test_no_data_field() -> None:
    r = one("00 13")
    assert r.value is None and r.data == b"" and r.kind is RecordKind.DATA


# --- variable length ----------------------------------------------------------------------

def test_lvar_text_reversed() -> None:
    r = one("0D FD 0B 06 35 33 32 44 56 52")  # siemens_rvd235 model "RVD235"
    assert r.value == "RVD235" and r.lvar == 6 and r.data == b"532DVR"


def test_lvar_bcd_counts_bytes_times_two_digits() -> None:
    r = one("0D 13 C2 34 12")  # libmbus bug: reads 4 bytes; standard: 2 bytes = 4 digits
    assert r.value == Decimal("1.234") and r.raw == h("0D 13 C2 34 12")
    r = one("0D 13 D3 56 34 12")
    assert r.value == Decimal("-123.456")
    assert one("0D 13 C0").value == 0


def test_lvar_binary_sizes() -> None:
    assert one("0D 7F E3 01 02 03").value == h("01 02 03")
    assert len(one("0D 7F F0" + " 00" * 16).data) == 16
    assert len(one("0D 7F F4" + " 00" * 32).data) == 32
    assert len(one("0D 7F F5" + " 00" * 48).data) == 48
    assert len(one("0D 7F F6" + " 00" * 64).data) == 64


def test_lvar_reserved_is_error() -> None:
    with pytest.raises(DecodeError) as exc:
        decode_records(h("04 03 00 00 00 00 0D 7F F7 00"))
    assert exc.value.offset == 8 and exc.value.record == 1


# --- special DIFs -------------------------------------------------------------------------

def test_more_records_follow() -> None:
    recs = decode_records(h("04 03 01 00 00 00 1F AA BB"))
    assert recs[1].more_records_follow and recs[1].value == h("AA BB")
    assert recs[1].kind is RecordKind.MANUFACTURER


def test_reserved_special_dif() -> None:
    for dif in ("3F", "4F", "5F", "6F", "8F", "FF"):
        with pytest.raises(DecodeError) as exc:
            decode_records(h("2F " + dif))
        assert exc.value.offset == 1 and exc.value.record == 1


def test_global_readout_in_stream() -> None:
    recs = decode_records(h("7F 2F"), from_master=True)
    assert [r.kind for r in recs] == [RecordKind.GLOBAL_READOUT, RecordKind.FILLER]


# --- DIFE ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("storage", "tariff", "subunit"),
    [(0, 0, 0), (1, 0, 0), (2, 0, 0), (31, 0, 0), (32, 0, 0), (0, 1, 0), (0, 3, 0),
     (0, 4, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3), (5, 2, 1), (1 << 40, 0, 0),
     ((1 << 41) - 1, (1 << 20) - 1, (1 << 10) - 1)],
)
def test_dife_storage_tariff_subunit(storage: int, tariff: int, subunit: int) -> None:
    r = build_record(vif=h("03"), value=7, data_field=1, storage=storage, tariff=tariff,
                     subunit=subunit)
    assert (r.storage, r.tariff, r.subunit) == (storage, tariff, subunit)
    assert decode_records(r.raw) == [r]
    assert len(r.dife) <= 10


def test_dife_bits_by_hand() -> None:
    # DIF 0xC4: storage LSB 1; DIFE 0x9A: storage bits 1010, tariff 01; DIFE 0x40: subunit 2
    r = one("C4 9A 40 03 00 00 00 00")
    assert (r.storage, r.tariff, r.subunit) == (1 | (0xA << 1), 1, 2)


def test_ten_difes_ok_eleven_too_many() -> None:
    ten = "84 " + "80 " * 9 + "00 03 01 00 00 00"
    assert one(ten).dife == (0x80,) * 9 + (0x00,)
    with pytest.raises(DecodeError) as exc:
        decode_records(h("84 " + "80 " * 10 + "00 03 01 00 00 00"))
    assert exc.value.offset == 11 and exc.value.record == 0
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value=0, data_field=4, storage=1 << 41)


# --- VIF / VIFE ---------------------------------------------------------------------------

def test_ten_vifes_ok_eleven_too_many() -> None:
    r = one("01 83 " + "FC 81 " * 4 + "FC 01 00")  # 10 VIFEs: phases
    assert len(r.vife) == 10
    with pytest.raises(DecodeError) as exc:
        decode_records(h("01 83 " + "BB " * 10 + "3B 00"))
    assert exc.value.offset == 12 and exc.value.record == 0


@pytest.mark.parametrize(("vife", "factor"), [(0x70 + n, Decimal(10) ** (n - 6)) for n in range(8)]
                         + [(0x7D, Decimal(1000))])
def test_multiplicative_corrections(vife: int, factor: Decimal) -> None:
    r = one(f"02 83 {vife:02X} 0A 00")  # 10 Wh, corrected
    assert r.value == 10 * factor and r.qualifiers == ()


@pytest.mark.parametrize("nn", range(4))
def test_additive_correction(nn: int) -> None:
    r = one(f"01 86 {0x78 + nn:02X} 05")  # 5 kWh + 10^(nn-3) kWh, in Wh
    assert r.value == 5000 + Decimal(10) ** (nn - 3) * 1000


@pytest.mark.parametrize(
    ("vife", "qualifiers"),
    [("3B", ("import",)), ("3C", ("export",)), ("22", ("per:hour",)),
     ("20", ("per:second",)), ("40", ("limit:lower",)), ("48", ("limit:upper",)),
     ("FC 02", ("phase:L2",)), ("FC 04", ("phase:N",)), ("FC 05", ("phase:L1-L2",)),
     ("FC 09", ("quadrant:Q2",)), ("FC 0B", ("quadrant:Q4",)),
     ("FC 0C", ("delta:import-export",)), ("BC FC 01", ("export", "phase:L1")),
     ("12", ("average",)), ("7E", ("future_value",)), ("3A", ("uncorrected",))],
)
def test_qualifiers(vife: str, qualifiers: tuple[str, ...]) -> None:
    vib = h("83 " + vife)
    r = one("01 " + vib.hex() + " 01")
    assert r.qualifiers == qualifiers and r.quantity == "energy" and r.valid


def test_record_error_vife_and_object_action() -> None:
    r = one("02 93 16 FF FF")  # volume, error "data overflow"
    assert not r.valid and r.qualifiers == ("error:data_overflow",) and r.value is not None
    ok = one("02 93 00 01 00")  # error code 0x00: no error
    assert ok.valid and ok.qualifiers == ("error:none",)
    act = one("04 93 01 0A 00 00 00", from_master=True)  # add 10 l to the volume (SND_UD)
    assert act.qualifiers == ("action:add",) and act.valid


def test_duration_and_count_vifes_replace_the_unit() -> None:
    r = one("02 BB 5A 05 00")  # volume flow, duration of first upper limit exceed in hours
    assert r.quantity == "volume_flow" and r.unit == "h" and r.value == 5
    assert r.qualifiers == ("limit_exceed_duration:upper:first",)
    r = one("01 BB 49 03")  # number of exceeds of upper limit
    assert r.unit == "" and r.value == 3
    r = one("04 DA 6F 32 14 7A 18")  # Landis+Gyr T230: date of flow temperature maximum
    assert r.value == datetime(2011, 8, 26, 20, 50) and r.unit == ""


def test_unknown_codes_decode_as_raw() -> None:
    r = one("01 6F 05")  # VIF 0x6F: third extension, reserved
    assert r.quantity == "unknown" and r.value == 5
    r = one("01 FB 3F 05")  # reserved FB code
    assert r.quantity == "unknown" and r.value == 5
    r = one("01 83 11 05")  # reserved combinable VIFE 0x11
    assert r.qualifiers == ("vife:11",) and r.value == 5


def test_manufacturer_vif_and_vife() -> None:
    r = one("01 FF E1 FF 01 0D")  # EMU: manufacturer VIF, its VIFEs are not combinable
    assert r.quantity == "manufacturer_specific" and r.qualifiers == () and r.value == 13
    r = one("02 FD C9 FF 01 DE 00")  # Finder: voltage with manufacturer VIFE (phase 1)
    assert r.quantity == "voltage" and r.value == 222
    assert r.qualifiers == ("manufacturer_vife",) and r.vife == (0xC9, 0xFF, 0x01)
    r = one("04 83 FF 75 01 00 00 00")  # 0x75 after 0xFF must not scale (m-bus-parser #114)
    assert r.value == 1


def test_plain_text_vif() -> None:
    r = one("02 FC 03 48 52 25 74 22 15")  # Elvaco CMa10: "%RH" then VIFE 0x74 (x10^-2)
    assert (r.quantity, r.unit, r.plain_unit, r.value) == ("plain_text", "%RH", "%RH",
                                                          Decimal("54.10"))
    r = one("01 7C 01 41 07")
    assert r.unit == "A" and r.vife == () and r.value == 7


def test_fd_second_level() -> None:
    r = one("01 FD FD 03 04")
    assert (r.quantity, r.unit, r.value) == ("remaining_battery_lifetime", "year", 4)


# --- dates --------------------------------------------------------------------------------

def test_date_types() -> None:
    assert one("02 6C BF 1C").value == date(2013, 12, 31)  # type G
    assert one("04 6D 32 37 1F 15").value == datetime(2008, 5, 31, 23, 50)  # type F day 31
    assert one("04 6D 10 09 05 C5").value == datetime(1996, 5, 5, 9, 16)  # HY=0, YY=96
    assert one("03 6D 05 1E 17").value == time(23, 30, 5)  # type J
    i = build_record(vif=h("6D"), value=datetime(2024, 2, 29, 23, 59, 58), data_field=6)
    assert i.value == datetime(2024, 2, 29, 23, 59, 58)
    assert i.data[2] >> 5 == 4  # Thursday
    f = one("04 6D 00 00 21 F1")  # HY=0 YY=0x7F? impossible year
    assert f.value is None and not f.valid


def test_invalid_dates() -> None:
    iv = one("04 6D 8A 2D 82 09")  # IV bit set
    assert iv.value is None and not iv.valid and iv.data == h("8A 2D 82 09")
    zero = one("02 6C 00 00")  # type G all zero: not set
    assert zero.value is None and not zero.valid
    assert one("06 6D 00 80 00 01 01 00").value is None  # type I IV bit (byte 1 bit 7)
    assert one("04 6D 00 00 3E 02").value is None  # 30 February


@pytest.mark.parametrize("year", [1981, 1999, 2000, 2050, 2080, 2099, 2100, 2299])
def test_type_f_centuries(year: int) -> None:
    moment = datetime(year, 7, 4, 12, 34)
    r = build_record(vif=h("6D"), value=moment, data_field=4)
    assert r.value == moment


def test_date_encode_errors() -> None:
    with pytest.raises(EncodeError):
        build_record(vif=h("6D"), value=datetime(1970, 1, 1), data_field=4)
    with pytest.raises(EncodeError):
        build_record(vif=h("6D"), value=datetime(2020, 1, 1, 0, 0, 1), data_field=4)
    with pytest.raises(EncodeError):
        build_record(vif=h("6C"), value=date(2081, 1, 1), data_field=2)
    with pytest.raises(EncodeError):
        build_record(vif=h("6C"), value=datetime(2020, 1, 1), data_field=2)
    with pytest.raises(EncodeError):
        build_record(vif=h("6D"), value="2020-01-01", data_field=4)


# --- errors with offsets ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "offset", "record", "words"),
    [
        ("04 03 00 00 00 00 84", 7, 1, "DIFE"),  # DIFE announced, buffer ends
        ("04 03 00 00 00 00 84 80", 8, 1, "DIFE"),
        ("04 03 00 00 00 00 04", 7, 1, "VIF"),  # DIF without VIF
        ("04 83", 2, 0, "VIFE"),  # VIFE announced, missing
        ("04 FD", 2, 0, "VIFE"),
        ("04 03 00 00", 4, 0, "data"),  # data truncated: offset is the end
        ("0D 13", 2, 0, "LVAR"),
        ("0D 13 C3 00", 4, 0, "data"),
        ("02 7C 05 41 42", 5, 0, "plain-text"),
        ("02 7C", 2, 0, "plain-text"),
    ],
)
def test_decode_errors_carry_offset(text: str, offset: int, record: int, words: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_records(h(text))
    assert exc.value.offset == offset and exc.value.record == record
    assert words in str(exc.value)
    diags: list[Diagnostic] = []
    good = decode_records(h(text), strict=False, diagnostics=diags)
    assert len(good) == record and len(diags) == 1 and diags[0].record == record


def test_offset_parameter_is_absolute() -> None:
    buf = h("AA BB 04 03 01 00 00 00 04 83")
    recs = decode_records(buf, 2, strict=False)
    assert len(recs) == 1
    with pytest.raises(DecodeError) as exc:
        decode_records(buf, 2)
    assert exc.value.offset == 10
    with pytest.raises(DecodeError):
        decode_records(buf, 11)


def test_encode_refuses() -> None:
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value=100, data_field=0x09)  # BCD2 overflow
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value=-10, data_field=0x09)  # needs sign + 2 digits
    assert build_record(vif=h("03"), value=-9, data_field=0x09).raw == h("09 03 F9")
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value=1e39, data_field=5)
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value=5, data_field=0)
    with pytest.raises(EncodeError):
        build_record(vif=h("83"), value=5, data_field=1)  # VIFE missing
    with pytest.raises(EncodeError):
        build_record(vif=h("03 22"), value=5, data_field=1)  # byte after the last VIFE
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value=5, data_field=0x0F)
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value="x", data_field=4)
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value=b"\x00" * 17, data_field=0x0D)
    with pytest.raises(EncodeError):
        build_record(vif=h("03"), value="é", data_field=0x0D)
    with pytest.raises(EncodeError):
        build_record(vif=h("13"), value=Decimal("0.0000001"), data_field=4)


def test_build_lvar_values() -> None:
    assert build_record(vif=h("FD 0B"), value="RVD235", data_field=0x0D).raw == h(
        "0D FD 0B 06 35 33 32 44 56 52")
    assert build_record(vif=h("13"), value=Decimal("-123.456"), data_field=0x0D).raw == h(
        "0D 13 D3 56 34 12")
    assert build_record(vif=h("7F"), value=b"\x01\x02", data_field=0x0D).raw == h(
        "0D 7F E2 01 02")


def test_float_input_is_taken_by_its_decimal_repr() -> None:
    r = build_record(vif=h("FD 48"), value=232.7, data_field=2)  # 0.1 V register
    assert r.value == Decimal("232.7") and r.data == h("17 09")


def test_decoded_records_behave_as_frozen_dataclasses() -> None:
    import copy
    import dataclasses
    import pickle

    r = one("04 FD C8 FC 01 17 09 00 00")
    assert type(r) is DataRecord
    assert pickle.loads(pickle.dumps(r)) == r and copy.copy(r) == r
    assert hash(r) == hash(dataclasses.replace(r))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 1  # type: ignore[misc]


def test_finder_7e_manufacturer_phase_convention() -> None:
    # kamstrup-frames.txt C2: Finder 7E.23 wired RSP_UD records (hottis.de capture)
    recs = decode_records(h("8C 10 04 06 00 00 00 8C 11 04 00 00 00 00 02 FD C9 FF 01 DE 00"
                            " 02 FD DB FF 01 56 00 02 AC FF 01 CD 00 82 40 AC FF 01 00 00"))
    assert [(r.quantity, r.value) for r in recs] == [
        ("energy", 60), ("energy", 0), ("voltage", 222), ("current", Decimal("8.6")),
        ("power", 2050), ("power", 0)]
    assert (recs[0].tariff, recs[0].storage) == (1, 0)
    assert (recs[1].tariff, recs[1].storage) == (1, 2)
    assert recs[5].subunit == 1
    assert all(r.qualifiers == ("manufacturer_vife",) for r in recs[2:])


def test_em24_full_record_list() -> None:
    # kamstrup-frames.txt C1: Carlo Gavazzi EM24 records after the 2F 2F check bytes
    payload = h(
        "2F 2F 04 05 01 00 00 00 04 FB 82 75 00 00 00 00 04 FB 82 F5 3C 00 00 00 00"
        " 04 2A 00 00 00 00 04 FB 14 00 00 00 00 04 FB 94 3C 00 00 00 00"
        " 04 FD D9 FC 01 00 00 00 00 04 FD D9 FC 02 00 00 00 00 04 FD D9 FC 03 00 00 00 00"
        " 04 FD C8 FC 01 17 09 00 00 04 FD C8 FC 02 EC 04 00 00 04 FD C8 FC 03 EC 04 00 00"
        " 02 FB 2E F4 01 01 FD 17 00 2F 2F 2F")
    recs = [r for r in decode_records(payload) if r.kind is RecordKind.DATA]
    assert encode_records(decode_records(payload)) == payload
    assert [(r.quantity, r.qualifiers) for r in recs] == [
        ("energy", ()), ("reactive_energy", ()), ("reactive_energy", ("export",)),
        ("power", ()), ("reactive_power", ()), ("reactive_power", ("export",)),
        ("current", ("phase:L1",)), ("current", ("phase:L2",)), ("current", ("phase:L3",)),
        ("voltage", ("phase:L1",)), ("voltage", ("phase:L2",)), ("voltage", ("phase:L3",)),
        ("frequency", ()), ("error_flags", ())]
    assert recs[0].value == 100 and recs[9].value == Decimal("232.7")
    assert recs[10].value == Decimal("126.0") and recs[12].value == Decimal("50.0")


def test_header_is_the_dib_and_vib() -> None:
    assert one("04 FB 82 75 3F 00 00 00").header == h("04 FB 82 75")
    assert one("0D FD 0B 06 35 33 32 44 56 52").header == h("0D FD 0B")
    assert one("08 83 3C").header == h("08 83 3C")
    assert one("0F 01 02").header == h("0F")
    assert one("2F").header == h("2F")
