"""`mbus demo` and `mbus serve` as a user runs them: separate processes, real sockets, and a
head-end killed with SIGKILL in the middle of its polls."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MBUS = [sys.executable, "-m", "mbuskit.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Lines:
    """Lines of a child's output, read by a thread (select on a buffered pipe misses lines)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.queue.put(line)

        threading.Thread(target=pump, daemon=True).start()


_LINES: dict[int, _Lines] = {}


def _wait_line(proc: subprocess.Popen[str], needle: str, timeout: float = 20.0) -> str:
    lines = _LINES.setdefault(proc.pid, _Lines(proc))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            line = lines.queue.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        lines.seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no {needle!r} from {proc.args!r}: {''.join(lines.seen)}")


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def _start(procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([*MBUS, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    procs.append(p)
    return p


def test_demo_end_to_end(procs: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    p = _start(procs, "demo", "--http", "127.0.0.1:0", "--buses", "2", "--meters", "3",
               "--interval", "0.5s", "--duration", "30", "--db", str(db))
    url = _wait_line(p, "open http").split()[1]
    assert url.startswith("http://127.0.0.1:")
    deadline = time.monotonic() + 15
    while True:
        meters = _get(url + "api/meters")
        if all(m["latest"] for m in meters) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert len(meters) == 6
    for m in meters:
        assert m["identity"]["manufacturer"] == "KAM" and m["identity"]["medium"] == 2
        assert m["address"]["kind"] == "primary" and 1 <= m["address"]["primary"] <= 3
        assert m["latest"]["energy"]["unit"] == "Wh"
        assert {"power.phase_L1", "power.phase_L2", "power.phase_L3"} <= set(m["latest"])
    # the accelerated meter clocks make the energy grow between polls
    name = meters[0]["name"]
    time.sleep(1.5)
    hist = _get(f"{url}api/meters/{name}/history?register=energy")["readings"]
    assert len(hist) >= 2 and hist[-1]["value"] >= hist[0]["value"]
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=15) == 0
    assert sqlite3.connect(db).execute("SELECT count(*) FROM readings").fetchone()[0] > 0


def test_serve_refuses_bad_config_with_line(tmp_path: Path) -> None:
    cfg = tmp_path / "headend.toml"
    cfg.write_text('[[buses]]\nname = "b"\ntcp = "127.0.0.1:1"\nbaud = 2401\n')
    r = subprocess.run([*MBUS, "serve", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=30, check=False)
    assert r.returncode == 2
    assert "line 4" in r.stderr and "unsupported baud rate 2401" in r.stderr
    cfg.write_text('[[buses]]\nname = "b"\ntcp = "127.0.0.1:1"\n')
    r = subprocess.run([*MBUS, "serve", "--config", str(cfg), "--check"], capture_output=True,
                       text=True, timeout=30, check=False)
    assert r.returncode == 0 and "OK" in r.stdout


def _committed(db: Path) -> dict[tuple[str, int], tuple[int, float]]:
    """(meter, slot) -> (number of registers, read time) of every committed poll."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT meter, slot, count(*), min(read_time), max(read_time)"
                           " FROM readings GROUP BY meter, slot").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    out = {}
    for meter, slot, n, t0, t1 in rows:
        assert t0 == t1  # one poll per (meter, slot): one read time
        out[(meter, slot)] = (n, t0)
    return out


@pytest.mark.slow
def test_kill_9_mid_poll_loses_nothing_and_duplicates_nothing(
        procs: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    n_meters = 12
    port = _free_port()
    emu = _start(procs, "emulate", "--tcp", f"127.0.0.1:{port}", "--meters", str(n_meters),
                 "--seed", "5", "--baud", "2400", "--realtime")
    _wait_line(emu, "gateway")
    db = tmp_path / "r.db"
    cfg = tmp_path / "headend.toml"
    # one poll per meter per day: a restart within the day must not read a meter again
    text = (f'[storage]\nurl = "sqlite:///{db}"\n[http]\nbind = "127.0.0.1:0"\n'
            f'[poll]\ninterval = "1d"\n'
            f'[[buses]]\nname = "b"\ntcp = "127.0.0.1:{port}"\nbaud = 2400\n')
    for i in range(1, n_meters + 1):
        text += f'[[meters]]\nname = "m{i:02d}"\nbus = "b"\nprimary = {i}\n'
    cfg.write_text(text)

    head = _start(procs, "serve", "--config", str(cfg))
    _wait_line(head, "serving")
    deadline = time.monotonic() + 60
    while len(_committed(db)) < 3:
        assert time.monotonic() < deadline, "head-end stored nothing"
        time.sleep(0.05)
    head.kill()  # SIGKILL: no cleanup, a poll is in flight on the bus
    head.wait(timeout=10)
    before = _committed(db)
    assert 3 <= len(before) < n_meters

    head2 = _start(procs, "serve", "--config", str(cfg))
    _wait_line(head2, "serving")
    deadline = time.monotonic() + 90
    while len(_committed(db)) < n_meters:
        assert time.monotonic() < deadline, f"only {len(_committed(db))} meters read"
        time.sleep(0.1)
    head2.send_signal(signal.SIGTERM)
    assert head2.wait(timeout=20) == 0
    after = _committed(db)
    # nothing committed was lost or rewritten: same polls, same read times
    for key, value in before.items():
        assert after[key] == value
    # no duplicate: every meter has exactly one poll (its slot of the day), all complete
    assert sorted(m for m, _ in after) == [f"m{i:02d}" for i in range(1, n_meters + 1)]
    assert len({n for n, _ in after.values()}) == 1


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([*MBUS, "demo", "--http", f"127.0.0.1:{port}", "--duration", "5"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
