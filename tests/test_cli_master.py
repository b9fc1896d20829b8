"""The ``mbus`` master commands against emulated Kamstrup meters behind a TCP gateway and a pty."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mbuskit.cli import session as cli_master
from mbuskit.cli.main import main
from mbuskit.slave.emulator import kamstrup_slave
from mbuskit.slave.emulator_config import MeterSpec
from mbuskit.transport.server import serve_serial, serve_tcp

KEY = "000102030405060708090A0B0C0D0E0F"
SPECS = [
    MeterSpec(address=1, meter_number=11112222, serial_number=70000001, seed=1),
    MeterSpec(address=2, meter_number=11112223, serial_number=70000002, seed=2),
    MeterSpec(address=3, meter_number=33334444, serial_number=70000003, seed=3,
              variant="ct"),
    MeterSpec(address=4, meter_number=55556666, serial_number=70000004, seed=4,
              key=bytes.fromhex(KEY)),
]


class Served:
    def __init__(self, slaves: list[Any], url: str) -> None:
        self.slaves = slaves
        self.url = url


def _serve(kind: str, slaves: list[Any]) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    if kind == "tcp":
        server: Any = loop.run_until_complete(serve_tcp(slaves, "127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    else:
        server = loop.run_until_complete(serve_serial(slaves, "pty"))
        url = server.path
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Served(slaves, url)
    finally:
        async def stop() -> None:
            if kind == "tcp":
                server.close()
            else:
                await server.stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.fixture
def gateway() -> Iterator[Served]:
    now = time.time()
    yield from _serve("tcp", [kamstrup_slave(s, now, 2400, None) for s in SPECS])


def _mbus(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_scan_finds_every_meter_in_each_format(gateway: Served) -> None:
    result = _mbus("scan", "--port", gateway.url, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    # the encrypted meter's fabrication record is inside the ciphertext: not shown
    assert sorted((r["secondary"][:8], r["fabrication"]) for r in rows) == sorted(
        (f"{s.meter_number:08d}", None if s.key else f"{s.serial_number:08d}") for s in SPECS)
    csv = _mbus("scan", "--port", gateway.url, "--mode", "primary", "--format", "csv")
    assert csv.exit_code == 0
    assert sorted(line.split(",")[0] for line in csv.output.splitlines()[1:]) == [
        "1", "2", "3", "4"]
    table = _mbus("scan", "--port", gateway.url, "--mask", "1111FFFF")
    assert table.exit_code == 0 and "2 meter(s)" in table.output


def test_read_decodes_by_primary_and_secondary_address(gateway: Served) -> None:
    result = _mbus("read", "--port", gateway.url, "2", "--format", "json")
    assert result.exit_code == 0, result.output
    telegrams = json.loads(result.output)
    assert telegrams[0]["header"]["id"] in ("11112223", 11112223)
    by_secondary = _mbus("read", "--port", gateway.url, "33334444", "--format", "xml")
    assert by_secondary.exit_code == 0 and "<Id>33334444</Id>" in by_secondary.output
    assert not any(s.selected for s in gateway.slaves)  # left deselected


def test_errors_are_one_line_with_distinct_exit_codes(gateway: Served) -> None:
    cases = [
        (["read", "--port", gateway.url, "99"], cli_master.EXIT_TIMEOUT, "primary address 99"),
        (["read", "--port", "tcp://127.0.0.1:1", "1"], cli_master.EXIT_PORT, "refused"),
        (["read", "--port", "/dev/no-such-mbus-port", "1"], cli_master.EXIT_PORT,
         "/dev/no-such-mbus-port"),
        (["read", "--port", gateway.url, "4"], cli_master.EXIT_SECURITY, "key"),
        (["ct-ratio", "--port", gateway.url, "1", "50"], cli_master.EXIT_REFUSED, "refused"),
        (["set-address", "--port", gateway.url, "1", "2"], cli_master.EXIT_VALUE, "in use"),
    ]
    for args, code, text in cases:
        result = _mbus(*args)
        assert result.exit_code == code, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and text in lines[0], (args, result.output)
        assert "Traceback" not in result.output
    usage = _mbus("read", "--port", gateway.url, "251")
    assert usage.exit_code == cli_master.EXIT_USAGE and "out of range" in usage.output


def test_key_file_decrypts_and_a_wrong_key_is_refused(gateway: Served, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"55556666 = {KEY}\n")
    result = _mbus("read", "--port", gateway.url, "4", "--key-file", str(keys), "--format",
                   "json")
    assert result.exit_code == 0, result.output
    assert KEY not in result.output and KEY.lower() not in result.output
    keys.write_text("55556666 = " + "11" * 16 + "\n")
    wrong = _mbus("read", "--port", gateway.url, "4", "--key-file", str(keys))
    assert wrong.exit_code == cli_master.EXIT_SECURITY
    assert "11" * 16 not in wrong.output


def test_writes_reach_the_meter(gateway: Served) -> None:
    slave1, slave2, slave3 = gateway.slaves[:3]
    moved = _mbus("set-address", "--port", gateway.url, "1", "21")
    assert moved.output == "ok: primary address 21 answers as 111122222D2C0102\n"
    assert slave1.primary_address == 21
    assert _mbus("set-id", "--port", gateway.url, "21", "99887766").exit_code == 0
    assert slave1.device.identity().ident == 99887766
    assert _mbus("breaker", "--port", gateway.url, "2", "disconnect").exit_code == 0
    assert slave2.device.meter.breaker.name != "CONNECTED"
    assert _mbus("breaker", "--port", gateway.url, "2", "connect").exit_code == 0
    assert slave2.device.meter.breaker.name == "CONNECTED"
    assert _mbus("ct-ratio", "--port", gateway.url, "3", "150").exit_code == 0
    assert slave3.device.meter.ct_ratio == 150
    assert _mbus("tariff", "--port", gateway.url, "2", "3").exit_code == 0
    assert _mbus("set-time", "--port", gateway.url, "2", "--offset", "-20").exit_code == 0
    assert _mbus("set-time", "--port", gateway.url, "11112223",
                 "--at", "2026-05-01T10:00:00").exit_code == 0
    bad = _mbus("set-id", "--port", gateway.url, "2", "12")
    assert bad.exit_code == cli_master.EXIT_USAGE


@pytest.mark.parametrize("bad", ["7-3", "x", "0-251", "-1"])
def test_primary_scan_range_is_checked(bad: str) -> None:
    result = _mbus("scan", "--port", "tcp://127.0.0.1:9", "--mode", "primary",
                   "--addresses", bad)
    assert result.exit_code == 2 and "--addresses" in result.output


def test_raw_prints_the_answer(gateway: Served) -> None:
    ok = _mbus("raw", "--port", gateway.url, "10 40 02 42 16")
    assert ok.exit_code == 0 and ok.output.strip() == "e5"
    silent = _mbus("raw", "--port", gateway.url, "10 40 63 A3 16")
    assert silent.exit_code == cli_master.EXIT_TIMEOUT
    bad = _mbus("raw", "--port", gateway.url, "10 40 02 43 16")
    assert bad.exit_code != 0 and "checksum" in bad.output


@pytest.mark.skipif(sys.platform == "win32", reason="pty")
def test_baud_auto_reports_each_meters_rate_on_a_serial_line() -> None:
    now = time.time()
    slaves = [kamstrup_slave(SPECS[0], now, 2400, None), kamstrup_slave(SPECS[1], now, 9600, None)]
    for served in _serve("pty", slaves):
        # three rates x 251 empty addresses would spend minutes in timeouts at 300 baud
        result = _mbus("scan", "--port", served.url, "--baud", "auto", "--format", "json",
                       "--mode", "primary", "--addresses", "0-4")
        assert result.exit_code == 0, result.output
        rates = {r["primary"]: r["baud"] for r in json.loads(result.output)}
        assert rates == {1: 2400, 2: 9600}
        switched = _mbus("baud", "--port", served.url, "1", "9600")
        assert switched.output == "ok: now at 9600 baud (111122222D2C0102 answers at it)\n"
        assert slaves[0].baud == 9600

    # by secondary address: selected and read again at the new rate (a fresh pty: a Linux pty
    # whose rate a session changed refuses the next open with EINVAL, the parity limit of
    # SerialServer)
    slaves = [kamstrup_slave(SPECS[1], now, 9600, None)]
    for served in _serve("pty", slaves):
        back = _mbus("baud", "--port", served.url, "--baud", "9600", "11112223", "2400")
        assert back.output == "ok: now at 2400 baud (111122232D2C0102 answers at it)\n"
        assert slaves[0].baud == 2400


def test_ctrl_c_stops_a_scan_and_prints_what_was_found(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    emulate = subprocess.Popen(
        [sys.executable, "-m", "mbuskit.cli", "emulate", "--tcp", "127.0.0.1:0", "--meters",
         "8", "--seed", "5", "--realtime", "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(100):
            if ready.exists() and ready.read_text().strip():
                break
            time.sleep(0.1)
        where = ready.read_text().split()[0]
        scan = subprocess.Popen(
            [sys.executable, "-m", "mbuskit.cli", "scan", "--port", f"tcp://{where}",
             "--format", "csv", "--full-reads"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env)
        # with full read-outs a whole scan of these 8 meters takes about 13 s in real time
        time.sleep(8.0)
        scan.send_signal(signal.SIGINT)
        out, err = scan.communicate(timeout=30)
        assert scan.returncode == cli_master.EXIT_INTERRUPTED, err
        assert "interrupted" in err and "Traceback" not in err
        rows = out.strip().splitlines()
        assert rows[0].startswith("primary,secondary")
        assert 1 <= len(rows) - 1 < 8
    finally:
        emulate.send_signal(signal.SIGINT)
        emulate.wait(timeout=30)


def test_commands_to_a_keyed_meter_are_encrypted(gateway: Served, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"55556666 = {KEY}\n")
    keyed = gateway.slaves[3]
    plain = _mbus("breaker", "--port", gateway.url, "4", "disconnect")
    assert plain.exit_code != 0  # the keyed module refuses a plain command
    assert keyed.device.meter.breaker.name == "CONNECTED"
    result = _mbus("breaker", "--port", gateway.url, "4", "disconnect", "--key-file", str(keys))
    assert result.exit_code == 0, result.output
    assert keyed.device.meter.breaker.name != "CONNECTED"
    assert KEY not in result.output


# -- commands a utility can trust: exactly the meter named, UTC, guard rails -------------------


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every frame the CLI puts on a TCP gateway (a counting transport)."""
    from mbuskit.transport.tcp import TcpTransport

    frames: list[bytes] = []
    real = TcpTransport.send

    async def send(self: TcpTransport, data: bytes) -> None:
        frames.append(bytes(data))
        await real(self, data)

    monkeypatch.setattr(TcpTransport, "send", send)
    return frames


