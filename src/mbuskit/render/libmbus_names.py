"""libmbus's wording of EN 13757-3, reproduced byte for byte for the libmbus-compatible XML.

The strings below are libmbus's spelling of EN 13757-3 table 10 (primary VIF), table 12 (0xFB
extension), table 14 (0xFD extension), of the medium codes (table 7), of the application errors
and of the fixed-structure units; scripts written for libmbus parse them, so they are kept as
libmbus prints them, typos included ("months(s)", "my" for micro). Also the normalized
(``-n``) unit table: code -> (factor, unit, quantity).
"""

from __future__ import annotations

from decimal import Decimal

from ..codec.records import DataRecord


def _prefix(exp: int) -> str:
    # libmbus mbus_unit_prefix(): SI prefixes for a few exponents, "1eN " otherwise
    return {0: "", -3: "m", -6: "my", 1: "10 ", 2: "100 ", 3: "k", 4: "10 k", 5: "100 k",
            6: "M", 9: "G"}.get(exp, f"1e{exp} ")


_DURATION = ("seconds", "minutes", "hours", "days")
_DURATION_NN = ("second(s)", "minute(s)", "hour(s)", "day(s)")
_DURATION_PP = ("hour(s)", "day(s)", "month(s)", "year(s)")


# primary VIF groups of eight (nnn = exponent): libmbus text and the exponent's offset
_GROUPS = {
    0x00: ("Energy ({p}Wh)", -3),
    0x08: ("Energy ({p}J)", 0),
    0x10: ("Volume ({p} m^3)", -6),
    0x18: ("Mass ({p}kg)", -3),
    0x28: ("Power ({p}W)", -3),
    0x30: ("Power ({p}J/h)", 0),
    0x38: ("Volume flow ({p} m^3/h)", -6),
    0x40: ("Volume flow ({p} m^3/min)", -7),
    0x48: ("Volume flow ({p} m^3/s)", -9),
    0x50: ("Mass flow ({p} kg/h)", -3),
}


def _build_primary_unit(vif: int) -> str:
    """libmbus description of a primary VIF (EN 13757-3 table 10); the E bit is ignored."""
    v = vif & 0x7F
    n = v & 0x07
    group = v & 0x78
    if group in _GROUPS:
        text, shift = _GROUPS[group]
        return text.format(p=_prefix(n + shift))
    nn = v & 0x03
    quad = v & 0x7C
    if quad in (0x20, 0x24, 0x70, 0x74):
        name = {0x20: "On time", 0x24: "Operating time", 0x70: "Averaging Duration",
                0x74: "Actuality Duration"}[quad]
        return f"{name} ({_DURATION[nn]})"
    quad_fmt = {
        0x58: "Flow temperature ({p}deg C)",
        0x5C: "Return temperature ({p}deg C)",
        0x60: "Temperature Difference ({p} deg C)",
        0x64: "External temperature ({p} deg C)",
        0x68: "Pressure ({p} bar)",
    }
    if quad in quad_fmt:
        return quad_fmt[quad].format(p=_prefix(nn - 3))
    fixed = {
        0x6C: "Time Point (date)",
        0x6D: "Time Point (time & date)",
        0x6E: "Units for H.C.A.",
        0x6F: "Reserved",
        0x7C: "Custom VIF",
        0x78: "Fabrication number",
        0x7A: "Bus Address",
        0x7F: "Manufacturer specific",
    }
    if v in fixed:
        return fixed[v]
    return f"Unknown (VIF=0x{vif:02X})"


