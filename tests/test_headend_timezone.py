"""Meters whose clock runs local time (``timezone`` in [[meters]]): the head-end's time sync
writes the zone's wall time, and the meter's own date/time comes back converted to UTC. Over
the real HTTP API against the Kamstrup twin served by the emulator."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from mbuskit.headend.config import ConfigError, parse_config
from mbuskit.headend.runtime import Headend
from mbuskit.headend.storage.sqlite import SqliteStorage
from mbuskit.slave.emulator import Emulator, seeded_meters
from mbuskit.slave.emulator_config import EmulatorConfig, GatewaySpec

TOKEN = "command-token-1"
# the head-end's clock is moved to these days, so both offsets are tested whatever the date
WINTER = datetime(2027, 1, 15, 12, 0, tzinfo=UTC).timestamp()
SUMMER = datetime(2027, 7, 1, 12, 0, tzinfo=UTC).timestamp()


@dataclass
class Site:
    emulator: Emulator
    serial: int
    headend: Headend
    client: httpx.AsyncClient

    @property
    def twin(self) -> Any:
        return self.emulator.find_meter(self.serial)


async def start_site(tmp_path: Path, meter_extra: str, *,
                     clock: Callable[[], float] = time.time) -> Site:
    (spec,) = seeded_meters(1, 41)
    emu = Emulator(EmulatorConfig(gateways=(GatewaySpec(meters=(spec,), port=0),)))
    await emu.start()
    cfg = parse_config(
        f'[http]\nbind = "127.0.0.1:0"\ntoken = "{TOKEN}"\n'
        f'[[buses]]\nname = "gw"\ntcp = "{emu.served[0].where}"\nbaud = 2400\n'
        '[[meters]]\nname = "flat"\nbus = "gw"\nprimary = 1\ninterval = "1h"\n' + meter_extra)
    h = Headend(cfg, storage=SqliteStorage(tmp_path / "r.db"), clock=clock)
    await h.start()
    assert h.url is not None
    client = httpx.AsyncClient(base_url=h.url, timeout=30,
                               headers={"authorization": f"Bearer {TOKEN}"})
    return Site(emu, spec.serial_number, h, client)


async def stop_site(site: Site) -> None:
    await site.client.aclose()
    await site.headend.stop()
    await site.emulator.stop()


async def sync_and_read(site: Site) -> tuple[dict[str, Any], str]:
    """Time-sync the twin (put a day wrong first), then read it: the answer and meter_time."""
    site.twin.set_clock(datetime(2001, 2, 3, tzinfo=UTC), site.emulator.clock())
    r = await site.client.post("/api/meters/flat/time-sync")
    assert r.status_code == 200, r.text
    read = await site.client.post("/api/meters/flat/read")
    assert read.status_code == 200, read.text
    meter_time = read.json()["readings"]["energy"]["meter_time"]
    # /api/meters shows the same stored value
    listed = (await site.client.get("/api/meters")).json()[0]["latest"]["energy"]["meter_time"]
    assert listed == meter_time
    return r.json(), meter_time


@pytest.mark.parametrize(("clock_base", "offset"), [(WINTER, 3600), (SUMMER, 7200), (None, None)],
                         ids=["winter", "summer", "today"])
async def test_local_time_meter_is_set_to_local_time_and_read_in_utc(
        tmp_path: Path, clock_base: float | None, offset: int | None) -> None:
    delta = 0.0 if clock_base is None else clock_base - time.time()
    if offset is None:  # the real date: the offset Copenhagen has today
        today = datetime.now(ZoneInfo("Europe/Copenhagen")).utcoffset()
        assert today is not None
        offset = int(today.total_seconds())

    def now() -> float:
        return time.time() + delta

    site = await start_site(tmp_path, 'timezone = "Europe/Copenhagen"\n', clock=now)
    try:
        answer, meter_time = await sync_and_read(site)
        # the twin's clock is a naive wall clock: it shows Copenhagen's time
        assert abs(site.twin.meter_time() - (now() + offset)) < 120
        assert answer["timezone"] == "Europe/Copenhagen"
        utc = datetime.fromisoformat(answer["time"])
        local = datetime.fromisoformat(answer["local_time"])
        assert utc.utcoffset() is not None and utc.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert local.utcoffset().total_seconds() == offset  # type: ignore[union-attr]
        assert local == utc  # one instant, two spellings
        written = datetime.fromisoformat(answer["result"]["meter_clock"])
        assert written.utcoffset().total_seconds() == offset  # type: ignore[union-attr]
        assert written.second == 0 and abs((local - written).total_seconds()) < 60
        # the meter's own date/time, read back, is reported in UTC
        assert meter_time.endswith("Z")
        seen = datetime.fromisoformat(meter_time.replace("Z", "+00:00")).timestamp()
        assert abs(seen - now()) < 120
    finally:
        await stop_site(site)


async def test_meter_without_timezone_keeps_utc_and_todays_format(tmp_path: Path) -> None:
    site = await start_site(tmp_path, "")
    try:
        answer, meter_time = await sync_and_read(site)
        assert abs(site.twin.meter_time() - time.time()) < 120
        assert answer["timezone"] == "UTC"
        assert answer["local_time"] == answer["time"]
        assert answer["result"]["meter_clock"].endswith("+00:00")
        # as before: the meter's wall time as it sent it, no offset
        parsed = datetime.fromisoformat(meter_time)
        assert parsed.tzinfo is None
        assert abs(parsed.replace(tzinfo=UTC).timestamp() - time.time()) < 120
    finally:
        await stop_site(site)


@pytest.mark.parametrize("zone", ["Europe/Kopenhagen", "europe/copenhagen", "../etc/passwd",
                                  "", "Europe"])
def test_bad_zone_is_a_config_error_with_its_line(zone: str) -> None:
    text = ('[[buses]]\nname = "gw"\ntcp = "127.0.0.1:1"\n'
            '[[meters]]\nname = "flat"\nbus = "gw"\nprimary = 1\n'
            f'timezone = "{zone}"\n')
    with pytest.raises(ConfigError) as err:
        parse_config(text, path="headend.toml")
    assert err.value.line == 8
    assert "headend.toml, line 8: [[meters]] #1 timezone: unknown time zone" in str(err.value)


def test_zone_must_be_a_string() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config('[[buses]]\nname = "gw"\ntcp = "127.0.0.1:1"\n'
                     '[[meters]]\nbus = "gw"\nprimary = 1\ntimezone = 1\n')
    assert err.value.line == 7


def test_serve_check_names_the_line(tmp_path: Path) -> None:
    mbus = [sys.executable, "-m", "mbuskit.cli", "serve", "--config"]
    cfg = tmp_path / "headend.toml"
    cfg.write_text('[[buses]]\nname = "gw"\ntcp = "127.0.0.1:1"\n'
                   '[[meters]]\nbus = "gw"\nprimary = 1\ntimezone = "Mars/Olympus"\n')
    r = subprocess.run([*mbus, str(cfg), "--check"], capture_output=True, text=True, timeout=30,
                       check=False)
    assert r.returncode == 2
    assert "line 7" in r.stderr and "unknown time zone 'Mars/Olympus'" in r.stderr
    cfg.write_text('[[buses]]\nname = "gw"\ntcp = "127.0.0.1:1"\n'
                   '[[meters]]\nbus = "gw"\nprimary = 1\ntimezone = "Europe/Copenhagen"\n')
    r = subprocess.run([*mbus, str(cfg), "--check"], capture_output=True, text=True, timeout=30,
                       check=False)
    assert r.returncode == 0, r.stderr
