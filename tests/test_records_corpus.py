"""The record decoder on the libmbus corpus (/work/shared/corpus/libmbus, BSD-3-Clause).

Values are compared with libmbus's normalized XML (SI units, durations in seconds). Where we
differ on purpose, the record is listed in DIFFERENCES with the reason.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from mbuskit.codec.link import LongFrame, decode_frame
from mbuskit.codec.records import Diagnostic, RecordKind, decode_records, encode_records
from mbuskit.errors import DecodeError

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "libmbus"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="libmbus corpus not present")

SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86400}

# (frame, record hex): why our value differs from libmbus's
DIFFERENCES = {
    # DIF 3C/3B: value during error state holding non-BCD digits; libmbus turns the nibbles
    # into a number, we give None / valid=False (rule in records.py).
    ("abb_f95", "3c2addb4ebdd"),
    ("abb_f95", "3b3addb4eb"),
    # VIFE 0x6F "date(/time) of last end": the record is a date; libmbus ignores the VIFE
    # and prints the date bytes as a power / flow number.
    ("landis+gyr_ultraheat_t230", "9410ad6f00000000"),
    ("landis+gyr_ultraheat_t230", "9410bb6f00000000"),
    ("landis+gyr_ultraheat_t230", "9410da6f32147a18"),
    ("landis+gyr_ultraheat_t230", "9410de6f2b0b6918"),
}


def _read_hex(path: Path) -> bytes:
    # As libmbus's mbus_hex2bin: whitespace-separated tokens, stop at the first bad one.
    out = bytearray()
    for token in path.read_text().split():
        try:
            out.append(int(token, 16))
        except ValueError:
            break
    return bytes(out)


def _payload(path: Path) -> bytes | None:
    frame = decode_frame(_read_hex(path))
    if isinstance(frame, LongFrame) and frame.ci in (0x72, 0x76) and len(frame.data) >= 12:
        return frame.data[12:]
    return None


FRAMES = sorted((CORPUS / "test-frames").glob("*.hex")) if CORPUS.is_dir() else []
# Record-level proof needs variable data (CI 72h/76h); the CI 73h fixed-structure frames are
# covered by tests/test_corpus.py at the telegram level.
VARIABLE = [p for p in FRAMES if _payload(p) is not None]


def test_variable_data_frames_are_most_of_the_corpus() -> None:
    assert len(FRAMES) - len(VARIABLE) <= 2


@pytest.mark.parametrize("path", VARIABLE, ids=lambda p: p.stem)
def test_corpus_frame_decodes_exactly(path: Path) -> None:
    payload = _payload(path)
    assert payload is not None
    records = decode_records(payload)
    assert encode_records(records) == payload
    norm = path.with_suffix(".norm.xml")
    expected = ET.parse(norm).getroot().findall("DataRecord")
    ours = [r for r in records if r.kind is not RecordKind.FILLER]
    assert len(ours) == len(expected)
    for xml, rec in zip(expected, ours, strict=True):
        text = xml.findtext("Value")
        try:
            theirs = float(text or "")
        except ValueError:
            continue
        if (path.stem, rec.raw.hex()) in DIFFERENCES:
            continue
        assert not isinstance(rec.value, datetime | date | time | str | bytes) or rec.value is None
        assert rec.value is not None, rec
        value = float(rec.value)
        value *= SECONDS.get(rec.unit, 1)
        assert math.isclose(value, theirs, rel_tol=1e-5, abs_tol=1e-6), (rec, text)
        assert int(xml.findtext("StorageNumber") or 0) == rec.storage
        assert int(xml.findtext("Tariff") or 0) == rec.tariff
        assert int(xml.findtext("Device") or 0) == rec.subunit


def test_corpus_dates_match_libmbus() -> None:
    checked = 0
    for path in FRAMES:
        payload = _payload(path)
        if payload is None:
            continue
        records = [r for r in decode_records(payload) if r.kind is not RecordKind.FILLER]
        expected = ET.parse(path.with_suffix(".xml")).getroot().findall("DataRecord")
        for xml, rec in zip(expected, records, strict=True):
            if (path.stem, rec.raw.hex()) in DIFFERENCES:
                continue
            if isinstance(rec.value, date):  # datetime is a date too
                assert rec.value.isoformat() == xml.findtext("Value")
                checked += 1
    assert checked > 80


def test_corpus_decimal_values_are_exact() -> None:
    payload = _payload(CORPUS / "test-frames" / "ELV-Elvaco-CMa10.hex")
    assert payload is not None
    records = decode_records(payload)
    assert records[1].value == Decimal("54.10") and records[1].unit == "%RH"


@pytest.mark.parametrize(
    ("name", "good", "words"),
    [
        ("premature_end_of_data1", 2, "premature end of data"),
        ("premature_end_of_data2", 2, "premature end of data"),
        ("premature_end_of_dif1", 2, "DIFE"),
        ("premature_end_of_dif2", 2, "DIFE"),
        ("premature_end_of_vif1", 2, "VIF"),
        ("premature_end_of_var_vif1", 3, "plain-text"),
        ("too_long_var_vif", 3, "plain-text"),
        ("too_many_dife", 2, "more than 10 DIFEs"),
        ("too_many_vife", 2, "more than 10 VIFEs"),
    ],
)
def test_corpus_error_frames(name: str, good: int, words: str) -> None:
    payload = _payload(CORPUS / "error-frames" / f"{name}.hex")
    assert payload is not None
    with pytest.raises(DecodeError) as exc:
        decode_records(payload)
    assert words in str(exc.value)
    assert exc.value.offset is not None and 0 <= exc.value.offset <= len(payload)
    diags: list[Diagnostic] = []
    records = decode_records(payload, strict=False, diagnostics=diags)
    assert len(records) == good and len(diags) == 1
    assert diags[0].record == good
    assert encode_records(records) == payload[: diags[0].offset]
