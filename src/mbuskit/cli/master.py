"""The ``mbus`` master commands: scan, read, set-address, set-id, set-time, breaker, tariff,
ct-ratio, baud, raw.

``--port`` is a serial device (``/dev/ttyUSB0``, ``COM3``), a pyserial URL (``rfc2217://``,
``socket://``) or a TCP gateway (``tcp://host:port``). Errors are one line on stderr naming the
meter or port and what to check, never a traceback; keys are never printed. After a command to
a secondary address the bus is left deselected (SND_NKE to 253).

Exit status (stable, for scripts):
  0 done · 1 other M-Bus error · 2 usage · 3 port or connection · 4 no answer (timeout) ·
  5 collision · 6 key or decryption · 7 value or address out of range · 8 meter broke the
  protocol or sent an undecodable telegram · 9 the meter refused the command ·
  130 interrupted (Ctrl-C; a scan prints what it found so far)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import click

from ..errors import (
    BusTimeout,
    DecodeError,
    FrameError,
    LocalError,
    MBusError,
    ProtocolError,
    SecurityError,
    TransportError,
)
from ..master.driver import DEFAULT_RETRIES, CollisionError, Found, Master, Outcome, normalize_mask

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PORT = 3
EXIT_TIMEOUT = 4
EXIT_COLLISION = 5
EXIT_SECURITY = 6
EXIT_VALUE = 7
EXIT_PROTOCOL = 8
EXIT_REFUSED = 9
EXIT_INTERRUPTED = 130

AUTO_BAUDS = (2400, 9600, 300)  # the rates Kamstrup's module runs at, most common first
FORMATS = ("table", "json", "csv", "xml")

T = TypeVar("T")


def exit_code(exc: BaseException) -> int:
    """The exit status for an error (order matters: the most specific class first)."""
    if isinstance(exc, SecurityError):
        return EXIT_SECURITY
    if isinstance(exc, RefusedError):
        return EXIT_REFUSED
    if isinstance(exc, BusTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, TransportError):
        return EXIT_PORT
    if isinstance(exc, CollisionError):
        return EXIT_COLLISION
    if isinstance(exc, LocalError):
        return EXIT_VALUE
    if isinstance(exc, ProtocolError | DecodeError | FrameError):
        return EXIT_PROTOCOL
    return EXIT_ERROR


def _fail(command: str, exc: BaseException | str, code: int | None = None) -> NoReturn:
    message = exc if isinstance(exc, str) else str(exc)
    click.echo(f"mbus {command}: {message}", err=True)
    sys.exit(code if code is not None else exit_code(exc) if not isinstance(exc, str) else 1)


# -- options shared by every command -------------------------------------------------------------


@dataclass
class Session:
    command: str
    port: str
    baud: int
    timeout: float | None
    retries: int
    key_file: Path | None
    trace: bool

    def transport(self, baud: int | None = None) -> Any:
        rate = baud or self.baud
        if self.port.startswith("tcp://"):
            from ..transport.tcp import TcpTransport

            return TcpTransport.from_url(self.port, baud=rate)
        from ..transport.serial import SerialTransport

        return SerialTransport(self.port, baud=rate)

    def keys(self) -> Any:
        if self.key_file is None:
            return None
        from ..codec.security import KeyStore

        try:
            lines = self.key_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SecurityError(f"cannot read key file {self.key_file}: "
                                f"{exc.strerror or exc}") from None
        return KeyStore.from_lines(lines, source=str(self.key_file))

    def run(self, body: Callable[[Master], Awaitable[T]], *, baud: int | None = None,
            deselect: bool = False) -> T:
        """Open the port, run ``body`` with a Master, leave the bus deselected, close."""
        result = self.run_interruptible(body, baud=baud, deselect=deselect, interruptible=False)
        return cast(T, result)  # without ``interruptible`` Ctrl-C exits, never returns None

    def run_interruptible(self, body: Callable[[Master], Awaitable[T]], *,
                          baud: int | None = None, deselect: bool = False,
                          interruptible: bool = True) -> T | None:
        """As ``run``; with ``interruptible`` Ctrl-C returns None instead of exiting."""
        try:
            keys = self.keys() if self.key_file else None
        except MBusError as exc:
            _fail(self.command, exc)

        async def main() -> T:
            transport = self.transport(baud)
            await transport.open()
            try:
                master = Master(transport, timeout=self.timeout, retries=self.retries, keys=keys)
                if self.trace:
                    master.trace = _trace
                try:
                    return await body(master)
                finally:
                    if deselect:
                        with contextlib.suppress(MBusError, OSError, asyncio.CancelledError):
                            await asyncio.shield(master.deselect())
            finally:
                with contextlib.suppress(MBusError, OSError):
                    await transport.close()

        try:
            return asyncio.run(main())
        except KeyboardInterrupt:
            if interruptible:
                return None  # the body kept what it had; the caller reports it
            _fail(self.command, "interrupted", EXIT_INTERRUPTED)
        except MBusError as exc:
            _fail(self.command, exc)


def _trace(direction: str, data: bytes) -> None:
    click.echo(f"{direction} {data.hex(' ')}", err=True)


def _baud(value: str) -> int:
    from ..codec.timing import check_baud

    try:
        return check_baud(int(value))
    except (ValueError, LocalError):
        raise click.BadParameter(f"{value!r} is not an M-Bus baud rate (300..38400)") from None


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--port", "-p", required=True, envvar="MBUS_PORT",
                     help="Serial device, pyserial URL (rfc2217://, socket://) or "
                          "tcp://HOST:PORT of a gateway."),
        click.option("--timeout", type=click.FloatRange(min=0.001), default=None,
                     help="Seconds to wait for an answer (default: the EN 13757-2 window at "
                          "this baud rate plus the link latency)."),
        click.option("--retries", type=click.IntRange(0, 9), default=DEFAULT_RETRIES,
                     show_default=True,
                     help="Repeats of a request that got no or a garbled answer."),
        click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False),
                     default=None, help="Keys by meter ('METER = 32 hex digits' lines)."),
        click.option("--trace", is_flag=True, help="Print every frame in hex on stderr."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _session(  # noqa: PLR0917
        ctx: click.Context, port: str, baud: int, timeout: float | None, retries: int,
        key_file: Path | None, trace: bool) -> Session:
    return Session(ctx.info_name or "", port, baud, timeout, retries, key_file, trace)


def parse_address(text: str) -> int | str:
    """A primary address (0-250, or 253/254) or a secondary address / mask (hex, F wildcards)."""
    value = text.strip()
    if value.isdigit() and len(value) <= 3:
        number = int(value)
        if not (0 <= number <= 250 or number in (253, 254)):
            raise click.BadParameter(f"primary address {number} is out of range (0-250)")
        return number
    try:
        return normalize_mask(value)
    except LocalError as exc:
        raise click.BadParameter(str(exc)) from None


ADDRESS = click.argument("address", callback=lambda c, p, v: parse_address(v))
FABRICATION = click.option("--fabrication", "--serial", "fabrication", default=None,
                           help="Fabrication (serial) number for enhanced secondary addressing.")
BAUD = click.option("--baud", "-b", default="2400", show_default=True, callback=lambda c, p, v:
                    _baud(v), help="Bus rate.")


def _secondary(address: int | str) -> bool:
    return isinstance(address, str)


# -- scan --------------------------------------------------------------------------------------


@click.command()
@common
@click.option("--baud", "-b", default="2400", show_default=True,
              help="Bus rate, or 'auto' to scan at 2400, 9600 and 300 baud.")
@click.option("--mode", type=click.Choice(["secondary", "primary"]), default="secondary",
              show_default=True)
@click.option("--mask", default="FFFFFFFFFFFFFFFF", show_default=True,
              help="Secondary search only under this mask (F = wildcard).")
@click.option("--no-enhanced", is_flag=True,
              help="Do not separate meters sharing a meter number by fabrication number.")
@click.option("--full-reads", is_flag=True,
              help="Identify each meter by its whole standard telegram instead of asking it for "
                   "its fabrication number only (readout selection, then application reset).")
@click.option("--addresses", default="0-250", show_default=True, metavar="FIRST-LAST",
              help="Primary scan only: the address range to probe.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.pass_context
def scan(ctx: click.Context, *, port: str, baud: str, timeout: float | None, retries: int,
         key_file: Path | None, trace: bool, mode: str, mask: str, no_enhanced: bool, fmt: str,
         progress: bool | None, addresses: str, full_reads: bool) -> None:
    """Find the meters on the bus (secondary wildcard search, or primary 0-250)."""
    rates = list(AUTO_BAUDS) if baud.lower() == "auto" else [_baud(baud)]
    primaries = _address_range(addresses)
    try:
        mask = normalize_mask(mask)
    except LocalError as exc:
        raise click.BadParameter(str(exc), param_hint="--mask") from None
    session = _session(ctx, port, rates[0], timeout, retries, key_file, trace)
    show = sys.stderr.isatty() if progress is None else progress
    found: list[Found] = []
    interrupted = False
    for rate in rates:
        bar = _Bar(f"{mode} scan at {rate} Bd", show)

        holder: list[Master] = []

        async def guarded(master: Master, bar: _Bar = bar,
                          holder: list[Master] = holder) -> bool:
            holder.append(master)
            try:
                if mode == "primary":
                    await master.scan_primary(primaries, on_event=bar.update)
                else:
                    await master.scan_secondary(mask, enhanced=not no_enhanced,
                                                short_reads=not full_reads,
                                                on_event=bar.update)
            except asyncio.CancelledError:
                # Ctrl-C: stop cleanly, report what was found so far (the session deselects)
                return False
            return True

        try:
            completed = session.run_interruptible(guarded, baud=rate, deselect=True)
            interrupted = completed is not True
        finally:
            bar.close()
            if holder:
                # a TCP gateway answers at every rate we "switch" to: keep the first sighting
                seen = {(f.primary, f.address, f.fabrication) for f in found}
                found.extend(f for f in getattr(holder[0], "found", [])
                             if (f.primary, f.address, f.fabrication) not in seen)
        if interrupted:
            break
    click.echo(render_found(found, fmt, baud_column=len(rates) > 1))
    if interrupted:
        click.echo(f"mbus scan: interrupted; {len(found)} meter(s) found so far", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _address_range(text: str) -> range:
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last if sep else first)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not FIRST-LAST", param_hint="--addresses") from None
    if not 0 <= lo <= hi <= 250:
        raise click.BadParameter(f"{text!r}: primary addresses are 0-250",
                                 param_hint="--addresses")
    return range(lo, hi + 1)


class _Bar:
    def __init__(self, title: str, show: bool) -> None:
        self._progress: Any = None
        self._task: Any = None
        if show:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TaskProgressColumn(), TextColumn("{task.fields[found]}"),
                                      console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(title, total=1.0, found="")

    def update(self, event: object) -> None:
        from ..master.scan import Progress

        if self._progress is not None and isinstance(event, Progress):
            self._progress.update(self._task, completed=event.done,
                                  found=f"{event.found} found")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def render_found(found: Sequence[Found], fmt: str, *, baud_column: bool = True) -> str:
    rows = [{"primary": f.primary, "secondary": f.address, "fabrication": f.fabrication,
             "baud": f.baud, "note": f.note or None} for f in found]
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        lines = ["primary,secondary,fabrication,baud,note"]
        for r in rows:
            lines.append(",".join("" if r[k] is None else str(r[k])
                                  for k in ("primary", "secondary", "fabrication", "baud", "note")))
        return "\n".join(lines)
    if fmt == "xml":
        from xml.sax.saxutils import escape

        parts = ['<?xml version="1.0" encoding="UTF-8"?>', "<MBusScan>"]
        for r in rows:
            fields = "".join(f"<{k}>{escape(str(r[k]))}</{k}>" for k in r if r[k] is not None)
            parts.append(f"  <Meter>{fields}</Meter>")
        parts.append("</MBusScan>")
        return "\n".join(parts)
    header = ["primary", "secondary", "fabrication"] + (["baud"] if baud_column else []) + ["note"]
    lines = ["  ".join(f"{h:<16}" for h in header).rstrip()]
    for r in rows:
        lines.append("  ".join(f"{'' if r[h] is None else r[h]!s:<16}" for h in header).rstrip())
    lines.append(f"{len(rows)} meter(s)")
    return "\n".join(lines)


# -- read --------------------------------------------------------------------------------------


@click.command()
@common
@BAUD
@ADDRESS
@FABRICATION
@click.option("--first", is_flag=True, help="Only the first telegram of a multi-telegram answer.")
@click.option("--additional", is_flag=True,
              help="Ask for all data first (global readout request, DIF 7Fh).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
def read(ctx: click.Context, *, port: str, baud: int, timeout: float | None, retries: int,
         key_file: Path | None, trace: bool, address: int | str, fabrication: str | None,
         first: bool, additional: bool, fmt: str) -> None:
    """Read a meter by primary, secondary or enhanced secondary address."""
    from ..render import document as render

    session = _session(ctx, port, baud, timeout, retries, key_file, trace)

    async def body(master: Master) -> list[Any]:
        if additional:
            from ..master.driver import GLOBAL_READOUT

            if _secondary(address):
                await master.select(address, fabrication=fabrication)
            return await master.request_data(253 if _secondary(address) else address,
                                              GLOBAL_READOUT)
        return await master.read(address, fabrication=fabrication, all_telegrams=not first)

    telegrams = session.run(body, deselect=_secondary(address))
    if fmt == "json":
        out = json.dumps([render.to_dict(t) for t in telegrams], indent=2)
    elif fmt == "xml":
        out = render.to_xml(telegrams)
    elif fmt == "csv":
        out = render.to_csv(telegrams)
    else:
        out = "\n".join(render.to_text(t) for t in telegrams)
    click.echo(out.rstrip("\n"))


# -- writes ------------------------------------------------------------------------------------


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


class RefusedError(ProtocolError):
    """The meter did not acknowledge a command and reports an application error (CI 70h)."""


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
    from ..codec.telegram import SecondaryAddress
    from ..master.driver import address_of
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
    from ..master.driver import set_address_payload

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
    from ..master.driver import set_id_payload

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
    from ..master.driver import set_time_payload

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
    "EXIT_COLLISION",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_PORT",
    "EXIT_PROTOCOL",
    "EXIT_REFUSED",
    "EXIT_SECURITY",
    "EXIT_TIMEOUT",
    "EXIT_VALUE",
    "baud",
    "breaker",
    "ct_ratio",
    "exit_code",
    "parse_address",
    "raw",
    "read",
    "render_found",
    "scan",
    "set_address",
    "set_id",
    "set_time",
    "tariff",
]
