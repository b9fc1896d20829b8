"""Head-end benchmark: readings stored per second while every bus is kept busy.

An emulator process serves ``--gateways`` TCP gateways of ``--meters`` Kamstrup meters each,
answering at wire speed (``--realtime``: request bytes at the baud rate, the slave's answer
delay, the answer paced byte by byte). This process runs the head-end polling every meter as
often as it can into SQLite. Measured over ``--seconds`` after a warm-up:

* readings per second committed,
* per bus: time inside transactions / wall time (the head-end's view) and wire time (11-bit
  characters both ways at the baud rate plus one answer delay per answer) / wall time,
* CPU of this process (user + system seconds / wall seconds = cores used).

Bar: every bus at least 90 % busy while this process uses under one core.

    python bench/headend.py --gateways 50 --meters 20 --baud 9600 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mbuskit.codec import timing
from mbuskit.headend.config import BusConfig, Config, MeterConfig, PollConfig, StorageConfig
from mbuskit.headend.readers import MasterReader
from mbuskit.headend.scheduler import Scheduler
from mbuskit.headend.storage.sqlite import SqliteStorage
from mbuskit.transport.tcp import TcpTransport


class CountingTransport(TcpTransport):
    """Counts the bytes each way, to account wire time as the bus would spend it."""

    def __init__(self, host: str, port: int, *, baud: int) -> None:
        super().__init__(host, port, baud=baud)
        self.sent = 0
        self.received = 0
        self.answers = 0
        self._awaiting = False

    async def send(self, data: bytes) -> None:
        self.sent += len(data)
        self._awaiting = True
        await super().send(data)

    async def receive(self, timeout: float) -> bytes:
        data = await super().receive(timeout)
        if data:
            self.received += len(data)
            if self._awaiting:
                self.answers += 1
                self._awaiting = False
        return data

    def wire_seconds(self, baud: int) -> float:
        # characters both ways, plus the slave's answer delay (11 bit times, EN 13757-2)
        # before each answer
        return (timing.frame_time(self.sent + self.received, baud)
                + self.answers * timing.answer_delay(baud))


def _free_base(n: int) -> int:
    """A first port such that n consecutive ports are free (the emulator's --gateways)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n >= 65000:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise SystemExit("no block of free ports")


def _wait_ports(ports: list[int], timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    for p in ports:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", p), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > end:
                    raise SystemExit(f"emulator did not open port {p}") from None
                time.sleep(0.1)


async def run(args: argparse.Namespace) -> int:
    base = _free_base(args.gateways)
    ports = list(range(base, base + args.gateways))
    emu = subprocess.Popen(
        [sys.executable, "-m", "mbuskit.cli", "emulate", "--tcp", f"127.0.0.1:{base}",
         "--gateways", str(args.gateways), "--meters", str(args.meters), "--baud",
         str(args.baud), "--realtime", "--seed", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workdir = Path(tempfile.mkdtemp(prefix="mbus-bench-"))
    try:
        _wait_ports(ports)
        buses = tuple(BusConfig(name=f"gw{i:02d}", kind="tcp", target=f"127.0.0.1:{p}",
                                baud=args.baud) for i, p in enumerate(ports))
        meters = tuple(MeterConfig(name=f"gw{i:02d}-{a:03d}", bus=b.name, primary=a,
                                   interval=0.001)
                       for i, b in enumerate(buses) for a in range(1, args.meters + 1))
        cfg = Config(name="bench", buses=buses, meters=meters,
                     storage=StorageConfig(url=f"sqlite:///{workdir / 'r.db'}"),
                     poll=PollConfig(interval=0.001, timeout=1.0, backoff_max=5.0))
        transports = {b.name: CountingTransport("127.0.0.1", int(b.target.split(":")[1]),
                                                baud=b.baud) for b in buses}
        readers = {name: MasterReader(t) for name, t in transports.items()}
        storage = SqliteStorage(workdir / "r.db")
        s = Scheduler(cfg, readers, storage)
        await s.start()
        await asyncio.sleep(args.warmup)

        def snapshot() -> tuple[float, float, int, dict[str, float], dict[str, float], int]:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            busy = {n: b.busy_seconds for n, b in s.buses.items()}
            wire = {n: t.wire_seconds(args.baud) for n, t in transports.items()}
            answers = sum(h.reads for h in s.health.values())
            return time.monotonic(), ru.ru_utime + ru.ru_stime, s.stored, busy, wire, answers

        t0, cpu0, stored0, busy0, wire0, reads0 = snapshot()
        await asyncio.sleep(args.seconds)
        t1, cpu1, stored1, busy1, wire1, reads1 = snapshot()
        await s.stop()
        storage.close()
    finally:
        emu.terminate()
        try:
            emu.wait(timeout=20)
        except subprocess.TimeoutExpired:
            emu.kill()

    wall = t1 - t0
    polls = reads1 - reads0
    util = {n: (busy1[n] - busy0[n]) / wall for n in busy1}
    wire_util = {n: (wire1[n] - wire0[n]) / wall for n in wire1}
    cores = (cpu1 - cpu0) / wall
    rate = (stored1 - stored0) / wall
    worst = min(util.values())
    print(f"head-end bench: {args.gateways} TCP gateways x {args.meters} meters, "
          f"{args.baud} baud, realtime emulator, {wall:.1f} s measured")
    print(f"  polls/s           {polls / wall:10.1f}")
    print(f"  readings/s stored {rate:10.1f}")
    print(f"  bus busy (transaction time / wall): min {worst:.1%}  mean "
          f"{sum(util.values()) / len(util):.1%}  max {max(util.values()):.1%}")
    print(f"  bus wire time / wall:               min {min(wire_util.values()):.1%}  mean "
          f"{sum(wire_util.values()) / len(wire_util):.1%}")
    print(f"  head-end CPU: {cores:.2f} cores (pid {os.getpid()})")
    ok = worst >= 0.90 and cores < 1.0
    print(f"  bar (every bus >= 90 % busy, < 1 core): {'PASS' if ok else 'FAIL'}"
          f"  (busy ratio to bar {worst / 0.90:.2f}, CPU ratio to bar {cores:.2f})")
    return 0 if ok else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateways", type=int, default=50)
    ap.add_argument("--meters", type=int, default=20)
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    sys.exit(asyncio.run(run(ap.parse_args())))


if __name__ == "__main__":
    main()
