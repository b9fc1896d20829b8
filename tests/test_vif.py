"""The VIF tables: shape, immutability, and spot checks against EN 13757-3 facts.

Facts from /work/shared/research/protocol-facts.md sections 5 and 6 (EN 13757-3:2018 tables
10-17 as transcribed by libmbus, wmbusmeters, jMBus and pyMBusMaster).
"""

from __future__ import annotations

import re

import pytest

from mbuskit.codec import vif
from mbuskit.codec.vif import (
    COMBINABLE,
    EXT_FB,
    EXT_FC,
    EXT_FD,
    EXT_FD_SECOND,
    KIND_DATE,
    KIND_UNSIGNED,
    OBJECT_ACTIONS,
    PRIMARY,
    UNKNOWN,
    VifEntry,
    lookup_vif,
)

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
TABLES = {"primary": PRIMARY, "fd": EXT_FD, "fb": EXT_FB, "fd_second": EXT_FD_SECOND}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_vif_tables_are_immutable_tuples_of_128(name: str) -> None:
    table = TABLES[name]
    assert isinstance(table, tuple) and len(table) == 128
    for entry in table:
        if entry is None:
            continue
        assert SNAKE.match(entry.quantity), entry
        assert entry.description
        with pytest.raises(AttributeError):
            entry.exponent = 5  # type: ignore[misc]


def test_combinable_tables_shape() -> None:
    assert len(COMBINABLE) == 128 and len(EXT_FC) == 128 and len(OBJECT_ACTIONS) == 16
    assert all(isinstance(t, tuple) for t in (COMBINABLE, EXT_FC, OBJECT_ACTIONS))


@pytest.mark.parametrize(
    ("code", "quantity", "unit", "exponent"),
    [
        (0x00, "energy", "Wh", -3), (0x03, "energy", "Wh", 0), (0x04, "energy", "Wh", 1),
        (0x05, "energy", "Wh", 2), (0x06, "energy", "Wh", 3), (0x07, "energy", "Wh", 4),
        (0x0E, "energy", "J", 6), (0x13, "volume", "m^3", -3), (0x1B, "mass", "kg", 0),
        (0x22, "on_time", "h", 0), (0x26, "operating_time", "h", 0),
        (0x2B, "power", "W", 0), (0x2E, "power", "W", 3), (0x33, "power", "J/h", 3),
        (0x3B, "volume_flow", "m^3/h", -3), (0x47, "volume_flow", "m^3/min", 0),
        (0x4F, "volume_flow", "m^3/s", -2), (0x53, "mass_flow", "kg/h", 0),
        (0x59, "flow_temperature", "°C", -2), (0x5D, "return_temperature", "°C", -2),
        (0x61, "temperature_difference", "K", -2), (0x65, "external_temperature", "°C", -2),
        (0x6A, "pressure", "bar", -1), (0x73, "averaging_duration", "d", 0),
        (0x74, "actuality_duration", "s", 0), (0x7A, "bus_address", "", 0),
    ],
)
def test_primary_spot_checks(code: int, quantity: str, unit: str, exponent: int) -> None:
    entry = PRIMARY[code]
    assert entry is not None
    assert (entry.quantity, entry.unit, entry.exponent) == (quantity, unit, exponent)


def test_primary_special_codes() -> None:
    assert PRIMARY[0x6C] is not None and PRIMARY[0x6C].kind == KIND_DATE
    assert PRIMARY[0x6D] is not None and PRIMARY[0x6D].quantity == "date_time"
    assert PRIMARY[0x6F] is None  # third extension: reserved
    assert PRIMARY[0x78] is not None and PRIMARY[0x78].kind == KIND_UNSIGNED
    assert PRIMARY[0x79] is not None and PRIMARY[0x79].quantity == "enhanced_identification"
    assert PRIMARY[0x7B] is None and PRIMARY[0x7D] is None  # extension pointers
    assert PRIMARY[0x7C] is not None and PRIMARY[0x7C].quantity == "plain_text"
    assert PRIMARY[0x7E] is not None and PRIMARY[0x7E].quantity == "any_vif"
    assert PRIMARY[0x7F] is not None and PRIMARY[0x7F].quantity == "manufacturer_specific"


@pytest.mark.parametrize(
    ("code", "quantity", "unit", "exponent"),
    [
        (0x48, "voltage", "V", -1), (0x49, "voltage", "V", 0), (0x40, "voltage", "V", -9),
        (0x4F, "voltage", "V", 6), (0x59, "current", "A", -3), (0x5A, "current", "A", -2),
        (0x50, "current", "A", -12), (0x17, "error_flags", "", 0),
        (0x1A, "digital_output", "", 0), (0x1B, "digital_input", "", 0),
        (0x1C, "baud_rate", "Bd", 0), (0x1F, "remote_control", "", 0),
        (0x3A, "dimensionless", "", 0), (0x61, "cumulation_counter", "", 0),
        (0x02, "credit", "currency", -1), (0x0E, "firmware_version", "", 0),
        (0x31, "tariff_duration", "min", 0), (0x6E, "battery_operating_time", "month", 0),
        (0x74, "remaining_battery_lifetime", "d", 0),
    ],
)
def test_fd_spot_checks(code: int, quantity: str, unit: str, exponent: int) -> None:
    entry = EXT_FD[code]
    assert entry is not None
    assert (entry.quantity, entry.unit, entry.exponent) == (quantity, unit, exponent)


