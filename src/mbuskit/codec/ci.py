"""EN 13757-3 code tables of the application layer: CI field, error and reset codes, media.

* ``CI``: the CI field values (EN 13757-3:2018 table 2, with the older user-group codes of
  mode 2) and the sets of CIs the telegram layer dispatches on by what follows the CI byte.
* ``APPLICATION_ERRORS``: the one-byte error codes of CI 70h; ``RESET_TYPES``: the telegram
  types of the CI 50h application reset subcode.
* ``MEDIA``: the device type (medium) byte of the long header (EN 13757-3:2018 table 12).
* ``FIXED_MEDIA`` and ``FIXED_UNITS``: the medium and counter unit codes of the fixed data
  structure, CI 73h/77h (m-bus.com "The M-Bus: A Documentation", table 8.4.2).

Pure data and lookups: nothing here parses bytes, so every other codec module may import it.
"""

from __future__ import annotations

import enum


class CI(enum.IntEnum):
    """CI field values (EN 13757-3:2018 table 2, older user-group table for mode 2 codes)."""

    APPLICATION_RESET = 0x50
    DATA_SEND = 0x51
    SELECTION = 0x52
    DATA_SEND_MSB = 0x55  # mode 2, not recommended
    DESELECTION = 0x56  # old "selection mode 2", used by masters (jMBus) to deselect
    COMMAND_SHORT = 0x5A
    COMMAND_LONG = 0x5B
    APPLICATION_ERROR = 0x70
    ALARM = 0x71
    RESPONSE_LONG = 0x72
    RESPONSE_FIXED = 0x73
    RESPONSE_LONG_MSB = 0x76
    RESPONSE_FIXED_MSB = 0x77
    RESPONSE_NONE = 0x78
    RESPONSE_SHORT = 0x7A
    KAMSTRUP_TO_SLAVE = 0xA0  # manufacturer specific A0h-B7h
    KAMSTRUP_TO_MASTER = 0xA1
    BAUD_300 = 0xB8
    BAUD_600 = 0xB9
    BAUD_1200 = 0xBA
    BAUD_2400 = 0xBB
    BAUD_4800 = 0xBC
    BAUD_9600 = 0xBD
    BAUD_19200 = 0xBE
    BAUD_38400 = 0xBF


# CIs grouped by what follows the CI byte, so the telegram layer dispatches on a set:
LONG_CIS = frozenset({CI.RESPONSE_LONG, CI.RESPONSE_LONG_MSB, CI.COMMAND_LONG})  # long header
SHORT_CIS = frozenset({CI.RESPONSE_SHORT, CI.COMMAND_SHORT})  # short header
RECORD_CIS = frozenset({CI.RESPONSE_NONE, CI.DATA_SEND, CI.DATA_SEND_MSB})  # records, no header
# mode 2: multi-byte fields most significant byte first
MSB_CIS = frozenset({CI.RESPONSE_LONG_MSB, CI.RESPONSE_FIXED_MSB, CI.DATA_SEND_MSB})


def is_manufacturer_ci(ci: int) -> bool:
    return 0xA0 <= ci <= 0xB7


# CI 70h error codes (EN 13757-3 clause 6.x, libmbus mbus_data_error_lookup wording)
APPLICATION_ERRORS: dict[int, str] = {
    0x00: "Unspecified error",
    0x01: "Unimplemented CI-Field",
    0x02: "Buffer too long, truncated",
    0x03: "Too many records",
    0x04: "Premature end of record",
    0x05: "More than 10 DIFE´s",
    0x06: "More than 10 VIFE´s",
    0x07: "Reserved",
    0x08: "Application busy",
    0x09: "Too many readouts",
}

# Application reset subcode, upper nibble = telegram type (EN 13757-3 table, CI 50h)
RESET_TYPES: dict[int, str] = {
    0x0: "all", 0x1: "user data", 0x2: "simple billing", 0x3: "enhanced billing",
    0x4: "multi-tariff billing", 0x5: "instantaneous values", 0x6: "load management values",
    0x7: "reserved", 0x8: "installation and startup", 0x9: "testing", 0xA: "calibration",
    0xB: "manufacturing", 0xC: "development", 0xD: "self-test", 0xE: "reserved",
    0xF: "reserved",
}