def _build_fb_unit(vife: int) -> str:
    """libmbus description of a 0xFB extension code (EN 13757-3 table 12)."""
    m = vife & 0x7F
    n = m & 0x01
    tenth = "0.1 " if n == 0 else ""
    pairs = {0x00: f"Energy ({tenth}MWh)", 0x08: f"Energy ({tenth}GJ)",
             0x10: f"Volume ({_prefix(n + 2)}m3)", 0x18: f"Mass ({_prefix(n + 2)}t)",
             0x22: f"Volume ({tenth}american gallon)", 0x28: f"Power ({tenth}MW)",
             0x30: f"Power ({tenth}GJ/h)"}
    if m & 0x7E in pairs:
        return pairs[m & 0x7E]
    single = {0x21: "Volume (0.1 feet^3)", 0x24: "Volume flow (0.001 american gallon/min)",
              0x25: "Volume flow (american gallon/min)", 0x26: "Volume flow (american gallon/h)"}
    if m in single:
        return single[m]
    p = _prefix((m & 0x03) - 3)
    quads = {0x58: "Flow Temperature", 0x5C: "Return Temperature",
             0x60: "Temperature Difference", 0x64: "External Temperature"}
    if m & 0x7C in quads:
        return f"{quads[m & 0x7C]} ({p} degree F)"
    if m & 0x7C == 0x70:
        return f"Cold / Warm Temperature Limit ({p} degree F)"
    if m & 0x7C == 0x74:
        return f"Cold / Warm Temperature Limit ({p} degree C)"
    if m & 0x78 == 0x78:
        return f"cumul. count max power ({_prefix((m & 0x07) - 3)} W)"
    return f"Reserved (0x{vife:02x})"


_FD_NAMES = {
    0x08: "Access Number (transmission count)", 0x09: "Medium (as in fixed header)",
    0x0A: "Manufacturer (as in fixed header)", 0x0B: "Parameter set identification",
    0x0C: "Model / Version", 0x0D: "Hardware version", 0x0E: "Firmware version",
    0x0F: "Software version", 0x10: "Customer location", 0x11: "Customer",
    0x12: "Access Code User", 0x13: "Access Code Operator", 0x14: "Access Code System Operator",
    0x15: "Access Code Developer", 0x16: "Password", 0x17: "Error flags", 0x18: "Error mask",
    0x19: "Reserved", 0x1A: "Digital output (binary)", 0x1B: "Digital input (binary)",
    0x1C: "Baudrate", 0x1D: "response delay time", 0x1E: "Retry", 0x1F: "Reserved",
    0x20: "First storage # for cyclic storage", 0x21: "Last storage # for cyclic storage",
    0x22: "Size of storage block", 0x23: "Reserved", 0x28: "Storage interval month(s)",
    0x29: "Storage interval year(s)", 0x2A: "Reserved", 0x2B: "Reserved",
    0x30: "Start (date/time) of tariff", 0x38: "Period of tariff months(s)",
    0x39: "Period of tariff year(s)", 0x3A: "dimensionless / no VIF", 0x3B: "Reserved",
    0x60: "Reset counter", 0x61: "Cumulation counter", 0x62: "Control signal",
    0x63: "Day of week", 0x64: "Week number", 0x65: "Time point of day change",
    0x66: "State of parameter activation", 0x67: "Special supplier information",
    0x70: "Date and time of battery change",
}


def _build_fd_unit(vife: int) -> str:
    """libmbus description of a 0xFD extension code (EN 13757-3 table 14)."""
    m = vife & 0x7F
    if m in _FD_NAMES:
        return _FD_NAMES[m]
    nn = m & 0x03
    quad = m & 0x7C
    if quad == 0x00:
        return f"Credit of {_prefix(nn - 3)} of the nominal local legal currency units"
    if quad == 0x04:
        return f"Debit of {_prefix(nn - 3)} of the nominal local legal currency units"
    durations = {0x24: "Storage interval", 0x2C: "Duration since last readout",
                 0x30: "Duration of tariff", 0x34: "Period of tariff"}
    if quad in durations:
        return f"{durations[quad]} {_DURATION_NN[nn]}"
    if quad == 0x3C:
        return "Reserved"
    if m & 0x70 == 0x40:
        return f"{_prefix((m & 0x0F) - 9)} V"
    if m & 0x70 == 0x50:
        return f"{_prefix((m & 0x0F) - 12)} A"
    if quad == 0x68:
        return f"Duration since last cumulation {_DURATION_PP[nn]}"
    if quad == 0x6C:
        return f"Operating time battery {_DURATION_PP[nn]}"
    return "Reserved VIF extension"  # E111 nnnn after 0x70


# The description tables, built once (the builders above are the readable definition).
_PRIMARY_UNITS = tuple(_build_primary_unit(v) for v in range(0x80))
_FB_UNITS = tuple(_build_fb_unit(v) for v in range(0x80))
_FD_UNITS = tuple(_build_fd_unit(v) for v in range(0x80))


