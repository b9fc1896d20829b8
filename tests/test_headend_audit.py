"""The audit trail of head-end commands: every breaker and time-sync command, what came of it
and the state read back, kept in the database across restarts and served as /api/commands.
Over the real HTTP API against the Kamstrup twin, on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from headend_fakes import FakeReader
from mbuskit.headend.config import Config, parse_config
from mbuskit.headend.model import CommandEntry
from mbuskit.headend.runtime import Headend
from mbuskit.headend.scheduler import AuditUnavailable, Scheduler
from mbuskit.headend.storage.base import Storage, StorageError
from mbuskit.headend.storage.postgres import PostgresStorage
from mbuskit.headend.storage.sqlite import SqliteStorage
from mbuskit.slave.emulator import Emulator, seeded_meters
from mbuskit.slave.emulator_config import EmulatorConfig, GatewaySpec
from mbuskit.slave.meter import BreakerState

TOKEN = "audit-token-1"
PG_URL = os.environ.get("MBUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# the schema of a database made before the audit trail existed
OLD_SQLITE = """
CREATE TABLE meters (name TEXT PRIMARY KEY, bus TEXT NOT NULL, address TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT '{}', last_slot INTEGER, last_read REAL);
CREATE TABLE readings (meter TEXT NOT NULL, register TEXT NOT NULL, slot INTEGER NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0, value REAL NOT NULL, unit TEXT NOT NULL, meter_time TEXT,
    read_time REAL NOT NULL, PRIMARY KEY (meter, register, slot, seq)) WITHOUT ROWID;
