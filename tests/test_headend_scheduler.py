from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from headend_fakes import FakeReader
from mbuskit.headend.config import Config, parse_config
from mbuskit.headend.model import Poll, identity_from, readings_from
from mbuskit.headend.scheduler import CommandError, Scheduler
from mbuskit.headend.storage.base import StorageError
from mbuskit.headend.storage.sqlite import SqliteStorage


def _config(interval: str = "0.2", meters_per_bus: int = 3, buses: int = 2) -> Config:
    text = "[poll]\ntimeout = 0.2\nbackoff_max = 0.4\noffline_after = 2\n"
    for b in range(buses):
        text += f'[[buses]]\nname = "b{b}"\ntcp = "127.0.0.1:{10000 + b}"\n'
    for b in range(buses):
        for m in range(meters_per_bus):
            text += (f'[[meters]]\nname = "m{b}{m}"\nbus = "b{b}"\nprimary = {m + 1}\n'
                     f'interval = {interval}\n')
    text += '[[meters]]\nname = "relay"\nbus = "b0"\nprimary = 99\nbreaker = true\n'
    return parse_config(text)


def _readers(cfg: Config, delay: float = 0.01) -> dict[str, FakeReader]:
    return {b.name: FakeReader({m.name: 1000 + i for i, m in enumerate(cfg.meters_on(b.name))},
                               delay=delay) for b in cfg.buses}


async def test_buses_polled_in_parallel_one_transaction_per_bus(tmp_path: Path) -> None:
    cfg = _config()
    readers = _readers(cfg, delay=0.02)
    store = SqliteStorage(tmp_path / "r.db")
    s = Scheduler(cfg, readers, store, retry_base=0.05)
    t0 = time.monotonic()
    await s.start()
    await asyncio.sleep(0.5)
    await s.stop()
    for r in readers.values():
        assert r.max_active == 1  # never two transactions at once on one bus
    # both buses worked during the same half second
    assert all(len(r.reads) >= 4 for r in readers.values())
    assert time.monotonic() - t0 < 2
    assert store.count() == s.stored > 0
    assert s.health["m00"].state == "ok" and s.health["m00"].identity.manufacturer == "KAM"
    assert s.buses["b0"].busy_seconds > 0


async def test_silent_meter_marked_offline_and_does_not_block_bus(tmp_path: Path) -> None:
    cfg = _config(interval="0.1", buses=1)
    readers = _readers(cfg)
    readers["b0"].silent.add("m00")
    s = Scheduler(cfg, readers, SqliteStorage(tmp_path / "r.db"), retry_base=0.05)
    await s.start()
    await asyncio.sleep(1.2)
    await s.stop_bus("b0")
    h = s.health["m00"]
    assert h.state == "offline" and h.failures >= 2 and "no answer" in (h.last_error or "")
    # retried, but with back-off: fewer attempts than the healthy meters' reads
    tries = readers["b0"].reads.count("m00")
    assert 2 <= tries < readers["b0"].reads.count("m01") - 3
    assert s.health["m01"].state == "ok" and s.health["m02"].reads >= 3
    # it comes back: the next success clears the failure count
    readers["b0"].silent.clear()
    with pytest.raises(CommandError, match="another head-end worker"):
        await s.read_now("m00")  # the bus is not ours any more: no frame goes out
    s.start_bus("b0")
    poll = await s.read_now("m00")
    assert poll is not None and h.state == "ok" and h.failures == 0
    await s.stop()


async def test_slot_already_stored_is_not_read_again_and_gap_is_caught_up(tmp_path: Path) -> None:
    cfg = parse_config('[[buses]]\nname = "b"\ntcp = "h:1"\n'
                       '[[meters]]\nname = "done"\nbus = "b"\nprimary = 1\ninterval = 3600\n'
                       '[[meters]]\nname = "behind"\nbus = "b"\nprimary = 2\ninterval = 3600\n')
    now = 100 * 3600 + 10.0
    store = SqliteStorage(tmp_path / "r.db")
    store.init()
    for name, slot in (("done", 100), ("behind", 97)):
        store.register_meter(name, "b", "x")
        tel = await FakeReader({"done": 1}).read(cfg.meters[0])
        store.store(Poll(name, slot, slot * 3600.0, identity_from(tel),
                         tuple(readings_from(name, tel, slot * 3600.0))))
    readers = {"b": FakeReader({"done": 1, "behind": 2})}
    s = Scheduler(cfg, readers, store, clock=lambda: now)
    await s.start()
    await asyncio.sleep(0.2)
    await s.drain()
    await s.stop()
    # the meter behind by three slots is read once (not three times); the other is not read
    assert readers["b"].reads == ["behind"]
    assert store.last_slots() == {"done": 100, "behind": 100}
    assert s.health["done"].next_due == 101 * 3600