def _state(served: Served) -> list[tuple[int, int, str]]:
    return [(s.primary_address, s.device.identity().ident, s.device.meter.breaker.name)
            for s in served.slaves]


@pytest.mark.parametrize("args", [
    ["breaker", "FFFFFFFF", "disconnect"],
    ["breaker", "1111222F", "disconnect"],
    ["breaker", "FFFFFFFFFFFFFFFF", "disconnect"],
    ["breaker", "111122222D2CFF02", "disconnect"],
    ["set-address", "1383", "9"],
    ["set-address", "11112", "9"],
    ["set-id", "1111", "12345678"],
    ["set-time", "3333FFFF"],
    ["tariff", "1111FFFF", "2"],
    ["ct-ratio", "3333444F", "50"],
    ["baud", "FFFFFFFF", "9600"],
    ["breaker", "255", "disconnect"],
    ["breaker", "254", "disconnect"],
    ["set-address", "253", "9"],
    ["tariff", "251", "2"],
    ["breaker", "11112222", "disconnect", "--serial", "7000000F"],
    ["breaker", "11112222", "disconnect", "--serial", "7000"],
    ["breaker", "1", "disconnect", "--serial", "70000001"],
    ["breaker", "--all", "1", "disconnect"],
])
def test_commands_take_exactly_one_complete_address(gateway: Served, sent: list[bytes],
                                                     args: list[str]) -> None:
    before = _state(gateway)
    result = _mbus(args[0], "--port", gateway.url, *args[1:])
    assert result.exit_code == cli_master.EXIT_USAGE, result.output
    assert "Traceback" not in result.output
    assert sent == []  # refused before the port is opened: not one frame
    assert _state(gateway) == before