@pytest.mark.parametrize(
    ("code", "quantity", "unit", "exponent"),
    [
        (0x00, "energy", "Wh", 5), (0x01, "energy", "Wh", 6),  # 0.1 / 1 MWh
        (0x02, "reactive_energy", "varh", 3), (0x03, "reactive_energy", "varh", 4),
        (0x04, "apparent_energy", "VAh", 3), (0x14, "reactive_power", "var", 0),
        (0x17, "reactive_power", "var", 3), (0x2E, "frequency", "Hz", -1),
        (0x34, "apparent_power", "VA", 0), (0x28, "power", "W", 5),
        (0x2A, "phase_angle_voltage_voltage", "°", -1), (0x1A, "relative_humidity", "%", -1),
        (0x78, "cumulative_max_power", "W", -3),
    ],
)
def test_fb_spot_checks(code: int, quantity: str, unit: str, exponent: int) -> None:
    entry = EXT_FB[code]
    assert entry is not None
    assert (entry.quantity, entry.unit, entry.exponent) == (quantity, unit, exponent)


def test_fb_reserved_rows() -> None:
    for code in (0x06, 0x07, 0x0A, 0x0B, 0x12, 0x13, 0x1C, 0x22, 0x32, 0x38, 0x67, 0x70):
        assert EXT_FB[code] is None, hex(code)


def test_combinable_entries() -> None:
    for n in range(8):
        entry = COMBINABLE[0x70 + n]
        assert entry is not None and entry.exponent == n - 6 and entry.qualifier == ""
    for n in range(4):
        entry = COMBINABLE[0x78 + n]
        assert entry is not None and entry.offset == n - 3
    assert COMBINABLE[0x7D] is not None and COMBINABLE[0x7D].exponent == 3
    assert COMBINABLE[0x3B] is not None and COMBINABLE[0x3B].qualifier == "import"
    assert COMBINABLE[0x3C] is not None and COMBINABLE[0x3C].qualifier == "export"
    assert COMBINABLE[0x22] is not None and COMBINABLE[0x22].qualifier == "per:hour"
    assert COMBINABLE[0x7C] is None  # the FC escape is handled by the decoder
    errors = [c for c, e in enumerate(COMBINABLE) if e is not None and e.error]
    assert errors == [*range(0x01, 0x10), *range(0x15, 0x1D)]
    assert COMBINABLE[0x00] is not None and not COMBINABLE[0x00].error


def test_fc_and_actions() -> None:
    assert [e.qualifier for e in EXT_FC[1:0x0D] if e is not None] == [
        "phase:L1", "phase:L2", "phase:L3", "phase:N", "phase:L1-L2", "phase:L2-L3",
        "phase:L3-L1", "quadrant:Q1", "quadrant:Q2", "quadrant:Q3", "quadrant:Q4",
        "delta:import-export"]
    assert OBJECT_ACTIONS[0] is not None and OBJECT_ACTIONS[0].qualifier == "action:write"
    assert OBJECT_ACTIONS[0x0D] is not None
    assert OBJECT_ACTIONS[0x0E] is None and OBJECT_ACTIONS[0x0F] is None


def test_lookup_vif() -> None:
    assert lookup_vif(0x86).quantity == "energy"
    assert lookup_vif(0xFB, (0x82, 0x75)).quantity == "reactive_energy"
    assert lookup_vif(0xFD, (0xC8, 0xFC, 0x01)) == EXT_FD[0x48]
    assert lookup_vif(0xFD, (0xFD, 0x02)) == EXT_FD_SECOND[0x02]
    assert lookup_vif(0xFD) is UNKNOWN and lookup_vif(0xFD, (0xFD,)) is UNKNOWN
    assert lookup_vif(0xEF) is UNKNOWN
    assert isinstance(lookup_vif(0x13), VifEntry)


def test_public_names() -> None:
    assert set(vif.__all__) <= set(dir(vif))


def test_find_vif_inverts_lookup() -> None:
    assert vif.find_vif("energy", "Wh", 3) == b"\x06"
    assert vif.find_vif("power", "W", 0) == b"\x2b"
    assert vif.find_vif("voltage", "V", -1) == b"\xfd\x48"
    assert vif.find_vif("reactive_energy", "varh", 3) == b"\xfb\x02"
    assert vif.find_vif("energy", "Wh", 5) == b"\xfb\x00"  # beyond the primary range
    assert vif.find_vif("energy", "Wh", 9) is None
    for code, entry in enumerate(PRIMARY):
        if entry is not None and entry.quantity not in ("unknown",):
            found = vif.find_vif(entry.quantity, entry.unit, entry.exponent)
            assert found is not None and lookup_vif(found[0], tuple(found[1:])) == entry, code


@pytest.mark.parametrize(("prefix", "table"), [(b"", PRIMARY), (b"\xfd", EXT_FD),
                                               (b"\xfb", EXT_FB)])
def test_every_numeric_entry_decodes_as_its_table_says(prefix: bytes,
                                                       table: tuple[VifEntry | None, ...]) -> None:
    from decimal import Decimal

    from mbuskit.codec.records import build_record, decode_records

    checked = 0
    for code, entry in enumerate(table):
        if entry is None or entry.kind != 0 or (not prefix and code in (0x7C, 0x7E, 0x7F)):
            continue
        vib = prefix + bytes((code,))
        # One unit of the VIF's scale: raw integer 7 -> 7 * 10^exponent in entry.unit.
        value = Decimal(7).scaleb(entry.exponent)
        rec = build_record(vif=vib, value=value, data_field=4)
        assert rec.data == b"\x07\x00\x00\x00"
        (back,) = decode_records(rec.raw)
        assert (back.quantity, back.unit, back.value) == (entry.quantity, entry.unit, value)
        checked += 1
    assert checked > 20
