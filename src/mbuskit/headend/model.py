"""What the head-end stores: readings turned out of decoded telegrams, and the meter identity.

A register name is built from the record's meaning (EN 13757-3 6.3: function field, storage
number, tariff, subunit, and the combinable VIFE qualifiers), never from its position, so the
same quantity keeps the same name whatever order a meter sends its records in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any, Protocol

from ..codec.records import DataRecord, FunctionField, RecordKind


class TelegramLike(Protocol):
    """The part of ``mbuskit.codec.telegram.Telegram`` the head-end needs."""

    @property
    def records(self) -> Sequence[DataRecord]: ...


@dataclass(frozen=True, slots=True)
class Reading:
    meter: str
    register: str
    value: float
    unit: str
    # the meter's own clock, if it sent one (ISO 8601): as the meter sent it (a UTC clock) or,
    # for a meter with a time zone, converted to UTC with a "Z"
    meter_time: str | None
    read_time: float  # head-end clock, seconds since the epoch


@dataclass(frozen=True, slots=True)
class Identity:
    """Who answered: the secondary address fields of the long header (EN 13757-3 6.2)."""

    id: str | None = None  # identification number, 8 digits
    manufacturer: str | None = None  # three letters, e.g. KAM
    version: int | None = None
    medium: int | None = None
    fabrication: str | None = None  # fabrication number record (enhanced secondary address)
    primary: int | None = None  # the link address the answer came from

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "manufacturer": self.manufacturer, "version": self.version,
                "medium": self.medium, "fabrication": self.fabrication,
                "primary": self.primary}


@dataclass(frozen=True, slots=True)
class Poll:
    """One successful read of one meter: what the storage commits in one transaction."""

    meter: str
    slot: int  # poll slot (floor(read_time / interval)); one poll per meter and slot is stored
    read_time: float
    identity: Identity
    readings: tuple[Reading, ...] = field(default=())
    # 0 for the slot's poll; a read triggered in a slot already polled gets its own number
    # (milliseconds of its read time), so it is kept beside the slot's poll, not dropped
    seq: int = 0


# What an audited command came to: "pending" while it runs (and for good when the head-end
# stopped before it ended, so its outcome is unknown), then one of the others ("unverified":
# taken by the meter, but the state read back does not show the change)
OUTCOMES = ("pending", "ok", "refused", "unreachable", "unverified", "error")


@dataclass(frozen=True, slots=True)
class CommandEntry:
    """One command in the audit trail (``commands`` table): who asked what of which meter,
    and what came of it."""

    time: float  # head-end clock when the command was taken, seconds since the epoch
    origin: str  # "http", "mqtt" (later "cli"), with ":name" when the asker is known
    meter: str
    command: str  # "breaker", "set_time"
    args: dict[str, Any]
    outcome: str = "pending"
    message: str | None = None  # the refusal or error
    readback: dict[str, Any] | None = None  # the state read back after it, e.g. breaker_state
    finished: float | None = None
    id: int | None = None  # given by the storage

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "origin": self.origin, "meter": self.meter,
                "command": self.command, "args": self.args, "outcome": self.outcome,
                "message": self.message, "readback": self.readback, "finished": self.finished}


def register_name(rec: DataRecord) -> str:
    parts = [rec.quantity or f"vif_{rec.vif or 0:02x}"]
    if rec.vif is not None and rec.vif & 0x7F == 0x7F:
        # manufacturer-specific VIF (EN 13757-3 6.4.4): only the code in the VIFE tells the
        # records apart
        parts.append("".join(f"{v:02x}" for v in rec.vife) or "x")
    parts += [q.replace(":", "_") for q in rec.qualifiers]
    if rec.function != FunctionField.INSTANTANEOUS:
        parts.append(rec.function.name.lower())
    if rec.tariff:
        parts.append(f"tariff{rec.tariff}")
    if rec.storage:
        parts.append(f"storage{rec.storage}")
    if rec.subunit:
        parts.append(f"subunit{rec.subunit}")
    return ".".join(parts)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _meter_time(records: Sequence[DataRecord], zone: tzinfo | None) -> str | None:
    for rec in records:
        if rec.kind is RecordKind.DATA and rec.storage == 0 and rec.valid and isinstance(
                rec.value, datetime | date):
            value = rec.value
            if zone is None or not isinstance(value, datetime) or value.tzinfo is not None:
                return value.isoformat()  # a UTC clock, or a date alone: as the meter sent it
            # a wall time in the repeated hour of autumn is taken as the first (summer time)
            # one: the codec does not keep type F's SU bit that would tell them apart
            utc = value.replace(tzinfo=zone).astimezone(UTC)
            return utc.replace(tzinfo=None).isoformat() + "Z"
    return None


def readings_from(meter: str, telegrams: Sequence[TelegramLike], read_time: float, *,
                  zone: tzinfo | None = None) -> list[Reading]:
    """Numeric data records of every telegram of one read, first occurrence of a register wins.
    ``zone``: the meter's clock runs that zone's local time (its ``meter_time`` becomes UTC)."""
    records = [r for t in telegrams for r in t.records]
    meter_time = _meter_time(records, zone)
    out: dict[str, Reading] = {}
    for rec in records:
        if rec.kind is not RecordKind.DATA or not rec.valid:
            continue
        if rec.quantity in ("fabrication_number", "identification", "bus_address"):
            continue
        value = _number(rec.value)
        if value is None:
            continue
        name = register_name(rec)
        if name not in out:
            out[name] = Reading(meter, name, value, rec.unit, meter_time, read_time)
    return list(out.values())


# The Kamstrup module sends its breaker state as the digital output record 01 FD 1A, in the
# additional read-out only (docs/register-map.md); other makers use FD 1A for other outputs
BREAKER_STATES = {0: "disconnected", 1: "connected", 2: "released", 3: "armed"}


# ... and why it last disconnected as the manufacturer record 01 FF 08, beside it
BREAKER_REASONS = {0: "none", 1: "button", 2: "command", 3: "smart", 4: "prepayment"}
_KAMSTRUP_REASON = "manufacturer_specific.08"


def with_breaker(readings: list[Reading], ident: Identity) -> list[Reading]:
    """The readings plus the named ``breaker`` (state code) and ``breaker_reason`` (disconnect
    reason code) readings for a Kamstrup module."""
    if ident.manufacturer != "KAM" or any(r.register == "breaker" for r in readings):
        return readings
    out = next((r for r in readings if r.register == "digital_output"), None)
    if out is None or out.value not in BREAKER_STATES:
        return readings
    named = [replace(out, register="breaker", unit="")]
    reason = next((r for r in readings if r.register == _KAMSTRUP_REASON), None)
    if reason is not None and reason.value in BREAKER_REASONS:
        named.append(replace(reason, register="breaker_reason", unit=""))
    return [*readings, *named]


def breaker_state(readings: Iterable[Reading]) -> tuple[str, str, float] | None:
    """("open" or "closed", the module's own word, read time) from a ``breaker`` reading.

    Only "connected" is closed: released (waiting for the push button) and armed (waiting for
    the connect command) still carry no load.
    """
    for r in readings:
        if r.register == "breaker" and r.value in BREAKER_STATES:
            detail = BREAKER_STATES[int(r.value)]
            return ("closed" if detail == "connected" else "open"), detail, r.read_time
    return None


def breaker_reason(readings: Iterable[Reading]) -> str | None:
    """Why the breaker last disconnected ("button", "command", ...), from ``breaker_reason``."""
    for r in readings:
        if r.register == "breaker_reason" and r.value in BREAKER_REASONS:
            return BREAKER_REASONS[int(r.value)]
    return None


def _text(v: object) -> str | None:
    return None if v is None else str(v)


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def identity_from(telegrams: Sequence[TelegramLike]) -> Identity:
    """Identity from the first telegram's long header; duck-typed on the telegram module."""
    if not telegrams:
        return Identity()
    t = telegrams[0]
    header = getattr(t, "header", None)
    address = getattr(header, "address", None) or getattr(header, "secondary", None) or header
    ident = getattr(address, "id", None)
    if isinstance(ident, int):
        ident = f"{ident:08d}"
    manufacturer = getattr(address, "manufacturer", None)
    if isinstance(manufacturer, int):
        manufacturer = manufacturer_letters(manufacturer)
    fabrication: str | None = None
    for t2 in telegrams:
        for rec in t2.records:
            if rec.quantity == "fabrication_number" and rec.value is not None:
                fabrication = str(rec.value)
                break
        if fabrication:
            break
    return Identity(
        id=_text(ident), manufacturer=_text(manufacturer),
        version=_int(getattr(address, "version", None)),
        medium=_int(getattr(address, "medium", None)),
        fabrication=fabrication, primary=_int(getattr(t, "address", None)),
    )


def manufacturer_letters(code: int) -> str:
    """EN 13757-3 6.3: three letters packed as 5-bit values (A = 1) into 15 bits."""
    return "".join(chr(((code >> s) & 0x1F) + 64) for s in (10, 5, 0))


__all__ = [
    "BREAKER_REASONS",
    "BREAKER_STATES",
    "OUTCOMES",
    "CommandEntry",
    "Identity",
    "Poll",
    "Reading",
    "TelegramLike",
    "breaker_reason",
    "breaker_state",
    "identity_from",
    "manufacturer_letters",
    "readings_from",
    "register_name",
    "with_breaker",
]
