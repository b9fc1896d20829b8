"""``mbus emulate``: serve emulated Kamstrup meters on TCP gateways or a serial line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import click

from ..errors import MBusError
from ..slave.emulator import Emulator, seeded_config
from ..slave.emulator_config import (
    MODULE_BAUDS,
    EmulatorConfig,
    EmulatorConfigError,
    load_config,
)
from .options import host_port


def build_config(*, tcp: str | None, serial: str | None, meters: int | None, seed: int,
                 gateways: int, baud: int | None, config: Path | None, realtime: bool,
                 state: Path | None, save_interval: float | None,
                 speed: float | None, collisions: str | None = None) -> EmulatorConfig:
    options: dict[str, Any] = {"realtime": realtime or None, "state_dir": state,
                               "save_interval": save_interval, "speed": speed,
                               "collisions": collisions}
    if config is not None:
        if meters is not None or serial is not None or tcp is not None or gateways != 1:
            raise EmulatorConfigError(
                "--config describes the gateways and meters; drop --tcp/--serial/--meters/"
                "--gateways")
        return load_config(config, **options)
    if tcp is None and serial is None:
        raise EmulatorConfigError("say where to serve: --tcp HOST:PORT, --serial DEVICE|pty "
                                  "or --config FILE")
    if tcp is not None and serial is not None:
        raise EmulatorConfigError("--tcp and --serial are exclusive (use --config for both)")
    host, port = host_port(tcp, "--tcp") if tcp is not None else ("127.0.0.1", None)
    if gateways > 1 and port == 0:
        raise EmulatorConfigError("--gateways needs a fixed first --tcp port")
    kwargs = {k: v for k, v in options.items() if v is not None}
    return seeded_config(meters=meters if meters is not None else 1, seed=seed, port=port,
                         gateways=gateways, serial=serial, baud=baud or 2400, host=host,
                         **kwargs)


async def _console(emulator: Emulator) -> None:
    """Read meter inputs (button, tariff input, pulses) from standard input, one per line.

    A daemon thread reads, so that a blocked read never holds up Ctrl-C.
    """
    import sys
    import threading

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, "")

    threading.Thread(target=read, name="console", daemon=True).start()
    while line := await lines.get():
        if not line.strip():
            continue
        try:
            click.echo(emulator.meter_input(line))
        except MBusError as exc:
            click.echo(f"error: {exc}", err=True)


async def _run(config: EmulatorConfig, *, ready_file: Path | None, console: bool = False) -> None:
    emulator = Emulator(config)
    await emulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for line in emulator.describe():
            click.echo(line)
        speed = f", clocks at {config.speed:g}x" if config.speed != 1 else ""
        click.echo(f"serving {len(emulator.meters)} meters on {len(emulator.served)} gateway(s)"
                   f"{' in real time' if config.realtime else ''}{speed}; Ctrl-C stops")
        if ready_file is not None:
            ready_file.write_text("\n".join(s.where for s in emulator.served) + "\n")
        reader = asyncio.create_task(_console(emulator)) if console else None
        await stop.wait()
        if reader is not None:
            reader.cancel()
    finally:
        await emulator.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    saved = f"; state saved to {emulator.state_path}" if emulator.state_path else ""
    click.echo(f"stopped{saved}")


@click.command()
@click.option("--tcp", metavar="HOST:PORT", help="Serve a TCP gateway (first port with "
              "--gateways).")
@click.option("--serial", metavar="DEVICE|pty", help="Serve on a serial port, or on a new "
              "pseudo-terminal whose path is printed.")
@click.option("--meters", type=click.IntRange(1, 250), help="Meters per gateway, primary "
              "addresses 1..N.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the meter and serial numbers and the load profiles.")
@click.option("--gateways", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Number of TCP gateways on consecutive ports, --meters each.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML file describing gateways and meters.")
@click.option("--baud", type=click.Choice([str(b) for b in MODULE_BAUDS]),
              help="Bus baud rate (default 2400).")
@click.option("--realtime", is_flag=True, help="Answer at wire speed (bytes at the baud rate "
              "and the slave's answer delay) instead of as fast as possible.")
@click.option("--state", type=click.Path(path_type=Path, file_okay=False),
              help="Directory that keeps the meters across restarts.")
@click.option("--save-interval", type=click.FloatRange(min=0.1), help="Seconds between state "
              "saves (default 60).")
@click.option("--speed", type=click.FloatRange(min=0.0, min_open=True),
              help="Meter clocks run this many times faster than wall time.")
@click.option("--collisions", type=click.Choice(["and", "skew"]),
              help="How answers of several meters reach the master: 'and' (they line up, wired "
              "AND; default) or 'skew' (one after another, as from slaves with different "
              "answer delays).")
@click.option("--console", is_flag=True, help="Read meter inputs from standard input: "
              "'button METER', 'tariff METER on|off', 'pulse METER COUNT'.")
@click.option("--ready-file", type=click.Path(path_type=Path, dir_okay=False), hidden=True,
              help="Write the served addresses here once listening (for scripts and tests).")
def emulate(*, tcp: str | None, serial: str | None, meters: int | None, seed: int, gateways: int,
             config_file: Path | None, baud: str | None, realtime: bool, state: Path | None,
             save_interval: float | None, speed: float | None, ready_file: Path | None,
             console: bool, collisions: str | None) -> None:
    """Emulate Kamstrup electricity meters with M-Bus modules behind M-Bus gateways.

    Example: mbus emulate --tcp 127.0.0.1:10001 --meters 5 --seed 1
    """
    try:
        config = build_config(tcp=tcp, serial=serial, meters=meters, seed=seed,
                              gateways=gateways, baud=int(baud) if baud else None,
                              config=config_file, realtime=realtime, state=state,
                              save_interval=save_interval, speed=speed,
                              collisions=collisions)
        asyncio.run(_run(config, ready_file=ready_file, console=console))
    except MBusError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
        pass
