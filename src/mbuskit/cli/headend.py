"""``mbus demo`` and ``mbus serve``: the meter-reading head-end from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import click

from ..errors import MBusError
from ..headend.config import (
    BusConfig,
    Config,
    ConfigError,
    HttpConfig,
    MeterConfig,
    MqttConfig,
    PollConfig,
    StorageConfig,
    load_config,
    parse_duration,
)
from ..headend.runtime import Headend
from .options import host_port


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


async def _run_until_signal(headend: Headend, duration: float | None,
                            on_ready: list[str], emulator: object | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await headend.start()
        for line in on_ready:
            click.echo(line.replace("{url}", headend.url or "(no HTTP)"))
        sys.stdout.flush()
        if duration is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration):
                    await stop.wait()
    finally:
        await headend.stop()
        if emulator is not None:
            # let the gateways see our connections close before their servers go away
            await asyncio.sleep(0.2)
            await emulator.stop()  # type: ignore[attr-defined]


def _logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command()
@click.option("--http", "http_bind", default="127.0.0.1:8080", show_default=True,
              help="Where the web page and API listen (HOST:PORT; port 0 picks a free one).")
@click.option("--buses", default=2, show_default=True, type=click.IntRange(1, 50),
              help="Emulated TCP gateways.")
@click.option("--meters", default=3, show_default=True, type=click.IntRange(1, 250),
              help="Kamstrup meters per bus.")
@click.option("--speed", default=60.0, show_default=True, type=click.FloatRange(min=0.001),
              help="The meters' clocks run this many times faster than wall time.")
@click.option("--interval", default="5s", show_default=True, help="Poll interval per meter.")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file (default: a new file in a temporary directory).")
@click.option("--mqtt", "mqtt_broker", default=None, help="Also publish to this broker HOST:PORT.")
@click.option("--seed", default=1, show_default=True, help="Seed of the emulated meters.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("-v", "--verbose", count=True)
def demo(http_bind: str, buses: int, meters: int, speed: float, interval: str,  # noqa: PLR0917
         db: Path | None, mqtt_broker: str | None, seed: int, duration: float | None,
         verbose: int) -> None:
    """Run an emulated bus of Kamstrup meters, the head-end polling it, and the web page."""
    _logging(verbose)
    from ..slave.emulator import Emulator, seeded_config

    every = parse_duration(interval)
    if every is None or every <= 0:
        raise click.BadParameter(f"{interval!r} is not a duration", param_hint="--interval")
    host, port = host_port(http_bind, "--http")
    workdir = Path(tempfile.mkdtemp(prefix="mbus-demo-"))
    db_path = db or workdir / "readings.db"
    ports = _free_ports(buses)
    emu_cfg = seeded_config(meters=meters, seed=seed, port=1, gateways=buses, speed=speed)
    emu_cfg = replace(emu_cfg, gateways=tuple(replace(g, port=p)
                                              for g, p in zip(emu_cfg.gateways, ports,
                                                              strict=True)))
    bus_cfgs = tuple(BusConfig(name=f"bus{i + 1}", kind="tcp", target=f"127.0.0.1:{p}",
                               baud=g.baud) for i, (g, p) in enumerate(zip(emu_cfg.gateways, ports,
                                                                           strict=True)))
    meter_cfgs = tuple(
        MeterConfig(name=f"kam-{m.meter_number:08d}", bus=bus_cfgs[i].name, primary=m.address,
                    interval=every, breaker=True)
        for i, g in enumerate(emu_cfg.gateways) for m in g.meters)
    token = secrets.token_urlsafe(12)
    mqtt = None
    if mqtt_broker:
        mhost, _, mport = mqtt_broker.removeprefix("mqtt://").rpartition(":")
        mqtt = MqttConfig(host=mhost or mqtt_broker, port=int(mport) if mport.isdigit() else 1883)
    config = Config(name="demo", buses=bus_cfgs, meters=meter_cfgs,
                    storage=StorageConfig(url=f"sqlite:///{db_path}"), mqtt=mqtt,
                    http=HttpConfig(host=host, port=port, token=token),
                    poll=PollConfig(interval=every, timeout=1.0, backoff_max=60.0))

    async def main() -> None:
        emulator = Emulator(emu_cfg)
        await emulator.start()
        headend = Headend(config)
        lines = [f"emulated: {buses} TCP gateways x {meters} Kamstrup meters, clock x{speed:g}",
                 f"readings: {db_path}",
                 f"API token for commands: {token}",
                 "open {url}  (GET {url}api/meters)"]
        await _run_until_signal(headend, duration, lines, emulator)

    try:
        asyncio.run(main())
    except (MBusError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="headend.toml")
@click.option("--check", is_flag=True, help="Only validate the configuration.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("-v", "--verbose", count=True)
def serve(config_path: Path, check: bool, duration: float | None, verbose: int) -> None:
    """Poll the buses of a head-end configuration into storage; serve API, page and MQTT."""
    _logging(verbose)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(f"mbus serve: {exc}", err=True)
        sys.exit(2)
    if check:
        click.echo(f"{config_path}: {len(config.buses)} buses, {len(config.meters)} meters, OK")
        return

    async def main() -> None:
        headend = Headend(config)
        lines = [f"head-end {config.name}: {len(config.buses)} buses, "
                 f"{len(config.meters)} meters, storage {config.storage.url.split('@')[-1]}",
                 "serving {url}"]
        await _run_until_signal(headend, duration, lines)

    try:
        asyncio.run(main())
    except (MBusError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


__all__ = ["demo", "serve"]
