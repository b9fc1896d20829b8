from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mbuskit.cli.emulate import build_config
from mbuskit.cli.main import main
from mbuskit.codec.link import Frame
from mbuskit.errors import MBusError
from mbuskit.slave.emulator import Clock, Emulator, seeded_config, seeded_meters
from mbuskit.slave.emulator_config import EmulatorConfigError, MeterSpec, load_config
from test_simbus import FakeReply, FakeSlave, req_ud2

HAVE_KAMSTRUP = importlib.util.find_spec("mbuskit.slave.kamstrup") is not None
ROOT = Path(__file__).resolve().parents[1]


def test_seeded_meters_are_distinct_and_reproducible() -> None:
    meters = seeded_meters(40, seed=7)
    assert [m.address for m in meters] == list(range(1, 41))
    numbers = [m.meter_number for m in meters] + [m.serial_number for m in meters]
    assert len(set(numbers)) == 80
    assert all(10_000_000 <= n <= 99_999_999 for n in numbers)
    assert seeded_meters(40, seed=7) == meters
    assert seeded_meters(40, seed=8) != meters
    with pytest.raises(EmulatorConfigError):
        seeded_meters(0, seed=1)
    with pytest.raises(EmulatorConfigError, match="do not fit"):
        seeded_meters(251, seed=1)


def test_gateways_get_consecutive_ports_and_numbers_unique_in_the_process() -> None:
    config = seeded_config(meters=20, seed=3, port=20000, gateways=5)
    assert [g.port for g in config.gateways] == [20000, 20001, 20002, 20003, 20004]
    assert all([m.address for m in g.meters] == list(range(1, 21)) for g in config.gateways)
    numbers = [m.meter_number for m in config.meters]
    assert len(numbers) == 100 == len(set(numbers))
    with pytest.raises(EmulatorConfigError, match="serial line carries one bus"):
        seeded_config(meters=2, seed=1, serial="pty", gateways=2)
    with pytest.raises(EmulatorConfigError, match="at most 250"):
        seeded_config(meters=251, seed=1, port=1)
    with pytest.raises(EmulatorConfigError, match="not all valid"):
        seeded_config(meters=1, seed=1, port=65535, gateways=2)
    with pytest.raises(MBusError):
        seeded_config(meters=1, seed=1, port=1, baud=1234)


GOOD = """\
[emulator]
speed = 60
save_interval = 5

[[gateways]]
port = 10001

[[gateways.meters]]
address = 1
meter_number = 12345678
serial = 70000001
key = "000102030405060708090A0B0C0D0E0F"
profile = { base_load_w = 300 }

[[gateways.meters]]
address = 2
meter_number = 12345679
serial = 70000002
variant = "ct"

[[gateways]]
serial = "pty"
baud = 9600

[[gateways.meters]]
address = 0
meter_number = 22222222
serial = 70000003
"""


