"""PostgreSQL storage, for fleets, and bus leases so several head-end processes share the work.

A lease row per bus holds an owner and an expiry. A worker claims buses whose lease expired
(or that it already owns) with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two workers racing for
the same bus never both win, and a worker renews its leases well inside the lease period. A
dead worker's buses are free once its expiry passes, i.e. within one lease period. Expiries are
computed on the database clock so workers' clocks need not agree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

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

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meters (
    name TEXT PRIMARY KEY,
    bus TEXT NOT NULL,
    address TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT '{}',
    last_slot BIGINT,
    last_read DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS readings (
    meter TEXT NOT NULL,
    register TEXT NOT NULL,
    slot BIGINT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0,
    value DOUBLE PRECISION NOT NULL,
    unit TEXT NOT NULL,
    meter_time TEXT,
    read_time DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (meter, register, slot, seq)
);
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (meter, read_time);
CREATE INDEX IF NOT EXISTS readings_by_slot ON readings (meter, slot);
CREATE TABLE IF NOT EXISTS commands (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time DOUBLE PRECISION NOT NULL,
    origin TEXT NOT NULL,
    meter TEXT NOT NULL,
    command TEXT NOT NULL,
    args TEXT NOT NULL DEFAULT '{}',
    outcome TEXT NOT NULL,
    message TEXT,
    readback TEXT,
    finished DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS commands_by_meter ON commands (meter, id);
CREATE TABLE IF NOT EXISTS bus_leases (
    bus TEXT PRIMARY KEY,
    owner TEXT,
    expires DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    expires DOUBLE PRECISION NOT NULL
);
"""

_NOW = "extract(epoch from clock_timestamp())"


