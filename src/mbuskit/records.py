"""EN 13757-3 data records: DIF/DIFE/VIF/VIFE, value codecs, and their encoders.

The record *types* below are the contract every other module codes against; fields may be
added, never renamed or removed. ``raw`` keeps the exact wire bytes, which is what makes
``encode(decode(b)) == b`` exact.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


class FunctionField(enum.IntEnum):
    """DIF bits 5-4 (EN 13757-3 6.3.2)."""

    INSTANTANEOUS = 0
    MAXIMUM = 1
    MINIMUM = 2
    ERROR = 3  # value during error state


class RecordKind(enum.Enum):
    DATA = "data"  # an ordinary DIB/VIB/value record
    MANUFACTURER = "manufacturer"  # DIF 0x0F / 0x1F: manufacturer data to the end
    FILLER = "filler"  # DIF 0x2F idle filler
    GLOBAL_READOUT = "global_readout"  # DIF 0x7F (master to slave)
    SELECTION = "selection"  # data field 0x8: selection for readout (no value bytes)


Value = int | float | Decimal | datetime | date | str | bytes | None


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One decoded data record.

    quantity: a stable snake_case name ("energy", "power", "reactive_energy", "voltage",
    "current", "on_time", "date_time", "fabrication_number", ...). unit: the SI unit of
    ``value`` ("Wh", "W", "varh", "var", "V", "A", "s", "m^3", "" when dimensionless or not a
    physical value). value: already scaled to ``unit``: int when exact and integral, Decimal
    when an integer/BCD value carries a negative decimal exponent, float for real32,
    datetime/date for dates, str for ASCII, bytes for binary/manufacturer data.
    """

    raw: bytes
    kind: RecordKind
    dif: int
    dife: tuple[int, ...] = ()
    vif: int | None = None
    vife: tuple[int, ...] = ()
    plain_unit: str | None = None  # plain-text VIF 0x7C/0xFC, as sent
    data: bytes = b""  # value bytes (without an LVAR length byte)
    function: FunctionField = FunctionField.INSTANTANEOUS
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    quantity: str = ""
    unit: str = ""
    value: Value = None
    description: str = ""
    more_records_follow: bool = False  # DIF 0x1F
    # qualifiers from combinable VIFEs in a stable vocabulary, e.g. ("phase:L1", "export"),
    # ("per:hour",), ("limit:lower",), ("quadrant:Q1",); empty when none
    qualifiers: tuple[str, ...] = ()
    valid: bool = True  # False for a date marked invalid (IV bit) or a record error VIFE