def _primary_unit(vif: int) -> str:
    text = _PRIMARY_UNITS[vif & 0x7F]
    # libmbus prints the whole VIF byte, E bit included, when it has no name for it
    return f"Unknown (VIF=0x{vif:02X})" if text.startswith("Unknown") else text


def _fb_unit(vife: int) -> str:
    text = _FB_UNITS[vife & 0x7F]
    return f"Reserved (0x{vife:02x})" if text.startswith("Reserved (") else text


def _fd_unit(vife: int) -> str:
    return _FD_UNITS[vife & 0x7F]


def _libmbus_unit(r: DataRecord) -> str:
    if r.vif is None:
        return ""  # no VIB: global readout (DIF 7Fh), which libmbus does not know
    vif = r.vif
    if vif in (0xFB, 0xFD):
        if not r.vife:
            return "Missing VIF extension"
        return _fb_unit(r.vife[0]) if vif == 0xFB else _fd_unit(r.vife[0])
    if vif == 0x7C:
        return r.plain_unit or ""
    if vif == 0xFC and r.vife and r.vife[0] & 0x78 == 0x70:
        return f"{_prefix((r.vife[0] & 0x07) - 6)} {r.plain_unit or ''}"
    return _primary_unit(vif)


# libmbus vif_table (normalized output): code -> (exponent, unit, quantity). Codes: primary
# VIF without E bit, 0x100 | 0xFD extension, 0x200 | 0xFB extension. Exponents are powers of
# ten except the time entries, which are factors to seconds.
_MONTH_S = Decimal("2629743.83")
_YEAR_S = Decimal(31556926)
_TIME_FACTORS = (Decimal(1), Decimal(60), Decimal(3600), Decimal(86400))


def _build_norm_entry(code: int) -> tuple[Decimal, str, str] | None:
    ten = Decimal(10)
    if code < 0x100:
        v = code
        n = v & 0x07
        g = v & 0x78
        simple = {0x00: (n - 3, "Wh", "Energy"), 0x08: (n, "J", "Energy"),
                  0x10: (n - 6, "m^3", "Volume"), 0x18: (n - 3, "kg", "Mass"),
                  0x28: (n - 3, "W", "Power"), 0x30: (n, "J/h", "Power"),
                  0x38: (n - 6, "m^3/h", "Volume flow"), 0x40: (n - 7, "m^3/min", "Volume flow"),
                  0x48: (n - 9, "m^3/s", "Volume flow"), 0x50: (n - 3, "kg/h", "Mass flow")}
        if g in simple:
            e, unit, q = simple[g]
            return ten**e, unit, q
        q4 = v & 0x7C
        times = {0x20: "On time", 0x24: "Operating time", 0x70: "Averaging Duration",
                 0x74: "Actuality Duration"}
        if q4 in times:
            return _TIME_FACTORS[v & 3], "s", times[q4]
        temps = {0x58: ("°C", "Flow temperature"), 0x5C: ("°C", "Return temperature"),
                 0x60: ("K", "Temperature difference"), 0x64: ("°C", "External temperature"),
                 0x68: ("bar", "Pressure")}
        if q4 in temps:
            unit, q = temps[q4]
            return ten ** ((v & 3) - 3), unit, q
        fixed = {0x6C: (Decimal(1), "-", "Time point (date)"),
                 0x6D: (Decimal(1), "-", "Time point (date & time)"),
                 0x6E: (Decimal(1), "Units for H.C.A.", "H.C.A."),
                 0x6F: (Decimal(0), "Reserved", "Reserved"),
                 0x78: (Decimal(1), "", "Fabrication No"),
                 0x79: (Decimal(1), "", "(Enhanced) Identification"),
                 0x7A: (Decimal(1), "", "Bus Address"), 0x7E: (Decimal(1), "", "Any VIF"),
                 0x7F: (Decimal(1), "", "Manufacturer specific")}
        return fixed.get(v)  # 0x7B, 0x7D: libmbus has no entry
    if code < 0x200:
        return _norm_fd(code & 0x7F)
    return _norm_fb(code & 0x7F)


