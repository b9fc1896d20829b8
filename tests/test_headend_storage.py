from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from headend_fakes import kamstrup_telegram, rec
from mbuskit.codec.records import FunctionField
from mbuskit.headend.model import (
    Identity,
    Poll,
    Reading,
    identity_from,
    manufacturer_letters,
    readings_from,
    register_name,
)
from mbuskit.headend.storage import open_storage
from mbuskit.headend.storage.base import StorageError
from mbuskit.headend.storage.sqlite import SqliteStorage


def test_register_names_follow_meaning() -> None:
    assert register_name(rec("energy", "Wh", 1)) == "energy"
    assert register_name(rec("energy", "Wh", 1, tariff=2)) == "energy.tariff2"
    assert register_name(rec("power", "W", 1, function=FunctionField.MAXIMUM)) == "power.maximum"
    assert register_name(rec("power", "W", 1, qualifiers=("phase:L2",))) == "power.phase_L2"
    assert register_name(rec("energy", "Wh", 1, storage=3)) == "energy.storage3"


def test_readings_from_telegram() -> None:
    when = datetime(2026, 1, 2, 3, 4)
    t = kamstrup_telegram(5, 14839120, 12345.0, 230.0, when)
    rs = {r.register: r for r in readings_from("m", [t], 100.0)}
    assert rs["energy"].value == 12345.0 and rs["energy"].unit == "Wh"
    assert rs["power.phase_L1"].value == pytest.approx(230 / 3)
    assert rs["energy"].meter_time == "2026-01-02T03:04:00"
    # identity and manufacturer blobs are not readings; the date is the meter time
    assert "fabrication_number" not in rs and "date_time" not in rs
    assert all(r.read_time == 100.0 and r.meter == "m" for r in rs.values())
    ident = identity_from([t])
    assert ident == Identity(id="14839120", manufacturer="KAM", version=1, medium=2,
                             fabrication="55000120", primary=5)


def test_manufacturer_letters() -> None:
    # 2D 2C on the wire (little endian) = 0x2C2D = KAM
    assert manufacturer_letters(0x2C2D) == "KAM"


def _poll(meter: str, slot: int, energy: float, t: float) -> Poll:
    tel = kamstrup_telegram(1, 1, energy, 100.0)
    return Poll(meter, slot, t, identity_from([tel]), tuple(readings_from(meter, [tel], t)))


def test_sqlite_store_latest_history_and_no_duplicates(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path / "r.db")
    s.init()
    s.register_meter("m1", "bus", "1")
    n = s.store(_poll("m1", 10, 100.0, 1000.0))
    assert n == 5
    # the same slot again (a poll repeated after a crash) writes nothing
    assert s.store(_poll("m1", 10, 999.0, 1001.0)) == 0
    # unless it is an extra triggered read (seq > 0): kept, and the newest in "latest"
    extra = _poll("m1", 10, 150.0, 1050.0)
    assert s.store(Poll(extra.meter, 10, 1050.0, extra.identity, extra.readings,
                        seq=1050000)) == 5
    assert {r.register: r.value for r in s.latest("m1")}["energy"] == 150.0
    assert s.store(_poll("m1", 11, 200.0, 1100.0)) == 5
    assert s.count() == 15
    assert s.last_slots() == {"m1": 11}
    latest = {r.register: r.value for r in s.latest("m1")}
    assert latest["energy"] == 200.0
    hist = s.history("m1", register="energy")
    assert [r.value for r in hist] == [100.0, 150.0, 200.0]
    assert [r.value for r in s.history("m1", register="energy", since=1051)] == [200.0]
    assert [r.value for r in s.history("m1", register="energy", limit=1)] == [200.0]
    s.store(_poll("m2", 3, 7.0, 1200.0))  # a meter the config never registered
    latest_all = s.latest_all()
    assert {r.value for r in latest_all["m1"] if r.register == "energy"} == {200.0}
    assert {r.register for r in latest_all["m2"]} == {r.register for r in s.latest("m1")}
    assert s.last_slots() == {"m1": 11, "m2": 3}
    row, _ = s.meters()
    assert row.identity.manufacturer == "KAM" and row.last_slot == 11 and row.address == "1"
    s.close()
    # WAL mode and the data survive a reopen
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM readings").fetchone()[0] == 20


def test_sqlite_poll_is_one_transaction(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path / "r.db")
    s.init()
    s.register_meter("m1", "bus", "1")
    good = _poll("m1", 1, 1.0, 1.0)
    # a reading the database cannot take half way through must roll back the whole poll
    broken = Reading("m1", "x", object(), "", None, 2.0)  # type: ignore[arg-type]
    bad = Poll("m1", 2, 2.0, good.identity, (*good.readings[:2], broken, *good.readings[3:]))
    with pytest.raises(StorageError):
        s.store(bad)
    assert s.count() == 0


def test_open_storage_urls(tmp_path: Path) -> None:
    assert isinstance(open_storage(f"sqlite:///{tmp_path}/a.db"), SqliteStorage)
    with pytest.raises(StorageError, match="unsupported"):
        open_storage("mysql://x")
    with pytest.raises(StorageError, match="cannot open"):
        (tmp_path / "a-file").write_text("")
        SqliteStorage(tmp_path / "a-file" / "x.db")
