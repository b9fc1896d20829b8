"""Commands a utility can trust, end to end: the Kamstrup twin served over TCP by the emulator,
the head-end's own reader and HTTP server, and (for MQTT) the machine's Mosquitto or a private
one with passwords and an ACL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mbuskit.headend.config import Config, parse_config
from mbuskit.headend.runtime import Headend
from mbuskit.headend.storage.sqlite import SqliteStorage
from mbuskit.slave.emulator import Emulator, seeded_meters
from mbuskit.slave.emulator_config import EmulatorConfig, GatewaySpec, MeterSpec
from mbuskit.slave.meter import BreakerState

KEY = bytes(range(16))
WRONG = bytes(range(16, 32))
TOKEN = "command-token-1"


@dataclass
class Site:
    emulator: Emulator
    spec: MeterSpec
    headend: Headend
    client: httpx.AsyncClient

    @property
    def twin(self) -> Any:
        return self.emulator.find_meter(self.spec.serial_number)

    def breaker(self) -> BreakerState:  # a call, so that mypy does not narrow it across commands
        state: BreakerState = self.twin.breaker
        return state


def site_config(where: str, *, key: bytes | None, extra: str = "",
                data: str = "additional") -> Config:
    keys = f'[keys]\nk1 = "{key.hex()}"\n' if key is not None else ""
    return parse_config(
        f'[http]\nbind = "127.0.0.1:0"\ntoken = "{TOKEN}"\n{keys}{extra}'
        f'[[buses]]\nname = "gw"\ntcp = "{where}"\nbaud = 2400\n'
        '[[meters]]\nname = "flat"\nbus = "gw"\nprimary = 1\nbreaker = true\n'
        f'data = "{data}"\ninterval = "1h"\n' + ('key = "k1"\n' if key is not None else ""))


async def start_site(tmp_path: Path, *, twin_key: bytes | None, headend_key: bytes | None,
                     extra: str = "", data: str = "additional") -> Site:
    (spec,) = seeded_meters(1, 31)
    spec = replace(spec, key=twin_key)
    emu = Emulator(EmulatorConfig(gateways=(GatewaySpec(meters=(spec,), port=0),)))
    await emu.start()
    cfg = site_config(emu.served[0].where, key=headend_key, extra=extra, data=data)
    h = Headend(cfg, storage=SqliteStorage(tmp_path / "r.db"))
    await h.start()
    assert h.url is not None
    client = httpx.AsyncClient(base_url=h.url, timeout=30,
                               headers={"authorization": f"Bearer {TOKEN}"})
    return Site(emu, spec, h, client)


async def stop_site(site: Site) -> None:
    await site.client.aclose()
    await site.headend.stop()
    await site.emulator.stop()


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[Site]:
    site = await start_site(tmp_path, twin_key=KEY, headend_key=KEY)
    yield site
    await stop_site(site)


async def test_encrypted_commands_over_http_change_the_meter(keyed: Site) -> None:
    site, c = keyed, keyed.client
    assert site.breaker() is BreakerState.CONNECTED
    r = await c.post("/api/meters/flat/breaker", json={"state": "open"})
    assert r.status_code == 200, r.text
    assert site.breaker() is BreakerState.DISCONNECTED
    # read back at once: the answer and the API show what the meter says
    assert r.json()["result"]["breaker_state"] == "open"
    m = (await c.get("/api/meters/flat")).json()
    assert m["breaker_state"]["state"] == "open"
    assert m["breaker_state"]["detail"] == "disconnected"
    assert m["breaker_state"]["reason"] == "command"  # 01 FF 08: disconnected by command
    assert m["latest"]["breaker_reason"]["value"] == 2
    assert m["latest"]["breaker"]["value"] == 0 and m["latest"]["digital_output"]["value"] == 0
    r = await c.post("/api/meters/flat/breaker", json={"state": "closed"})
    assert r.status_code == 200, r.text  # arm + connect, both encrypted
    assert site.breaker() is BreakerState.CONNECTED
    assert r.json()["result"]["breaker_state"] == "closed"
    meters = (await c.get("/api/meters")).json()
    assert meters[0]["breaker_state"]["state"] == "closed"
    # the push button of the twin opens it; the next read shows it
    site.emulator.meter_input(f"button {site.spec.serial_number}")
    assert (await c.post("/api/meters/flat/read")).status_code == 200
    pressed = (await c.get("/api/meters/flat")).json()["breaker_state"]
    assert pressed["state"] == "open" and pressed["reason"] == "button"
    assert (await c.post("/api/meters/flat/breaker", json={"state": "closed"})).status_code == 200
    # time sync: the twin's clock is put a day wrong first, the head-end's clock puts it back
    site.twin.set_clock(datetime(2001, 2, 3, tzinfo=UTC), site.emulator.clock())
    r = await c.post("/api/meters/flat/time-sync")
    assert r.status_code == 200, r.text
    assert abs(site.twin.meter_time() - time.time()) < 120
    # the module took them as authenticated, refused none
    assert site.emulator.meters[0][1].device.security_refusals == 0


async def test_wrong_key_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    site = await start_site(tmp_path, twin_key=KEY, headend_key=WRONG)
    try:
        site.twin.set_clock(datetime(2001, 2, 3, tzinfo=UTC), site.emulator.clock())
        before = site.twin.meter_time()
        started = time.monotonic()
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 422 and r.json()["refused"] is True
        assert "refused" in r.json()["error"] and "key" in r.json()["error"]
        r = await site.client.post("/api/meters/flat/time-sync")
        assert r.status_code == 422 and "refused" in r.json()["error"]
        assert time.monotonic() - started < 10  # an answer, not a hang
        assert site.breaker() is BreakerState.CONNECTED
        assert abs(site.twin.meter_time() - before) < 60
    finally:
        await stop_site(site)


async def test_key_for_a_meter_that_has_none_is_refused_by_the_meter(tmp_path: Path) -> None:
    # the answers are plain, so the head-end cannot check its key first: the module refuses
    # the encrypted command and says so with a CI 70h error
    site = await start_site(tmp_path, twin_key=None, headend_key=KEY)
    try:
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 422, r.text
        assert "refused breaker disconnect" in r.json()["error"]
        assert site.breaker() is BreakerState.CONNECTED
        assert site.emulator.meters[0][1].device.security_refusals == 1
    finally:
        await stop_site(site)


async def test_plain_meter_still_takes_plain_commands(tmp_path: Path) -> None:
    site = await start_site(tmp_path, twin_key=None, headend_key=None)
    try:
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 200, r.text
        assert site.breaker() is BreakerState.DISCONNECTED
    finally:
        await stop_site(site)


async def test_breaker_the_meter_does_not_show_is_unverified(tmp_path: Path) -> None:
    # a stuck relay: the module acknowledges the disconnect, but its contact stays closed
    site = await start_site(tmp_path, twin_key=None, headend_key=None)
    try:
        twin = site.twin
        twin.breaker_disconnect = lambda now: twin.breaker
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 500, r.text
        body = r.json()
        assert body["unverified"] is True
        assert body["breaker_state"] == "closed" and body["breaker_detail"] == "connected"
        assert "reads back closed" in body["error"]
        assert site.breaker() is BreakerState.CONNECTED
        (row,) = (await site.client.get("/api/commands")).json()["commands"]
        assert row["outcome"] == "unverified"
        assert row["readback"] == {"breaker_state": "closed", "breaker_detail": "connected"}
        # the meter that does switch: 200 and its read-back, as before
        del twin.breaker_disconnect
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 200, r.text
        assert r.json()["result"]["breaker_state"] == "open"
    finally:
        await stop_site(site)


async def test_refused_unreachable_and_unverified_answer_apart(tmp_path: Path) -> None:
    site = await start_site(tmp_path, twin_key=None, headend_key=KEY)
    try:
        # refused by the meter (CI 70h): 422
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 422 and r.json()["refused"] is True
        # the gateway gone: 502, no "refused"/"unverified"
        await site.emulator.stop()
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 502, r.text
        assert "refused" not in r.json() and "unverified" not in r.json()
        outcomes = [c["outcome"] for c in
                    (await site.client.get("/api/commands")).json()["commands"]]
        assert outcomes == ["unreachable", "refused"]
    finally:
        await site.client.aclose()
        await site.headend.stop()


async def test_breaker_of_a_standard_read_out_meter_is_read_back_by_its_records(
        tmp_path: Path) -> None:
    # the standard telegram carries no breaker state: the head-end asks for its two records
    # (readout selection), encrypted meter or not, and gives the meter its standard telegram back
    site = await start_site(tmp_path, twin_key=KEY, headend_key=KEY, data="standard")
    try:
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "open"})
        assert r.status_code == 200, r.text
        assert r.json()["result"]["breaker_state"] == "open"
        assert r.json()["result"]["breaker_detail"] == "disconnected"
        assert site.breaker() is BreakerState.DISCONNECTED
        twin = site.twin
        twin.breaker_connect = lambda now: twin.breaker  # armed, but the contact stays open
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "closed"})
        assert r.status_code == 500 and r.json()["unverified"] is True, r.text
        rows = (await site.client.get("/api/commands")).json()["commands"]
        assert [x["outcome"] for x in rows] == ["unverified", "ok"]
        # the meter is back on its standard telegram: a read gets the standard registers
        assert (await site.client.post("/api/meters/flat/read")).status_code == 200
        latest = (await site.client.get("/api/meters/flat")).json()["latest"]
        assert "digital_output" not in latest and latest
    finally:
        await stop_site(site)


async def test_breaker_already_in_the_state_asked_for_says_so(tmp_path: Path) -> None:
    site = await start_site(tmp_path, twin_key=KEY, headend_key=KEY, data="standard")
    try:
        assert site.breaker() is BreakerState.CONNECTED
        r = await site.client.post("/api/meters/flat/breaker", json={"state": "closed"})
        assert r.status_code == 200, r.text  # was 502/422: the arm of a connected breaker
        result = r.json()["result"]
        assert result["already"] is True and result["breaker_state"] == "closed"
        assert site.breaker() is BreakerState.CONNECTED
        assert site.emulator.meters[0][1].device.security_refusals == 0
    finally:
        await stop_site(site)