_NORM_FD_PLAIN = {
    0x08: "Access Number (transmission count)", 0x09: "Medium", 0x0A: "Manufacturer",
    0x0B: "Parameter set identification", 0x0C: "Model / Version", 0x0D: "Hardware version",
    0x0E: "Firmware version", 0x0F: "Software version", 0x10: "Customer location",
    0x11: "Customer", 0x12: "Access Code User", 0x13: "Access Code Operator",
    0x14: "Access Code System Operator", 0x15: "Access Code Developer", 0x16: "Password",
    0x17: "Error flags", 0x18: "Error mask", 0x1A: "Digital Output", 0x1B: "Digital Input",
    0x1E: "Retry", 0x20: "First storage # for cyclic storage",
    0x21: "Last storage # for cyclic storage", 0x22: "Size of storage block",
    0x3A: "Dimensionless", 0x60: "Reset counter", 0x61: "Cumulation counter",
    0x62: "Control signal", 0x63: "Day of week", 0x64: "Week number",
    0x65: "Time point of day change", 0x66: "State of parameter activation",
    0x67: "Special supplier information", 0x70: "Date and time of battery change",
}


def _norm_fd(m: int) -> tuple[Decimal, str, str]:
    ten = Decimal(10)
    one = Decimal(1)
    if m in _NORM_FD_PLAIN:
        return one, "", _NORM_FD_PLAIN[m]
    if m == 0x1C:
        return one, "Baud", "Baudrate"
    if m == 0x1D:
        return one, "Bittimes", "Response delay time"
    q4 = m & 0x7C
    if q4 in (0x00, 0x04):
        return ten ** ((m & 3) - 3), "Currency units", "Credit" if q4 == 0 else "Debit"
    long_time = (*_TIME_FACTORS, _MONTH_S, _YEAR_S)
    if 0x24 <= m <= 0x29:
        return long_time[m - 0x24], "s", "Storage interval"
    if q4 == 0x2C:
        return _TIME_FACTORS[m & 3], "s", "Duration since last readout"
    if 0x31 <= m <= 0x33:
        return _TIME_FACTORS[m & 3], "s", "Duration of tariff"
    if 0x34 <= m <= 0x39:
        return long_time[m - 0x34], "s", "Period of tariff"
    if m & 0x70 == 0x40:
        return ten ** ((m & 0x0F) - 9), "V", "Voltage"
    if m & 0x70 == 0x50:
        return ten ** ((m & 0x0F) - 12), "A", "Current"
    if q4 == 0x68:
        return long_time[2 + (m & 3)], "s", "Duration since last cumulation"
    if q4 == 0x6C:
        return long_time[2 + (m & 3)], "s", "Operating time battery"
    return one, "Reserved", "Reserved"


def _norm_fb(m: int) -> tuple[Decimal, str, str]:
    ten = Decimal(10)
    n = m & 1
    pairs = {0x00: (5, "Wh", "Energy"), 0x08: (8, "Reserved", "Energy"),
             0x10: (2, "m^3", "Volume"), 0x18: (5, "kg", "Mass"), 0x28: (5, "W", "Power"),
             0x30: (8, "J", "Power"), 0x22: (-1, "American gallon", "Volume")}
    if m & 0x7E in pairs:
        e, unit, q = pairs[m & 0x7E]
        return ten ** (e + n), unit, q
    single = {0x21: (-1, "feet^3", "Volume"), 0x24: (-3, "American gallon/min", "Volume flow"),
              0x25: (0, "American gallon/min", "Volume flow"),
              0x26: (0, "American gallon/h", "Volume flow")}
    if m in single:
        e, unit, q = single[m]
        return ten**e, unit, q
    quads = {0x58: ("°F", "Flow temperature"), 0x5C: ("°F", "Return temperature"),
             0x60: ("°F", "Temperature difference"), 0x64: ("°F", "External temperature"),
             0x70: ("°F", "Cold / Warm Temperature Limit"),
             0x74: ("°C", "Cold / Warm Temperature Limit")}
    if m & 0x7C in quads:
        unit, q = quads[m & 0x7C]
        return ten ** ((m & 3) - 3), unit, q
    if m & 0x78 == 0x78:
        # libmbus lists 0x79 as 1e-3 too (a slip in its table); kept for byte equality
        e = -3 if m == 0x79 else (m & 7) - 3
        return ten**e, "W", "Cumul count max power"
    return Decimal(1), "Reserved", "Reserved"


_NORM_TABLE = tuple(_build_norm_entry(code) for code in range(0x280))


def _norm_entry(code: int) -> tuple[Decimal, str, str] | None:
    return _NORM_TABLE[code]


