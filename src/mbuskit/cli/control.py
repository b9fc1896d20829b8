"""The ``mbus`` commands that configure and control a meter: set-address, set-id, set-time,
breaker, tariff, ct-ratio, baud, raw.

A write is SND_UD CI 51h (``_write``), encrypted when the key file has the meter's key
(``_secure_command``); a meter that stays silent is asked why (``_refusal``), so that a refused
command exits 9 and not 4. The session, options and exit status are in ``session``.

Every command but ``raw`` reads back what it changed (``verify``) and prints "ok: ..." with the
value read back only when it shows the change (exit 11 when it does not, 12 when the meter no
longer answers where it should); where the target state already holds (a connected breaker,
the tariff, the CT ratio, the address, number or rate) it is said so and nothing is sent.

Every command names exactly one meter (``session.parse_target``: no wildcard, prefix or special
address); ``--all`` is the deliberate form for every meter of a bus: a secondary scan, a
confirmation, then each meter found addressed on its own, never a broadcast.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from ..errors import BusTimeout, FrameError, LocalError, MBusError, ProtocolError
from ..master.driver import Master
from ..master.transaction import Outcome
from .audit import Audit
from .session import (
    BAUD,
    EXIT_COLLISION,
    EXIT_TIMEOUT,
    FABRICATION,
    InUseError,
    RefusedError,
    Session,
    UnreachableError,
    UnverifiedError,
    _baud,
    _fail,
    _secondary,
    _session,
    common,
    exact_fabrication,
    exit_code,
    target_argument,
)
from .verify import (
    ACTIVE_TARIFF,
    BREAKER,
    CT_LOCKED,
    CT_RATIO,
    DATE_TIME,
    DEBITING_PERIODS,
    METER_STATUS,
    TARIFF_BY_COMMAND,
    Target,
    answered,
    before,
    clock,
    identity,
    near,
    register,
    registers,
    stamp,
)
from .verify import name as _name

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
    ctx = click.get_current_context()
    trail = Audit(session.command, dict(ctx.params))  # each meter's command is recorded first
    ctx.call_on_close(trail.close)

    async def audited(master: Master, target: Target) -> str:
        return await trail.run(_name(target), lambda: step(master, target))

    if not every:
        (target,) = targets

        async def one(master: Master) -> str:
            return await audited(master, target)

        click.echo(session.run(one, deselect=deselect or _secondary(target[0])))
        return
    failed: list[MBusError] = []

    async def each(master: Master) -> None:
        # a failure stays with its meter (the selection of the next one deselects it); each
        # line is printed at once, so that an interrupted run shows which meters are done
        for target in targets:
            try:
                result = await audited(master, target)
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
    code = await master.application_error(target)
    if code is not None:
        raise RefusedError(f"meter at {address}: refused {what} (application error "
                           f"{code:02X}); check the value and whether the meter allows it")


async def _secure_command(master: Master, address: int | str, fabrication: str | None,
                          payload: bytes, what: str) -> None:
    from ..master.transaction import address_of
    from ..slave.kamstrup import encrypt_command_to

    frames = await master.read_frames(address, fabrication=fabrication, all_telegrams=False)
    meter = address_of(frames[0]) if frames else None
    if meter is None:
        raise ProtocolError(f"meter {address}: no long header, cannot address an encrypted "
                            "command")
    key = master.keys.lookup(meter)
    if key is None:
        await master.command(253 if _secondary(address) else address, payload, what=what)
        return
    access = frames[0].data[8] if len(frames[0].data) > 8 else 0
    ci, data = encrypt_command_to(meter, access, payload, key=key)
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
    target = _targets(session, address, fabrication)[0]
    what = f"primary address {new_address}"

    async def step(master: Master, target: Target) -> str:
        # who the meter is (its secondary address) and where it answers now; the read selects
        # a secondary target, so the command then goes to 253
        meter, _, current = await identity(master, target)
        if current == new_address:
            return f"ok: already at primary address {new_address} ({meter})"
        where = 253 if _secondary(target[0]) else target[0]
        assert isinstance(where, int)
        try:
            await master.set_primary_address(where, new_address)
        except BusTimeout:
            await _refusal(master, target[0], f"setting {what}")
            raise
        # the E5 comes from the old address (docs/register-map.md); the new one must answer
        # with this meter's secondary address
        found = await answered(master, new_address, None)
        if found is None:
            raise UnreachableError(f"meter {_name(target)}: acknowledged {what}, but nothing "
                                   f"answers at {new_address}; try its old address {current} "
                                   "(mbus scan --mode primary)")
        if found[0] != meter:
            raise UnverifiedError(f"meter {_name(target)}: acknowledged {what}, but "
                                  f"{new_address} answers as {found[0]}, not as {meter}")
        return f"ok: primary address {new_address} answers as {meter}"

    _write(session, [target], step)


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
    what = f"meter number {number}"

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

    send = _sender([(payload, f"setting {what}")])

    async def step(master: Master, target: Target) -> str:
        meter, serial, _ = await identity(master, target)
        serial = serial or target[1]
        if meter[:8] == number:  # renaming a meter to its own number changes nothing
            return f"ok: already meter number {number}"
        if not force:
            await free(master)
        await send(master, target)
        # read back by the new number, enhanced by the fabrication number when the meter
        # shows it (EN 13757-3 0C 78), so that a meter already at that number cannot answer
        expected = number + meter[8:]
        found = await answered(master, expected, serial)
        by = f" with serial {serial}" if serial else ""
        if found is None:
            raise UnreachableError(f"meter {_name(target)}: acknowledged {what}, but no meter "
                                   f"answers the selection of {expected}{by}; mbus scan shows "
                                   f"where it is (it was {meter})")
        if found[0] != expected or found[1] != serial:
            raise UnverifiedError(f"meter {_name(target)}: acknowledged {what}, but {expected} "
                                  f"answers as {found[0]} serial {found[1]}")
        return f"ok: meter number {number} answers as {expected}" + (
            f" serial {serial}" if serial else "")

    _write(session, [target], step, deselect=True)


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

        async def move(master: Master, target: Target) -> str:
            was = (await before(master, target, [DATE_TIME])).get(DATE_TIME)
            start = time.monotonic()
            await _send(master, target, [(payload, what)])
            after = clock(await register(master, target, DATE_TIME, what), target, what)
            slack = timedelta(seconds=time.monotonic() - start)
            old = clock(was, target, what)  # None only for a meter we could not read before
            if not near(after, old + timedelta(seconds=offset), slack):
                raise UnverifiedError(f"meter {_name(target)}: acknowledged {what}, but its "
                                      f"clock went from {stamp(old)} to {stamp(after)}")
            # type F shows minutes (EN 13757-3 annex A): a move under one is not seen
            fine = " (under a minute: below the clock record's resolution)" if abs(
                offset) < 60 else ""
            return f"ok: clock moved by {offset} s, reads {stamp(after)}{fine}"

        _write(session, targets, move, every=every)
        return
    # a bad or unencodable --at is a usage error before the port is opened
    _encode(lambda: set_time_payload(_utc(at)))
    what = f"setting the clock to {at}" if at else "setting the clock to the current UTC time"
    targets = _targets(session, address, fabrication, every=every, yes=yes, what=what)

    async def step(master: Master, target: Target) -> str:
        # "now" is taken per meter, when it is written: a scan or a confirmation may have
        # taken minutes
        when = _utc(at)
        written = when.isoformat() + "Z"
        start = time.monotonic()
        await _send(master, target, [(_encode(lambda: set_time_payload(when)),
                                      f"setting the clock to {written}")])
        read = clock(await register(master, target, DATE_TIME, what), target, what)
        if not near(read, when, timedelta(seconds=time.monotonic() - start)):
            raise UnverifiedError(f"meter {_name(target)}: acknowledged the clock set to "
                                  f"{written}, but it reads {stamp(read)}")
        return f"ok: clock set to {written}, reads {stamp(read)}"

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
        if expected == 1 and (await before(master, target, [BREAKER])).get(BREAKER) == 1:
            return "ok: already connected"
        await _send(master, target, payloads)
        state = await register(master, target, BREAKER, f"breaker {action}")
        if state != expected:
            raise UnverifiedError(f"meter {_name(target)}: acknowledged breaker {action}, but "
                                  f"the breaker reads {_BREAKER_STATES.get(state, state)}")
        return f"ok: {_BREAKER_STATES[expected]}"

    _write(session, targets, step, every=every)


# The breaker state register 01 FD 1A (docs/register-map.md) and what each action leaves in it.
_BREAKER_STATES = {0: "disconnected", 1: "connected", 2: "released", 3: "armed"}
_BREAKER_AFTER = {"disconnect": 0, "connect": 1, "release": 2, "arm": 3}


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
    value: int | None = None
    if tariff == "debiting-stop":
        payload, what = k.cmd_debiting_stop(), "debiting stop"
    else:
        value = None if tariff == "auto" else int(tariff)
        payload, what = _encode(lambda: k.cmd_tariff(value)), f"tariff {tariff}"
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)
    targets = _targets(session, address, fabrication, every=every, yes=yes, what=what)

    async def stop(master: Master, target: Target) -> str:
        # the number of debiting stops (FF 0E) counts the period this command closes
        closed = (await before(master, target, [DEBITING_PERIODS])).get(DEBITING_PERIODS)
        await _send(master, target, [(payload, what)])
        after = await register(master, target, DEBITING_PERIODS, what)
        if after == closed:
            raise UnverifiedError(f"meter {_name(target)}: acknowledged the {what}, but its "
                                  f"debiting stops still read {after}")
        return f"ok: debiting stop, {after} period(s) closed"

    def holds(values: dict[bytes, Any]) -> bool:
        active, status = values.get(ACTIVE_TARIFF), values.get(METER_STATUS)
        if not isinstance(active, int) or not isinstance(status, int):
            return False
        forced = bool(status & TARIFF_BY_COMMAND)
        return (active == value and forced) if value is not None else not forced

    def shown(values: dict[bytes, Any]) -> str:
        active, status = values.get(ACTIVE_TARIFF), values.get(METER_STATUS)
        if active is None or not isinstance(status, int):
            return "no active tariff (01 FF 07) or meter status (01 FD 17) record"
        by = "by command" if status & TARIFF_BY_COMMAND else "by the tariff input"
        return f"tariff {active} ({by})"

    async def force(master: Master, target: Target) -> str:
        # the active tariff (FF 07) and the status bit "tariff set by command" (FD 17, 20h)
        heads = [ACTIVE_TARIFF, METER_STATUS]
        now = await before(master, target, heads)
        if holds(now):
            return f"ok: already {shown(now)}"
        await _send(master, target, [(payload, what)])
        after = await registers(master, target, heads)
        if not holds(after):
            raise UnverifiedError(f"meter {_name(target)}: acknowledged {what}, but it reads "
                                  f"{shown(after)}")
        return f"ok: {shown(after)}"

    _write(session, targets, stop if tariff == "debiting-stop" else force, every=every)


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
    set_ratio = None if ratio is None else _encode(lambda: k.cmd_set_ct_ratio(ratio))
    what = " and ".join(([f"CT ratio {ratio}"] if ratio is not None else [])
                        + (["locking the CT ratio"] if lock else []))
    session = _session(ctx, port, baud, timeout, retries, key_file, trace)
    targets = _targets(session, address, fabrication, every=every, yes=yes, what=what)
    heads = [CT_RATIO, CT_LOCKED]

    def holds(values: dict[bytes, Any]) -> bool:
        return ((ratio is None or values.get(CT_RATIO) == ratio)
                and (not lock or values.get(CT_LOCKED) == 1))

    def shown(values: dict[bytes, Any]) -> str:
        if CT_RATIO not in values:
            return "no CT ratio (02 FF 05) record"
        return f"CT ratio {values[CT_RATIO]}, " + (
            "locked" if values.get(CT_LOCKED) == 1 else "not locked")

    async def step(master: Master, target: Target) -> str:
        # a direct meter refuses the selection of registers it does not have; the command's
        # own refusal then says why (exit 9)
        now = await before(master, target, heads, absent_ok=True)
        if holds(now):
            return f"ok: already {shown(now)}"
        payloads = []
        if set_ratio is not None and now.get(CT_RATIO) != ratio:
            payloads.append((set_ratio, f"CT ratio {ratio}"))
        if lock and now.get(CT_LOCKED) != 1:
            payloads.append((k.cmd_lock_ct_ratio(), "locking the CT ratio"))
        await _send(master, target, payloads)
        after = await registers(master, target, heads)
        if not holds(after):
            raise UnverifiedError(f"meter {_name(target)}: acknowledged {what}, but it reads "
                                  f"{shown(after)}")
        return f"ok: {shown(after)}"

    _write(session, targets, step, every=every)


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
    target: Target = (address, None)

    async def step(master: Master, target: Target) -> str:
        meter, _, _ = await identity(master, target)
        if new_baud == baud:
            return f"ok: already at {baud} baud ({meter} answers at it)"
        where = 253 if _secondary(address) else address
        assert isinstance(where, int)
        await master.switch_baud(where, new_baud)
        # the E5 came at the old rate (EN 13757-3 baud CIs B8h-BFh); only an answer at the new
        # one shows the switch done: a REQ_UD2 at the primary address, or a selection and a
        # REQ_UD2 for a secondary address (the selected state alone proves nothing)
        found = await answered(master, address, None)
        if found is None:
            hint = (" (a TCP gateway's bus side keeps its own rate: set it on the gateway)"
                    if session.port.startswith("tcp://") else "")
            raise UnreachableError(
                f"meter {address}: acknowledged the switch to {new_baud} baud, but does not "
                f"answer at {new_baud}{hint}; try --baud {new_baud}, or --baud {baud} after a "
                "minute or so (a meter that hears no frame at its new rate may fall back)")
        if found[0] != meter:
            raise UnverifiedError(f"meter {address}: acknowledged the switch to {new_baud} "
                                  f"baud, but {found[0]} answers at {new_baud}, not {meter}")
        return f"ok: now at {new_baud} baud ({meter} answers at it)"

    _write(session, [target], step)


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
