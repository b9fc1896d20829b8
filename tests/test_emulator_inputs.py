"""The twin's physical inputs (push button, 230 V tariff input, pulse input) from the console."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mbuskit.slave.emulator import Emulator, seeded_config
from mbuskit.slave.emulator_config import EmulatorConfigError

ROOT = Path(__file__).resolve().parents[1]


async def test_inputs_reach_the_meter_model() -> None:
    emu = Emulator(seeded_config(meters=2, seed=3, port=0))
    await emu.start()
    try:
        spec, slave = emu.meters[0]
        meter = slave.device.meter
        assert emu.find_meter(spec.serial_number) is meter
        assert emu.find_meter(spec.meter_number) is meter
        assert emu.find_meter(spec.address) is meter
        # the button opens a closed breaker, a second press closes it again
        assert emu.meter_input(f"button {spec.serial_number}") == "breaker disconnected"
        assert emu.meter_input(f"button {spec.address}") == "breaker connected"
        # 230 V on terminal 13 selects T2, absent selects T1
        assert emu.meter_input(f"tariff {spec.address} on") == "tariff T2"
        assert meter.tariff == 2
        assert emu.meter_input(f"tariff {spec.address} off") == "tariff T1"
        before = meter.pulse_count
        assert emu.meter_input(f"pulse {spec.address} 1").startswith("1 pulses counted")
        assert meter.pulse_count == before + 1
        # the other meter is untouched
        assert emu.meters[1][1].device.meter.pulse_count == 0
    finally:
        await emu.stop()


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("button 99999999", "no meter"),
        ("press 1", "commands:"),
        ("tariff 1 maybe", "commands:"),
        ("pulse 1 -3", "commands:"),
        ("button x", "not a meter number"),
    ],
)
async def test_bad_console_lines_are_clear_errors(line: str, words: str) -> None:
    emu = Emulator(seeded_config(meters=1, seed=3, port=0))
    await emu.start()
    try:
        pulses = emu.meters[0][1].device.meter.pulse_count
        with pytest.raises(EmulatorConfigError, match=words):
            emu.meter_input(line)
        assert emu.meters[0][1].device.meter.pulse_count == pulses
    finally:
        await emu.stop()


def test_mbus_emulate_console_reads_inputs_from_stdin(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mbuskit.cli", "emulate", "--tcp", "127.0.0.1:0", "--meters", "1",
         "--seed", "4", "--console", "--ready-file", str(ready)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stdin is not None
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready.exists()
        proc.stdin.write("button 1\nbogus\n")
        proc.stdin.flush()
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "breaker disconnected" in out
    assert "error: commands:" in err