def test_a_wildcard_or_broadcast_says_why(gateway: Served) -> None:
    wildcard = _mbus("breaker", "--port", gateway.url, "FFFFFFFF", "disconnect")
    assert "wildcard" in wildcard.output and "one meter" in wildcard.output
    prefix = _mbus("set-address", "--port", gateway.url, "1383", "9")
    assert "prefix" in prefix.output
    broadcast = _mbus("breaker", "--port", gateway.url, "255", "disconnect")
    assert "broadcast" in broadcast.output


def test_a_complete_address_reaches_that_meter_only(gateway: Served, sent: list[bytes]) -> None:
    result = _mbus("breaker", "--port", gateway.url, "11112223", "disconnect")
    assert result.exit_code == 0, result.output
    assert [s.device.meter.breaker.name == "CONNECTED" for s in gateway.slaves] == [
        True, False, True, True]
    full = _mbus("scan", "--port", gateway.url, "--mask", "33334444", "--format", "json")
    address = json.loads(full.output)[0]["secondary"]
    assert len(address) == 16 and "F" not in address
    sent.clear()
    assert _mbus("ct-ratio", "--port", gateway.url, address, "75").exit_code == 0
    assert gateway.slaves[2].device.meter.ct_ratio == 75
    assert all(frame[5] not in (0xFE, 0xFF) for frame in sent if frame[0] == 0x68)
    # reads keep their wildcards
    read = _mbus("read", "--port", gateway.url, "3333444F", "--format", "json")
    assert read.exit_code == 0, read.output