class FlakyStorage(SqliteStorage):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.down = False

    def store(self, poll: Poll) -> int:
        if self.down:
            raise StorageError("connection refused")
        return super().store(poll)


async def test_database_outage_queues_readings(tmp_path: Path) -> None:
    cfg = _config(buses=1)
    store = FlakyStorage(tmp_path / "r.db")
    s = Scheduler(cfg, _readers(cfg), store, retry_base=0.05, storage_retry=0.05)
    await s.start()
    store.down = True
    polled: list[Poll] = []
    s.listeners.append(polled.append)
    await asyncio.sleep(0.5)
    assert not s.storage_ok and s.pending > 0 and s.storage_errors > 0
    store.down = False
    await asyncio.sleep(0.05)
    await s.stop()
    assert s.pending == 0 and s.storage_ok
    # every poll read during the outage is in the database
    stored = {(m, slot) for m, slot in store._query("SELECT DISTINCT meter, slot FROM readings")}
    assert {(p.meter, p.slot) for p in polled} <= stored


async def test_commands_go_through_the_bus(tmp_path: Path) -> None:
    cfg = _config(buses=1)
    readers = _readers(cfg)
    s = Scheduler(cfg, readers, SqliteStorage(tmp_path / "r.db"))
    s.storage.init()  # a command needs its audit table (start() would create it)
    assert await s.command("relay", "breaker", {"state": "open"}) == {"ok": True}
    assert readers["b0"].commands == [("relay", "breaker", {"state": "open"})]
    with pytest.raises(CommandError, match="not enabled"):
        await s.command("m00", "breaker", {"state": "open"})
    with pytest.raises(CommandError, match="no meter"):
        await s.read_now("nope")


async def test_bug_or_hang_in_one_meter_never_stops_its_bus(tmp_path: Path) -> None:
    cfg = parse_config('[poll]\ntimeout = 0.1\n[[buses]]\nname = "b"\ntcp = "h:1"\nbaud = 38400\n'
                       + "".join(f'[[meters]]\nname = "{n}"\nbus = "b"\nprimary = {i}\n'
                                 'interval = 0.2\n'
                                 for i, n in enumerate(("bug", "hung", "fine"), start=1)))
    reader = FakeReader({"bug": 1, "hung": 2, "fine": 3}, broken={"bug"}, hang={"hung"})
    s = Scheduler(cfg, {"b": reader}, SqliteStorage(tmp_path / "r.db"), retry_base=0.05)
    await s.start()
    await asyncio.sleep(3.0)
    await s.stop()
    assert s.health["bug"].state != "ok" and "decoder bug" in (s.health["bug"].last_error or "")
    # the hung read was given up after the guard (about 1 s at 38400 baud), not forever,
    # and the bus went on with its other meters
    assert s.health["hung"].errors >= 2 and s.health["hung"].state != "ok"
    assert s.health["fine"].reads >= 2 and s.health["fine"].state == "ok"


class PickyStorage(SqliteStorage):
    """Refuses one meter's polls for good (a poll the database will never take)."""

    def store(self, poll: Poll) -> int:
        if poll.meter == "m00":
            raise RuntimeError("value out of range")
        return super().store(poll)


async def test_a_poll_the_database_refuses_does_not_block_the_others(tmp_path: Path) -> None:
    cfg = _config(buses=1)
    store = PickyStorage(tmp_path / "r.db")
    s = Scheduler(cfg, _readers(cfg), store, retry_base=0.05, storage_retry=0.01)
    await s.start()
    await asyncio.sleep(0.6)
    await s.stop(flush_timeout=0.2)
    assert set(store.last_slots()) == {"m01", "m02", "relay"}
    assert s.pending >= 1 and not s.storage_ok  # m00's polls are kept, not dropped


async def test_bus_task_cancelled_from_outside_always_ends(tmp_path: Path) -> None:
    """A loop that shuts down cancels every task; a bus loop that swallowed that cancel (a
    wait finishing as it arrives) would keep the whole process from exiting."""
    cfg = _config(interval="0.001", buses=1, meters_per_bus=2)
    s = Scheduler(cfg, _readers(cfg, delay=0.0), SqliteStorage(tmp_path / "r.db"))
    await s.start()
    for i in range(200):
        await asyncio.sleep(0.0005 * (i % 7))
        task = s._bus_tasks.pop("b0")
        for _ in range(i % 3):  # wake it as the cancel arrives, in various orders
            s.wake("b0")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        assert done == {task}, f"bus task survived its cancellation (round {i})"
        s.start_bus("b0")
    await s.stop()


