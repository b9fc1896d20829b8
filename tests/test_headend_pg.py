"""PostgreSQL storage and bus leases against the machine's PostgreSQL (127.0.0.1:5432, user
postgres, database test). Each test works in its own schema and drops it afterwards."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

import psycopg
import pytest

from headend_fakes import FakeReader, FakeTelegram, kamstrup_telegram
from mbuskit.headend.config import MeterConfig, parse_config
from mbuskit.headend.model import Poll, identity_from, readings_from
from mbuskit.headend.runtime import Headend
from mbuskit.headend.storage.base import StorageError
from mbuskit.headend.storage.postgres import PostgresStorage

pytestmark = pytest.mark.service

URL = os.environ.get("MBUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _available() -> bool:
    try:
        with psycopg.connect(URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def schema() -> Iterator[str]:
    if not _available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is not reachable at {URL}")
        pytest.skip(f"PostgreSQL not reachable at {URL}")
    name = f"mbt_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(URL, autocommit=True) as c:
        # a test that failed half-way may leave connections open in our schema: end them
        # rather than wait on their locks
        c.execute("SET lock_timeout = '5s'")
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                  " AND state = 'idle in transaction'")
        c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _store(schema: str, worker: str = "w") -> PostgresStorage:
    s = PostgresStorage(URL, worker=worker, schema=schema)
    s.init()
    return s


def _poll(meter: str, slot: int, energy: float) -> Poll:
    t = kamstrup_telegram(1, 14839120, energy, 100.0)
    return Poll(meter, slot, slot * 10.0, identity_from([t]),
                tuple(readings_from(meter, [t], slot * 10.0)))


def test_store_latest_history_no_duplicates(schema: str) -> None:
    s = _store(schema)
    s.register_meter("m", "b", "1")
    assert s.store(_poll("m", 1, 100.0)) == 5
    assert s.store(_poll("m", 1, 555.0)) == 0  # the same slot again: nothing new
    assert s.store(_poll("m", 2, 200.0)) == 5
    assert s.count() == 10 and s.last_slots() == {"m": 2}
    assert {r.register: r.value for r in s.latest("m")}["energy"] == 200.0
    assert [r.value for r in s.history("m", register="energy")] == [100.0, 200.0]
    assert [r.value for r in s.history("m", register="energy", until=15.0)] == [100.0]
    (row,) = s.meters()
    assert row.identity.manufacturer == "KAM" and row.last_slot == 2
    s.close()


def test_lost_connection_is_reopened(schema: str) -> None:
    s = _store(schema)
    s.register_meter("m", "b", "1")
    assert s._conn is not None
    pid = s._conn.info.backend_pid
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)
    with pytest.raises(StorageError, match="connection lost"):
        s.store(_poll("m", 1, 1.0))
    assert s.store(_poll("m", 1, 1.0)) == 5  # reconnected; nothing was half written
    s.close()


def test_leases_are_exclusive_fair_and_expire(schema: str) -> None:
    a, b = _store(schema, "a"), _store(schema, "b")
    buses = [f"bus{i}" for i in range(6)]
    assert a.acquire(buses, 1.0) == buses  # alone: every bus
    assert b.acquire(buses, 1.0) == []  # all leased to a
    # two live workers: a keeps its share; once it has stopped polling the rest and
    # released it, b claims it
    assert a.acquire(buses, 1.0) == buses[:3]
    assert b.acquire(buses, 1.0) == []
    a.release(buses[3:])
    assert b.acquire(buses, 1.0) == buses[3:]
    assert (a.acquire(buses, 1.0), b.acquire(buses, 1.0)) == (buses[:3], buses[3:])
    # a dies (stops renewing): within one lease period b holds everything
    end = time.monotonic() + 1.6
    while time.monotonic() < end:
        got = b.acquire(buses, 1.0)
        time.sleep(0.3)
    assert got == buses
    assert a.acquire(buses, 1.0) == []  # a is back, nothing is free yet
    b.release(buses[:2])
    assert a.acquire(buses, 1.0) == buses[:2]
    assert {o for o, _ in a.leases().values()} == {"a", "b"}


def test_racing_workers_never_share_a_bus(schema: str) -> None:
    stores = [_store(schema, f"w{i}") for i in range(4)]
    buses = [f"bus{i}" for i in range(20)]
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(stores))

    def grab(s: PostgresStorage) -> None:
        barrier.wait()
        results[s.worker] = s.acquire(buses, 30.0)

    threads = [threading.Thread(target=grab, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = [b for r in results.values() for b in r]
    assert sorted(got) == sorted(buses)  # every bus owned, by exactly one worker


CONFIG = """
[storage]
url = "postgresql://unused"
lease_seconds = 1
[poll]
timeout = 0.2
[[buses]]
name = "b1"
tcp = "h:1"
[[buses]]
name = "b2"
tcp = "h:2"
[[meters]]
name = "m1"
bus = "b1"
primary = 1
interval = 0.1
[[meters]]
name = "m2"
bus = "b2"
primary = 1
interval = 0.1
"""


class TracingReader(FakeReader):
    """Records which worker read which bus when, to prove a bus has one poller at a time."""

    log: list[tuple[str, str, float, float]]
    worker: str = ""

    async def read(self, meter: MeterConfig) -> Sequence[FakeTelegram]:
        t0 = time.monotonic()
        out = await super().read(meter)
        self.log.append((self.worker, meter.bus, t0, time.monotonic()))
        return out


async def _until(check: Callable[[], bool], timeout: float) -> bool:
    """Wait for ``check`` (a loaded machine is slow, not wrong); False if it never held."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_two_headends_share_buses_and_take_over(schema: str) -> None:
    cfg = parse_config(CONFIG)
    lease = cfg.storage.lease_seconds
    log: list[tuple[str, str, float, float]] = []

    def headend(name: str) -> Headend:
        readers = {}
        for b in ("b1", "b2"):
            r = TracingReader({"m1": 1, "m2": 2}, delay=0.01)
            r.log, r.worker = log, name
            readers[b] = r
        return Headend(cfg, readers=readers, storage=_store(schema, name), http=False)

    def polled_since(t: float) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for w, b, start, _ in log:
            if start > t:
                out.setdefault(w, set()).add(b)
        return out

    h1, h2 = headend("h1"), headend("h2")
    try:
        await h1.start()
        assert await _until(lambda: polled_since(0).get("h1") == {"b1", "b2"}, 10)
        await h2.start()
        # the work gets shared: then each worker polls one bus, and only that one
        def shared() -> bool:
            by = polled_since(time.monotonic() - 0.5)
            return sorted(map(len, by.values())) == [1, 1] and by["h1"] != by["h2"]
        assert await _until(shared, 10), polled_since(time.monotonic() - 0.5)
        (orphan,) = polled_since(time.monotonic() - 0.5)["h1"]
        # h1 dies without releasing its leases (kill -9): cancel everything, release nothing
        died = time.monotonic()
        for t in h1._tasks:
            t.cancel()
        for name in list(h1.scheduler._bus_tasks):
            h1.scheduler._bus_tasks.pop(name).cancel()
        assert await _until(lambda: orphan in polled_since(died).get("h2", set()), 10), \
            "h2 never took over"
        taken = min(s for w, b, s, _ in log if w == "h2" and b == orphan and s > died)
        # within one lease period plus one renewal tick (lease / 3), with room for a slow host
        assert taken - died < lease + lease / 3 + 0.5
        after = time.monotonic()
        assert await _until(lambda: polled_since(after).get("h2") == {"b1", "b2"}, 10)
        assert set(polled_since(after)) == {"h2"}
        # never two workers on one bus at the same time
        for bus in ("b1", "b2"):
            spans = sorted((s, e, w) for w, b, s, e in log if b == bus)
            for (_s1, e1, w1), (s2, _, w2) in itertools.pairwise(spans):
                assert s2 >= e1 or w1 == w2
    finally:
        await h2.stop()
        for t in h1._tasks:
            t.cancel()
        await h1.scheduler.stop()
        h1.storage.close()
    check = _store(schema, "check")
    assert set(check.last_slots()) == {"m1", "m2"}
    check.close()


async def test_database_connection_dropped_while_polling_loses_nothing(schema: str) -> None:
    from mbuskit.headend.scheduler import Scheduler

    cfg = parse_config(CONFIG)
    store = _store(schema, "w")
    readers = {b: FakeReader({"m1": 1, "m2": 2}, delay=0.01) for b in ("b1", "b2")}
    s = Scheduler(cfg, readers, store, storage_retry=0.05)
    polls: list[Poll] = []
    s.listeners.append(polls.append)
    await s.start()
    for _ in range(3):  # the database drops our connection three times while we poll
        await asyncio.sleep(0.3)
        assert store._conn is not None
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
    await asyncio.sleep(0.3)
    await s.stop()
    assert s.pending == 0 and s.storage_errors >= 1
    check = _store(schema, "check")
    rows = check._run(lambda c: c.execute("SELECT DISTINCT meter, slot FROM readings").fetchall())
    assert {(p.meter, p.slot) for p in polls} == {(m, int(slot)) for m, slot in rows}
    check.close()
    store.close()
