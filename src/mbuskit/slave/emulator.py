"""A process full of emulated Kamstrup meters behind M-Bus gateways (``mbus emulate``).

What to serve comes from ``--meters N --seed S`` (N meters on primary addresses 1..N with
distinct meter numbers and serial numbers drawn from the seed, :func:`seeded_config`) or from a
TOML file (:mod:`mbuskit.slave.emulator_config`, which also holds the config types). The
meters' clocks follow wall time, scaled by ``speed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MBusError
from ..transport.server import Gateway, SerialServer, serve_serial, serve_tcp
from .emulator_config import (
    ADDRESS_MAX,
    MAX_METERS_PER_GATEWAY,
    EmulatorConfig,
    EmulatorConfigError,
    GatewaySpec,
    MeterSpec,
    check_module_baud,
    meter_config,
)

log = logging.getLogger("mbuskit.emulator")

_NUMBER_LOW = 10_000_000  # meter/serial numbers drawn with 8 significant digits


# -- seeded populations --------------------------------------------------------------------------
# Here rather than in emulator_config: they draw from ``random``, which of the slave layer only
# this adapter may import (docs/architecture.md 2, tests/test_core_purity.py).

def seeded_meters(count: int, seed: int, *, first_address: int = 1,
                  avoid: set[int] | None = None) -> list[MeterSpec]:
    """``count`` meters on addresses ``first_address``.. with distinct numbers from ``seed``.

    The same seed always gives the same meters, so a master's expectations can be computed.
    """
    if count < 1:
        raise EmulatorConfigError(f"need at least one meter, got {count}")
    if first_address < 1 or first_address + count - 1 > ADDRESS_MAX:
        raise EmulatorConfigError(
            f"{count} meters from address {first_address} do not fit in 1..{ADDRESS_MAX}")
    rng = random.Random(seed)
    taken = set(avoid or ())
    meters = []
    for i in range(count):
        numbers = []
        for _ in range(2):
            while True:
                n = rng.randrange(_NUMBER_LOW, 100_000_000)
                if n not in taken:
                    taken.add(n)
                    numbers.append(n)
                    break
        meters.append(MeterSpec(address=first_address + i, meter_number=numbers[0],
                                serial_number=numbers[1], seed=rng.getrandbits(32)))
    return meters


def seeded_config(*, meters: int, seed: int, port: int | None = None, gateways: int = 1,
                  serial: str | None = None, baud: int = 2400, **options: Any) -> EmulatorConfig:
    """``gateways`` TCP buses on ports ``port``, ``port`` + 1, ... each with ``meters`` meters
    (or one bus on ``serial``), all numbers distinct across the process."""
    check_module_baud(baud)
    if meters > MAX_METERS_PER_GATEWAY:
        raise EmulatorConfigError(
            f"{meters} meters per bus: primary addresses allow at most {MAX_METERS_PER_GATEWAY}")
    if gateways < 1:
        raise EmulatorConfigError(f"need at least one gateway, got {gateways}")
    if serial is not None and gateways != 1:
        raise EmulatorConfigError("a serial line carries one bus; --gateways needs --tcp")
    if serial is None and port is None:
        raise EmulatorConfigError("say where to serve: a TCP port or a serial device")
    if port is not None and (port < 0 or port + gateways - 1 > 65535
                             or (port == 0 and gateways > 1)):
        raise EmulatorConfigError(f"TCP ports {port}..{port + gateways - 1} are not all valid")
    specs = []
    taken: set[int] = set()
    rng = random.Random(seed)
    for g in range(gateways):
        bus = seeded_meters(meters, rng.getrandbits(64), avoid=taken)
        taken.update(m.meter_number for m in bus)
        taken.update(m.serial_number for m in bus)
        specs.append(GatewaySpec(meters=tuple(bus), baud=baud,
                                 port=None if port is None else port + g, serial=serial))
    return EmulatorConfig(gateways=tuple(specs), **options)


# -- running -------------------------------------------------------------------------------------

class Clock:
    """Wall time scaled by ``speed`` from ``start``: the time the meters live in."""

    def __init__(self, speed: float = 1.0, start: float | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        if not speed > 0:
            raise EmulatorConfigError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._wall = wall
        self._wall0 = wall()
        self._start = self._wall0 if start is None else start

    def __call__(self) -> float:
        return self._start + (self._wall() - self._wall0) * self.speed


SlaveFactory = Callable[[MeterSpec, float, int, "Mapping[str, Any] | None"], Any]


def kamstrup_slave(spec: MeterSpec, now: float, baud: int,
                   saved: Mapping[str, Any] | None) -> Any:
    """The default factory: a Kamstrup module on the meter model, behind an M-Bus slave.

    ``saved`` is what :func:`slave_state` wrote before a restart: the meter's registers, the
    module's settings (a meter number changed by command survives) and the link settings
    (primary address, baud rate). The key is never stored; it comes from the config again.
    """
    from .kamstrup import KamstrupModule
    from .machine import Slave
    from .meter import Meter

    if saved is None:
        meter = Meter(meter_config(spec), now)
        module = KamstrupModule(meter, key=spec.key)
        return Slave(module, primary_address=spec.address, baud=baud)
    try:
        meter = Meter.from_state(dict(saved["meter"]))
        link = dict(saved["slave"])
        device = link.get("device")
        if isinstance(device, Mapping):
            module = KamstrupModule.from_state(meter, device, key=spec.key)
        else:
            module = KamstrupModule(meter, key=spec.key)
        slave = Slave(module, primary_address=spec.address, baud=baud)
        slave.load_state(link)
    except (KeyError, TypeError) as exc:
        raise EmulatorConfigError(
            f"saved state of meter {spec.serial_number:08d} is incomplete: {exc!r}") from exc
    return slave


def slave_state(slave: Any) -> dict[str, Any]:
    """What ``kamstrup_slave`` needs to bring a meter back after a restart."""
    state: dict[str, Any] = {}
    to_state = getattr(slave, "to_state", None)
    if callable(to_state):
        state["slave"] = to_state()
    meter = getattr(getattr(slave, "device", None), "meter", None)
    meter_state = getattr(meter, "to_state", None)
    if callable(meter_state):
        state["meter"] = meter_state()
    return state


STATE_FILE = "meters.json"
STATE_FORMAT = 1


@dataclass
class Served:
    """One gateway being served, and where a master finds it."""

    spec: GatewaySpec
    gateway: Gateway
    server: asyncio.Server | SerialServer
    where: str  # "127.0.0.1:10001" or "/dev/pts/3"


class Emulator:
    """Builds the meters, serves their buses, keeps their state; ``start`` then ``stop``."""

    def __init__(self, config: EmulatorConfig, *, factory: SlaveFactory = kamstrup_slave,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.factory = factory
        self._wall = wall
        self.clock = Clock(config.speed, config.start, wall)
        self.served: list[Served] = []
        self.meters: list[tuple[MeterSpec, Any]] = []
        self._saver: asyncio.Task[None] | None = None
        self.saves = 0

    @property
    def state_path(self) -> Path | None:
        d = self.config.state_dir
        return None if d is None else d / STATE_FILE

    def _load_state(self) -> tuple[float | None, dict[int, Mapping[str, Any]]]:
        path = self.state_path
        if path is None:
            return None, {}
        from .persist import StateFileMissing, load_state

        try:
            data = load_state(path)
        except StateFileMissing:
            return None, {}
        if data.get("format") != STATE_FORMAT or not isinstance(data.get("meters"), dict):
            raise EmulatorConfigError(f"{path}: not an emulator state file of format "
                                      f"{STATE_FORMAT}")
        meters: dict[int, Mapping[str, Any]] = {}
        for key, value in data["meters"].items():
            try:
                meters[int(key)] = value
            except ValueError as exc:
                raise EmulatorConfigError(f"{path}: bad meter key {key!r}") from exc
        clock = data.get("clock")
        return (float(clock) if isinstance(clock, int | float) else None), meters

    async def start(self) -> None:
        saved_clock, saved = self._load_state()
        start = self.config.start
        if start is None and saved_clock is not None:
            # an accelerated clock may have run ahead of wall time: never go back in time
            start = max(self._wall(), saved_clock)
        self.clock = Clock(self.config.speed, start, self._wall)
        now = self.clock()
        try:
            for spec in self.config.gateways:
                slaves = []
                for meter in spec.meters:
                    slave = self.factory(meter, now, spec.baud, saved.get(meter.serial_number))
                    slaves.append(slave)
                    self.meters.append((meter, slave))
                gateway = Gateway(slaves, baud=spec.baud, realtime=self.config.realtime,
                                  clock=self.clock, collisions=self.config.collisions)
                if spec.port is not None:
                    tcp = await serve_tcp(gateway, self.config.host, spec.port)
                    port = tcp.sockets[0].getsockname()[1]
                    self.served.append(Served(spec, gateway, tcp, f"{self.config.host}:{port}"))
                else:
                    assert spec.serial is not None
                    line = await serve_serial(gateway, spec.serial)
                    self.served.append(Served(spec, gateway, line, line.path))
        except BaseException:
            await self._close_servers()
            raise
        if self.state_path is not None:
            self._saver = asyncio.create_task(self._save_loop())

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.save_interval)
            try:
                await self.save()
            except MBusError as exc:  # a full disk must not stop the meters
                log.error("state not saved: %s", exc)

    def snapshot(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "clock": self.clock(),
            "meters": {str(spec.serial_number): slave_state(slave)
                       for spec, slave in self.meters},
        }

    async def save(self) -> None:
        """Write every meter's state (taken now, written off the event loop)."""
        path = self.state_path
        if path is None:
            return
        from .persist import save_state

        data = self.snapshot()
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(save_state, path, data)
        self.saves += 1

    async def _close_servers(self) -> None:
        for served in self.served:
            if isinstance(served.server, SerialServer):
                await served.server.stop()
            else:
                served.server.close()
                await served.gateway.close_connections()
                await served.server.wait_closed()

    async def stop(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        await self._close_servers()
        if self.meters:
            await self.save()

    def find_meter(self, which: int) -> Any:
        """The meter model with this serial number, meter number or (single gateway) address."""
        for spec, slave in self.meters:
            if which in (spec.serial_number, spec.meter_number):
                return slave.device.meter
        hits = [slave for spec, slave in self.meters if spec.address == which]
        if len(hits) == 1:
            return hits[0].device.meter
        if hits:
            raise EmulatorConfigError(f"address {which} is on several gateways: name the meter "
                                      "by its serial number")
        raise EmulatorConfigError(f"no meter with serial number, meter number or address {which}")

    def meter_input(self, line: str) -> str:
        """Drive a meter's physical inputs from one console line.

        ``button METER``, ``tariff METER on|off`` (230 V on terminal 13), ``pulse METER N``;
        METER is a serial number, a meter number or a primary address. Returns what happened.
        """
        words = line.split()
        usage = "commands: button METER | tariff METER on|off | pulse METER COUNT"
        if not words:
            return usage
        try:
            which = int(words[1]) if len(words) > 1 else None
        except ValueError:
            raise EmulatorConfigError(f"{words[1]!r} is not a meter number; {usage}") from None
        action, rest = words[0].lower(), words[2:]
        if which is None or action not in ("button", "tariff", "pulse"):
            raise EmulatorConfigError(usage)
        meter = self.find_meter(which)
        now = self.clock()
        if action == "button" and not rest:
            return f"breaker {meter.press_button(now).name.lower()}"
        if action == "tariff" and rest in (["on"], ["off"]):
            return f"tariff T{meter.set_tariff_input(rest[0] == 'on', now)}"
        if action == "pulse" and len(rest) == 1 and rest[0].isdigit():
            counted = meter.pulse(int(rest[0]), now)
            return f"{counted} pulses counted, counter {meter.pulse_count}"
        raise EmulatorConfigError(usage)

    def describe(self) -> list[str]:
        """What is served, one line per gateway and per meter (printed by ``mbus emulate``)."""
        lines = []
        for served in self.served:
            spec = served.spec
            lines.append(f"gateway {served.where} ({'tcp' if spec.port is not None else 'serial'}"
                         f", {spec.baud} baud, {len(spec.meters)} meters)")
            for meter in spec.meters:
                lines.append(f"  address {meter.address:3d}  meter number "
                             f"{meter.meter_number:08d}  serial {meter.serial_number:08d}  "
                             f"{meter.variant}{'  encrypted' if meter.key else ''}")
        return lines


__all__ = [
    "STATE_FILE",
    "Clock",
    "Emulator",
    "Served",
    "SlaveFactory",
    "kamstrup_slave",
    "seeded_config",
    "seeded_meters",
    "slave_state",
]