class PostgresStorage:
    def __init__(self, url: str, *, worker: str = "headend", schema: str | None = None) -> None:
        self.url = url
        self.worker = worker
        self.schema = schema  # tests isolate themselves in their own schema
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.url, connect_timeout=5)
                if self.schema:
                    with self._conn.transaction():
                        self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                        self._conn.execute(f'SET search_path TO "{self.schema}"')
            except psycopg.Error as exc:
                self._conn = None
                raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        return self._conn

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` in one transaction; a lost connection is dropped and reopened next time."""
        with self._lock:
            conn = self._connect()
            try:
                with conn.transaction():
                    return fn(conn)
            except psycopg.OperationalError as exc:
                conn.close()
                self._conn = None
                raise StorageError(f"PostgreSQL connection lost: {exc}") from exc
            except psycopg.Error as exc:
                raise StorageError(f"PostgreSQL: {exc}") from exc

    def init(self) -> None:
        def go(c: psycopg.Connection[Any]) -> None:
            # serialise concurrent CREATE IF NOT EXISTS from several starting workers
            c.execute("SELECT pg_advisory_xact_lock(13757)")
            c.execute(_SCHEMA)
        self._run(go)

    def register_meter(self, name: str, bus: str, address: str) -> None:
        self._run(lambda c: c.execute(
            "INSERT INTO meters (name, bus, address) VALUES (%s, %s, %s) ON CONFLICT (name) DO"
            " UPDATE SET bus = excluded.bus, address = excluded.address", (name, bus, address)))

    def store(self, poll: Poll) -> int:
        rs = poll.readings

        def go(c: psycopg.Connection[Any]) -> int:
            with c.cursor() as cur:
                # one statement for the whole poll: one round trip however many registers
                cur.execute(
                    "INSERT INTO readings (meter, register, slot, seq, value, unit, meter_time,"
                    " read_time) SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[],"
                    " %s::bigint[], %s::float8[], %s::text[], %s::text[], %s::float8[])"
                    " ON CONFLICT DO NOTHING",
                    ([r.meter for r in rs], [r.register for r in rs], [poll.slot] * len(rs),
                     [poll.seq] * len(rs), [r.value for r in rs], [r.unit for r in rs],
                     [r.meter_time for r in rs], [r.read_time for r in rs]))
                new = max(cur.rowcount, 0)
                cur.execute(
                    "INSERT INTO meters (name, bus, address, identity, last_slot, last_read)"
                    " VALUES (%s, '', '', %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
                    " identity = excluded.identity,"
                    " last_slot = greatest(meters.last_slot, excluded.last_slot),"
                    " last_read = greatest(meters.last_read, excluded.last_read)",
                    (poll.meter, identity_json(poll.identity), poll.slot, poll.read_time))
            return new
        return self._run(go)

    def last_slots(self) -> dict[str, int]:
        rows = self._run(lambda c: c.execute(
            "SELECT name, last_slot FROM meters WHERE last_slot IS NOT NULL").fetchall())
        return {str(m): int(s) for m, s in rows}

    def meters(self) -> list[MeterRow]:
        rows = self._run(lambda c: c.execute(
            "SELECT name, bus, address, identity, last_slot, last_read FROM meters"
            " ORDER BY name").fetchall())
        return [MeterRow(n, b, a, identity_parse(i), s, r) for n, b, a, i, s, r in rows]

    def latest(self, meter: str) -> list[Reading]:
        rows = self._run(lambda c: c.execute(
            "SELECT meter, register, value, unit, meter_time, read_time FROM readings"
            " WHERE meter = %s AND slot = (SELECT last_slot FROM meters WHERE name = %s)"
            " ORDER BY register, read_time", (meter, meter)).fetchall())
        return newest(Reading(*row) for row in rows)

    def latest_all(self) -> dict[str, list[Reading]]:
        return group_latest(self._run(lambda c: c.execute(LATEST_ALL_SQL).fetchall()))

    def history(self, meter: str, *, register: str | None = None, since: float | None = None,
                until: float | None = None, limit: int = 10000) -> list[Reading]:
        sql, args = history_query(meter, register=register, since=since, until=until,
                                  limit=limit, mark="%s")
        rows = self._run(lambda c: c.execute(sql, args).fetchall())
        return [Reading(*row) for row in rows]

    def count(self) -> int:
        rows = self._run(lambda c: c.execute("SELECT count(*) FROM readings").fetchall())
        return int(rows[0][0])

    def open_command(self, entry: CommandEntry) -> int:
        def go(c: psycopg.Connection[Any]) -> int:
            row = c.execute(COMMAND_INSERT.format(m="%s") + " RETURNING id",
                            command_insert_args(entry)).fetchone()
            assert row is not None
            return int(row[0])
        return self._run(go)

    def close_command(self, id: int, *, outcome: str, message: str | None,
                      readback: dict[str, Any] | None, finished: float) -> None:
        self._run(lambda c: c.execute(COMMAND_UPDATE.format(m="%s"),
                                      (outcome, message, json_text(readback), finished, id)))

    def commands(self, *, meter: str | None = None, before_id: int | None = None,
                 before_time: float | None = None, limit: int = 100) -> list[CommandEntry]:
        sql, args = commands_query(meter=meter, before_id=before_id, before_time=before_time,
                                   limit=limit, mark="%s")
        return [command_entry(row) for row in self._run(lambda c: c.execute(sql,
                                                                            args).fetchall())]

    # ---- bus leases ----
    def acquire(self, buses: Sequence[str], lease_seconds: float) -> list[str]:
        """Claim or renew leases on a fair share of ``buses``; returns the buses held.

        Every live worker (heartbeat in ``workers``) gets at most ceil(buses / workers): a
        worker holding more stops polling the surplus and releases it (``release``), and the
        others claim it on their next round.
        """
        def go(c: psycopg.Connection[Any]) -> list[str]:
            with c.cursor() as cur:
                cur.execute(
                    f"INSERT INTO workers (name, expires) VALUES (%s, {_NOW} + %s)"
                    " ON CONFLICT (name) DO UPDATE SET expires = excluded.expires",
                    (self.worker, lease_seconds))
                cur.execute(f"SELECT count(*) FROM workers WHERE expires > {_NOW}")
                row = cur.fetchone()
                live = max(int(row[0]) if row else 1, 1)
                share = -(-len(buses) // live)
                cur.executemany("INSERT INTO bus_leases (bus) VALUES (%s) ON CONFLICT DO NOTHING",
                                [(b,) for b in buses])
                cur.execute(
                    "SELECT bus, owner FROM bus_leases WHERE bus = ANY(%s) AND"
                    f" (owner = %s OR owner IS NULL OR expires < {_NOW})"
                    " ORDER BY bus FOR UPDATE SKIP LOCKED", (list(buses), self.worker))
                rows = [(str(b), o) for b, o in cur.fetchall()]
                held = [b for b, o in rows if o == self.worker]
                keep, surplus = held[:share], held[share:]
                claim = [b for b, o in rows if o != self.worker][:max(share - len(keep), 0)]
                mine = sorted(keep + claim)
                if mine:
                    cur.execute(
                        f"UPDATE bus_leases SET owner = %s, expires = {_NOW} + %s"
                        " WHERE bus = ANY(%s)", (self.worker, lease_seconds, mine))
                # the surplus is neither renewed nor released here: the caller first stops
                # polling those buses, then releases them, so that no other worker can start
                # on a bus while this one is still in a transaction on it
                del surplus
            return mine
        return self._run(go)

    def release(self, buses: Sequence[str], *, retire: bool = False) -> None:
        """Give leases back; ``retire`` also leaves the worker count (a clean shutdown)."""
        def go(c: psycopg.Connection[Any]) -> None:
            c.execute("UPDATE bus_leases SET owner = NULL, expires = 0"
                      " WHERE owner = %s AND bus = ANY(%s)", (self.worker, list(buses)))
            if retire:
                c.execute("DELETE FROM workers WHERE name = %s", (self.worker,))
        self._run(go)

    def leases(self) -> dict[str, tuple[str | None, float]]:
        rows = self._run(lambda c: c.execute(
            "SELECT bus, owner, expires FROM bus_leases").fetchall())
        return {str(b): (o, float(e)) for b, o, e in rows}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


__all__ = ["PostgresStorage"]