def reset_subcode_name(subcode: int) -> str:
    return f"{RESET_TYPES[(subcode >> 4) & 0xF]}, sub-telegram {subcode & 0xF}"


# Device type / medium byte (EN 13757-3:2018 table 12, mirrored by OMS vol. 2)
MEDIA: dict[int, str] = {
    0x00: "Other", 0x01: "Oil", 0x02: "Electricity", 0x03: "Gas", 0x04: "Heat (outlet)",
    0x05: "Steam", 0x06: "Warm water (30-90 °C)", 0x07: "Water", 0x08: "Heat cost allocator",
    0x09: "Compressed air", 0x0A: "Cooling load meter (outlet)",
    0x0B: "Cooling load meter (inlet)", 0x0C: "Heat (inlet)", 0x0D: "Heat / cooling load meter",
    0x0E: "Bus / system component", 0x0F: "Unknown medium", 0x10: "Irrigation water",
    0x11: "Water data logger", 0x12: "Gas data logger", 0x13: "Gas converter",
    0x14: "Calorific value", 0x15: "Hot water (>= 90 °C)", 0x16: "Cold water",
    0x17: "Dual register (hot/cold) water meter", 0x18: "Pressure", 0x19: "A/D converter",
    0x1A: "Smoke detector", 0x1B: "Room sensor", 0x1C: "Gas detector",
    0x20: "Breaker (electricity)", 0x21: "Valve (gas or water)", 0x25: "Customer unit",
    0x28: "Waste water", 0x29: "Garbage", 0x2A: "Carbon dioxide",
    0x31: "Communication controller", 0x32: "Unidirectional repeater",
    0x33: "Bidirectional repeater", 0x36: "Radio converter (system side)",
    0x37: "Radio converter (meter side)", 0xFF: "Wildcard",
}


def medium_name(medium: int) -> str:
    return MEDIA.get(medium, "Reserved")


# Fixed data structure (CI 73h/77h): medium is 4 bits spread over the two unit bytes
FIXED_MEDIA: dict[int, str] = {
    0x0: "Other", 0x1: "Oil", 0x2: "Electricity", 0x3: "Gas", 0x4: "Heat", 0x5: "Steam",
    0x6: "Hot Water", 0x7: "Water", 0x8: "H.C.A.", 0x9: "Reserved", 0xA: "Gas Mode 2",
    0xB: "Heat Mode 2", 0xC: "Hot Water Mode 2", 0xD: "Water Mode 2", 0xE: "H.C.A. Mode 2",
    0xF: "Reserved",
}

# Fixed-structure unit codes -> (quantity, SI unit, decimal exponent) (m-bus.com table 8.4.2)
FIXED_UNITS: dict[int, tuple[str, str, int]] = {
    0x00: ("time", "", 0), 0x01: ("date", "", 0),
    **{0x02 + i: ("energy", "Wh", i) for i in range(9)},  # Wh .. 100 MWh
    **{0x0B + i: ("energy", "J", 3 + i) for i in range(9)},  # kJ .. 100 GJ
    **{0x14 + i: ("power", "W", i) for i in range(9)},  # W .. 100 MW
    **{0x1D + i: ("power", "J/h", 3 + i) for i in range(9)},  # kJ/h .. 100 GJ/h
    **{0x26 + i: ("volume", "m^3", i - 6) for i in range(9)},  # ml .. 100 m^3
    **{0x2F + i: ("volume_flow", "m^3/h", i - 6) for i in range(9)},  # ml/h .. 100 m^3/h
    0x38: ("temperature", "°C", -3), 0x39: ("hca_units", "", 0),
    0x3F: ("dimensionless", "", 0),
}
FIXED_UNIT_SAME_HISTORIC = 0x3E  # counter 2: same unit as counter 1, a stored (historic) value


__all__ = [
    "APPLICATION_ERRORS",
    "CI",
    "FIXED_MEDIA",
    "FIXED_UNITS",
    "FIXED_UNIT_SAME_HISTORIC",
    "LONG_CIS",
    "MEDIA",
    "MSB_CIS",
    "RECORD_CIS",
    "RESET_TYPES",
    "SHORT_CIS",
    "is_manufacturer_ci",
    "medium_name",
    "reset_subcode_name",
]
