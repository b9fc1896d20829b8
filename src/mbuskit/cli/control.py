"""The ``mbus`` commands that configure and control a meter: set-address, set-id, set-time,
breaker, tariff, ct-ratio, baud, raw.

A write is SND_UD CI 51h (``_write``), encrypted when the key file has the meter's key
(``_secure_command``); a meter that stays silent is asked why (``_refusal``), so that a refused
command exits 9 and not 4. The session, options and exit status are in ``session``.

Every command names exactly one meter (``session.parse_target``: no wildcard, prefix or special
address); ``--all`` is the deliberate form for every meter of a bus: a secondary scan, a
confirmation, then each meter found addressed on its own, never a broadcast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..errors import BusTimeout, FrameError, LocalError, MBusError, ProtocolError
from ..master.driver import Master
from ..master.transaction import Outcome
from .session import (
    BAUD,
    EXIT_COLLISION,
    EXIT_TIMEOUT,
    FABRICATION,
    InUseError,
    RefusedError,
    Session,
    _baud,
    _fail,
    _secondary,
    _session,
    common,
    exact_fabrication,
    exit_code,
    target_argument,
)

Target = tuple[int | str, str | None]  # a complete address and, for enhanced selection, a serial

ALL = click.option("--all", "every", is_flag=True,
                   help="Every meter a secondary scan finds, each addressed on its own (never a "
                        "broadcast); asks first unless --yes. Not with ADDRESS.")
YES = click.option("--yes", "-y", is_flag=True, help="With --all: do not ask for confirmation.")


class _OneOrAll(click.Command):
    """A command that takes ADDRESS or ``--all``: with ``--all`` the ADDRESS argument is left out
    of the parse, so that the arguments after it (an action, a ratio) do not shift into it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options = args[:args.index("--")] if "--" in args else args
        ctx.meta["mbus.all"] = "--all" in options
        return super().parse_args(ctx, args)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        if ctx.meta.get("mbus.all"):
            return [p for p in params if p.name != "address"]
        return params


def _targets(session: Session, address: int | str | None, fabrication: str | None, *,
             every: bool = False, yes: bool = False, what: str = "") -> list[Target]:
    if every and address is not None:
        raise click.UsageError("give ADDRESS or --all, not both")
    if not every:
        if address is None:
            raise click.UsageError("missing ADDRESS (or --all for every meter on the bus)")
        return [(address, exact_fabrication(fabrication, address))]
    if fabrication is not None:
        raise click.UsageError("--serial names one meter; it does not go with --all")
    return _every_meter(session, what, yes)


def _every_meter(session: Session, what: str, yes: bool) -> list[Target]:
    from ..master.scan import Unresolved

    unresolved: list[Unresolved] = []

    def note(event: object) -> None:
        if isinstance(event, Unresolved):
            unresolved.append(event)

    async def body(master: Master) -> list[Any]:
        return await master.scan_secondary(on_event=note)

    found = [f for f in session.run(body, deselect=True) if f.address]
    name = session.command
    targets: list[Target] = []
    for f in found:
        shared = sum(g.address == f.address for g in found) > 1
        if shared and f.fabrication is None:
            # only the enhanced selection (EN 13757-3, 0C 78 record) tells these apart
            click.echo(f"mbus {name}: skipping {f.address}: another meter shares this address "
                       "and this one shows no fabrication number", err=True)
            continue
        targets.append((f.address, f.fabrication if shared else None))
    for u in unresolved:
        click.echo(f"mbus {name}: skipping {u.mask}: {u.reason}", err=True)
    if not targets:
        _fail(name, "no meter found on the bus; nothing sent", EXIT_TIMEOUT)
    click.echo(f"{len(targets)} meter(s) found:", err=True)
    for target in targets:
        click.echo(f"  {_name(target)}", err=True)
    if not yes:
        click.confirm(f"{what}: send to each of these {len(targets)} meter(s)?", abort=True,
                      err=True)
    return targets


def _name(target: Target) -> str:
    address, fabrication = target
    return f"{address}" + (f" serial {fabrication}" if fabrication else "")


async def _send(master: Master, target: Target, payloads: Sequence[tuple[bytes, str]]) -> None:
    """Send each payload as SND_UD CI 51h (encrypted when the key file has the meter's key)."""
    address, fabrication = target
    for payload, what in payloads:
        try:
            if master.keys is not None:
                await _secure_command(master, address, fabrication, payload, what)
            else:
                await master.command(address, payload, fabrication=fabrication, what=what)
        except BusTimeout:
            await _refusal(master, address, what)
            raise


Step = Callable[[Master, Target], Awaitable[str]]  # what a command does to one meter -> "ok..."


def _sender(payloads: Sequence[tuple[bytes, str]], done: str = "ok") -> Step:
    async def step(master: Master, target: Target) -> str:
        await _send(master, target, payloads)
        return done

    return step


