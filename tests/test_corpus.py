"""The libmbus frame corpus (BSD-3, read from ../shared at test time) as proof of the decoder.

* every test frame decodes, and ``encode(decode(b)) == b``;
* record by record, function, storage, tariff, device (subunit), unit, quantity and value
  agree with libmbus's normalized XML (``NAME.norm.xml``), except the differences listed in
  ``tests/corpus_deviations.py`` (each with its reason; docs/deviations.md explains them);
* every error and unsupported frame gets the error class asserted below.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

import mbuskit
from corpus_deviations import DEVIATIONS, REASONS
from mbuskit.cli.decode import parse_frame_text
from mbuskit.codec.records import DataRecord, FunctionField, RecordKind
from mbuskit.codec.telegram import Telegram
from mbuskit.errors import DecodeError, FrameError, MBusError, RemoteError

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "libmbus"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"libmbus corpus absent ({CORPUS})")


def _names(folder: str) -> list[str]:
    return sorted(p.stem for p in (CORPUS / folder).glob("*.hex")) if CORPUS.is_dir() else []


TEST_FRAMES = _names("test-frames")


def _frame(folder: str, name: str) -> bytes:
    return parse_frame_text((CORPUS / folder / f"{name}.hex").read_bytes())


# libmbus normalized quantity names for ours (libmbus mbus_vib_unit_normalize tables)
QUANTITY = {
    "actuality_duration": "Actuality Duration", "averaging_duration": "Averaging Duration",
    "current": "Current", "customer_location": "Customer location",
    "date": "Time point (date)", "date_time": "Time point (date & time)",
    "digital_input": "Digital Input", "energy": "Energy",
    "enhanced_identification": "(Enhanced) Identification", "error_flags": "Error flags",
    "external_temperature": "External temperature", "fabrication_number": "Fabrication No",
    "firmware_version": "Firmware version", "flow_temperature": "Flow temperature",
    "hca_units": "H.C.A.", "medium": "Medium", "model_version": "Model / Version",
    "on_time": "On time", "operating_time": "Operating time",
    "parameter_set_id": "Parameter set identification", "power": "Power",
    "reset_counter": "Reset counter", "return_temperature": "Return temperature",
    "software_version": "Software version", "temperature_difference": "Temperature difference",
    "voltage": "Voltage", "volume": "Volume", "volume_flow": "Volume flow",
    "unknown": "Reserved", "manufacturer_specific": "Manufacturer specific",
}
# libmbus unit text where ours is empty because the quantity has no SI unit
UNIT_BY_QUANTITY = {"hca_units": "Units for H.C.A.", "unknown": "Reserved"}
# our unit -> (libmbus unit, factor)
UNIT = {
    "min": ("s", 60), "h": ("s", 3600), "d": ("s", 86400), "": ("", 1),
}
FUNCTION = {
    FunctionField.INSTANTANEOUS: "Instantaneous value", FunctionField.MAXIMUM: "Maximum value",
    FunctionField.MINIMUM: "Minimum value", FunctionField.ERROR: "Value during error state",
}
FIXED_FUNCTION = {0: "Actual value", 1: "Stored value"}


def _libmbus_view(t: Telegram, r: DataRecord) -> dict[str, str | None]:
    """Our record in libmbus's normalized vocabulary (a change of names and units only)."""
    fixed = t.ci in (0x73, 0x77)
    if r.kind is RecordKind.MANUFACTURER:
        function = "More records follow" if r.more_records_follow else "Manufacturer specific"
    elif fixed:
        function = FIXED_FUNCTION[1 if t.header is not None and t.header.status & 0x40 else 0]
    else:
        function = FUNCTION[r.function]
    unit, factor = UNIT.get(r.unit, (r.unit, 1))
    unit = unit or UNIT_BY_QUANTITY.get(r.quantity, "")
    if r.quantity in ("date", "date_time") or r.quantity == "plain_text":
        unit = "-"
    quantity = r.plain_unit if r.quantity == "plain_text" else QUANTITY.get(r.quantity,
                                                                            r.quantity)
    if r.kind is RecordKind.MANUFACTURER:
        quantity = unit = ""
    view: dict[str, str | None] = {
        "Function": function, "Unit": unit, "Quantity": quantity, "Value": _value(r, factor),
    }
    if not fixed:
        view["StorageNumber"] = str(r.storage)
        if r.dife:
            view["Tariff"], view["Device"] = str(r.tariff), str(r.subunit)
    if fixed:
        view["Quantity"] = None
    return view