# -- the spool: polls past the memory bound wait on disk ------------------------------------


def _poll(meter: str, slot: int) -> Poll:
    from headend_fakes import kamstrup_telegram

    t = kamstrup_telegram(1, 14839120, 100.0 + slot, 230.0)
    return Poll(meter, slot, slot * 10.0, identity_from([t]),
                tuple(readings_from(meter, [t], slot * 10.0)))


def test_spool_keeps_order_survives_a_restart_and_skips_a_cut_line(tmp_path: Path) -> None:
    from mbuskit.headend.spool import Spool

    spool = Spool(tmp_path / "sp", segment_polls=3)
    polls = [_poll("m", i) for i in range(7)]
    for p in polls:
        spool.append(p)
    assert spool.count == 7 and len(list((tmp_path / "sp").iterdir())) == 3
    spool.close()
    # a crash cut the last write short
    last = sorted((tmp_path / "sp").iterdir())[-1]
    last.write_text(last.read_text() + '{"meter": "m", "slot"')
    again = Spool(tmp_path / "sp", segment_polls=3)
    assert again.count == 8  # lines, the broken one included
    taken = []
    while (item := again.take()) is not None:
        path, got = item
        taken += got
        again.done(path)
    assert taken == polls and again.skipped == 1 and not again.pending
    assert list((tmp_path / "sp").iterdir()) == []


async def _drain_and_check(s: Scheduler, store: FlakyStorage, polled: list[Poll]) -> None:
    """Wait until nothing is pending, stop, and check every poll read is in the database."""
    for _ in range(200):
        if s.pending == 0:
            break
        await asyncio.sleep(0.02)
    await s.stop()
    stored = {(m, slot) for m, slot in store._query("SELECT DISTINCT meter, slot FROM readings")}
    assert {(p.meter, p.slot) for p in polled} <= stored


async def test_outage_longer_than_the_memory_bound_spools_and_loses_nothing(
        tmp_path: Path) -> None:
    from mbuskit.headend.spool import Spool

    cfg = _config(interval="0.02", buses=1)
    store = FlakyStorage(tmp_path / "r.db")
    spool = Spool(tmp_path / "spool", segment_polls=4)
    s = Scheduler(cfg, _readers(cfg, delay=0.0), store, retry_base=0.05,
                  storage_retry=0.02, spool=spool, max_queue=5)
    polled: list[Poll] = []
    s.listeners.append(polled.append)
    await s.start()
    store.down = True
    most = 0
    for _ in range(40):
        await asyncio.sleep(0.02)
        most = max(most, len(s._queue))
    assert most <= 5 and spool.count > 5  # the memory bound held; the rest is on disk
    assert s.pending == len(s._queue) + spool.count
    store.down = False
    await _drain_and_check(s, store, polled)
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # every segment committed, deleted


async def test_stop_during_an_outage_spills_and_a_restart_commits(tmp_path: Path) -> None:
    from mbuskit.headend.spool import Spool

    cfg = _config(interval="0.05", buses=1)
    store = FlakyStorage(tmp_path / "r.db")
    s = Scheduler(cfg, _readers(cfg), store, retry_base=0.05, storage_retry=0.02,
                  spool=Spool(tmp_path / "spool"))
    polled: list[Poll] = []
    s.listeners.append(polled.append)
    await s.start()
    store.down = True
    await asyncio.sleep(0.4)
    await s.stop(flush_timeout=0.1)
    assert polled and len(s._queue) == 0  # nothing left only in memory
    # the database is back; the next start commits what waited on disk
    store.down = False
    again = Scheduler(cfg, _readers(cfg), store, spool=Spool(tmp_path / "spool"))
    assert again.pending >= len({(p.meter, p.slot) for p in polled}) - 1
    await again.start(loops=False)
    await _drain_and_check(again, store, polled)


async def test_a_full_disk_keeps_polls_in_memory(tmp_path: Path) -> None:
    from mbuskit.headend.spool import Spool

    class FullDisk(Spool):
        def append(self, poll: Poll) -> None:
            raise OSError(28, "No space left on device")

    cfg = _config(interval="0.02", buses=1)
    store = FlakyStorage(tmp_path / "r.db")
    s = Scheduler(cfg, _readers(cfg, delay=0.0), store, retry_base=0.05, storage_retry=0.02,
                  spool=FullDisk(tmp_path / "spool"), max_queue=3)
    polled: list[Poll] = []
    s.listeners.append(polled.append)
    await s.start()
    store.down = True
    await asyncio.sleep(0.3)
    assert len(s._queue) > 3  # past the bound, but nothing dropped
    store.down = False
    await _drain_and_check(s, store, polled)