def test_config_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "emu.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.speed == 60.0 and config.save_interval == 5.0
    first, second = config.gateways
    assert first.port == 10001 and first.baud == 2400 and second.serial == "pty"
    assert second.baud == 9600
    assert first.meters[0].key == bytes(range(16))
    assert first.meters[0].profile == {"base_load_w": 300}
    assert first.meters[1].variant == "ct"
    assert [m.meter_number for m in config.meters] == [12345678, 12345679, 22222222]
    # command-line options win over the file
    assert load_config(path, speed=2.0).speed == 2.0


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("address = 2\n", "address = 251\n"), 16, "not 0..250"),
        (("meter_number = 12345679", "meter_number = 12345678"), 17, "used twice"),
        (("serial = 70000002", "serial = 70000001"), 18, "used twice"),
        (('key = "000102030405060708090A0B0C0D0E0F"', 'key = "0011"'), 12, "32 hex digits"),
        (('variant = "ct"', 'variant = "dc"'), 19, "variant"),
        (("port = 10001", "port = 70000"), 6, "not a TCP port"),
        (('serial = "pty"', "port = 10001"), 22, "served twice"),
        (("baud = 9600", "baud = 1234"), 23, "not an M-Bus rate"),
        (("baud = 9600", "baud = 4800"), 23, "300, 2400, 9600 baud"),
        (("speed = 60", "speed = -1"), 2, "speed"),
        (("save_interval = 5", "colour = 5"), 3, "unknown key"),
        (("address = 1\n", "adress = 1\n"), 8, "lacks address"),
        (("profile = { base_load_w = 300 }", "profile = { base_load_w = -5 }"), 13, "profile"),
        (("serial = 70000003", "serial = = 1"), 28, "not valid TOML"),
        (("meter_number = 22222222", "meter_number = 22222222\ncolour = 1"), 25, "colour"),
    ],
)
def test_config_errors_name_the_line(tmp_path: Path, change: tuple[str, str], line: int,
                                     message: str) -> None:
    old, new = change
    assert old in GOOD
    path = tmp_path / "emu.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(EmulatorConfigError, match=message) as info:
        load_config(path)
    assert info.value.line == line, str(info.value)
    assert f"emu.toml:{line}:" in str(info.value)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmulatorConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_command_line_combinations() -> None:
    base: dict[str, Any] = dict(tcp=None, serial=None, meters=None, seed=0, gateways=1,
                                baud=None, config=None, realtime=False, state=None,
                                save_interval=None, speed=None)
    with pytest.raises(EmulatorConfigError, match="say where"):
        build_config(**base)
    with pytest.raises(EmulatorConfigError, match="exclusive"):
        build_config(**{**base, "tcp": "127.0.0.1:1", "serial": "pty"})
    with pytest.raises(EmulatorConfigError, match="--config describes"):
        build_config(**{**base, "config": Path("x.toml"), "meters": 3})
    config = build_config(**{**base, "tcp": "0.0.0.0:15000", "meters": 4, "seed": 9,
                             "gateways": 2, "baud": 9600, "speed": 10.0})
    assert config.host == "0.0.0.0" and [g.port for g in config.gateways] == [15000, 15001]
    assert config.speed == 10.0 and all(g.baud == 9600 for g in config.gateways)
    assert config.collisions == "and"
    skew = build_config(**{**base, "tcp": "127.0.0.1:0", "collisions": "skew"})
    assert skew.collisions == "skew"
    with pytest.raises(EmulatorConfigError, match="collisions must be one of and, skew"):
        seeded_config(meters=1, seed=0, port=0, collisions="or")
    result = CliRunner().invoke(main, ["emulate", "--tcp", "localhost:notaport"])
    assert result.exit_code != 0 and "HOST:PORT" in result.output
    result = CliRunner().invoke(main, ["emulate", "--meters", "3"])
    assert result.exit_code == 1 and "say where to serve" in result.output


def test_accelerated_clock() -> None:
    wall = [1000.0]
    clock = Clock(speed=60, start=5000.0, wall=lambda: wall[0])
    assert clock() == 5000.0
    wall[0] += 2
    assert clock() == 5120.0
    with pytest.raises(EmulatorConfigError):
        Clock(speed=0)


@dataclass
class StatefulFake(FakeSlave):
    reads: int = 0

    def handle(self, frame: Frame, now: float) -> FakeReply | None:
        reply = super().handle(frame, now)
        if reply is not None and reply.data.startswith(b"\x68"):
            self.reads += 1
        return reply

    def to_state(self) -> dict[str, Any]:
        return {"reads": self.reads}


def _fake_factory(log: list[tuple[int, float, Any]]) -> Any:
    def make(spec: MeterSpec, now: float, baud: int, saved: Any) -> StatefulFake:
        log.append((spec.serial_number, now, saved))
        slave = StatefulFake(spec.address, spec.meter_number, baud=baud)
        if saved is not None:
            slave.reads = saved["slave"]["reads"]
        return slave
    return make


async def _read_once(where: str, address: int) -> bytes:
    host, port = where.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(req_ud2(address))
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 2)
    writer.close()
    await writer.wait_closed()
    return data


