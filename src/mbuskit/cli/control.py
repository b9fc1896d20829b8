"""The ``mbus`` commands that configure and control a meter: set-address, set-id, set-time,
breaker, tariff, ct-ratio, baud, raw.

A write is SND_UD CI 51h (``_write``), encrypted when the key file has the meter's key
(``_secure_command``); a meter that stays silent is asked why (``_refusal``), so that a refused
command exits 9 and not 4. The session, options and exit status are in ``session``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ..errors import BusTimeout, FrameError, LocalError, MBusError, ProtocolError
from ..master.driver import Master
from ..master.transaction import Outcome
from .session import (
    ADDRESS,
    BAUD,
    EXIT_COLLISION,
    EXIT_TIMEOUT,
    FABRICATION,
    RefusedError,
    Session,
    _baud,
    _fail,
    _secondary,
    _session,
    common,
)


def _write(ctx: click.Context, session: Session, address: int | str, fabrication: str | None,
           payloads: Sequence[tuple[bytes, str]]) -> None:
    """Send each payload as SND_UD CI 51h (encrypted when the key file has the meter's key)."""
    async def body(master: Master) -> None:
        keys = master.keys
        for payload, what in payloads:
            try:
                if keys is not None:
                    await _secure_command(master, address, fabrication, payload, what)
                else:
                    await master.command(address, payload, fabrication=fabrication, what=what)
            except BusTimeout:
                await _refusal(master, address, what)
                raise

    session.run(body, deselect=_secondary(address))
    click.echo("ok")


async def _refusal(master: Master, address: int | str, what: str) -> None:
    # A slave that refuses a SND_UD stays silent and holds a CI 70h error for the next
    # REQ_UD2 (EN 13757-3 6.6); fetch it to tell "refused" from "not there".
    target = 253 if _secondary(address) else address
    assert isinstance(target, int)
    try:
        frames = await master.read_frames(target, all_telegrams=False)
    except MBusError:
        return
    if frames and frames[0].ci == 0x70:
        code = frames[0].data[0] if frames[0].data else 0
        raise RefusedError(f"meter at {address}: refused {what} (application error "
                           f"{code:02X}); check the value and whether the meter allows it")


async def _secure_command(master: Master, address: int | str, fabrication: str | None,
                          payload: bytes, what: str) -> None:
    from ..codec.header import SecondaryAddress
    from ..master.transaction import address_of
    from ..slave.kamstrup import encrypt_command
    from ..slave.machine import Identity

    frames = await master.read_frames(address, fabrication=fabrication, all_telegrams=False)
    meter = address_of(frames[0]) if frames else None
    if meter is None:
        raise ProtocolError(f"meter {address}: no long header, cannot address an encrypted "
                            "command")
    key = master.keys.lookup(meter)
    if key is None:
        await master.command(253 if _secondary(address) else address, payload, what=what)
        return
    sa = SecondaryAddress.parse(meter)
    identity = Identity(sa.id, sa.manufacturer, sa.version, sa.medium)
    access = frames[0].data[8] if len(frames[0].data) > 8 else 0
    ci, data = encrypt_command(payload, key=key, identity=identity,
                               access_number=(access + 1) & 0xFF)
    await master.command(253 if _secondary(address) else address, data, ci=ci, what=what)


def _kamstrup() -> Any:
    from ..slave import kamstrup

    return kamstrup


def _encode(func: Callable[[], bytes]) -> bytes:
    try:
        return func()
    except LocalError as exc:  # EncodeError: a value out of range
        raise click.BadParameter(str(exc)) from None


@click.command("set-address")
@common
@BAUD
@ADDRESS
@click.argument("new_address", type=int)
@FABRICATION
@click.pass_context
def set_address(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
                key_file: Path | None, trace: bool, address: int | str, new_address: int,
                fabrication: str | None) -> None:
    """Give a meter a new primary address (1-250; 0 = factory default)."""
    from ..master.transaction import set_address_payload

    session = _session(ctx, port, baud, timeout, retries, key_file, trace)
    _encode(lambda: set_address_payload(new_address))  # refuse a bad address before the port

    async def body(master: Master) -> None:
        if _secondary(address):
            await master.select(address, fabrication=fabrication)
            await master.set_primary_address(253, new_address)
        else:
            assert isinstance(address, int)
            await master.set_primary_address(address, new_address)

    session.run(body, deselect=_secondary(address))
    click.echo("ok")


@click.command("set-id")
@common
@BAUD
@ADDRESS
@click.argument("meter_number")
@FABRICATION
@click.pass_context
def set_id(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
           key_file: Path | None, trace: bool, address: int | str, meter_number: str,
           fabrication: str | None) -> None:
    """Change a meter's meter number (its secondary address ID, 8 digits)."""
    from ..master.transaction import set_id_payload

    payload = _encode(lambda: set_id_payload(meter_number))
    _write(ctx, _session(ctx, port, baud, timeout, retries, key_file, trace), address,
           fabrication, [(payload, f"setting meter number {meter_number}")])


@click.command("set-time")
@common
@BAUD
@ADDRESS
@click.option("--at", "at", default=None, help="ISO date and time (default: now, local time).")
@click.option("--offset", type=int, default=None,
              help="Instead: move the meter's clock by this many seconds (+/-).")
@FABRICATION
@click.pass_context
def set_time(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
             key_file: Path | None, trace: bool, address: int | str, at: str | None,
             offset: int | None, fabrication: str | None) -> None:
    """Set a meter's clock, or add/subtract an offset."""
    from ..master.transaction import set_time_payload

    if at is not None and offset is not None:
        raise click.UsageError("give --at or --offset, not both")
    if offset is not None:
        payload = _encode(lambda: _kamstrup().cmd_adjust_clock(offset))
        what = f"moving the clock by {offset} s"
    else:
        try:
            when = datetime.fromisoformat(at) if at else datetime.now().replace(microsecond=0)
        except ValueError:
            raise click.BadParameter(f"{at!r} is not an ISO date/time",
                                     param_hint="--at") from None
        payload = _encode(lambda: set_time_payload(when))
        what = f"setting the clock to {when.isoformat()}"
    _write(ctx, _session(ctx, port, baud, timeout, retries, key_file, trace), address,
           fabrication, [(payload, what)])


@click.command()
@common
@BAUD
@ADDRESS
@click.argument("action", type=click.Choice(["disconnect", "connect", "release", "arm"]))
@FABRICATION
@click.pass_context
def breaker(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
            key_file: Path | None, trace: bool, address: int | str, action: str,
            fabrication: str | None) -> None:
    """Breaker: disconnect; connect (arm, then connect); release for the push button."""
    k = _kamstrup()
    cmd = k.BreakerCommand
    steps = {"disconnect": [cmd.DISCONNECT], "connect": [cmd.ARM, cmd.CONNECT],
             "release": [cmd.RELEASE], "arm": [cmd.ARM]}[action]
    payloads = [(k.cmd_breaker(step), f"breaker {step.name.lower()}") for step in steps]
    _write(ctx, _session(ctx, port, baud, timeout, retries, key_file, trace), address,
           fabrication, payloads)


@click.command()
@common
@BAUD
@ADDRESS
@click.argument("tariff", type=click.Choice(["1", "2", "3", "4", "auto", "debiting-stop"]))
@FABRICATION
@click.pass_context
def tariff(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
           key_file: Path | None, trace: bool, address: int | str, tariff: str,
           fabrication: str | None) -> None:
    """Force tariff 1-4, hand it back to the tariff input (auto), or stop debiting."""
    k = _kamstrup()
    if tariff == "debiting-stop":
        payload, what = k.cmd_debiting_stop(), "debiting stop"
    else:
        value = None if tariff == "auto" else int(tariff)
        payload, what = _encode(lambda: k.cmd_tariff(value)), f"tariff {tariff}"
    _write(ctx, _session(ctx, port, baud, timeout, retries, key_file, trace), address,
           fabrication, [(payload, what)])


@click.command("ct-ratio")
@common
@BAUD
@ADDRESS
@click.argument("ratio", type=int, required=False)
@click.option("--lock", is_flag=True, help="Lock the ratio against further changes.")
@FABRICATION
@click.pass_context
def ct_ratio(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
             key_file: Path | None, trace: bool, address: int | str, ratio: int | None,
             lock: bool, fabrication: str | None) -> None:
    """Set the current-transformer ratio of a CT meter (1-9999) and/or lock it."""
    k = _kamstrup()
    if ratio is None and not lock:
        raise click.UsageError("give a RATIO, --lock, or both")
    payloads = []
    if ratio is not None:
        payloads.append((_encode(lambda: k.cmd_set_ct_ratio(ratio)), f"CT ratio {ratio}"))
    if lock:
        payloads.append((k.cmd_lock_ct_ratio(), "locking the CT ratio"))
    _write(ctx, _session(ctx, port, baud, timeout, retries, key_file, trace), address,
           fabrication, payloads)


@click.command()
@common
@BAUD
@ADDRESS
@click.argument("new_baud", callback=lambda c, p, v: _baud(v))
@click.pass_context
def baud(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
         key_file: Path | None, trace: bool, address: int | str, new_baud: int) -> None:
    """Switch a meter's baud rate (it acknowledges at the old rate), then check it at the new."""
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)

    async def body(master: Master) -> None:
        target = address
        if _secondary(address):
            await master.select(address)
            target = 253
        assert isinstance(target, int)
        await master.switch_baud(target, new_baud)
        # a frame at the new rate confirms the switch (meters fall back otherwise)
        if target != 253 and not await master.ping(target):
            hint = (" (a TCP gateway's bus side keeps its own rate: set it on the gateway)"
                    if session.port.startswith("tcp://") else "")
            raise BusTimeout(f"primary address {target}: no answer at {new_baud} baud after "
                             f"the switch{hint}")

    session.run(body, deselect=_secondary(address))
    click.echo(f"ok: now at {new_baud} baud")


@click.command()
@common
@BAUD
@click.argument("frame")
@click.pass_context
def raw(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
        key_file: Path | None, trace: bool, frame: str) -> None:
    """Send a frame given in hex and print the answer in hex (exit 4 when nobody answers)."""
    from .decode import parse_frame_text

    try:
        data = parse_frame_text(frame.encode())
    except FrameError as exc:
        raise click.BadParameter(str(exc), param_hint="FRAME") from None
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)

    async def body(master: Master) -> Any:
        return await master.raw(data)

    answer = session.run(body)
    if answer.outcome is Outcome.SILENT:
        _fail("raw", "no answer within the answer window", EXIT_TIMEOUT)
    click.echo(answer.raw.hex(" "))
    if answer.outcome is Outcome.GARBLED:
        _fail("raw", "the answer is garbled (collision or noise)", EXIT_COLLISION)


__all__ = [
    "baud",
    "breaker",
    "ct_ratio",
    "raw",
    "set_address",
    "set_id",
    "set_time",
    "tariff",
]
