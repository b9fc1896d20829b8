"""Telegram -> JSON, CSV and a human table (the libmbus-compatible XML is ``libmbus_xml``).

Every renderer reads only the decoded :class:`~mbuskit.codec.telegram.Telegram` (through the shared
header view and value mapping in ``views``); nothing decodes a value a second time except the
libmbus XML (``libmbus_xml``), which by design shows what libmbus shows (the unscaled number
beside a unit *description*, EN 13757-3 table 10 wording as libmbus spells it,
``libmbus_names``). The JSON schema is written down in docs/json-schema.md and pinned by tests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..codec.records import DataRecord, FunctionField, RecordKind
from ..codec.telegram import Telegram
from .libmbus_names import _FIXED_MEDIA_XML, _error_text, _medium_name
from .views import header_view, value_to_json

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
    h = header_view(t)
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
        h = header_view(tg)
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

    h = header_view(t)
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
