"""Telegram -> JSON, libmbus-compatible XML, CSV and a human table.

Every renderer reads only the decoded :class:`~mbuskit.telegram.Telegram`; nothing here decodes
a value a second time except the libmbus XML (``libmbus_xml``), which by design shows what
libmbus shows (the unscaled number beside a unit *description*, EN 13757-3 table 10 wording as
libmbus spells it, ``libmbus_names``). The JSON schema is written down in docs/json-schema.md
and pinned by tests.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..codec.records import DataRecord, FunctionField, RecordKind
from ..codec.telegram import FixedHeader, LongHeader, Telegram
from .libmbus_names import _FIXED_MEDIA_XML, _error_text, _medium_name

if TYPE_CHECKING:
    from rich.table import Table

SCHEMA = "mbuskit.telegram/1"

__all__ = [
    "SCHEMA",
    "to_csv",
    "to_dict",
    "to_json",
    "to_table",
    "to_text",
    "to_xml",
    "value_to_json",
]

# ------------------------------------------------------------------------------------------
# JSON
# ------------------------------------------------------------------------------------------

_FUNCTION_NAMES = {
    FunctionField.INSTANTANEOUS: "instantaneous",
    FunctionField.MAXIMUM: "maximum",
    FunctionField.MINIMUM: "minimum",
    FunctionField.ERROR: "error",
}


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


def _record_dict(index: int, r: DataRecord) -> dict[str, Any]:
    vtype, jvalue = value_to_json(r.value)
    return {
        "index": index,
        "kind": r.kind.value,
        "function": _FUNCTION_NAMES[r.function],
        "storage": r.storage,
        "tariff": r.tariff,
        "subunit": r.subunit,
        "quantity": r.quantity,
        "unit": r.unit,
        "value": jvalue,
        "value_type": vtype,
        "valid": r.valid,
        "description": r.description,
        "qualifiers": list(r.qualifiers),
        "plain_unit": r.plain_unit,
        "more_records_follow": r.more_records_follow,
        "dif": r.dif,
        "dife": list(r.dife),
        "vif": r.vif,
        "vife": list(r.vife),
        "data": r.data.hex(),
        "raw": r.raw.hex(),
    }


def to_dict(t: Telegram) -> dict[str, Any]:
    """The telegram as plain JSON-ready data (schema ``mbuskit.telegram/1``)."""
    h = _header_view(t)
    header: dict[str, Any] | None = None
    if h is not None:
        header = {
            "kind": h.kind,
            "secondary_address": h.secondary_address,
            "id": h.id_bcd[::-1].hex().upper(),
            "manufacturer": h.manufacturer,
            "version": h.version,
            "medium": h.medium,
            "medium_name": _medium_name(h.medium),
            "access_number": h.access_number,
            "status": h.status,
            "signature": h.signature,
        }
    error = None
    if t.error_code is not None:
        error = {"code": t.error_code, "text": _error_text(t.error_code)}
    return {
        "schema": SCHEMA,
        "control": t.control,
        "address": t.address,
        "ci": t.ci,
        "header": header,
        "error": error,
        "alarm": t.alarm,
        "subcode": t.subcode,
        "selection": None if t.selection is None else {
            "id_mask": t.selection.id_mask,
            "manufacturer": t.selection.manufacturer.hex().upper(),
            "version": t.selection.version,
            "medium": t.selection.medium,
            "fabrication": t.selection.fabrication,
        },
        "encrypted": t.encrypted,
        "decrypted": t.decrypted,
        "records": [_record_dict(i, r) for i, r in enumerate(t.records)],
        "payload": t.payload.hex(),
        "diagnostics": [
            {"offset": d.offset, "reason": d.reason, "record": d.record} for d in t.diagnostics
        ],
    }


def to_json(t: Telegram, *, indent: int | None = 2) -> str:
    """``to_dict`` as a JSON document (UTF-8 text, keys in schema order)."""
    return json.dumps(to_dict(t), indent=indent, ensure_ascii=False, allow_nan=False)


# ------------------------------------------------------------------------------------------
# Header access: the one place that knows the Telegram/LongHeader field names
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _HeaderView:
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


def _header_view(t: Telegram) -> _HeaderView | None:
    h = t.header
    if h is None:
        return None
    if isinstance(h, LongHeader):
        id_raw = h.id_raw or b"\0\0\0\0"
        code = h.manufacturer_code or 0
        return _HeaderView("long", _id_hex(id_raw), id_raw, h.manufacturer,
                           code.to_bytes(2, "little"), h.version, h.medium, h.access_number,
                           h.status, h.signature)
    if isinstance(h, FixedHeader):
        id_raw = h.id_raw or b"\0\0\0\0"
        return _HeaderView("fixed", _id_hex(id_raw), id_raw, "", b"", None, h.medium,
                           h.access_number, h.status, 0)
    return _HeaderView("short", "", b"", "", b"", None, None, h.access_number, h.status,
                       h.signature)


def _id_hex(id_raw: bytes) -> str:
    # libmbus prints the BCD identification as hex digits ("%llX"): leading zeros dropped, a
    # non-decimal nibble shown as the letter it is
    return id_raw[::-1].hex().upper().lstrip("0") or "0"


# ------------------------------------------------------------------------------------------
# Human table, plain text and CSV
# ------------------------------------------------------------------------------------------


def _value_text(value: object) -> str:
    vtype, jv = value_to_json(value)
    if vtype == "none":
        return ""
    return str(jv)


_CSV_COLUMNS = (
    "secondary_address",
    "index",
    "function",
    "storage",
    "tariff",
    "subunit",
    "quantity",
    "value",
    "unit",
    "value_type",
    "valid",
    "description",
    "qualifiers",
    "raw",
)


def to_csv(t: Telegram | Iterable[Telegram], *, header: bool = True) -> str:
    """One CSV row per record (RFC 4180: CRLF line ends, so that a CR or LF inside a plain-text
    unit gets quoted); several telegrams concatenate."""
    telegrams = [t] if isinstance(t, Telegram) else list(t)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    if header:
        w.writerow(_CSV_COLUMNS)
    for tg in telegrams:
        h = _header_view(tg)
        sa = (h.secondary_address if h else None) or ""
        for i, r in enumerate(tg.records):
            vtype, _ = value_to_json(r.value)
            w.writerow(
                (
                    sa,
                    i,
                    _FUNCTION_NAMES[r.function],
                    r.storage,
                    r.tariff,
                    r.subunit,
                    r.quantity,
                    _value_text(r.value),
                    r.unit,
                    vtype,
                    "true" if r.valid else "false",
                    r.description,
                    " ".join(r.qualifiers),
                    r.raw.hex(),
                )
            )
    return out.getvalue()


def to_table(t: Telegram) -> Table:
    """A rich Table of the records, titled with the meter's identity."""
    from rich.table import Table
    from rich.text import Text

    h = _header_view(t)
    if t.error_code is not None:
        title = f"application error {t.error_code:#04x}: {_error_text(t.error_code)}"
    elif h is not None and h.kind == "long":
        title = (
            f"{h.secondary_address}  id {h.id_text} {h.manufacturer} v{h.version} "
            f"{_medium_name(h.medium)}  access {h.access_number} status {h.status:02X}"
        )
    elif h is not None and h.kind == "fixed":
        title = f"id {h.id_text} {_FIXED_MEDIA_XML[h.medium or 0]}  access {h.access_number}"
    else:
        title = f"CI {t.ci:02X}"
    # Text cells, never markup strings: a plain-text unit or a qualifier list in brackets
    # would otherwise be read as rich markup.
    table = Table(title=Text(title))
    for name, justify in (
        ("#", "right"),
        ("function", "left"),
        ("st", "right"),
        ("tariff", "right"),
        ("sub", "right"),
        ("quantity", "left"),
        ("value", "right"),
        ("unit", "left"),
        ("description", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i, r in enumerate(t.records):
        text = _value_text(r.value) if r.kind is not RecordKind.MANUFACTURER else r.data.hex(" ")
        if not r.valid:
            text += " (invalid)"
        if r.qualifiers:
            text += " [" + ", ".join(r.qualifiers) + "]"
        cells = (str(i), _FUNCTION_NAMES[r.function], str(r.storage), str(r.tariff),
                 str(r.subunit), r.quantity or r.kind.value, text, r.unit, r.description)
        table.add_row(*(Text(c) for c in cells))
    return table


def to_text(t: Telegram, *, width: int = 120) -> str:
    """``to_table`` rendered as plain text (no colour, no terminal needed)."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    console.print(to_table(t))
    return buf.getvalue()


# ------------------------------------------------------------------------------------------
# libmbus-compatible XML (in libmbus_xml, with libmbus's wording in libmbus_names)
# ------------------------------------------------------------------------------------------


def to_xml(t: Telegram | Iterable[Telegram], *, normalized: bool = False,
           received: datetime | None = None) -> str:
    """libmbus ``mbus_parse_hex`` XML (``normalized=True``: its ``-n`` output); see
    :func:`mbuskit.libmbus_xml.to_xml`."""
    from .libmbus_xml import to_xml as libmbus_to_xml

    return libmbus_to_xml(t, normalized=normalized, received=received)
