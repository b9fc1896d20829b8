"""EN 13757-3 value information tables (VIF, VIFE) as immutable data.

Every table is a tuple indexed by the code without its extension bit (``code & 0x7F``);
``None`` marks a code the standard reserves. The tables are built once at import and never
change.

Conventions (chosen here, relied on by ``records``):

* ``exponent`` is the decimal exponent that turns the transmitted integer into ``unit``:
  value = raw * 10**exponent. Energy is in Wh (J for the J rows, cal for the MCal rows of the
  0xFB table), power in W (J/h for the J/h rows), volume in m^3, mass in kg, temperatures in
  degrees Celsius (differences in K), pressure in bar, voltage in V, current in A.
* Durations keep the unit the VIF names ("s", "min", "h", "d", "month", "year") with
  exponent 0, instead of normalising to seconds as libmbus does: the value then stays an
  exact integer, equals what the meter displays, and months and years (which have no fixed
  length in seconds) need no special case. A consumer that wants seconds multiplies.
* Reactive energy 0xFB 0x02/0x03 is 10^(n+3) varh, i.e. 1 kvarh and 10 kvarh. Sources
  disagree: jMBus (citing table 29 of EN 13757-3:2011) and the comment of pyMBusMaster's
  EN 13757-3:2018 transcription say 10^n kvarh, pyMBusMaster's code multiplies by
  10^(n+2), libmbus marks the codes reserved. We follow the two table transcriptions; it
  also gives the Carlo Gavazzi EM24 telegram (``04 FB 82 75``, VIFE 0x75 = x0.1) the same
  0.1 k-unit resolution as its active energy ``04 05``. Apparent energy 0xFB 0x04/0x05 is
  treated the same way.
* The HCA rating factors of the 0xFB table (0x68-0x6E) are binary fractions (2^-12) in the
  standard; they are given here with exponent 0, so the value is the transmitted integer.

Kinds say how the data field is to be read beyond plain numbers: ``KIND_DATE`` (types G, F,
I, J chosen by data length, EN 13757-3 annex A), ``KIND_UNSIGNED`` (identifiers and bit
fields, type C/D: never negative), ``KIND_NUMBER`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

KIND_NUMBER = 0
KIND_UNSIGNED = 1
KIND_DATE = 2


@dataclass(frozen=True, slots=True)
class VifEntry:
    """The meaning of one VIF (primary, 0xFD or 0xFB table)."""

    quantity: str
    unit: str
    exponent: int
    description: str
    kind: int = KIND_NUMBER


@dataclass(frozen=True, slots=True)
class VifeEntry:
    """The meaning of one combinable (orthogonal) VIFE, EN 13757-3:2018 tables 15-17.

    ``qualifier`` is the stable tag added to a record's qualifiers ("" for pure corrections).
    ``exponent`` multiplies the value by 10**exponent. ``offset`` (when not None) adds
    10**offset in the unit of the VIF (additive correction). ``unit`` (when not None)
    replaces the record's unit and resets its exponent: the value is then no longer the
    VIF's quantity but e.g. a duration or a count about it. ``kind`` may switch the data to
    a date. ``error`` marks a record error code (the value is not valid).
    """

    qualifier: str
    description: str
    exponent: int = 0
    offset: int | None = None
    unit: str | None = None
    kind: int | None = None
    error: bool = False


# Special primary VIF codes (without extension bit), EN 13757-3 table 10.
VIF_DATE = 0x6C
VIF_DATE_TIME = 0x6D
VIF_THIRD_EXTENSION = 0x6F
VIF_FABRICATION_NUMBER = 0x78
VIF_ENHANCED_ID = 0x79
VIF_BUS_ADDRESS = 0x7A
VIF_EXT_FB = 0x7B
VIF_PLAIN_TEXT = 0x7C
VIF_EXT_FD = 0x7D
VIF_ANY = 0x7E
VIF_MANUFACTURER = 0x7F

# Special combinable VIFE codes (without extension bit).
VIFE_EXT_FC = 0x7C
VIFE_MANUFACTURER = 0x7F
VIFE_FD_SECOND_LEVEL = 0x7D  # after 0xFD: the 0xFD 0xFD second-level table

_TIME4 = ("s", "min", "h", "d")
_TIME4_LONG = ("h", "d", "month", "year")  # EN 13757-3:2018 0xFD 0x68-0x6F use hours..years
_TIME_WORD = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days", "month": "months",
              "year": "years"}


def _scaled(table: dict[int, VifEntry], codes: range, offset: int, quantity: str,
            unit: str) -> None:
    # "E nnn" ranges: code codes.start + n means 10^(n + offset) of unit.
    text = quantity.replace("_", " ").capitalize()
    for n, code in enumerate(codes):
        table[code] = VifEntry(quantity, unit, n + offset, f"{text} 10^{n + offset} {unit}")


def _timed(table: dict[int, VifEntry], base: int, quantity: str,
           units: tuple[str, ...] = ("s", "min", "h", "d")) -> None:
    text = quantity.replace("_", " ").capitalize()
    for n, unit in enumerate(units):
        table[base + n] = VifEntry(quantity, unit, 0, f"{text} ({_TIME_WORD[unit]})")


def _freeze(table: dict[int, VifEntry]) -> tuple[VifEntry | None, ...]:
    return tuple(table.get(code) for code in range(0x80))


def _build_primary() -> tuple[VifEntry | None, ...]:
    # EN 13757-3:2018 table 10 (same content as m-bus.com "The M-Bus: A Documentation" 8.4.3).
    t: dict[int, VifEntry] = {}
    _scaled(t, range(0x00, 0x08), -3, "energy", "Wh")
    _scaled(t, range(0x08, 0x10), 0, "energy", "J")
    _scaled(t, range(0x10, 0x18), -6, "volume", "m^3")
    _scaled(t, range(0x18, 0x20), -3, "mass", "kg")
    _timed(t, 0x20, "on_time")
    _timed(t, 0x24, "operating_time")
    _scaled(t, range(0x28, 0x30), -3, "power", "W")
    _scaled(t, range(0x30, 0x38), 0, "power", "J/h")
    _scaled(t, range(0x38, 0x40), -6, "volume_flow", "m^3/h")
    _scaled(t, range(0x40, 0x48), -7, "volume_flow", "m^3/min")
    _scaled(t, range(0x48, 0x50), -9, "volume_flow", "m^3/s")
    _scaled(t, range(0x50, 0x58), -3, "mass_flow", "kg/h")
    _scaled(t, range(0x58, 0x5C), -3, "flow_temperature", "°C")
    _scaled(t, range(0x5C, 0x60), -3, "return_temperature", "°C")
    _scaled(t, range(0x60, 0x64), -3, "temperature_difference", "K")
    _scaled(t, range(0x64, 0x68), -3, "external_temperature", "°C")
    _scaled(t, range(0x68, 0x6C), -3, "pressure", "bar")
    t[0x6C] = VifEntry("date", "", 0, "Date (type G)", KIND_DATE)
    t[0x6D] = VifEntry("date_time", "", 0, "Date and time (type F/I, J time of day)", KIND_DATE)
    t[0x6E] = VifEntry("hca_units", "", 0, "Units for heat cost allocator")
    # 0x6F: third extension table, reserved in EN 13757-3:2018.
    _timed(t, 0x70, "averaging_duration")
    _timed(t, 0x74, "actuality_duration")
    t[0x78] = VifEntry("fabrication_number", "", 0, "Fabrication number", KIND_UNSIGNED)
    t[0x79] = VifEntry("enhanced_identification", "", 0, "(Enhanced) identification",
                       KIND_UNSIGNED)
    t[0x7A] = VifEntry("bus_address", "", 0, "Bus address", KIND_UNSIGNED)
    t[0x7C] = VifEntry("plain_text", "", 0, "Plain-text unit")
    t[0x7E] = VifEntry("any_vif", "", 0, "Any VIF (readout selection)")
    t[0x7F] = VifEntry("manufacturer_specific", "", 0, "Manufacturer specific")
    return _freeze(t)


def _build_fd() -> tuple[VifEntry | None, ...]:
    # EN 13757-3:2018 table 12 (main VIFE code extension, VIF 0xFD).
    t: dict[int, VifEntry] = {}
    _scaled(t, range(0x00, 0x04), -3, "credit", "currency")
    _scaled(t, range(0x04, 0x08), -3, "debit", "currency")
    ids = (
        (0x08, "access_number", "Access number (unique message identification)"),
        (0x09, "medium", "Medium (device type)"),
        (0x0A, "manufacturer", "Manufacturer"),
        (0x0B, "parameter_set_id", "Parameter set identification"),
        (0x0C, "model_version", "Model / version"),
        (0x0D, "hardware_version", "Hardware version"),
        (0x0E, "firmware_version", "Firmware version"),
        (0x0F, "software_version", "Software version"),
        (0x10, "customer_location", "Customer location"),
        (0x11, "customer", "Customer"),
        (0x12, "access_code_user", "Access code user"),
        (0x13, "access_code_operator", "Access code operator"),
        (0x14, "access_code_system_operator", "Access code system operator"),
        (0x15, "access_code_developer", "Access code developer"),
        (0x16, "password", "Password"),
        (0x17, "error_flags", "Error flags (binary)"),
        (0x18, "error_mask", "Error mask"),
        (0x19, "security_key", "Security key"),
        (0x1A, "digital_output", "Digital output (binary)"),
        (0x1B, "digital_input", "Digital input (binary)"),
        (0x1F, "remote_control", "Remote control (device specific)"),
        (0x23, "tariff_descriptor", "Descriptor for tariff and subunit"),
        (0x2A, "operator_specific_data", "Operator specific data"),
        (0x62, "control_signal", "Control signal"),
        (0x66, "parameter_activation_state", "State of parameter activation"),
        (0x67, "special_supplier_information", "Special supplier information"),
    )
    for code, quantity, text in ids:
        t[code] = VifEntry(quantity, "", 0, text, KIND_UNSIGNED)
    t[0x1C] = VifEntry("baud_rate", "Bd", 0, "Baud rate")
    t[0x1D] = VifEntry("response_delay", "bit times", 0, "Response delay time")
    t[0x1E] = VifEntry("retry", "", 0, "Retry")
    t[0x20] = VifEntry("first_storage_number", "", 0, "First storage number (cyclic storage)")
    t[0x21] = VifEntry("last_storage_number", "", 0, "Last storage number (cyclic storage)")
    t[0x22] = VifEntry("storage_block_size", "", 0, "Size of storage block")
    _timed(t, 0x24, "storage_interval")
    t[0x28] = VifEntry("storage_interval", "month", 0, "Storage interval (months)")
    t[0x29] = VifEntry("storage_interval", "year", 0, "Storage interval (years)")
    t[0x2B] = VifEntry("time_point_second", "s", 0, "Time point: second")
    _timed(t, 0x2C, "duration_since_last_readout")
    t[0x30] = VifEntry("tariff_start", "", 0, "Start (date/time) of tariff", KIND_DATE)
    for n, unit in enumerate(("min", "h", "d"), start=1):
        t[0x30 + n] = VifEntry("tariff_duration", unit, 0,
                               f"Duration of tariff ({_TIME_WORD[unit]})")
    _timed(t, 0x34, "tariff_period")
    t[0x38] = VifEntry("tariff_period", "month", 0, "Period of tariff (months)")
    t[0x39] = VifEntry("tariff_period", "year", 0, "Period of tariff (years)")
    t[0x3A] = VifEntry("dimensionless", "", 0, "Dimensionless (no VIF)")
    t[0x3B] = VifEntry("data_container", "", 0, "Data container for wireless M-Bus")
    _timed(t, 0x3C, "transmission_period")
    _scaled(t, range(0x40, 0x50), -9, "voltage", "V")
    _scaled(t, range(0x50, 0x60), -12, "current", "A")
    t[0x60] = VifEntry("reset_counter", "", 0, "Reset counter")
    t[0x61] = VifEntry("cumulation_counter", "", 0, "Cumulation counter")
    t[0x63] = VifEntry("day_of_week", "", 0, "Day of week")
    t[0x64] = VifEntry("week_number", "", 0, "Week number")
    t[0x65] = VifEntry("day_change_time_point", "", 0, "Time point of day change", KIND_DATE)
    _timed(t, 0x68, "duration_since_last_cumulation", _TIME4_LONG)
    _timed(t, 0x6C, "battery_operating_time", _TIME4_LONG)
    t[0x70] = VifEntry("battery_change_date", "", 0, "Date and time of battery change",
                       KIND_DATE)
    t[0x71] = VifEntry("rf_level", "dBm", 0, "RF level")
    t[0x72] = VifEntry("daylight_saving", "", 0, "Daylight saving (type K)", KIND_UNSIGNED)
    t[0x73] = VifEntry("listening_window", "", 0, "Listening window management (type L)")
    t[0x74] = VifEntry("remaining_battery_lifetime", "d", 0, "Remaining battery lifetime")
    t[0x75] = VifEntry("meter_stop_count", "", 0, "Number of times the meter was stopped")
    t[0x76] = VifEntry("manufacturer_data_container", "", 0,
                       "Data container for manufacturer specific protocol")
    return _freeze(t)


def _build_fd_second() -> tuple[VifEntry | None, ...]:
    # EN 13757-3:2018 table 13 (VIF 0xFD, VIFE 0xFD, then this code).
    t: dict[int, VifEntry] = {
        0x00: VifEntry("selected_application", "", 0, "Currently selected application",
                       KIND_UNSIGNED),
        0x02: VifEntry("remaining_battery_lifetime", "month", 0,
                       "Remaining battery lifetime (months)"),
        0x03: VifEntry("remaining_battery_lifetime", "year", 0,
                       "Remaining battery lifetime (years)"),
    }
    return _freeze(t)


def _build_fb() -> tuple[VifEntry | None, ...]:
    # EN 13757-3:2018 table 14 (alternate extended VIF code table, VIF 0xFB).
    t: dict[int, VifEntry] = {}
    _scaled(t, range(0x00, 0x02), 5, "energy", "Wh")
    _scaled(t, range(0x02, 0x04), 3, "reactive_energy", "varh")
    _scaled(t, range(0x04, 0x06), 3, "apparent_energy", "VAh")
    _scaled(t, range(0x08, 0x0A), 8, "energy", "J")
    _scaled(t, range(0x0C, 0x10), 5, "energy", "cal")
    _scaled(t, range(0x10, 0x12), 2, "volume", "m^3")
    _scaled(t, range(0x14, 0x18), 0, "reactive_power", "var")
    _scaled(t, range(0x18, 0x1A), 5, "mass", "kg")
    _scaled(t, range(0x1A, 0x1C), -1, "relative_humidity", "%")
    t[0x20] = VifEntry("volume", "ft^3", 0, "Volume 1 ft^3")
    t[0x21] = VifEntry("volume", "ft^3", -1, "Volume 0.1 ft^3")
    _scaled(t, range(0x28, 0x2A), 5, "power", "W")
    t[0x2A] = VifEntry("phase_angle_voltage_voltage", "°", -1, "Phase U-U (0.1 degree)")
    t[0x2B] = VifEntry("phase_angle_voltage_current", "°", -1, "Phase U-I (0.1 degree)")
    _scaled(t, range(0x2C, 0x30), -3, "frequency", "Hz")
    _scaled(t, range(0x30, 0x32), 8, "power", "J/h")
    _scaled(t, range(0x34, 0x38), 0, "apparent_power", "VA")
    factors = ("k", "kq", "kc", "kcr", "kch", "kt", "kd")
    for n, name in enumerate(factors):
        t[0x68 + n] = VifEntry(f"rating_factor_{name}", "", 0,
                               f"HCA rating factor {name.upper()} (binary fraction, raw)")
    _scaled(t, range(0x74, 0x78), -3, "temperature_limit", "°C")
    _scaled(t, range(0x78, 0x80), -3, "cumulative_max_power", "W")
    return _freeze(t)


_ERRORS = {
    # EN 13757-3:2018 table 18, record errors (slave to master), E00x xxxx.
    0x00: "none", 0x01: "too_many_difes", 0x02: "storage_not_implemented",
    0x03: "unit_not_implemented", 0x04: "tariff_not_implemented",
    0x05: "function_not_implemented", 0x06: "data_class_not_implemented",
    0x07: "data_size_not_implemented", 0x08: "reserved", 0x09: "reserved", 0x0A: "reserved",
    0x0B: "too_many_vifes", 0x0C: "illegal_vif_group", 0x0D: "illegal_vif_exponent",
    0x0E: "vif_dif_mismatch", 0x0F: "unimplemented_action", 0x15: "no_data_available",
    0x16: "data_overflow", 0x17: "data_underflow", 0x18: "data_error", 0x19: "reserved",
    0x1A: "reserved", 0x1B: "reserved", 0x1C: "premature_end_of_record",
}

_ACTIONS = (
    # EN 13757-3:2018 table 17, object actions (master to slave), E000 xxxx.
    "write", "add", "subtract", "or", "and", "xor", "and_not", "clear", "add_entry",
    "delete_entry", "delayed", "freeze", "add_to_readout_list", "delete_from_readout_list",
)


def _build_combinable() -> tuple[VifeEntry | None, ...]:
    # EN 13757-3:2018 table 15 (combinable orthogonal VIFE), slave-to-master meanings.
    t: dict[int, VifeEntry] = {}
    for code, name in _ERRORS.items():
        # 0x00 "no error" is a record error code too, but it does not make the value invalid.
        t[code] = VifeEntry(f"error:{name}", f"Record error: {name.replace('_', ' ')}",
                            error=code != 0x00)
    t[0x12] = VifeEntry("average", "Average value")
    t[0x13] = VifeEntry("inverse_compact_profile", "Inverse compact profile")
    t[0x14] = VifeEntry("relative_deviation", "Relative deviation")
    t[0x1D] = VifeEntry("standard_conform", "Standard conform data content")
    t[0x1E] = VifeEntry("compact_profile_registers", "Compact profile with register numbers")
    t[0x1F] = VifeEntry("compact_profile", "Compact profile")
    periods = ("second", "minute", "hour", "day", "week", "month", "year", "revolution")
    for n, name in enumerate(periods):
        t[0x20 + n] = VifeEntry(f"per:{name}", f"Per {name}")
    t[0x28] = VifeEntry("per:input_pulse:0", "Increment per input pulse on channel 0")
    t[0x29] = VifeEntry("per:input_pulse:1", "Increment per input pulse on channel 1")
    t[0x2A] = VifeEntry("per:output_pulse:0", "Increment per output pulse on channel 0")
    t[0x2B] = VifeEntry("per:output_pulse:1", "Increment per output pulse on channel 1")
    divisors = ("l", "m^3", "kg", "K", "kWh", "GJ", "kW", "K*l", "V", "A")
    for n, name in enumerate(divisors):
        t[0x2C + n] = VifeEntry(f"per:{name}", f"Per {name}")
    t[0x36] = VifeEntry("times:s", "Multiplied by s")
    t[0x37] = VifeEntry("times:s/V", "Multiplied by s/V")
    t[0x38] = VifeEntry("times:s/A", "Multiplied by s/A")
    t[0x39] = VifeEntry("start_date_of", "Start date(/time) of", unit="", kind=KIND_DATE)
    t[0x3A] = VifeEntry("uncorrected", "Uncorrected unit or value at metering conditions")
    # 0x3B/0x3C: "accumulation only if positive contributions" / "accumulation of abs value
    # only if negative contributions": forward/import and backward/export (Kamstrup A+/A-).
    t[0x3B] = VifeEntry("import", "Accumulation only if positive contributions")
    t[0x3C] = VifeEntry("export", "Accumulation of abs value only if negative contributions")
    t[0x3D] = VifeEntry("non_metric", "Alternate non-metric unit system")
    t[0x3E] = VifeEntry("base_conditions", "Value at base conditions")
    t[0x3F] = VifeEntry("obis", "OBIS declaration")
    for u, side in ((0x00, "lower"), (0x08, "upper")):
        t[0x40 | u] = VifeEntry(f"limit:{side}", f"{side.capitalize()} limit value")
        t[0x41 | u] = VifeEntry(f"limit_exceeds:{side}",
                                f"Number of exceeds of {side} limit", unit="")
        for f, first in ((0x00, "first"), (0x04, "last")):
            for b, begin in ((0x00, "begin"), (0x01, "end")):
                t[0x42 | u | f | b] = VifeEntry(
                    f"limit_exceed_date:{side}:{first}:{begin}",
                    f"Date(/time) of {begin} of {first} {side} limit exceed",
                    unit="", kind=KIND_DATE)
        for f, first in ((0x00, "first"), (0x04, "last")):
            for nn, unit in enumerate(_TIME4):
                t[0x50 | u | f | nn] = VifeEntry(
                    f"limit_exceed_duration:{side}:{first}",
                    f"Duration of {first} {side} limit exceed ({_TIME_WORD[unit]})", unit=unit)
    for f, first in ((0x00, "first"), (0x04, "last")):
        for nn, unit in enumerate(_TIME4):
            t[0x60 | f | nn] = VifeEntry(f"duration:{first}",
                                         f"Duration of {first} ({_TIME_WORD[unit]})", unit=unit)
    t[0x68] = VifeEntry("value_during_limit:lower", "Value during lower limit exceed")
    t[0x69] = VifeEntry("leakage", "Leakage values")
    t[0x6C] = VifeEntry("value_during_limit:upper", "Value during upper limit exceed")
    t[0x6D] = VifeEntry("overflow", "Overflow values")
    # E110 1f1b: date(/time) of the begin (b=0) or end (b=1) of the first (f=0) or last
    # (f=1) occurrence, e.g. Landis+Gyr T230 "94 10 AD 6F": date of the maximum power.
    for f, first in ((0x00, "first"), (0x04, "last")):
        for b, begin in ((0x00, "begin"), (0x01, "end")):
            t[0x6A | f | b] = VifeEntry(f"date_of:{first}:{begin}",
                                        f"Date(/time) of {begin} of {first}",
                                        unit="", kind=KIND_DATE)
    for nnn in range(8):
        t[0x70 + nnn] = VifeEntry("", f"Multiplicative correction 10^{nnn - 6}",
                                  exponent=nnn - 6)
    for nn in range(4):
        t[0x78 + nn] = VifeEntry("", f"Additive correction 10^{nn - 3}", offset=nn - 3)
    t[0x7D] = VifeEntry("", "Multiplicative correction 10^3", exponent=3)
    t[0x7E] = VifeEntry("future_value", "Future value")
    t[0x7F] = VifeEntry("manufacturer_vife", "Manufacturer specific VIFEs follow")
    return tuple(t.get(code) for code in range(0x80))


def _build_actions() -> tuple[VifeEntry | None, ...]:
    t = [VifeEntry(f"action:{name}", f"Object action: {name.replace('_', ' ')}")
         for name in _ACTIONS]
    return (*t, None, None)


def _build_fc() -> tuple[VifeEntry | None, ...]:
    # EN 13757-3:2018 table 16 (extension of combinable VIFE, after VIFE 0xFC).
    t: dict[int, VifeEntry] = {
        0x01: VifeEntry("phase:L1", "At phase L1"),
        0x02: VifeEntry("phase:L2", "At phase L2"),
        0x03: VifeEntry("phase:L3", "At phase L3"),
        0x04: VifeEntry("phase:N", "At neutral"),
        0x05: VifeEntry("phase:L1-L2", "Between phase L1 and L2"),
        0x06: VifeEntry("phase:L2-L3", "Between phase L2 and L3"),
        0x07: VifeEntry("phase:L3-L1", "Between phase L3 and L1"),
        0x08: VifeEntry("quadrant:Q1", "At quadrant Q1"),
        0x09: VifeEntry("quadrant:Q2", "At quadrant Q2"),
        0x0A: VifeEntry("quadrant:Q3", "At quadrant Q3"),
        0x0B: VifeEntry("quadrant:Q4", "At quadrant Q4"),
        0x0C: VifeEntry("delta:import-export", "Delta between import and export"),
        0x10: VifeEntry("accumulation:absolute", "Accumulation of absolute value"),
        0x11: VifeEntry("data_type:C", "Data presented with type C", kind=KIND_UNSIGNED),
        0x12: VifeEntry("data_type:D", "Data presented with type D", kind=KIND_UNSIGNED),
        0x14: VifeEntry("direction:to_meter", "Direction from communication partner to meter"),
        0x15: VifeEntry("direction:from_meter", "Direction from meter to communication partner"),
    }
    return tuple(t.get(code) for code in range(0x80))


PRIMARY: tuple[VifEntry | None, ...] = _build_primary()
EXT_FD: tuple[VifEntry | None, ...] = _build_fd()
EXT_FD_SECOND: tuple[VifEntry | None, ...] = _build_fd_second()
EXT_FB: tuple[VifEntry | None, ...] = _build_fb()
COMBINABLE: tuple[VifeEntry | None, ...] = _build_combinable()
OBJECT_ACTIONS: tuple[VifeEntry | None, ...] = _build_actions()
EXT_FC: tuple[VifeEntry | None, ...] = _build_fc()

UNKNOWN = VifEntry("unknown", "", 0, "Reserved or unknown VIF")


def lookup_vif(vif: int, vife: tuple[int, ...] = ()) -> VifEntry:
    """The table entry that a VIF (and, for 0xFB/0xFD, its first VIFEs) names.

    Reserved codes give :data:`UNKNOWN`; combinable VIFEs are not considered here.
    """
    code = vif & 0x7F
    if code in (VIF_EXT_FB, VIF_EXT_FD):
        if not vife:
            return UNKNOWN
        sub = vife[0] & 0x7F
        if code == VIF_EXT_FB:
            return EXT_FB[sub] or UNKNOWN
        if sub == VIFE_FD_SECOND_LEVEL:
            if len(vife) < 2:
                return UNKNOWN
            return EXT_FD_SECOND[vife[1] & 0x7F] or UNKNOWN
        return EXT_FD[sub] or UNKNOWN
    return PRIMARY[code] or UNKNOWN


def find_vif(quantity: str, unit: str, exponent: int) -> bytes | None:
    """The shortest standard VIB (VIF, and 0xFB/0xFD with its VIFE) for a meaning, or None.

    The inverse of :func:`lookup_vif` for building records: ``find_vif("energy", "Wh", 3)``
    is ``b"\x06"``, ``find_vif("voltage", "V", -1)`` is ``b"\xfd\x48"``. The primary table
    is preferred, then 0xFD, then 0xFB.
    """
    for prefix, table in ((b"", PRIMARY), (b"\xfd", EXT_FD), (b"\xfb", EXT_FB)):
        for code, entry in enumerate(table):
            if entry is not None and (entry.quantity, entry.unit, entry.exponent) == (
                    quantity, unit, exponent):
                if prefix:
                    return bytes((prefix[0], code))
                return bytes((code,))
    return None


__all__ = [
    "COMBINABLE",
    "EXT_FB",
    "EXT_FC",
    "EXT_FD",
    "EXT_FD_SECOND",
    "KIND_DATE",
    "KIND_NUMBER",
    "KIND_UNSIGNED",
    "OBJECT_ACTIONS",
    "PRIMARY",
    "UNKNOWN",
    "VIFE_EXT_FC",
    "VIFE_FD_SECOND_LEVEL",
    "VIFE_MANUFACTURER",
    "VIF_ANY",
    "VIF_BUS_ADDRESS",
    "VIF_DATE",
    "VIF_DATE_TIME",
    "VIF_ENHANCED_ID",
    "VIF_EXT_FB",
    "VIF_EXT_FD",
    "VIF_FABRICATION_NUMBER",
    "VIF_MANUFACTURER",
    "VIF_PLAIN_TEXT",
    "VIF_THIRD_EXTENSION",
    "VifEntry",
    "VifeEntry",
    "find_vif",
    "lookup_vif",
]
