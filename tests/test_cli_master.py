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
    assert _mbus("set-address", "--port", gateway.url, "1", "21").output == "ok\n"
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
        assert switched.exit_code == 0, switched.output
        assert slaves[0].baud == 9600


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