async def test_emulator_serves_keeps_state_and_never_turns_the_clock_back(
        tmp_path: Path) -> None:
    wall = [1_000_000.0]
    config = seeded_config(meters=3, seed=5, port=0, speed=100.0, state_dir=tmp_path / "st")
    made: list[tuple[int, float, Any]] = []
    emu = Emulator(config, factory=_fake_factory(made), wall=lambda: wall[0])
    await emu.start()
    try:
        where = emu.served[0].where
        data = await _read_once(where, 2)
        assert data == emu.meters[1][1].telegram()
        text = "\n".join(emu.describe())
        for spec, _ in emu.meters:
            assert f"{spec.meter_number:08d}" in text and f"{spec.serial_number:08d}" in text
        wall[0] += 10  # 1000 s of meter time at speed 100
    finally:
        await emu.stop()
    assert (tmp_path / "st" / "meters.json").exists()
    assert [saved for _, _, saved in made] == [None, None, None]
    assert made[0][1] == 1_000_000.0

    wall[0] = 1_000_001.0  # restarted soon after: wall time is behind the meters' clock
    made.clear()
    again = Emulator(config, factory=_fake_factory(made), wall=lambda: wall[0])
    await again.start()
    try:
        assert made[0][1] == pytest.approx(1_001_000.0)  # resumes where the meters were
        restored = {serial: saved["slave"]["reads"] for serial, _, saved in made}
        assert sorted(restored.values()) == [0, 0, 1]
    finally:
        await again.stop()


async def test_a_skewed_gateway_is_scanned_whole_over_tcp() -> None:
    """Collided answers that arrive one after another (``--collisions skew``) reach a master
    over TCP as garbage; the search still finds every meter."""
    from mbuskit.master.driver import Master
    from mbuskit.transport.tcp import TcpTransport

    config = seeded_config(meters=6, seed=11, port=0, collisions="skew")
    emu = Emulator(config)
    await emu.start()
    try:
        host, port = emu.served[0].where.rsplit(":", 1)
        transport = TcpTransport(host, int(port), latency=0.0)
        await transport.open()
        try:
            found = await Master(transport).scan_secondary()
        finally:
            await transport.close()
    finally:
        await emu.stop()
    assert sorted((f.address or "")[:8] for f in found) == sorted(
        f"{spec.meter_number:08d}" for spec, _ in emu.meters)


async def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "meters.json").write_text('{"format": 99}')
    config = seeded_config(meters=1, seed=5, port=0, state_dir=tmp_path)
    with pytest.raises(MBusError, match="not an emulator state"):
        await Emulator(config, factory=_fake_factory([])).start()


async def test_a_taken_port_releases_what_was_started() -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        config = seeded_config(meters=1, seed=5, port=port - 1, gateways=2)
        emu = Emulator(config, factory=_fake_factory([]))
        with pytest.raises(MBusError, match="cannot listen"):
            await emu.start()
    finally:
        blocker.close()
        await blocker.wait_closed()


@pytest.mark.skipif(not HAVE_KAMSTRUP, reason="mbuskit.slave.kamstrup not written yet")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_mbus_emulate_runs_until_stopped_and_saves_state(tmp_path: Path,
                                                        stop: signal.Signals) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mbuskit.cli", "emulate", "--tcp", "127.0.0.1:0", "--meters",
         "3", "--seed", "11", "--state", str(tmp_path / "state"), "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.stderr else ""
        where = ready.read_text().split()[0]
        data = asyncio.run(_read_once(where, 3))
        assert data.startswith(b"\x68") and data[5] == 3
    finally:
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    expected = seeded_config(meters=3, seed=11, port=1)
    for spec in expected.meters:
        assert f"meter number {spec.meter_number:08d}" in out
    assert "stopped; state saved" in out
    assert (tmp_path / "state" / "meters.json").exists()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
