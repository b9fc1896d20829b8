"""EN 13757-3 application layer (mbuskit.codec): headers, CI handling, selection, Telegram."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mbuskit.codec.ci import CI, medium_name, reset_subcode_name
from mbuskit.codec.header import (
    FixedHeader,
    LongHeader,
    SecondaryAddress,
    ShortHeader,
    manufacturer_code,
    manufacturer_letters,
    status_flags,
)
from mbuskit.codec.link import LongFrame
from mbuskit.codec.selection import Selection, decode_selection, encode_selection
from mbuskit.codec.telegram import Telegram, decode_telegram, encode_telegram, encrypt_telegram
from mbuskit.errors import DecodeError, EncodeError, FrameError, MBusError, SecurityError


def frame(control: int, address: int, ci: int, data: str = "") -> bytes:
    return LongFrame(control, address, ci, bytes.fromhex(data)).encode()


# --------------------------------------------------------------------------- identification

def test_manufacturer_kam() -> None:
    assert manufacturer_code("KAM") == 0x2C2D
    assert manufacturer_code("kam") == 0x2C2D
    assert manufacturer_letters(0x2C2D) == "KAM"
    assert manufacturer_letters(manufacturer_code("ZRM")) == "ZRM"
    for bad in ("KA", "K4M", "KAMS"):
        with pytest.raises(EncodeError):
            manufacturer_code(bad)


def test_secondary_address_libmbus_form() -> None:
    a = SecondaryAddress(14839120, "KAM", 1, 2)
    assert str(a) == "148391202D2C0102"
    assert a.to_bytes() == bytes.fromhex("209183142D2C0102")
    assert SecondaryAddress.parse("148391202d2c0102") == a
    assert a.id_raw == bytes.fromhex("20918314")


def test_secondary_address_keeps_non_bcd_digits() -> None:
    a = SecondaryAddress.parse("1A3456782D2C0102")
    assert a.id_text == "1A345678"
    assert str(a) == "1A3456782D2C0102"
    # like libmbus, the nibble A counts 10 at its decimal place: 1,10,3,4,5,6,7,8 -> 20345678
    assert a.id == 20345678


@pytest.mark.parametrize("text", ["148391202D2C01", "148391202D2C010G", ""])
def test_secondary_address_parse_errors(text: str) -> None:
    with pytest.raises(DecodeError):
        SecondaryAddress.parse(text)


def test_secondary_address_refuses_inconsistent_fields() -> None:
    with pytest.raises(EncodeError):
        SecondaryAddress(100_000_000, "KAM", 1, 2)
    with pytest.raises(EncodeError):
        SecondaryAddress(1, "KAM", 1, 2, id_raw=bytes.fromhex("02000000"))
    with pytest.raises(EncodeError):
        SecondaryAddress(1, "KAM", 1, 2, manufacturer_code=0x2C2E)
    with pytest.raises(EncodeError):
        SecondaryAddress(1, "KAM", 256, 2)


def test_long_header_encode() -> None:
    h = LongHeader(14839120, "KAM", 1, 2, access_number=4, status=0x10, signature=0x2550)
    assert h.encode() == bytes.fromhex("209183142D2C01020410 5025".replace(" ", ""))
    assert h.encode(msb_first=True) == bytes.fromhex("148391202C2D010204102550")
    assert h.security_mode == 5 and h.encrypted_blocks == 5
    assert str(h.address) == "148391202D2C0102"
    assert h.medium_name == "Electricity"


def test_short_header_encode() -> None:
    assert ShortHeader(7, 0, 0x0510).encode() == bytes.fromhex("07001005")


def test_status_and_medium_names() -> None:
    assert status_flags(0) == ()
    assert status_flags(0x14) == ("power low", "temporary error")
    assert status_flags(0x0B) == ("abnormal condition / alarm", "permanent error")
    assert status_flags(0x20) == ("manufacturer bits 001",)
    assert medium_name(0x02) == "Electricity"
    assert medium_name(0x20) == "Breaker (electricity)"
    assert medium_name(0x40) == "Reserved"


# --------------------------------------------------------------------------------- selection

def test_selection_payload_plain_and_enhanced() -> None:
    assert encode_selection("148391202D2C0102") == bytes.fromhex("209183142D2C0102")
    assert encode_selection(SecondaryAddress(14839120, "KAM", 1, 2)) == bytes.fromhex(
        "209183142D2C0102")
    assert encode_selection("0FFFFFFFFFFFFFFF") == bytes.fromhex("FFFFFF0FFFFFFFFF")
    assert encode_selection("148391202D2C0102", 12345678) == bytes.fromhex(
        "209183142D2C0102 0C78 78563412".replace(" ", ""))
    assert encode_selection("14839120FFFFFFFF", "1234FFFF")[-4:] == bytes.fromhex("FFFF3412")


@pytest.mark.parametrize("bad", [("1483912", None), ("148391202D2C010X", None),
                                 ("148391202D2C0102", 100_000_000),
                                 ("148391202D2C0102", "123")])
def test_selection_encode_errors(bad: tuple[str, int | str | None]) -> None:
    with pytest.raises(EncodeError):
        encode_selection(*bad)


def test_selection_decode_and_match() -> None:
    kam = SecondaryAddress(14839120, "KAM", 1, 2)
    other = SecondaryAddress(14839999, "KAM", 1, 2)
    sel = decode_selection(encode_selection("148391FFFFFFFFFF"))
    assert sel.mask == "148391FFFFFFFFFF" and sel.fabrication is None
    assert sel.matches(kam) and not sel.matches(other)
    assert decode_selection(encode_selection("FFFFFFFF2D2CFF02")).matches(other)
    assert not decode_selection(encode_selection("FFFFFFFF2D2CFF04")).matches(kam)
    assert not decode_selection(encode_selection("FFFFFFFF2DFFFFFF")).matches(
        SecondaryAddress(1, "KAN", 1, 2))
    assert decode_selection(encode_selection("FFFFFFFF2DFFFFFF")).matches(
        SecondaryAddress(1, "KAM", 1, 2))
    assert not decode_selection(encode_selection("FFFFFFFFFFFF02FF")).matches(kam)


def test_enhanced_selection_matches_fabrication() -> None:
    kam = SecondaryAddress(14839120, "KAM", 1, 2)
    sel = decode_selection(encode_selection("148391202D2C0102", "5512FFFF"))
    assert sel.fabrication == "5512FFFF"
    assert sel.matches(kam, 55120001)
    assert sel.matches(kam, "55129999")
    assert not sel.matches(kam, 55130001)
    assert not sel.matches(kam)  # the meter has no fabrication number to compare


@pytest.mark.parametrize("data", ["209183142D2C01", "209183142D2C0102 0C", "209183142D2C0102"
                                  "0D7812345678"])
def test_selection_decode_errors(data: str) -> None:
    with pytest.raises(DecodeError):
        decode_selection(bytes.fromhex(data.replace(" ", "")))


def test_selection_constructor_checks() -> None:
    with pytest.raises(EncodeError):
        Selection("1234567", b"\xff\xff", 0xFF, 0xFF)
    with pytest.raises(EncodeError):
        Selection("12345678", b"\xff", 0xFF, 0xFF)


@given(st.text("0123456789F", min_size=8, max_size=8), st.binary(min_size=2, max_size=2),
       st.integers(0, 255), st.integers(0, 255),
       st.none() | st.text("0123456789F", min_size=8, max_size=8))
def test_selection_round_trip(ident: str, man: bytes, ver: int, med: int, fab: str | None) -> None:
    mask = ident + man.hex().upper() + f"{ver:02X}{med:02X}"
    payload = encode_selection(mask, fab)
    sel = decode_selection(payload)
    assert sel.mask == mask and sel.fabrication == fab
    assert sel.encode() == payload


# ----------------------------------------------------------------------- CIs without records

def test_selection_telegram() -> None:
    raw = bytes.fromhex("680B0B6873FD52209183142D2C01026616")
    t = decode_telegram(raw)
    assert t.ci == CI.SELECTION and t.address == 0xFD
    assert t.selection is not None and t.selection.mask == "148391202D2C0102"
    assert encode_telegram(t).encode() == raw
    deselect = decode_telegram(frame(0x53, 0xFD, 0x56, "209183142D2C0102"))
    assert deselect.selection == t.selection


@pytest.mark.parametrize(("code", "text"), [(0, "Unspecified error"),
                                            (1, "Unimplemented CI-Field"),
                                            (8, "Application busy"), (9, "Too many readouts")])
def test_application_error(code: int, text: str) -> None:
    raw = frame(0x08, 0x01, 0x70, f"{code:02X}")
    t = decode_telegram(raw)
    assert t.error_code == code and t.error_text == text
    assert encode_telegram(t).encode() == raw


def test_application_error_without_code() -> None:
    raw = bytes.fromhex("680303680801707916")
    t = decode_telegram(raw)
    assert t.error_code is None and t.error_text == "Unspecified error"
    assert encode_telegram(t).encode() == raw


def test_alarm_telegram() -> None:
    t = decode_telegram(frame(0x08, 0x05, 0x71, "04"))
    assert t.alarm == 4
    assert encode_telegram(t).encode() == frame(0x08, 0x05, 0x71, "04")


def test_application_reset_subcodes() -> None:
    bare = decode_telegram(bytes.fromhex("6803036853015 0A416".replace(" ", "")))
    assert bare.ci == CI.APPLICATION_RESET and bare.subcode is None
    t = decode_telegram(frame(0x53, 0x01, 0x50, "32"))
    assert t.subcode == 0x32
    assert reset_subcode_name(0x32) == "enhanced billing, sub-telegram 2"
    assert reset_subcode_name(0x00) == "all, sub-telegram 0"
    assert encode_telegram(t).encode() == frame(0x53, 0x01, 0x50, "32")
    with pytest.raises(DecodeError):
        decode_telegram(frame(0x53, 0x01, 0x50, "3201"))


@pytest.mark.parametrize(("ci", "baud"), [(0xB8, 300), (0xB9, 600), (0xBA, 1200), (0xBB, 2400),
                                          (0xBC, 4800), (0xBD, 9600), (0xBE, 19200),
                                          (0xBF, 38400)])
def test_baud_switch(ci: int, baud: int) -> None:
    raw = frame(0x53, 0x01, ci)
    t = decode_telegram(raw)
    assert t.baud == baud
    assert encode_telegram(t).encode() == raw


def test_baud_switch_with_data_refused() -> None:
    with pytest.raises(DecodeError):
        decode_telegram(frame(0x53, 0x01, 0xBD, "00"))


def test_manufacturer_ci_keeps_payload() -> None:
    raw = frame(0x08, 0x01, 0xA1, "0102030405")
    t = decode_telegram(raw)
    assert t.payload == bytes.fromhex("0102030405") and t.records == ()
    assert encode_telegram(t).encode() == raw


def test_unknown_ci() -> None:
    raw = frame(0x08, 0x01, 0x99, "0102")
    with pytest.raises(DecodeError, match="unknown CI 99"):
        decode_telegram(raw)
    t = decode_telegram(raw, strict=False)
    assert t.diagnostics and t.diagnostics[0].reason == "unknown CI 99"
    assert encode_telegram(t).encode() == raw


def test_non_long_frames_are_refused() -> None:
    with pytest.raises(DecodeError, match="ShortFrame"):
        decode_telegram(bytes.fromhex("105B015C16"))
    with pytest.raises(FrameError):
        decode_telegram(bytes.fromhex("68000068 0816".replace(" ", "")))


def test_truncated_long_header() -> None:
    with pytest.raises(DecodeError, match="12 bytes"):
        decode_telegram(bytes.fromhex("6808086808027278563412 24B416".replace(" ", "")))


# ------------------------------------------------------------------- fixed data structure

def test_fixed_bcd_counters() -> None:
    # libmbus test frame manual_frame2: ID 12345678, water, 1 l and historic 135 l
    raw = bytes.fromhex("68131368080573785634120A00E97E010000003501000" "03C16")
    t = decode_telegram(raw)
    h = t.header
    assert isinstance(h, FixedHeader)
    assert (h.id, h.access_number, h.medium_name) == (12345678, 10, "Water")
    first, second = t.records
    assert (first.quantity, first.unit, first.value, first.storage) == (
        "volume", "m^3", Decimal("0.001"), 0)
    assert (second.unit, second.value, second.storage) == ("m^3", Decimal("0.135"), 1)
    assert t.meter == "12345678"
    assert encode_telegram(t).encode() == raw


def test_fixed_binary_and_msb_counters() -> None:
    # status bit 7: binary counters; unit 0x05 kWh, 0x29 l; medium bits give heat (4)
    lsb = "78563412" "01" "80" "05" "69" "39300000" "10000000"
    t = decode_telegram(frame(0x08, 0x01, 0x73, lsb))
    assert [r.value for r in t.records] == [12345 * 1000, Decimal("0.016")]
    assert isinstance(t.header, FixedHeader) and t.header.medium_name == "Heat"
    msb = "12345678" "01" "80" "05" "69" "00003039" "00000010"
    t2 = decode_telegram(frame(0x08, 0x01, 0x77, msb))
    assert [r.value for r in t2.records] == [r.value for r in t.records]
    assert isinstance(t2.header, FixedHeader) and t2.header.id == 12345678
    assert encode_telegram(t2).encode() == frame(0x08, 0x01, 0x77, msb)


def test_fixed_errors() -> None:
    with pytest.raises(DecodeError, match="16 bytes"):
        decode_telegram(bytes.fromhex(
            "681212680801739392919010000569316500006900003F16"))
    with pytest.raises(DecodeError, match="not BCD"):
        decode_telegram(frame(0x08, 0x01, 0x73, "78563412" "01" "00" "05" "69" "3A000000"
                              "10000000"))


# --------------------------------------------------------------------------- robustness

@given(st.integers(0, 255), st.binary(max_size=60))
def test_only_mbus_errors_escape(ci: int, data: bytes) -> None:
    raw = LongFrame(0x08, 0x01, ci, data).encode()
    for strict in (True, False):
        try:
            t = decode_telegram(raw, strict=strict)
        except MBusError:
            continue
        if not t.diagnostics:
            assert encode_telegram(t).encode() == raw


# ------------------------------------------------------------------- variable data telegrams

KAMSTRUP_382 = bytes.fromhex(  # libmbus test-frames/kamstrup_382_005.hex (BSD-3)
    "68 46 46 68 08 78 72 20 91 83 14 2D 2C 01 02 04 00 00 00 04 06 00 00 00 00 04 22 09 00 00"
    " 00 04 2B 00 00 00 00 14 2B 00 00 00 00 84 50 06 00 00 00 00 84 60 06 00 00 00 00 0F 00 00"
    " 00 00 00 00 00 00 00 00 00 00 00 00 00 10 24 16")
KAM_RECORDS = "0406D2040000042209000000042B64000000"  # 1234 kWh, 9 h, 100 W
KEY = bytes(range(16))


def test_kamstrup_382_long_header() -> None:
    t = decode_telegram(KAMSTRUP_382)
    h = t.header
    assert isinstance(h, LongHeader)
    assert (h.id, h.manufacturer, h.version, h.medium, h.access_number) == (
        14839120, "KAM", 1, 2, 4)
    assert str(t.secondary_address) == "148391202D2C0102" and t.meter == "148391202D2C0102"
    assert [r.dif for r in t.records] == [0x04, 0x04, 0x04, 0x14, 0x84, 0x84, 0x0F]
    assert (t.records[4].tariff, t.records[4].subunit) == (1, 1)
    assert not t.encrypted and not t.more_records_follow
    assert encode_telegram(t).encode() == KAMSTRUP_382


def test_long_header_non_bcd_id_decodes() -> None:
    raw = frame(0x08, 0x01, 0x72, "2A9183142D2C01020400 0000".replace(" ", "") + KAM_RECORDS)
    t = decode_telegram(raw)
    assert isinstance(t.header, LongHeader) and t.header.id_text == "1483912A"
    assert encode_telegram(t).encode() == raw


def test_short_header_and_no_header() -> None:
    short = frame(0x08, 0x01, 0x7A, "07000000" + KAM_RECORDS)
    t = decode_telegram(short)
    assert isinstance(t.header, ShortHeader) and t.header.access_number == 7
    assert t.records[0].value == 1234 * 1000 and t.records[0].unit == "Wh"
    assert encode_telegram(t).encode() == short
    bare = frame(0x08, 0x01, 0x78, KAM_RECORDS)
    t2 = decode_telegram(bare)
    assert t2.header is None and t2.records == t.records
    assert encode_telegram(t2).encode() == bare


def test_mode2_msb_first() -> None:
    lsb = decode_telegram(frame(0x08, 0x01, 0x72, "209183142D2C010204000000" + KAM_RECORDS))
    msb_raw = frame(0x08, 0x01, 0x76, "148391202C2D010204000000"
                    "0406000004D2" "042200000009" "042B00000064")
    msb = decode_telegram(msb_raw)
    assert msb.header == lsb.header
    assert [r.value for r in msb.records] == [r.value for r in lsb.records]
    assert encode_telegram(msb).encode() == msb_raw


def test_data_send_from_master() -> None:
    raw = bytes.fromhex("680606685 3FE51017A0825 16".replace(" ", ""))
    t = decode_telegram(raw)
    assert t.ci == CI.DATA_SEND and t.records[0].value == 8
    assert encode_telegram(t).encode() == raw


def test_more_records_follow() -> None:
    t = decode_telegram(frame(0x08, 0x01, 0x78, KAM_RECORDS + "1F0102"))
    assert t.more_records_follow


def test_damaged_records_strict_and_lenient() -> None:
    raw = frame(0x08, 0x01, 0x72, "209183142D2C010204000000" + KAM_RECORDS + "0406D204")
    with pytest.raises(DecodeError) as info:
        decode_telegram(raw)
    assert info.value.record == 3
    t = decode_telegram(raw, strict=False)
    assert len(t.records) == 3 and t.payload == bytes.fromhex("0406D204")
    (diag,) = t.diagnostics
    assert diag.record == 3 and diag.offset == 12 + len(KAM_RECORDS) // 2
    assert "premature end" in diag.reason
    assert str(diag).endswith(f"(record 3, offset {diag.offset})")
    assert encode_telegram(t).encode() == raw  # nothing lost


# ------------------------------------------------------------------------------ encryption

def _plain_kam(signature: int = 0) -> Telegram:
    t = decode_telegram(frame(0x08, 0x01, 0x72, "209183142D2C0102 0900".replace(" ", "")
                              + f"{signature & 0xFF:02X}{signature >> 8:02X}" + KAM_RECORDS))
    return t


def test_mode5_round_trip() -> None:
    from mbuskit.codec.security import KeyStore

    sealed = encrypt_telegram(_plain_kam(), KEY)
    assert isinstance(sealed.header, LongHeader)
    assert sealed.header.security_mode == 5 and sealed.header.encrypted_blocks == 2
    raw = encode_telegram(sealed).encode()
    assert KAM_RECORDS.lower() not in raw.hex()
    for keys in (KEY, KeyStore({"148391202D2C0102": KEY}), KeyStore({"14839120": KEY})):
        t = decode_telegram(raw, keys=keys)
        assert t.encrypted and t.decrypted
        data = [r for r in t.records if r.kind.value == "data"]
        assert data[0].value == 1234000 and data[2].value == 100
        assert encode_telegram(t).encode() == raw  # ciphertext re-sent exactly


def test_mode5_published_vector_through_a_long_header() -> None:
    # The AMB8426-M manual's mode 5 example (see test_security.py), carried in a wired long
    # header with the same identity: the IV comes from the header fields.
    header = "78563412" "A205" "00" "03" "35" "00" "1005"
    raw = frame(0x08, 0x01, 0x72, header + "1E34C77CFE6C59B154B663297FE6C3F7")
    t = decode_telegram(raw, keys=KEY)
    assert isinstance(t.header, LongHeader) and str(t.header.address) == "12345678A2050003"
    (text,) = [r for r in t.records if r.kind.value == "data"]
    assert text.plain_unit == "ENC TEST"
    assert encode_telegram(t).encode() == raw


def test_mode5_plain_tail_after_encrypted_blocks() -> None:
    sealed = encrypt_telegram(_plain_kam(), KEY)
    raw = encode_telegram(dataclasses.replace(sealed, payload=sealed.payload + bytes.fromhex(
        "01FD1700"))).encode()
    t = decode_telegram(raw, keys=KEY)
    assert t.records[-1].raw == bytes.fromhex("01FD1700")
    assert encode_telegram(t).encode() == raw


def test_mode5_master_command_long_header() -> None:
    # SND_UD CI 5Bh: the command's long header names the addressed meter and gives the IV
    cmd = decode_telegram(frame(0x53, 0xFD, 0x5B, "209183142D2C0102 0500 0000".replace(" ", "")
                                + "017A08"))
    assert cmd.records[0].value == 8
    sealed = encrypt_telegram(cmd, KEY)
    raw = encode_telegram(sealed).encode()
    back = decode_telegram(raw, keys=KEY)
    assert back.ci == CI.COMMAND_LONG and back.decrypted
    assert [r.value for r in back.records if r.kind.value == "data"] == [8]
    assert encode_telegram(back).encode() == raw


def test_mode5_wrong_or_missing_key() -> None:
    raw = encode_telegram(encrypt_telegram(_plain_kam(), KEY)).encode()
    with pytest.raises(SecurityError, match="wrong key") as info:
        decode_telegram(raw, keys=bytes(16))
    assert info.value.meter == "148391202D2C0102"
    with pytest.raises(SecurityError, match="no key"):
        decode_telegram(raw)
    from mbuskit.codec.security import KeyStore

    with pytest.raises(SecurityError, match="no key"):
        decode_telegram(raw, keys=KeyStore({"99999999": KEY}))
    lenient = decode_telegram(raw, strict=False)
    assert lenient.encrypted and not lenient.decrypted and lenient.records == ()
    assert "no key" in lenient.diagnostics[0].reason
    assert encode_telegram(lenient).encode() == raw


def test_mode7_is_refused_but_kept_exactly() -> None:
    # mode 7 (config 0710h) carries a configuration extension byte after the word
    raw = frame(0x08, 0x01, 0x72, "209183142D2C0102 0900 1007 10".replace(" ", "") + "00" * 16)
    with pytest.raises(SecurityError, match="mode 7"):
        decode_telegram(raw, keys=KEY)
    t = decode_telegram(raw, keys=KEY, strict=False)
    assert isinstance(t.header, LongHeader) and t.header.config_ext == 0x10
    assert t.encrypted and not t.decrypted and "mode 7" in str(t.diagnostics[0])
    assert encode_telegram(t).encode() == raw


def test_mode5_block_count_must_fit() -> None:
    # mode 5, 3 blocks announced, only the records' 18 bytes follow
    with pytest.raises(SecurityError, match="3 encrypted blocks"):
        decode_telegram(frame(0x08, 0x01, 0x72, "209183142D2C010209003005" + KAM_RECORDS),
                        keys=KEY)


def test_legacy_signature_is_not_encryption() -> None:
    # pre-OMS meters filled the signature word freely (FFFF: libmbus amt_calec_mb)
    t = _plain_kam(0xFFFF)
    assert not t.encrypted and t.records[0].value == 1234000


def test_encrypt_needs_long_header() -> None:
    with pytest.raises(EncodeError):
        encrypt_telegram(decode_telegram(frame(0x08, 0x01, 0x78, KAM_RECORDS)), KEY)


def test_short_header_encryption_is_refused_clearly() -> None:
    with pytest.raises(SecurityError, match="wireless link address"):
        decode_telegram(frame(0x08, 0x01, 0x7A, "07001005" + "00" * 16), keys=KEY)


# ----------------------------------------------------------------- built telegrams round trip

_headers = st.builds(
    LongHeader, id=st.integers(0, 99_999_999),
    manufacturer=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3),
    version=st.integers(0, 255), medium=st.integers(0, 255), access_number=st.integers(0, 255),
    status=st.integers(0, 255), signature=st.just(0))
_records = st.lists(st.tuples(st.sampled_from([b"\x06", b"\x2b", b"\x22", b"\x04"]),
                              st.integers(0, 2**31 - 1), st.integers(0, 3), st.integers(0, 1)),
                    max_size=8)


def _built(header: LongHeader, specs: list[tuple[bytes, int, int, int]]) -> Telegram:
    from mbuskit.codec.records import build_record

    scale = {b"\x06": 1000, b"\x04": 10}  # kWh and 10 Wh VIFs: values are given in Wh
    recs = tuple(build_record(vif=vif, value=v * scale.get(vif, 1), data_field=4, tariff=tariff,
                              subunit=sub) for vif, v, tariff, sub in specs)
    return Telegram(0x08, 0x01, 0x72, header, recs)


@given(_headers, _records)
def test_built_telegram_round_trip(header: LongHeader, specs: list[tuple[bytes, int, int, int]]
                                   ) -> None:
    t = _built(header, specs)
    raw = encode_telegram(t).encode()
    back = decode_telegram(raw)
    assert back.header == header and back.records == t.records
    assert encode_telegram(back).encode() == raw


@given(_headers, _records, st.binary(min_size=16, max_size=16))
def test_encrypted_telegram_round_trip(header: LongHeader,
                                       specs: list[tuple[bytes, int, int, int]], key: bytes
                                       ) -> None:
    from mbuskit.codec.records import RecordKind

    sealed = encrypt_telegram(_built(header, specs), key)
    raw = encode_telegram(sealed).encode()
    back = decode_telegram(raw, keys=key)
    assert [r for r in back.records if r.kind is RecordKind.DATA] == list(_built(header,
                                                                               specs).records)
    assert encode_telegram(back).encode() == raw


@given(st.binary(min_size=1, max_size=64), st.integers(0, 255))
def test_fuzz_encrypted_payload_only_mbus_errors(body: bytes, access: int) -> None:
    header = LongHeader(14839120, "KAM", 1, 2, access_number=access,
                        signature=0x0500 | ((len(body) // 16) << 4)).encode()
    raw = LongFrame(0x08, 0x01, 0x72, header + body).encode()
    try:
        t = decode_telegram(raw, keys=KEY)
    except MBusError:
        return
    assert t.decrypted and encode_telegram(t).encode() == raw
