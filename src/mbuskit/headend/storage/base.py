"""What every storage back-end shares: the interface, its row types and the common SQL.

:class:`Storage` is the protocol the head-end programs against; :class:`StorageError` and
:class:`MeterRow` are what every back-end raises and returns. The helpers (``newest``,
``identity_json`` / ``identity_parse``, ``LATEST_ALL_SQL`` with ``group_latest``,
``history_query``) are written once here because SQLite (``sqlite``) and PostgreSQL
(``postgres``) run the same queries, differing only in the parameter placeholder.

Each poll is committed in one transaction; a reading is unique by (meter, register, slot, seq)
(seq 0 = the slot's scheduled poll, see ``Poll.seq``), so a
poll repeated after a crash (killed before its commit) or after downtime writes no duplicate.
Methods are blocking; the head-end calls them from a worker thread.

Commands are audited in the ``commands`` table: a row is written before a command goes on the
bus (``open_command``) and completed with its outcome afterwards (``close_command``); rows are
never deleted or changed after that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import MBusError
from ..model import CommandEntry, Identity, Poll, Reading


class StorageError(MBusError):
    """The database refused or lost the connection; the poll was not committed."""


@dataclass(frozen=True, slots=True)
class MeterRow:
    name: str
    bus: str
    address: str
    identity: Identity
    last_slot: int | None
    last_read: float | None


class Storage(Protocol):
    def init(self) -> None: ...

    def register_meter(self, name: str, bus: str, address: str) -> None: ...

    def store(self, poll: Poll) -> int:
        """Commit one poll; returns how many readings were new."""
        ...

    def last_slots(self) -> dict[str, int]: ...

    def meters(self) -> list[MeterRow]: ...

    def latest(self, meter: str) -> list[Reading]: ...

    def latest_all(self) -> dict[str, list[Reading]]: ...

    def history(self, meter: str, *, register: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 10000) -> list[Reading]: ...

    def count(self) -> int: ...

    def open_command(self, entry: CommandEntry) -> int:
        """Commit the audit row of a command about to run (outcome "pending"); its id."""
        ...

    def close_command(self, id: int, *, outcome: str, message: str | None,
                      readback: dict[str, Any] | None, finished: float) -> None: ...

    def commands(self, *, meter: str | None = None, before_id: int | None = None,
                 before_time: float | None = None, limit: int = 100) -> list[CommandEntry]:
        """Audit rows, newest first."""
        ...

    def close(self) -> None: ...


def newest(readings: Iterable[Reading]) -> list[Reading]:
    """The newest reading of each register (a slot may hold a triggered read too)."""
    out: dict[str, Reading] = {}
    for r in readings:
        if r.register not in out or r.read_time >= out[r.register].read_time:
            out[r.register] = r
    return [out[k] for k in sorted(out)]


def identity_json(identity: Identity) -> str:
    return json.dumps(identity.as_dict(), sort_keys=True)


def identity_parse(text: str | None) -> Identity:
    try:
        d: dict[str, Any] = json.loads(text or "{}")
    except ValueError:
        d = {}
    return Identity(**{k: d.get(k) for k in Identity.__slots__})


LATEST_ALL_SQL = (
    "SELECT r.meter, r.register, r.value, r.unit, r.meter_time, r.read_time"
    " FROM meters m JOIN readings r ON r.meter = m.name AND r.slot = m.last_slot"
    " ORDER BY r.meter, r.register, r.read_time")


def group_latest(rows: Iterable[Sequence[Any]]) -> dict[str, list[Reading]]:
    """Rows of LATEST_ALL_SQL -> each meter's newest value per register."""
    by_meter: dict[str, list[Reading]] = {}
    for row in rows:
        by_meter.setdefault(row[0], []).append(Reading(*row))
    return {m: newest(rs) for m, rs in by_meter.items()}


def history_query(meter: str, *, register: str | None, since: float | None, until: float | None,
                  limit: int, mark: str) -> tuple[str, list[Any]]:
    """The history query for either database; ``mark`` is its parameter placeholder.

    Selects the newest ``limit`` rows and returns them oldest first.
    """
    sql = ("SELECT meter, register, value, unit, meter_time, read_time FROM readings"
           f" WHERE meter = {mark}")
    args: list[Any] = [meter]
    for clause, value in (("register =", register), ("read_time >=", since),
                          ("read_time <", until)):
        if value is not None:
            sql += f" AND {clause} {mark}"
            args.append(value)
    sql = (f"SELECT * FROM ({sql} ORDER BY read_time DESC, register LIMIT {mark}) AS h"
           " ORDER BY read_time, register")
    args.append(limit)
    return sql, args


def _plain(value: Any) -> Any:
    # command arguments hold datetimes (set_time); ISO 8601 keeps them readable and exact
    iso = getattr(value, "isoformat", None)
    return iso() if callable(iso) else str(value)


def json_text(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=_plain)


def _json_dict(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"unparsed": text}
    return value if isinstance(value, dict) else {"value": value}


COMMAND_INSERT = ("INSERT INTO commands (time, origin, meter, command, args, outcome)"
                  " VALUES ({m}, {m}, {m}, {m}, {m}, {m})")
COMMAND_UPDATE = ("UPDATE commands SET outcome = {m}, message = {m}, readback = {m},"
                  " finished = {m} WHERE id = {m}")


def command_insert_args(entry: CommandEntry) -> tuple[Any, ...]:
    return (entry.time, entry.origin, entry.meter, entry.command,
            json_text(entry.args) or "{}", entry.outcome)


def commands_query(*, meter: str | None, before_id: int | None, before_time: float | None,
                   limit: int, mark: str) -> tuple[str, list[Any]]:
    """Audit rows newest first (by id: the order they were taken in), for either database."""
    sql = ("SELECT id, time, origin, meter, command, args, outcome, message, readback, finished"
           " FROM commands WHERE 1 = 1")
    args: list[Any] = []
    for clause, value in (("meter =", meter), ("id <", before_id), ("time <", before_time)):
        if value is not None:
            sql += f" AND {clause} {mark}"
            args.append(value)
    sql += f" ORDER BY id DESC LIMIT {mark}"
    args.append(limit)
    return sql, args


def command_entry(row: Sequence[Any]) -> CommandEntry:
    id_, time, origin, meter, command, args, outcome, message, readback, finished = row
    return CommandEntry(time=float(time), origin=str(origin), meter=str(meter),
                        command=str(command), args=_json_dict(args) or {}, outcome=str(outcome),
                        message=message, readback=_json_dict(readback),
                        finished=None if finished is None else float(finished), id=int(id_))


__all__ = [
    "COMMAND_INSERT",
    "COMMAND_UPDATE",
    "LATEST_ALL_SQL",
    "MeterRow",
    "Storage",
    "StorageError",
    "command_entry",
    "command_insert_args",
    "commands_query",
    "group_latest",
    "history_query",
    "identity_json",
    "identity_parse",
    "json_text",
    "newest",
]