_MEDIUM_XML = {
    0x00: "Other", 0x01: "Oil", 0x02: "Electricity", 0x03: "Gas", 0x04: "Heat: Outlet",
    0x05: "Steam", 0x06: "Warm water (30-90°C)", 0x07: "Water", 0x08: "Heat Cost Allocator",
    0x09: "Compressed Air", 0x0A: "Cooling load meter: Outlet",
    0x0B: "Cooling load meter: Inlet", 0x0C: "Heat: Inlet", 0x0D: "Heat / Cooling load meter",
    0x0E: "Bus/System", 0x0F: "Unknown Medium", 0x10: "Irrigation Water",
    0x11: "Water Logger", 0x12: "Gas Logger", 0x13: "Gas Converter", 0x14: "Calorific value",
    0x15: "Hot water (>90°C)", 0x16: "Cold water", 0x17: "Dual water", 0x18: "Pressure",
    0x19: "A/D Converter", 0x1A: "Smoke Detector", 0x1B: "Ambient Sensor",
    0x1C: "Gas Detector", 0x20: "Breaker: Electricity", 0x21: "Valve: Gas or Water",
    0x25: "Customer Unit: Display Device", 0x28: "Waste Water", 0x29: "Garbage",
    0x30: "Service Unit", 0x36: "Radio Converter: System", 0x37: "Radio Converter: Meter",
}
_MEDIUM_RESERVED = frozenset(
    (0x22, 0x23, 0x24, 0x26, 0x27, *range(0x2A, 0x30), *range(0x31, 0x35), *range(0x38, 0x40))
)


def _medium_xml(medium: int) -> str:
    if medium in _MEDIUM_XML:
        return _MEDIUM_XML[medium]
    if medium in _MEDIUM_RESERVED:
        return "Reserved"
    return f"Unknown medium (0x{medium:02x})"


def _medium_name(medium: int | None) -> str:
    """A stable snake_case name of the EN 13757-3 medium code (table 7) for JSON/text."""
    if medium is None:
        return ""
    text = _medium_xml(medium)
    if text.startswith("Unknown medium") or text == "Reserved":
        return f"reserved_0x{medium:02x}"
    cleaned = "".join(ch if ch.isalnum() else " " for ch in text.split(" (")[0].lower())
    return "_".join(cleaned.split())


_ERRORS = {
    0x00: "Unspecified error", 0x01: "Unimplemented CI-Field", 0x02: "Buffer too long, truncated",
    0x03: "Too many records", 0x04: "Premature end of record", 0x05: "More than 10 DIFE´s",
    0x06: "More than 10 VIFE´s", 0x07: "Reserved", 0x08: "Application busy",
    0x09: "Too many readouts",
}


def _error_text(code: int) -> str:
    # EN 13757-3 table 21 (CI 0x70 general application errors), libmbus's wording
    return _ERRORS.get(code, f"Unknown error (0x{code:02X})")




_FIXED_MEDIA_XML = ("Other", "Oil", "Electricity", "Gas", "Heat", "Steam", "Hot Water", "Water",
                    "H.C.A.", "Reserved", "Gas Mode 2", "Heat Mode 2", "Hot Water Mode 2",
                    "Water Mode 2", "H.C.A. Mode 2", "Reserved")


def _fixed_unit(code: int) -> str:
    """libmbus unit text of a fixed-structure counter type (EN 13757-3 annex, table 5)."""
    code &= 0x3F
    steps = ("", "10 ", "100 ")
    if code in (0, 1):
        return ("h,m,s", "D,M,Y")[code]
    # libmbus swaps 0x0D and 0x0E ("MJ" / "100 kJ"); kept so that scripts see its text
    special = {0x0D: "MJ", 0x0E: "100 kJ", 0x38: "1e-3 °C", 0x39: "units for HCA",
               0x3E: "reserved but historic", 0x3F: "without units"}
    if code in special:
        return special[code]
    if 0x3A <= code <= 0x3D:
        return "reserved"
    names = ("Wh", "kWh", "MWh", "kJ", "MJ", "GJ", "W", "kW", "MW", "kJ/h", "MJ/h", "GJ/h",
             "ml", "l", "m^3", "ml/h", "l/h", "m^3/h")
    i, step = divmod(code - 2, 3)
    return f"{steps[step]}{names[i]}"
