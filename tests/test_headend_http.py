from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from headend_fakes import FakeReader
from mbuskit.headend.config import parse_config
from mbuskit.headend.http import create_app
from mbuskit.headend.metrics import _labels
from mbuskit.headend.scheduler import Scheduler
from mbuskit.headend.storage.sqlite import SqliteStorage

TOKEN = "test-token-123"
CONFIG = """
[[buses]]
name = "b"
tcp = "127.0.0.1:1"
[[meters]]
name = "kam1"
bus = "b"
primary = 1
breaker = true
[[meters]]
name = "kam2"
bus = "b"
secondary = "14839120"
[[meters]]
name = "dead"
bus = "b"
primary = 3
"""


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[Scheduler, FakeReader]]:
    cfg = parse_config(CONFIG)
    reader = FakeReader({"kam1": 11111111, "kam2": 14839120})
    s = Scheduler(cfg, {"b": reader}, SqliteStorage(tmp_path / "r.db"), clock=lambda: 1000.0)
    await s.start(loops=False)  # no bus loop: the test drives the reads
    for name in ("kam1", "kam2", "dead"):
        await s.read_now(name)
    await s.drain()
    yield s, reader
    await s.stop()


def _client(s: Scheduler, token: str | None = TOKEN) -> httpx.AsyncClient:
    app = create_app(s, token=token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_meters_list_identity_and_latest(env: tuple[Scheduler, FakeReader]) -> None:
    s, _ = env
    async with _client(s) as c:
        r = await c.get("/api/meters")
    assert r.status_code == 200
    meters = {m["name"]: m for m in r.json()}
    assert set(meters) == {"kam1", "kam2", "dead"}
    k = meters["kam2"]
    assert k["identity"]["manufacturer"] == "KAM" and k["identity"]["id"] == "14839120"
    assert k["address"] == {"kind": "secondary", "primary": None, "secondary": "14839120",
                            "fabrication": None}
    assert k["latest"]["energy"]["unit"] == "Wh" and k["latest"]["energy"]["value"] > 1000
    assert k["health"]["state"] == "ok"
    assert meters["dead"]["latest"] == {} and meters["dead"]["health"]["state"] == "retrying"


async def test_history_csv_and_bad_arguments(env: tuple[Scheduler, FakeReader]) -> None:
    s, _ = env
    s.clock = lambda: 1000.5  # later, but in the same 15-minute slot
    await s.read_now("kam1")  # a triggered read in a slot already polled: kept beside it
    await s.drain()
    async with _client(s) as c:
        h = (await c.get("/api/meters/kam1/history", params={"register": "energy"})).json()
        first, second = h["readings"]
        assert (first["read_time"], second["read_time"]) == (1000.0, 1000.5)
        assert second["value"] > first["value"]  # the fake meter counts up per read
        latest = (await c.get("/api/meters/kam1/latest")).json()
        assert latest["energy"]["value"] == second["value"]
        text = (await c.get("/api/meters/kam1/export.csv")).text
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["register"] for r in rows} >= {"energy", "power", "power.phase_L1"}
        assert rows[0]["read_time"].startswith("1970-01-01T00:16:40")
        assert (await c.get("/api/meters/nope/history")).status_code == 404
        latest = (await c.get("/api/meters/kam1/latest")).json()
        assert latest["energy"]["unit"] == "Wh" and "power.phase_L1" in latest
        bad = await c.get("/api/meters/kam1/history", params={"since": "yesterday"})
        assert bad.status_code == 400 and "since" in bad.json()["error"]
        assert (await c.get("/api/meters/kam1/history", params={"limit": "0"})).status_code == 400
        iso = await c.get("/api/meters/kam1/history", params={"since": "1970-01-01T00:00:00+00:00"})
        assert len(iso.json()["readings"]) == len(rows)


async def test_commands_need_the_token(env: tuple[Scheduler, FakeReader]) -> None:
    s, reader = env
    async with _client(s) as c:
        assert (await c.post("/api/meters/kam1/read")).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await c.post("/api/meters/kam1/breaker", headers=wrong,
                             json={"state": "open"})).status_code == 401
        assert reader.commands == []
        auth = {"authorization": f"Bearer {TOKEN}"}
        r = await c.post("/api/meters/kam1/breaker", headers=auth, json={"state": "open"})
        assert r.status_code == 200 and reader.commands[-1] == ("kam1", "breaker",
                                                                 {"state": "open"})
        r = await c.post("/api/meters/kam2/breaker", headers=auth, json={"state": "open"})
        assert r.status_code == 409 and "not enabled" in r.json()["error"]
        r = await c.post("/api/meters/kam1/breaker", headers=auth, json={"state": "ajar"})
        assert r.status_code == 400
        r = await c.post("/api/meters/kam1/time-sync", headers=auth)
        assert r.status_code == 200
        assert [cmd[1] for cmd in reader.commands] == ["breaker", "set_time"]
        n = len(reader.reads)
        r = await c.post("/api/meters/kam1/read", headers=auth)
        assert r.status_code == 200 and "energy" in r.json()["readings"]
        assert len(reader.reads) == n + 1
        r = await c.post("/api/meters/dead/read", headers=auth)
        assert r.status_code == 504 and "no answer" in r.json()["error"]
    # with no token configured, commands are off altogether
    async with _client(s, token=None) as c:
        r = await c.post("/api/meters/kam1/read", headers={"authorization": "Bearer "})
        assert r.status_code == 403


async def test_metrics_and_page(env: tuple[Scheduler, FakeReader]) -> None:
    s, _ = env
    async with _client(s) as c:
        r = await c.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = r.text
        assert 'mbus_meter_up{meter="kam1",bus="b"} 1' in text
        assert 'mbus_meter_up{meter="dead",bus="b"} 0' in text
        assert 'mbus_meter_errors_total{meter="dead"} 1' in text
        assert "# TYPE mbus_readings_stored_total counter" in text
        assert 'mbus_register_value{meter="kam1",register="energy",unit="Wh"}' in text
        page = await c.get("/")
        assert page.status_code == 200 and "<canvas" in page.text
        js = await c.get("/static/app.js")
        assert js.status_code == 200 and "getContext" in js.text
        # the page loads nothing from elsewhere: the machine may have no internet
        assert "http://" not in page.text and "https://" not in page.text + js.text
        buses = (await c.get("/api/buses")).json()
        assert buses[0]["name"] == "b" and len(buses[0]["meters"]) == 3


def test_metric_label_escaping() -> None:
    assert _labels(unit='a"b\\c\nd') == '{unit="a\\"b\\\\c\\nd"}'


async def test_meters_of_a_bus_polled_by_another_worker(env: tuple[Scheduler, FakeReader]) -> None:
    s, _ = env
    s.buses["b"].owned = False  # the lease is held elsewhere (PostgreSQL)
    async with _client(s) as c:
        meters = {m["name"]: m for m in (await c.get("/api/meters")).json()}
    assert meters["kam1"]["health"]["state"] == "elsewhere"
    assert meters["kam1"]["health"]["polled_here"] is False
    assert meters["kam1"]["latest"]["energy"]["value"] > 0
    # and this worker puts no frame on that bus: its frames would collide with the owner's
    async with _client(s) as c:
        r = await c.post("/api/meters/kam1/read", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 409 and "another head-end worker" in r.json()["error"]