def _value(r: DataRecord, factor: int) -> str | None:
    v = r.value
    if isinstance(v, bytes):
        return v.hex(" ").upper()
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(v, date | time):
        return v.isoformat()
    if isinstance(v, str) or v is None:
        return v
    return repr(v * factor) if isinstance(v, float) else str(Decimal(v) * factor)


def _same_value(ours: str | None, theirs: str | None) -> bool:
    if ours == theirs:
        return True
    if ours is None or theirs is None:
        return False
    theirs = theirs.removesuffix("Z")
    if ours == theirs:
        return True
    # hex dumps: libmbus's stored XML has transmission order, 0.10.0 prints reversed
    if " " in ours and ours.split() == theirs.split()[::-1]:
        return True
    try:
        a, b = float(ours), float(theirs)
    except (ValueError, ArithmeticError):
        return False
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=5e-7)


def _differences(name: str) -> dict[tuple[int, str], tuple[str | None, str | None]]:
    raw = _frame("test-frames", name)
    t = mbuskit.decode(raw)
    ours = [r for r in t.records if r.kind is not RecordKind.FILLER]
    theirs = ET.fromstring((CORPUS / "test-frames" / f"{name}.norm.xml").read_bytes()
                           .decode("utf-8").split("\n", 1)[1]).findall("DataRecord")
    out: dict[tuple[int, str], tuple[str | None, str | None]] = {}
    if len(ours) != len(theirs):
        out[(-1, "count")] = (str(len(ours)), str(len(theirs)))
    for i, (r, x) in enumerate(zip(ours, theirs, strict=False)):
        view = _libmbus_view(t, r)
        for field in ("Function", "StorageNumber", "Tariff", "Device", "Unit", "Quantity",
                      "Value"):
            mine, libmbus = view.get(field), x.findtext(field)
            if field == "Value":
                if not _same_value(mine, libmbus):
                    out[(i, field)] = (mine, libmbus)
            elif (mine or "") != (libmbus or ""):
                out[(i, field)] = (mine, libmbus)
    return out


@pytest.mark.parametrize("name", TEST_FRAMES)
def test_frame_decodes_and_round_trips(name: str) -> None:
    raw = _frame("test-frames", name)
    t = mbuskit.decode(raw)
    assert not t.diagnostics
    assert mbuskit.encode(t) == raw


@pytest.mark.parametrize("name", TEST_FRAMES)
def test_records_agree_with_libmbus_or_are_listed(name: str) -> None:
    found = _differences(name)
    listed = {key[1:]: reason for key, reason in DEVIATIONS.items() if key[0] == name}
    unexplained = {k: v for k, v in found.items() if k not in listed}
    assert not unexplained, f"{name}: differences not in corpus_deviations.py: {unexplained}"
    stale = sorted(k for k in listed if k not in found)
    assert not stale, f"{name}: listed deviations that no longer occur: {stale}"


def test_every_listed_deviation_has_a_known_reason() -> None:
    assert set(DEVIATIONS.values()) <= set(REASONS)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "deviations.md").read_text()
    for reason in set(DEVIATIONS.values()):
        assert f"`{reason}`" in docs, f"docs/deviations.md does not explain {reason}"


def test_corpus_is_complete() -> None:
    assert len(TEST_FRAMES) >= 60
    assert "kamstrup_382_005" in TEST_FRAMES