def _write(session: Session, targets: Sequence[Target], step: Step, *, every: bool = False,
           deselect: bool = False) -> None:
    if not every:
        (target,) = targets

        async def one(master: Master) -> str:
            return await step(master, target)

        click.echo(session.run(one, deselect=deselect or _secondary(target[0])))
        return
    failed: list[MBusError] = []

    async def each(master: Master) -> None:
        # a failure stays with its meter (the selection of the next one deselects it); each
        # line is printed at once, so that an interrupted run shows which meters are done
        for target in targets:
            try:
                result = await step(master, target)
            except MBusError as exc:
                failed.append(exc)
                result = str(exc)
            click.echo(f"{_name(target)}: {result}")

    session.run(each, deselect=True)
    if failed:
        _fail(session.command, f"{len(failed)} of {len(targets)} meter(s) failed",
              exit_code(failed[0]))


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
@target_argument()
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
    fabrication = exact_fabrication(fabrication, address)

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
@target_argument()
@click.argument("meter_number")
@FABRICATION
@click.option("--force", is_flag=True,
              help="Write even when a meter already answers the new meter number.")
@click.pass_context
def set_id(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
           key_file: Path | None, trace: bool, address: int | str, meter_number: str,
           fabrication: str | None, force: bool) -> None:
    """Change a meter's meter number (its secondary address ID, 8 digits)."""
    from ..master.transaction import set_id_payload

    payload = _encode(lambda: set_id_payload(meter_number))
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)
    target = _targets(session, address, fabrication)[0]
    number = meter_number.strip()
    # renaming a meter to its own number changes nothing and would find itself
    own = isinstance(address, str) and address[:8] == number

    async def free(master: Master) -> None:
        from ..codec.link import ADDRESS_NETWORK
        from ..master.transaction import Expect, Request, exchange, select_frame

        # Two meters that share a meter number answer one selection together (EN 13757-3
        # network layer): only enhanced selection by fabrication number tells them apart then.
        probe = Request(select_frame(number), Expect.ACK, ADDRESS_NETWORK)
        answer = await master.run(exchange(probe, master.retries))
        if answer.outcome is not Outcome.SILENT:
            raise InUseError(f"meter number {number} is already in use on this bus (a meter "
                             "answers its selection); choose a free one, or --force")

    send = _sender([(payload, f"setting meter number {number}")])

    async def step(master: Master, target: Target) -> str:
        if not (force or own):
            await free(master)
        return await send(master, target)

    _write(session, [target], step, deselect=not (force or own))


def _utc(at: str | None) -> datetime:
    """The time to write, as naive UTC: the meter clock is UTC (docs/register-map.md) and a
    type F time carries no zone and no seconds (EN 13757-3 annex A), so an offset is applied
    here, a naive ``--at`` is local time, and the seconds are dropped."""
    if at is None:
        when = datetime.now(UTC)
    else:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(f"{at!r} is not an ISO date/time",
                                     param_hint="--at") from None
        if when.tzinfo is None:
            when = when.astimezone()  # local time, with the local zone's offset at that date
    return when.astimezone(UTC).replace(tzinfo=None, second=0, microsecond=0)


@click.command("set-time", cls=_OneOrAll)
@common
@BAUD
@target_argument()
@click.option("--at", "at", default=None,
              help="ISO date and time; with an offset (+02:00, Z) or else local time; written "
                   "as UTC (default: now).")
@click.option("--offset", type=int, default=None,
              help="Instead: move the meter's clock by this many seconds (+/-).")
@FABRICATION
@ALL
@YES
@click.pass_context
def set_time(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
             key_file: Path | None, trace: bool, at: str | None, offset: int | None,
             fabrication: str | None, every: bool, yes: bool,
             address: int | str | None = None) -> None:
    """Set a meter's clock (UTC), or add/subtract an offset."""
    from ..master.transaction import set_time_payload

    if at is not None and offset is not None:
        raise click.UsageError("give --at or --offset, not both")
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)
    if offset is not None:
        payload = _encode(lambda: _kamstrup().cmd_adjust_clock(offset))
        what = f"moving the clock by {offset} s"
        targets = _targets(session, address, fabrication, every=every, yes=yes, what=what)
        _write(session, targets, _sender([(payload, what)]), every=every)
        return
    # a bad or unencodable --at is a usage error before the port is opened
    _encode(lambda: set_time_payload(_utc(at)))
    what = f"setting the clock to {at}" if at else "setting the clock to the current UTC time"
    targets = _targets(session, address, fabrication, every=every, yes=yes, what=what)

    async def step(master: Master, target: Target) -> str:
        # "now" is taken per meter, when it is written: a scan or a confirmation may have
        # taken minutes
        when = _utc(at)
        stamp = when.isoformat() + "Z"
        await _send(master, target, [(_encode(lambda: set_time_payload(when)),
                                      f"setting the clock to {stamp}")])
        return f"ok: clock set to {stamp}"

    _write(session, targets, step, every=every)


