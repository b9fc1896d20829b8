"""What every renderer reads the same way: the header view and the JSON value mapping.

:class:`HeaderView` and :func:`header_view` are the one place that knows the Telegram /
LongHeader / FixedHeader field names; :func:`id_hex` is the libmbus spelling of a BCD
identification; :func:`value_to_json` maps a DataRecord value to its JSON type and value
(docs/json-schema.md). Both the document renderers (``document``: JSON, CSV, table, text) and
the libmbus XML (``libmbus_xml``) import them from here, so neither imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

from ..codec.header import FixedHeader, LongHeader
from ..codec.telegram import Telegram

__all__ = ["HeaderView", "header_view", "id_hex", "value_to_json"]


def value_to_json(value: object) -> tuple[str, Any]:
    """(value_type, JSON value) for a DataRecord value; the choices are in docs/json-schema.md.

    int stays an exact JSON integer; Decimal becomes its exact decimal string because a JSON
    reader would turn a number into a binary float and lose digits; floats (real32) stay
    numbers unless not finite, which JSON cannot carry.
    """
    if value is None:
        return "none", None
    if isinstance(value, bool):  # never produced by the decoder; keep JSON honest anyway
        return "int", int(value)
    if isinstance(value, int):
        return "int", value
    if isinstance(value, Decimal):
        return "decimal", _decimal_text(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return "float", value
        return "float", "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime):  # before date: datetime is a date subclass
        return "datetime", value.isoformat()
    if isinstance(value, date):
        return "date", value.isoformat()
    if isinstance(value, time_of_day):  # type J
        return "time", value.isoformat()
    if isinstance(value, str):
        return "string", value
    if isinstance(value, bytes | bytearray):
        return "bytes", bytes(value).hex()
    raise TypeError(f"unexpected record value type {type(value).__name__}")


def _decimal_text(d: Decimal) -> str:
    # plain notation, never "1E+3": consumers parse it with Decimal(), float() or a regex
    return format(d, "f")


# ------------------------------------------------------------------------------------------
# Header access: the one place that knows the Telegram/LongHeader field names
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderView:
    """The header fields the renderers print, the same for long, short and fixed headers."""

    kind: str  # "long" (CI 72h/76h), "short" (CI 7Ah) or "fixed" (CI 73h)
    id_text: str  # libmbus prints the 4 ID bytes as hex digits (BCD), leading zeros dropped
    id_bcd: bytes  # wire order
    manufacturer: str
    manufacturer_raw: bytes  # wire order
    version: int | None
    medium: int | None
    access_number: int
    status: int
    signature: int  # EN 13757-3 "signature", OMS "configuration field", wire value LSB first

    @property
    def secondary_address(self) -> str | None:
        if self.version is None or self.medium is None:
            return None
        return (
            f"{self.id_bcd[::-1].hex().upper()}{self.manufacturer_raw.hex().upper()}"
            f"{self.version:02X}{self.medium:02X}"
        )


def header_view(t: Telegram) -> HeaderView | None:
    """The telegram's header as a :class:`HeaderView`, or None when it has no header."""
    h = t.header
    if h is None:
        return None
    if isinstance(h, LongHeader):
        id_raw = h.id_raw or b"\0\0\0\0"
        code = h.manufacturer_code or 0
        return HeaderView("long", id_hex(id_raw), id_raw, h.manufacturer,
                          code.to_bytes(2, "little"), h.version, h.medium, h.access_number,
                          h.status, h.signature)
    if isinstance(h, FixedHeader):
        id_raw = h.id_raw or b"\0\0\0\0"
        return HeaderView("fixed", id_hex(id_raw), id_raw, "", b"", None, h.medium,
                          h.access_number, h.status, 0)
    return HeaderView("short", "", b"", "", b"", None, None, h.access_number, h.status,
                      h.signature)


def id_hex(id_raw: bytes) -> str:
    """A BCD identification (wire order) as libmbus prints it."""
    # libmbus prints the BCD identification as hex digits ("%llX"): leading zeros dropped, a
    # non-decimal nibble shown as the letter it is
    return id_raw[::-1].hex().upper().lstrip("0") or "0"