def test_all_asks_then_addresses_each_meter_on_its_own(gateway: Served, sent: list[bytes],
                                                       tmp_path: Path) -> None:
    no = CliRunner().invoke(main, ["breaker", "--port", gateway.url, "--all", "disconnect"],
                            input="n\n")
    assert no.exit_code == 1 and "4 meter(s) found" in no.output
    assert all(s.device.meter.breaker.name == "CONNECTED" for s in gateway.slaves)
    assert not any(b"\x01\xfd\x1f" in f for f in sent)  # scanned, no breaker command sent
    keys = tmp_path / "keys.txt"
    keys.write_text(f"55556666 = {KEY}\n")
    sent.clear()
    yes = CliRunner().invoke(main, ["breaker", "--port", gateway.url, "--all", "disconnect",
                                    "--key-file", str(keys)], input="y\n")
    assert yes.exit_code == 0, yes.output
    assert all(s.device.meter.breaker.name != "CONNECTED" for s in gateway.slaves)
    assert sum(line.endswith(": ok: disconnected") for line in yes.stdout.splitlines()) == 4
    # never the broadcast or test address: a selection (CI 52h) before every command
    long_frames = [f for f in sent if f[0] == 0x68]
    assert all(f[5] not in (0xFE, 0xFF) for f in long_frames)
    writes = [i for i, f in enumerate(long_frames) if f[6] in (0x51, 0x5B, 0x5A)]
    selections = [i for i, f in enumerate(long_frames) if f[6] == 0x52]
    assert len(writes) >= 4 and all(any(s < w for s in selections) for w in writes)
    # without the key the keyed meter refuses; the others are done, the exit names the refusal
    partial = _mbus("tariff", "--port", gateway.url, "--all", "2", "--yes")
    assert partial.exit_code == cli_master.EXIT_REFUSED, partial.output
    assert sum(line.endswith(": ok: tariff 2 (by command)")
               for line in partial.stdout.splitlines()) == 3
    assert "refused" in partial.stdout
    assert "1 of 4 meter(s) failed" in partial.stderr