async def test_emulator_serves_a_serial_gateway_on_a_pty() -> None:
    import serial

    from mbuskit.slave.emulator_config import EmulatorConfig, GatewaySpec

    meters = tuple(seeded_meters(2, seed=1))
    config = EmulatorConfig(gateways=(GatewaySpec(meters=meters, serial="pty", baud=9600),))
    emu = Emulator(config, factory=_fake_factory([]))
    await emu.start()
    try:
        where = emu.served[0].where
        assert where.startswith("/dev/")
        assert f"gateway {where} (serial, 9600 baud, 2 meters)" in emu.describe()[0]
        expected = emu.meters[1][1].telegram()

        def ask() -> bytes:
            with serial.Serial(where, baudrate=9600, timeout=0.5) as port:
                port.write(req_ud2(2))
                return bytes(port.read(len(expected)))

        assert await asyncio.to_thread(ask) == expected
    finally:
        await emu.stop()


async def _read_frame(where: str, address: int) -> bytes:
    from mbuskit.codec.link import FrameReader, LongFrame

    host, port = where.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    frames = FrameReader()
    try:
        writer.write(req_ud2(address))
        await writer.drain()
        async with asyncio.timeout(3):
            while True:
                got = [f for f in frames.feed(await reader.read(4096))
                       if isinstance(f, LongFrame)]
                if got:
                    return got[0].encode()
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.skipif(not HAVE_KAMSTRUP, reason="mbuskit.slave.kamstrup not written yet")
async def test_a_configured_key_encrypts_the_meters_telegrams(tmp_path: Path) -> None:
    from mbuskit import decode
    from mbuskit.codec.header import LongHeader
    from mbuskit.errors import SecurityError

    path = tmp_path / "emu.toml"
    path.write_text(GOOD.replace("port = 10001", "port = 0").replace('serial = "pty"',
                                                                       "port = 0"))
    emu = Emulator(load_config(path))
    await emu.start()
    try:
        where = emu.served[0].where
        secret = await _read_frame(where, 1)
        plain = await _read_frame(where, 2)
    finally:
        await emu.stop()
    with pytest.raises(SecurityError):
        decode(secret)
    telegram = decode(secret, keys=bytes(range(16)))
    assert isinstance(telegram.header, LongHeader)
    assert str(telegram.header.address).startswith("12345678")
    assert any(r.quantity == "energy" for r in telegram.records)
    assert any(r.quantity == "energy" for r in decode(plain).records)


@pytest.mark.skipif(not HAVE_KAMSTRUP, reason="mbuskit.slave.kamstrup not written yet")
async def test_kamstrup_meters_come_back_from_the_state_dir(tmp_path: Path) -> None:
    wall = [1_800_000_000.0]
    config = seeded_config(meters=2, seed=8, port=0, speed=3600.0, state_dir=tmp_path)
    emu = Emulator(config, wall=lambda: wall[0])
    await emu.start()
    try:
        wall[0] += 2  # two hours of meter time
        await _read_frame(emu.served[0].where, 1)
        for _, slave in emu.meters:
            slave.device.meter.advance(emu.clock())
        before = {spec.serial_number: slave.device.meter.snapshot()
                  for spec, slave in emu.meters}
    finally:
        await emu.stop()
    assert all(s.a_plus_wh > 0 for s in before.values())

    again = Emulator(config, wall=lambda: wall[0])
    await again.start()
    try:
        for spec, slave in again.meters:
            snap = slave.device.meter.snapshot()
            assert snap.a_plus_wh >= before[spec.serial_number].a_plus_wh
            assert snap.meter_number == spec.meter_number
            assert slave.primary_address == spec.address
    finally:
        await again.stop()


async def test_state_is_saved_every_interval(tmp_path: Path) -> None:
    config = seeded_config(meters=2, seed=5, port=0, state_dir=tmp_path, save_interval=0.1)
    emu = Emulator(config, factory=_fake_factory([]))
    await emu.start()
    try:
        await _read_once(emu.served[0].where, 1)
        for _ in range(50):
            if emu.saves >= 2:
                break
            await asyncio.sleep(0.05)
        assert emu.saves >= 2
        from mbuskit.slave.persist import load_state

        saved = load_state(tmp_path / "meters.json")
        assert sorted(v["slave"]["reads"] for v in saved["meters"].values()) == [0, 1]
    finally:
        await emu.stop()
