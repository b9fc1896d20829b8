"""The head-end's reader over the real master, the real Kamstrup twin and the simulated bus."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from mbuskit.errors import TransportError
from mbuskit.headend.config import parse_config
from mbuskit.headend.model import identity_from, readings_from
from mbuskit.headend.readers import MasterReader
from mbuskit.headend.scheduler import CommandError, Scheduler
from mbuskit.headend.storage.sqlite import SqliteStorage
from mbuskit.slave.emulator import kamstrup_slave, seeded_meters
from mbuskit.transport.simbus import SimBus

CONFIG = """
[[buses]]
name = "b"
tcp = "127.0.0.1:1"
[[meters]]
name = "std"
bus = "b"
primary = 1
breaker = true
[[meters]]
name = "add"
bus = "b"
primary = 2
data = "additional"
[[meters]]
name = "sec"
bus = "b"
secondary = "{number}"
fabrication = "{serial}"
[[meters]]
name = "ghost"
bus = "b"
primary = 9
"""


def _setup() -> tuple[SimBus, MasterReader, list[object], str]:
    specs = seeded_meters(3, 11)
    now = time.time()
    slaves = [kamstrup_slave(s, now, 2400, None) for s in specs]
    bus = SimBus(slaves, baud=2400, start=now)
    text = CONFIG.format(number=f"{specs[2].meter_number:08d}",
                         serial=f"{specs[2].serial_number:08d}")
    return bus, MasterReader(bus), list(specs), text


async def test_standard_additional_and_enhanced_reads() -> None:
    _bus, reader, specs, text = _setup()
    cfg = parse_config(text)
    std, add, sec, _ = cfg.meters
    t = await reader.read(std)
    ident = identity_from(t)
    assert ident.manufacturer == "KAM" and ident.medium == 2
    assert ident.id == f"{specs[0].meter_number:08d}"  # type: ignore[attr-defined]
    regs = {r.register: r for r in readings_from("std", t, 0.0)}
    # energy and per-phase power of the standard telegram, in SI units
    assert regs["energy"].unit == "Wh" and regs["power"].unit == "W"
    assert {"power.phase_L1", "power.phase_L2", "power.phase_L3"} <= set(regs)
    assert sum(regs[f"power.phase_L{i}"].value for i in (1, 2, 3)) == pytest.approx(
        regs["power"].value, abs=3)
    assert regs["energy"].meter_time is not None
    more = {r.register for r in readings_from("add", await reader.read(add), 0.0)}
    assert "energy.tariff4" in more and "energy.tariff4" not in regs
    # manufacturer records stay apart by their VIFE code
    assert len([r for r in more if r.startswith("manufacturer_specific")]) > 1
    t3 = await reader.read(sec)
    assert identity_from(t3).fabrication == f"{specs[2].serial_number:08d}"  # type: ignore[attr-defined]


async def test_breaker_and_time_commands_reach_the_meter() -> None:
    _bus, reader, _specs, text = _setup()
    cfg = parse_config(text)
    add = cfg.meters[1]
    std = cfg.meters[0]

    async def breaker() -> float:
        regs = {r.register: r.value for r in readings_from("m", await reader.read(add), 0.0)}
        return regs["digital_output"]  # the twin maps the breaker state onto FD 1A

    # the "add" meter has no breaker = true, but the reader itself does not police that
    assert await breaker() == 1
    await reader.command(add, "breaker", {"state": "open"})
    assert await breaker() == 0
    await reader.command(add, "breaker", {"state": "closed"})
    assert await breaker() == 1
    # time sync: the meter's clock (type F date record) follows
    await reader.command(std, "set_time", {"when": datetime(2030, 1, 2, 3, 4)})
    regs = readings_from("std", await reader.read(std), 0.0)
    assert (regs[0].meter_time or "").startswith("2030-01-02T03:04")
    with pytest.raises(CommandError):
        await reader.command(std, "breaker", {"state": "ajar"})
    with pytest.raises(CommandError):
        await reader.command(std, "dance", {})


async def test_scheduler_over_master_marks_missing_meter(tmp_path: Path) -> None:
    _bus, reader, _specs, text = _setup()
    cfg = parse_config(text)
    s = Scheduler(cfg, {"b": reader}, SqliteStorage(tmp_path / "r.db"))
    await s.start(loops=False)
    for m in cfg.meters:
        await s.read_now(m.name)
    await s.drain()
    assert s.health["ghost"].state == "retrying"
    assert all(s.health[n].state == "ok" for n in ("std", "add", "sec"))
    latest = {r.register for r in s.storage.latest("std")}
    assert "power.phase_L1" in latest
    await s.stop()


async def test_lost_transport_is_reopened() -> None:
    bus, reader, _specs, text = _setup()
    cfg = parse_config(text)
    await reader.read(cfg.meters[0])
    await bus.close()  # the port went away under the reader
    with pytest.raises(TransportError):
        await reader.read(cfg.meters[0])
    # the next poll opens the port again
    assert await reader.read(cfg.meters[0])


async def test_encrypted_meter_needs_its_key_from_the_config() -> None:
    from dataclasses import replace

    from mbuskit.errors import SecurityError

    key = bytes(range(16))
    (spec,) = seeded_meters(1, 21)
    now = time.time()
    bus = SimBus([kamstrup_slave(replace(spec, key=key), now, 2400, None)], baud=2400,
                 start=now)
    cfg = parse_config(f'[keys]\nk1 = "{key.hex()}"\n[[buses]]\nname = "b"\ntcp = "h:1"\n'
                       '[[meters]]\nname = "enc"\nbus = "b"\nprimary = 1\nkey = "k1"\n')
    reader = MasterReader(bus, keys=cfg.keys)
    regs = {r.register for r in readings_from("enc", await reader.read(cfg.meters[0]), 0.0)}
    assert {"energy", "power.phase_L1"} <= regs
    with pytest.raises(SecurityError):
        # the same meter configured without its key: refused, clearly
        await reader.read(replace(cfg.meters[0], key=None))