def _clock(gateway: Served, address: str) -> str:
    result = _mbus("read", "--port", gateway.url, address, "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)[0]["records"]
    (stamp,) = [r["value"] for r in records if r["raw"].startswith("046d")]
    return str(stamp)


def test_set_time_writes_utc_and_says_so(gateway: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    offset = _mbus("set-time", "--port", gateway.url, "2", "--at", "2025-06-01T12:00+02:00")
    assert offset.output == ("ok: clock set to 2025-06-01T10:00:00Z, reads "
                             "2025-06-01T10:00Z\n"), offset.output
    assert _clock(gateway, "2") == "2025-06-01T10:00:00"
    zulu = _mbus("set-time", "--port", gateway.url, "11112223", "--at", "2025-01-15T08:30:00Z")
    assert zulu.output == "ok: clock set to 2025-01-15T08:30:00Z, reads 2025-01-15T08:30Z\n"
    assert _clock(gateway, "2") == "2025-01-15T08:30:00"
    with monkeypatch.context() as local:
        local.setenv("TZ", "Europe/Copenhagen")
        time.tzset()
        try:  # a naive --at is local time: 12:00 CEST is 10:00 UTC, 12:00 CET 11:00 UTC
            naive = _mbus("set-time", "--port", gateway.url, "2", "--at", "2025-06-01T12:00")
            assert naive.output == ("ok: clock set to 2025-06-01T10:00:00Z, reads "
                                    "2025-06-01T10:00Z\n")
            winter = _mbus("set-time", "--port", gateway.url, "2", "--at", "2025-01-15T12:00")
            assert winter.output == ("ok: clock set to 2025-01-15T11:00:00Z, reads "
                                     "2025-01-15T11:00Z\n")
            assert _clock(gateway, "2") == "2025-01-15T11:00:00"
            now = _mbus("set-time", "--port", gateway.url, "2")
        finally:
            local.undo()
            time.tzset()
    from datetime import UTC, datetime, timedelta

    written = datetime.fromisoformat(now.output.split("clock set to ")[1].split("Z")[0])
    assert abs(written - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)
    assert abs(datetime.fromisoformat(_clock(gateway, "2")) - written) <= timedelta(minutes=1)


def test_set_id_refuses_a_meter_number_in_use(gateway: Served) -> None:
    slave1 = gateway.slaves[0]
    taken = _mbus("set-id", "--port", gateway.url, "1", "11112223")
    assert taken.exit_code == cli_master.EXIT_IN_USE, taken.output
    assert "11112223 is already in use" in taken.output and "--force" in taken.output
    assert slave1.device.identity().ident == 11112222
    assert not any(s.selected for s in gateway.slaves)
    assert _mbus("set-id", "--port", gateway.url, "11112222", "11112222").exit_code == 0
    assert _mbus("set-id", "--port", gateway.url, "1", "12345678").exit_code == 0
    assert slave1.device.identity().ident == 12345678
    forced = _mbus("set-id", "--port", gateway.url, "1", "11112223", "--force")
    assert forced.exit_code == 0 and slave1.device.identity().ident == 11112223


def test_scan_without_enhanced_warns_of_meters_left_unseparated() -> None:
    now = time.time()
    specs = [MeterSpec(address=1, meter_number=44445555, serial_number=12345678, seed=1),
             MeterSpec(address=2, meter_number=44445555, serial_number=87654321, seed=2),
             MeterSpec(address=3, meter_number=66667777, serial_number=70000013, seed=3)]
    for served in _serve("tcp", [kamstrup_slave(s, now, 2400, None) for s in specs]):
        plain = _mbus("scan", "--port", served.url, "--no-enhanced")
        assert plain.exit_code == 0, plain.output
        assert "1 meter(s)" in plain.stdout
        assert "warning" in plain.stderr and "44445555" in plain.stderr
        assert "--no-enhanced" in plain.stderr
        enhanced = _mbus("scan", "--port", served.url)
        assert "3 meter(s)" in enhanced.stdout and enhanced.stderr == ""


def test_breaker_is_verified_by_reading_its_state_back(gateway: Served,
                                                      sent: list[bytes]) -> None:
    slave2 = gateway.slaves[1]
    # connected already: said so, and no arm is sent (the meter would refuse it)
    already = _mbus("breaker", "--port", gateway.url, "2", "connect")
    assert already.exit_code == 0 and already.output == "ok: already connected\n"
    assert not any(b"\x01\xfd\x1f" in f for f in sent)
    off = _mbus("breaker", "--port", gateway.url, "11112223", "disconnect")
    assert off.output == "ok: disconnected\n" and slave2.device.meter.breaker.name != "CONNECTED"
    on = _mbus("breaker", "--port", gateway.url, "2", "connect")
    assert on.output == "ok: connected\n" and slave2.device.meter.breaker.name == "CONNECTED"
    # the read-back gives the meter its standard telegram back (application reset)
    read = _mbus("read", "--port", gateway.url, "2", "--format", "json")
    assert len(json.loads(read.output)[0]["records"]) > 1


def test_breaker_ok_only_when_the_state_shows_the_change(gateway: Served,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    meter = gateway.slaves[1].device.meter
    # a relay that acknowledges but does not move (a stuck contact)
    monkeypatch.setattr(meter, "breaker_disconnect", lambda now: meter.breaker)
    stuck = _mbus("breaker", "--port", gateway.url, "2", "disconnect")
    assert stuck.exit_code == cli_master.EXIT_UNVERIFIED, stuck.output
    assert "breaker reads connected" in stuck.output and "ok" not in stuck.output


# -- every command is read back: ok only when the read-back shows the change -------------------


def _deaf(monkeypatch: pytest.MonkeyPatch, slave: Any) -> None:
    """A module that acknowledges every command and carries out none (E5, nothing changes)."""
    from mbuskit.slave.machine import ACCEPTED

    monkeypatch.setattr(slave.device, "_execute", lambda record, now: ACCEPTED)


def _failed(result: Any, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    assert text in result.output and "ok" not in result.stdout, result.output


def test_refused_unreachable_and_unverified_exit_apart() -> None:
    codes = {cli_master.EXIT_TIMEOUT, cli_master.EXIT_REFUSED, cli_master.EXIT_UNVERIFIED,
             cli_master.EXIT_UNREACHABLE}
    assert len(codes) == 4


def test_set_address_is_read_back_at_the_new_address(gateway: Served,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    moved = _mbus("set-address", "--port", gateway.url, "11112223", "22")
    assert moved.output == "ok: primary address 22 answers as 111122232D2C0102\n"
    same = _mbus("set-address", "--port", gateway.url, "22", "22")
    assert same.output == "ok: already at primary address 22 (111122232D2C0102)\n"
    _deaf(monkeypatch, gateway.slaves[0])
    lost = _mbus("set-address", "--port", gateway.url, "1", "23")
    _failed(lost, cli_master.EXIT_UNREACHABLE, "nothing answers at 23; try its old address 1")
    assert gateway.slaves[0].primary_address == 1


def test_set_id_is_read_back_by_the_new_number(gateway: Served,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    renamed = _mbus("set-id", "--port", gateway.url, "1", "12345678")
    assert renamed.output == "ok: meter number 12345678 answers as 123456782D2C0102 serial " \
                             "70000001\n", renamed.output
    same = _mbus("set-id", "--port", gateway.url, "1", "12345678")
    assert same.output == "ok: already meter number 12345678\n"
    _deaf(monkeypatch, gateway.slaves[1])
    lost = _mbus("set-id", "--port", gateway.url, "2", "87654321")
    _failed(lost, cli_master.EXIT_UNREACHABLE, "no meter answers the selection of 87654321")
    assert gateway.slaves[1].device.identity().ident == 11112223
    assert not any(s.selected for s in gateway.slaves)


def test_set_time_is_read_back_from_the_clock(gateway: Served,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _mbus("set-time", "--port", gateway.url, "2", "--at", "2025-06-01T10:00Z")
    moved = _mbus("set-time", "--port", gateway.url, "2", "--offset", "3600")
    assert moved.output == "ok: clock moved by 3600 s, reads 2025-06-01T11:00Z\n", moved.output
    _deaf(monkeypatch, gateway.slaves[1])
    stale = _mbus("set-time", "--port", gateway.url, "2", "--at", "2024-01-01T00:00Z")
    _failed(stale, cli_master.EXIT_UNVERIFIED, "but it reads 2025-06-01T11:00Z")
    stuck = _mbus("set-time", "--port", gateway.url, "2", "--offset", "-7200")
    _failed(stuck, cli_master.EXIT_UNVERIFIED, "clock went from 2025-06-01T11:00Z to "
                                               "2025-06-01T11:00Z")


def test_tariff_is_read_back(gateway: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    forced = _mbus("tariff", "--port", gateway.url, "2", "3")
    assert forced.output == "ok: tariff 3 (by command)\n", forced.output
    again = _mbus("tariff", "--port", gateway.url, "11112223", "3")
    assert again.output == "ok: already tariff 3 (by command)\n"
    auto = _mbus("tariff", "--port", gateway.url, "2", "auto")
    assert auto.exit_code == 0 and auto.output.endswith(" (by the tariff input)\n")
    stop = _mbus("tariff", "--port", gateway.url, "2", "debiting-stop")
    assert stop.output == "ok: debiting stop, 1 period(s) closed\n", stop.output
    _deaf(monkeypatch, gateway.slaves[1])
    _failed(_mbus("tariff", "--port", gateway.url, "2", "4"), cli_master.EXIT_UNVERIFIED,
            "acknowledged tariff 4, but it reads tariff")
    _failed(_mbus("tariff", "--port", gateway.url, "2", "debiting-stop"),
            cli_master.EXIT_UNVERIFIED, "debiting stops still read 1")
    # the read-backs gave the meter its standard telegram back (application reset)
    read = _mbus("read", "--port", gateway.url, "2", "--format", "json")
    assert len(json.loads(read.output)[0]["records"]) > 1


def test_ct_ratio_and_its_lock_are_read_back(gateway: Served,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ratio = _mbus("ct-ratio", "--port", gateway.url, "3", "150")
    assert ratio.output == "ok: CT ratio 150, not locked\n", ratio.output
    locked = _mbus("ct-ratio", "--port", gateway.url, "33334444", "150", "--lock")
    assert locked.output == "ok: CT ratio 150, locked\n", locked.output
    assert _mbus("ct-ratio", "--port", gateway.url, "3", "--lock").output == (
        "ok: already CT ratio 150, locked\n")
    _failed(_mbus("ct-ratio", "--port", gateway.url, "3", "200"), cli_master.EXIT_REFUSED,
            "refused CT ratio 200")
    _failed(_mbus("ct-ratio", "--port", gateway.url, "1", "50"), cli_master.EXIT_REFUSED,
            "refused CT ratio 50")  # a direct meter has no ratio


def test_ct_ratio_acknowledged_but_unchanged_is_unverified(gateway: Served,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _deaf(monkeypatch, gateway.slaves[2])
    _failed(_mbus("ct-ratio", "--port", gateway.url, "3", "150", "--lock"),
            cli_master.EXIT_UNVERIFIED, "but it reads CT ratio ")
    assert not gateway.slaves[2].device.meter.ct_locked


def test_baud_not_answered_at_the_new_rate_is_unreachable(gateway: Served) -> None:
    same = _mbus("baud", "--port", gateway.url, "2", "2400")
    assert same.output == "ok: already at 2400 baud (111122232D2C0102 answers at it)\n"
    # a TCP gateway's bus side stays at 2400: the meter acknowledges (at 2400) and is lost
    lost = _mbus("baud", "--port", gateway.url, "11112223", "9600")
    _failed(lost, cli_master.EXIT_UNREACHABLE, "does not answer at 9600")
    assert "try --baud 9600, or --baud 2400" in lost.output
    assert gateway.slaves[1].baud == 9600
    primary = _mbus("baud", "--port", gateway.url, "1", "9600")
    _failed(primary, cli_master.EXIT_UNREACHABLE, "does not answer at 9600")


# -- the audit trail: every command to every meter is recorded, or not sent ---------------------


def _audit_rows(path: Path) -> list[Any]:
    from mbuskit.headend.storage.sqlite import SqliteStorage

    storage = SqliteStorage(str(path))
    try:
        storage.init()
        return list(reversed(storage.commands()))
    finally:
        storage.close()


def test_commands_are_recorded_with_their_outcome(gateway: Served, _audit_in_tmp: Path) -> None:
    meter = gateway.slaves[1].device.meter
    off = _mbus("breaker", "--port", gateway.url, "2", "disconnect")
    assert off.exit_code == 0, off.output
    refused = _mbus("ct-ratio", "--port", gateway.url, "2", "150")  # a direct meter has no CT
    assert refused.exit_code == cli_master.EXIT_REFUSED, refused.output
    silent = _mbus("breaker", "--port", gateway.url, "--timeout", "0.2", "--retries", "0",
                   "77", "connect")
    assert silent.exit_code == cli_master.EXIT_TIMEOUT, silent.output
    wildcard = _mbus("breaker", "--port", gateway.url, "FFFFFFFF", "disconnect")
    assert wildcard.exit_code == 2  # refused before the bus: nothing sent, nothing to record
    rows = _audit_rows(_audit_in_tmp)
    assert [(r.meter, r.command, r.outcome) for r in rows] == [
        ("2", "breaker", "ok"), ("2", "ct-ratio", "refused"), ("77", "breaker", "unreachable")]
    first = rows[0]
    assert first.origin.startswith("cli:") and first.args["action"] == "disconnect"
    assert first.readback == {"result": "ok: disconnected"} and first.finished is not None
    assert "refused" in (rows[1].message or "") and rows[1].args["ratio"] == 150
    assert meter.breaker.name != "CONNECTED"


def test_a_command_that_cannot_be_recorded_is_not_sent(gateway: Served, sent: list[bytes],
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MBUS_AUDIT", f"sqlite:///{blocker}/commands.db")
    result = _mbus("breaker", "--port", gateway.url, "2", "disconnect")
    assert result.exit_code == 1, result.output
    assert "audit trail" in result.output and "nothing sent" in result.output
    assert not any(f[:1] == b"\x68" for f in sent), sent  # no long frame: no SND_UD at all
    assert gateway.slaves[1].device.meter.breaker.name == "CONNECTED"
