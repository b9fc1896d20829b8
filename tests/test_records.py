"""EN 13757-3 record codec: decode, encode, build, errors.

Real record bytes come from /work/shared/research/kamstrup-frames.txt (Kamstrup 382 frame of
the libmbus corpus, Kamstrup OMNIPOWER and Carlo Gavazzi EM24 telegrams of wmbusmeters).
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest

from mbuskit.errors import DecodeError, EncodeError, MBusError
from mbuskit.records import (
    GLOBAL_READOUT,
    DataRecord,
    Diagnostic,
    FunctionField,
    RecordKind,
    build_record,
    decode_records,
    decode_type_f,
    encode_records,
    encode_type_f,
    global_readout_record,
    manufacturer_record,
    selection_record,
)


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