INSERT INTO readings VALUES ('flat', 'energy', 1, 0, 5.0, 'Wh', NULL, 100.0);
"""


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def pg_schema() -> Iterator[str]:
    if not _pg_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    name = f"mba_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


StorageFactory = Callable[[], Storage]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.service)])
def storage_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StorageFactory:
    """A new storage object on the same database each call (a restart reopens it)."""
    if request.param == "sqlite":
        return lambda: SqliteStorage(tmp_path / "r.db")
    schema = request.getfixturevalue("pg_schema")
    return lambda: PostgresStorage(PG_URL, worker="audit", schema=schema)


def site_config(where: str) -> Config:
    return parse_config(
        f'[http]\nbind = "127.0.0.1:0"\ntoken = "{TOKEN}"\n'
        f'[storage]\nlease_seconds = 6\n'
        f'[[buses]]\nname = "gw"\ntcp = "{where}"\nbaud = 2400\n'
        '[[meters]]\nname = "flat"\nbus = "gw"\nprimary = 1\nbreaker = true\n'
        'data = "additional"\ninterval = "1h"\n'
        '[[meters]]\nname = "shop"\nbus = "gw"\nprimary = 2\ninterval = "1h"\n'
        '[[meters]]\nname = "gone"\nbus = "gw"\nprimary = 9\nbreaker = true\ninterval = "1h"\n')


@dataclass
class Site:
    emulator: Emulator
    headend: Headend
    client: httpx.AsyncClient

    def breaker(self) -> BreakerState:
        return twin_breaker(self.emulator)


def twin_breaker(emu: Emulator) -> BreakerState:
    state: BreakerState = emu.find_meter(seeded_meters(2, 31)[0].serial_number).breaker
    return state


async def open_headend(emu: Emulator, storage: Storage) -> tuple[Headend, httpx.AsyncClient]:
    h = Headend(site_config(emu.served[0].where), storage=storage)
    await h.start()
    # PostgreSQL: commands go out only once this worker holds the bus lease
    for _ in range(200):
        if h.scheduler.buses["gw"].owned:
            break
        await asyncio.sleep(0.05)
    assert h.url is not None
    return h, httpx.AsyncClient(base_url=h.url, timeout=30,
                                headers={"authorization": f"Bearer {TOKEN}"})


@pytest.fixture
async def site(storage_factory: StorageFactory) -> AsyncIterator[Site]:
    emu = Emulator(EmulatorConfig(gateways=(GatewaySpec(meters=tuple(seeded_meters(2, 31)),
                                                        port=0),)))
    await emu.start()
    h, client = await open_headend(emu, storage_factory())
    s = Site(emu, h, client)
    yield s
    await s.client.aclose()
    await s.headend.stop()
    await emu.stop()


async def _commands(c: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await c.get("/api/commands", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_commands_are_audited_and_survive_a_restart(site: Site,
                                                         storage_factory: StorageFactory) -> None:
    c = site.client
    assert (await _commands(c))["commands"] == []
    r = await c.post("/api/meters/flat/breaker", json={"state": "open"})
    assert r.status_code == 200, r.text
    assert site.breaker() is BreakerState.DISCONNECTED
    # refused by the head-end: the meter has no breaker = true
    r = await c.post("/api/meters/shop/breaker", json={"state": "open"})
    assert r.status_code == 409
    rows = (await _commands(c))["commands"]
    assert [(x["meter"], x["command"], x["outcome"]) for x in rows] == [
        ("shop", "breaker", "refused"), ("flat", "breaker", "ok")]
    refused, done = rows
    assert "not enabled" in refused["message"] and refused["readback"] is None
    assert done["origin"] == "http" and done["args"] == {"state": "open"}
    assert done["readback"] == {"breaker_state": "open", "breaker_detail": "disconnected"}
    assert done["message"] is None and done["time"] <= done["finished"]
    assert done["id"] < refused["id"]

    # a meter that does not answer, and a time sync (its argument kept as ISO 8601)
    r = await c.post("/api/meters/gone/breaker", json={"state": "open"})
    assert r.status_code == 502
    r = await c.post("/api/meters/flat/time-sync")
    assert r.status_code == 200, r.text
    r = await c.post("/api/meters/flat/breaker", json={"state": "closed"})
    assert r.status_code == 200 and site.breaker() is BreakerState.CONNECTED
    rows = (await _commands(c))["commands"]
    assert [x["outcome"] for x in rows] == ["ok", "ok", "unreachable", "refused", "ok"]
    assert rows[0]["readback"]["breaker_state"] == "closed"
    assert rows[1]["command"] == "set_time" and "T" in rows[1]["args"]["when"]
    assert rows[2]["meter"] == "gone" and rows[2]["message"]

    # paging: newest first, two at a time, following "next"
    seen: list[int] = []
    page = await _commands(c, limit=2)
    while True:
        assert len(page["commands"]) <= 2
        seen += [x["id"] for x in page["commands"]]
        if page["next"] is None:
            break
        page = await _commands(c, limit=2, before=page["next"])
    assert seen == [x["id"] for x in rows]
    # the meter filter, and a time cursor
    flat = (await _commands(c, meter="flat"))["commands"]
    assert [x["command"] for x in flat] == ["breaker", "set_time", "breaker"]
    assert (await _commands(c, meter="nobody"))["commands"] == []
    # (a millisecond before the time sync: ISO 8601 keeps microseconds, rounded)
    cut = datetime.fromtimestamp(rows[1]["time"] - 0.001, UTC).isoformat()
    assert [x["id"] for x in (await _commands(c, before=cut))["commands"]] == \
        [x["id"] for x in rows[2:]]
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"before": "yesterday"}):
        assert (await c.get("/api/commands", params=bad)).status_code == 400

    # a restart of the head-end on the same database keeps them all
    await c.aclose()
    await site.headend.stop()
    site.headend, site.client = await open_headend(site.emulator, storage_factory())
    assert (await _commands(site.client))["commands"] == rows


class NoAudit(SqliteStorage):
    """A database that takes readings but refuses the audit rows."""

    fail_open = True
    fail_close = False

    def open_command(self, entry: CommandEntry) -> int:
        if self.fail_open:
            raise StorageError("SQLite: disk I/O error")
        return super().open_command(entry)

    def close_command(self, id: int, **kwargs: Any) -> None:
        if self.fail_close:
            raise StorageError("SQLite: disk I/O error")
        super().close_command(id, **kwargs)


async def test_command_refused_when_its_audit_row_cannot_be_written(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    emu = Emulator(EmulatorConfig(gateways=(GatewaySpec(meters=tuple(seeded_meters(1, 31)),
                                                        port=0),)))
    await emu.start()
    store = NoAudit(tmp_path / "r.db")
    h, c = await open_headend(emu, store)
    try:
        with caplog.at_level(logging.ERROR, logger="mbuskit.headend"):
            r = await c.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 503 and "audit" in r.json()["error"]
        assert twin_breaker(emu) is BreakerState.CONNECTED  # nothing was sent
        assert any("audit row not written" in m for m in caplog.messages)
        # the row written but not completed: the command ran, the row says "pending" and the
        # log tells the outcome
        store.fail_open, store.fail_close = False, True
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="mbuskit.headend"):
            r = await c.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 200
        assert twin_breaker(emu) is BreakerState.DISCONNECTED
        assert any("not completed" in m for m in caplog.messages)
        (row,) = (await _commands(c))["commands"]
        assert row["outcome"] == "pending"
    finally:
        await c.aclose()
        await h.stop()
        await emu.stop()


def _gains_table(storage: Storage) -> None:
    storage.init()
    entry_id = storage.open_command(CommandEntry(time=1.0, origin="cli", meter="flat",
                                                 command="breaker", args={"state": "open"}))
    storage.close_command(entry_id, outcome="ok", message=None, readback=None, finished=2.0)
    (row,) = storage.commands(meter="flat")
    assert (row.origin, row.outcome, row.args, row.finished) == ("cli", "ok",
                                                                 {"state": "open"}, 2.0)
    assert [r.value for r in storage.history("flat")] == [5.0]  # the old readings are kept


def test_existing_sqlite_database_gains_the_table(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "old.db")
    db.executescript(OLD_SQLITE)
    db.close()
    store = SqliteStorage(tmp_path / "old.db")
    _gains_table(store)
    store.close()


@pytest.mark.service
def test_existing_postgres_database_gains_the_table(pg_schema: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{pg_schema}"')
        c.execute(f'SET search_path TO "{pg_schema}"')
        for stmt in OLD_SQLITE.replace(" WITHOUT ROWID", "").replace("REAL", "DOUBLE PRECISION")\
                .split(";"):
            if stmt.strip():
                c.execute(stmt)
    store = PostgresStorage(PG_URL, schema=pg_schema)
    _gains_table(store)
    store.close()


async def test_scheduler_records_mqtt_origin_and_refuses_without_audit(tmp_path: Path) -> None:
    cfg = parse_config('[[buses]]\nname = "b"\ntcp = "h:1"\n'
                       '[[meters]]\nname = "relay"\nbus = "b"\nprimary = 1\nbreaker = true\n')
    reader = FakeReader({"relay": 1})
    store = NoAudit(tmp_path / "r.db")
    store.init()
    s = Scheduler(cfg, {"b": reader}, store)
    with pytest.raises(AuditUnavailable):
        await s.command("relay", "breaker", {"state": "open"}, origin="mqtt")
    assert reader.commands == []
    store.fail_open = False
    assert await s.command("relay", "breaker", {"state": "open"}, origin="mqtt") == {"ok": True}
    (row,) = store.commands()
    assert (row.origin, row.outcome, row.readback) == ("mqtt", "ok", None)
