"""libmbus (through node-mbus) reads the emulated Kamstrup meters over a TCP gateway.

Needs node-mbus in tests/interop/node_modules (``.ci/install-node-mbus.sh``). Without it the
test is skipped with the reason, except under CI=true where a missing tool is a failure.
The meters' clock is frozen so that what libmbus decodes can be compared with the meter
model's registers at the same instant.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from mbuskit.slave.emulator import Emulator, seeded_config

pytestmark = pytest.mark.service

INTEROP = Path(__file__).resolve().parent / "interop"
BINDING = INTEROP / "node_modules" / "node-mbus" / "build" / "Release" / "mbus.node"
NODE = shutil.which("node")
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC: the frozen meter clock
TIMEOUT_MS = 60  # libmbus TCP answer timeout; the gateway answers in well under 10 ms


def _need_node_mbus() -> str:
    missing = []
    if NODE is None:
        missing.append("node is not installed")
    if not BINDING.exists():
        missing.append("node-mbus is not installed (run .ci/install-node-mbus.sh)")
    try:
        importlib.import_module("mbuskit.slave.kamstrup")
    except ImportError:
        missing.append("mbuskit.slave.kamstrup is missing")
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(f"interop test cannot run under CI: {reason}")
        pytest.skip(reason)
    assert NODE is not None
    return NODE


async def _libmbus(node: str, where: str, *ops: str, wait: float = 120) -> list[dict[str, Any]]:
    host, port = where.rsplit(":", 1)
    proc = await asyncio.create_subprocess_exec(
        node, str(INTEROP / "mbus.js"), host, port, str(TIMEOUT_MS), *ops, cwd=INTEROP,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), wait)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def _records(data: dict[str, Any]) -> list[dict[str, Any]]:
    records = data.get("DataRecord", [])
    return records if isinstance(records, list) else [records]


def _first(records: list[dict[str, Any]], unit: str) -> dict[str, Any]:
    for record in records:
        if (record.get("Unit") == unit and record.get("StorageNumber") == 0
                and "Tariff" not in record and record.get("Function") == "Instantaneous value"):
            return record
    raise AssertionError(f"no instantaneous {unit!r} record in {records}")


def _check_against_model(data: dict[str, Any], slave: Any, meter_number: int,
                         serial: int) -> None:
    info = data["SlaveInformation"]
    assert int(info["Id"]) == meter_number
    assert info["Manufacturer"] == "KAM"
    assert info["Medium"] == "Electricity"
    snap = slave.device.meter.snapshot()
    records = _records(data)
    assert int(_first(records, "Fabrication number")["Value"]) == serial
    # 04 04: A+ in 10 Wh (libmbus shows the raw count with the VIF's unit)
    assert int(_first(records, "Energy (10 Wh)")["Value"]) == snap.a_plus_wh // 10
    # 04 2B: actual power P+ in W
    assert int(_first(records, "Power (W)")["Value"]) == snap.p_plus_w


async def test_libmbus_reads_and_scans_the_emulated_meters() -> None:
    node = _need_node_mbus()
    wall = [T0]
    config = seeded_config(meters=3, seed=42, port=0, start=T0)
    emulator = Emulator(config, wall=lambda: wall[0])
    await emulator.start()
    try:
        where = emulator.served[0].where
        by_number = {spec.meter_number: (spec, slave) for spec, slave in emulator.meters}
        # let the meters run six hours so the registers are not all zero, then freeze them
        wall[0] = T0 + 6 * 3600
        for _, slave in emulator.meters:
            slave.device.meter.advance(wall[0])

        results = await _libmbus(node, where, "get:1", "get:2", "get:3", "scan")
        reads, scan = results[:3], results[3]
        for address, result in enumerate(reads, start=1):
            assert result["ok"], result
            spec, slave = next((s, sl) for s, sl in emulator.meters if s.address == address)
            _check_against_model(result["data"], slave, spec.meter_number, spec.serial_number)

        assert scan["ok"], scan
        found = scan["data"]
        assert sorted(int(a[:8]) for a in found) == sorted(by_number)
        assert all(a[8:12] == "2D2C" and a[14:16] == "02" for a in found)

        # and by secondary address, as libmbus's scan reported it
        by_secondary = await _libmbus(node, where, *(f"get:{a}" for a in found))
        for address, result in zip(found, by_secondary, strict=True):
            assert result["ok"], result
            spec, slave = by_number[int(address[:8])]
            _check_against_model(result["data"], slave, spec.meter_number, spec.serial_number)
    finally:
        await emulator.stop()


async def test_libmbus_against_the_mbus_emulate_command(tmp_path: Path) -> None:
    node = _need_node_mbus()
    ready = tmp_path / "ready"
    root = Path(__file__).resolve().parents[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mbuskit.cli", "emulate", "--tcp", "127.0.0.1:0", "--meters", "4",
        "--seed", "2026", "--ready-file", str(ready), cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        for _ in range(400):
            if ready.exists() or proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert ready.exists(), "mbus emulate did not start"
        where = ready.read_text().split()[0]
        expected = {spec.address: spec for spec in
                    seeded_config(meters=4, seed=2026, port=1).meters}
        results = await _libmbus(node, where, *(f"get:{a}" for a in expected), "scan")
        for address, result in zip(expected, results[:4], strict=True):
            assert result["ok"], result
            spec = expected[address]
            assert int(result["data"]["SlaveInformation"]["Id"]) == spec.meter_number
            fabrication = _first(_records(result["data"]), "Fabrication number")
            assert int(fabrication["Value"]) == spec.serial_number
        scan = results[4]
        assert scan["ok"], scan
        assert sorted(int(a[:8]) for a in scan["data"]) == sorted(
            s.meter_number for s in expected.values())
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"stopped" in out