@click.command(cls=_OneOrAll)
@common
@BAUD
@target_argument()
@click.argument("action", type=click.Choice(["disconnect", "connect", "release", "arm"]))
@FABRICATION
@ALL
@YES
@click.pass_context
def breaker(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
            key_file: Path | None, trace: bool, action: str, fabrication: str | None,
            every: bool, yes: bool, address: int | str | None = None) -> None:
    """Breaker: disconnect; connect (arm, then connect); release for the push button."""
    k = _kamstrup()
    cmd = k.BreakerCommand
    steps = {"disconnect": [cmd.DISCONNECT], "connect": [cmd.ARM, cmd.CONNECT],
             "release": [cmd.RELEASE], "arm": [cmd.ARM]}[action]
    payloads = [(k.cmd_breaker(step), f"breaker {step.name.lower()}") for step in steps]
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)
    targets = _targets(session, address, fabrication, every=every, yes=yes,
                       what=f"breaker {action}")
    expected = _BREAKER_AFTER[action]

    async def step(master: Master, target: Target) -> str:
        # the meter acknowledges a breaker command before the relay moves: only its state
        # register read back shows it done ("connect" on a connected meter is no error)
        if expected == 1 and await _breaker_state(master, target) == 1:
            return "ok: already connected"
        await _send(master, target, payloads)
        state = await _breaker_state(master, target)
        if state is None:
            raise ProtocolError(f"meter {_name(target)}: acknowledged breaker {action}, but its "
                                "read-back holds no breaker state (01 FD 1A): not verified")
        if state != expected:
            raise RefusedError(f"meter {_name(target)}: acknowledged breaker {action}, but the "
                               f"breaker reads {_BREAKER_STATES.get(state, state)}")
        return f"ok: {_BREAKER_STATES[expected]}"

    _write(session, targets, step, every=every)


# The breaker state register 01 FD 1A (docs/register-map.md) and what each action leaves in it.
_BREAKER_STATES = {0: "disconnected", 1: "connected", 2: "released", 3: "armed"}
_BREAKER_AFTER = {"disconnect": 0, "connect": 1, "release": 2, "arm": 3}
_BREAKER_RECORD = bytes.fromhex("01FD1A")
# selection for readout (EN 13757-3 6.3.4): the register's VIB with DIF data field 8h
_READ_BREAKER = bytes.fromhex("08FD1A")


async def _breaker_state(master: Master, target: Target) -> int | None:
    address, fabrication = target
    where = address
    if _secondary(address):
        await master.select(address, fabrication=fabrication)
        where = 253
    await master.command(where, _READ_BREAKER, what="the breaker state request")
    try:
        telegrams = await master.read(where, all_telegrams=False)
    except MBusError:
        with contextlib.suppress(MBusError):
            await master.application_reset(where)
        raise
    # the readout selection holds until an application reset (CI 50h, EN 13757-3 6.3.4):
    # give the meter its standard telegram back
    await master.application_reset(where)
    for record in telegrams[0].records if telegrams else []:
        if record.raw[:3] == _BREAKER_RECORD and isinstance(record.value, int):
            return record.value
    return None


@click.command(cls=_OneOrAll)
@common
@BAUD
@target_argument()
@click.argument("tariff", type=click.Choice(["1", "2", "3", "4", "auto", "debiting-stop"]))
@FABRICATION
@ALL
@YES
@click.pass_context
def tariff(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
           key_file: Path | None, trace: bool, tariff: str, fabrication: str | None,
           every: bool, yes: bool, address: int | str | None = None) -> None:
    """Force tariff 1-4, hand it back to the tariff input (auto), or stop debiting."""
    k = _kamstrup()
    if tariff == "debiting-stop":
        payload, what = k.cmd_debiting_stop(), "debiting stop"
    else:
        value = None if tariff == "auto" else int(tariff)
        payload, what = _encode(lambda: k.cmd_tariff(value)), f"tariff {tariff}"
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)
    targets = _targets(session, address, fabrication, every=every, yes=yes, what=what)
    _write(session, targets, _sender([(payload, what)]), every=every)


@click.command("ct-ratio", cls=_OneOrAll)
@common
@BAUD
@target_argument()
@click.argument("ratio", type=int, required=False)
@click.option("--lock", is_flag=True, help="Lock the ratio against further changes.")
@FABRICATION
@ALL
@YES
@click.pass_context
def ct_ratio(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
             key_file: Path | None, trace: bool, ratio: int | None, lock: bool,
             fabrication: str | None, every: bool, yes: bool,
             address: int | str | None = None) -> None:
    """Set the current-transformer ratio of a CT meter (1-9999) and/or lock it."""
    k = _kamstrup()
    if ratio is None and not lock:
        raise click.UsageError("give a RATIO, --lock, or both")
    payloads = []
    if ratio is not None:
        payloads.append((_encode(lambda: k.cmd_set_ct_ratio(ratio)), f"CT ratio {ratio}"))
    if lock:
        payloads.append((k.cmd_lock_ct_ratio(), "locking the CT ratio"))
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)
    targets = _targets(session, address, fabrication, every=every, yes=yes,
                       what=" and ".join(what for _, what in payloads))
    _write(session, targets, _sender(payloads), every=every)


@click.command()
@common
@BAUD
@target_argument()
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
