"""Reading storage in SQLite (the default back-end; the interface is in ``base``).

One file, in WAL mode, serialised by a lock: the poller writes from its worker thread while the
HTTP API reads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..model import CommandEntry, Poll, Reading
from .base import (
    COMMAND_INSERT,
    COMMAND_UPDATE,
    LATEST_ALL_SQL,
    MeterRow,
    StorageError,
    command_entry,
    command_insert_args,
    commands_query,
    group_latest,
    history_query,
    identity_json,
    identity_parse,
    json_text,
    newest,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meters (
    name TEXT PRIMARY KEY,
    bus TEXT NOT NULL,
    address TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT '{}',
    last_slot INTEGER,
    last_read REAL
);
CREATE TABLE IF NOT EXISTS readings (
    meter TEXT NOT NULL,
    register TEXT NOT NULL,
    slot INTEGER NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    meter_time TEXT,
    read_time REAL NOT NULL,
    PRIMARY KEY (meter, register, slot, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (meter, read_time);
CREATE INDEX IF NOT EXISTS readings_by_slot ON readings (meter, slot);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    origin TEXT NOT NULL,
    meter TEXT NOT NULL,
    command TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '{}',
    outcome TEXT NOT NULL,
    message TEXT,
    readback TEXT,
    finished REAL
);
CREATE INDEX IF NOT EXISTS commands_by_meter ON commands (meter, id);
"""


class SqliteStorage:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
            # WAL: readers (the HTTP API, another process) never block the poller's commits;
            # synchronous=NORMAL in WAL still never loses a committed transaction on a process
            # crash (only on power loss), which is the kill -9 guarantee we give.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite: {exc}") from exc

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite: {exc}") from exc

    def init(self) -> None:
        with self._lock:
            try:
                self._db.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite: {exc}") from exc

    def register_meter(self, name: str, bus: str, address: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meters (name, bus, address) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET bus = excluded.bus, address = excluded.address",
                (name, bus, address))

    def store(self, poll: Poll) -> int:
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO readings (meter, register, slot, seq, value, unit,"
                " meter_time, read_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.meter, r.register, poll.slot, poll.seq, r.value, r.unit, r.meter_time,
                  r.read_time)
                 for r in poll.readings])
            new = db.total_changes - before
            # the meter row says which slot is the latest, so "latest" never scans history
            db.execute(
                "INSERT INTO meters (name, bus, address, identity, last_slot, last_read)"
                " VALUES (?, '', '', ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " identity = excluded.identity,"
                " last_slot = max(coalesce(meters.last_slot, excluded.last_slot),"
                " excluded.last_slot),"
                " last_read = max(coalesce(meters.last_read, excluded.last_read),"
                " excluded.last_read)",
                (poll.meter, identity_json(poll.identity), poll.slot, poll.read_time))
            return new

    def last_slots(self) -> dict[str, int]:
        rows = self._query("SELECT name, last_slot FROM meters WHERE last_slot IS NOT NULL")
        return {str(m): int(s) for m, s in rows}

    def meters(self) -> list[MeterRow]:
        rows = self._query(
            "SELECT name, bus, address, identity, last_slot, last_read FROM meters ORDER BY name")
        return [MeterRow(n, b, a, identity_parse(i), s, r) for n, b, a, i, s, r in rows]

    def latest(self, meter: str) -> list[Reading]:
        rows = self._query(
            "SELECT meter, register, value, unit, meter_time, read_time FROM readings"
            " WHERE meter = ? AND slot = (SELECT last_slot FROM meters WHERE name = ?)"
            " ORDER BY register, read_time", (meter, meter))
        return newest(Reading(*row) for row in rows)

    def latest_all(self) -> dict[str, list[Reading]]:
        return group_latest(self._query(LATEST_ALL_SQL))

    def history(self, meter: str, *, register: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 10000) -> list[Reading]:
        sql, args = history_query(meter, register=register, since=since, until=until,
                                  limit=limit, mark="?")
        return [Reading(*row) for row in self._query(sql, tuple(args))]

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM readings")[0][0])

    def open_command(self, entry: CommandEntry) -> int:
        with self._tx() as db:
            cur = db.execute(COMMAND_INSERT.format(m="?"), command_insert_args(entry))
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

    def close_command(self, id: int, *, outcome: str, message: str | None,
                      readback: dict[str, Any] | None, finished: float) -> None:
        with self._tx() as db:
            db.execute(COMMAND_UPDATE.format(m="?"),
                       (outcome, message, json_text(readback), finished, id))

    def commands(self, *, meter: str | None = None, before_id: int | None = None,
                 before_time: float | None = None, limit: int = 100) -> list[CommandEntry]:
        sql, args = commands_query(meter=meter, before_id=before_id, before_time=before_time,
                                   limit=limit, mark="?")
        return [command_entry(row) for row in self._query(sql, tuple(args))]

    def close(self) -> None:
        with self._lock:
            self._db.close()


__all__ = ["SqliteStorage"]