def test_kamstrup_382_values() -> None:
    t = mbuskit.decode(_frame("test-frames", "kamstrup_382_005"))
    assert str(t.secondary_address) == "148391202D2C0102"
    on_time = t.records[1]
    assert (on_time.quantity, on_time.value, on_time.unit) == ("on_time", 9, "h")
    assert t.records[3].function is FunctionField.MAXIMUM
    assert (t.records[5].tariff, t.records[5].subunit) == (2, 1)


# ------------------------------------------------------------------ error / unsupported frames

ERROR_FRAMES: dict[str, type[MBusError] | int] = {
    # CI 70h application errors decode to an error telegram with this code
    "application_busy": 0x08, "buffer_too_long": 0x02, "premature_end_of_record": 0x04,
    "too_many_difes": 0x05, "too_many_readouts": 0x09, "too_many_records": 0x03,
    "too_many_vifes": 0x06, "unimplemented_ci": 0x01, "unspecified_error": 0x00,
    "error": -1,  # CI 70h without an error byte: unspecified
    # damaged variable data: the application layer refuses it
    "premature_end_of_data1": DecodeError, "premature_end_of_data2": DecodeError,
    "premature_end_of_dif1": DecodeError, "premature_end_of_dif2": DecodeError,
    "premature_end_of_var_vif1": DecodeError, "premature_end_of_vif1": DecodeError,
    "too_long_var_vif": DecodeError, "too_many_dife": DecodeError,
    "too_many_vife": DecodeError, "too_short_header": DecodeError,
}
UNSUPPORTED_FRAMES: dict[str, type[MBusError] | None] = {
    "invalid_length": FrameError,  # L = 0
    "invalid_length2": DecodeError,  # fixed data structure one byte short
    "manual_frame1": FrameError,  # 'D 04 04 ...': not hex bytes
    "manual_frame4": None, "manual_frame5": None, "manual_frame6": None,  # SND_UD CI 51h
    "svm_f22_telegram2": None,  # DIF 1Fh: manufacturer data, more records follow
}


def test_error_frame_list_is_complete() -> None:
    assert set(_names("error-frames")) == set(ERROR_FRAMES)
    assert set(_names("unsupported-frames")) == set(UNSUPPORTED_FRAMES)


@pytest.mark.parametrize(("name", "expected"), sorted(ERROR_FRAMES.items()))
def test_error_frames(name: str, expected: type[MBusError] | int) -> None:
    path = CORPUS / "error-frames" / f"{name}.hex"
    if isinstance(expected, int):
        raw = _frame("error-frames", name)
        t = mbuskit.decode(raw)
        assert t.ci == 0x70
        assert t.error_code == (None if expected < 0 else expected)
        xml = path.with_suffix(".xml")
        if xml.exists():
            assert f"<Error>{t.error_text}</Error>" in xml.read_text(encoding="utf-8")
        assert mbuskit.encode(t) == raw
        return
    with pytest.raises(expected) as info:
        mbuskit.decode(_frame("error-frames", name))
    assert isinstance(info.value, RemoteError) and info.value.offset is not None  # says where
    # lenient decoding keeps the header and the records before the damage
    if name != "too_short_header":
        t = mbuskit.decode(_frame("error-frames", name), strict=False)
        assert t.header is not None and t.diagnostics


@pytest.mark.parametrize(("name", "expected"),
                         [(k, UNSUPPORTED_FRAMES[k]) for k in sorted(UNSUPPORTED_FRAMES)])
def test_unsupported_frames(name: str, expected: type[MBusError] | None) -> None:
    if expected is None:
        raw = _frame("unsupported-frames", name)
        t = mbuskit.decode(raw)
        assert mbuskit.encode(t) == raw
        return
    with pytest.raises(expected):
        mbuskit.decode(_frame("unsupported-frames", name))
