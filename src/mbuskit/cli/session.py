"""What the ``mbus`` master commands share: exit status, the session on a port, the options.

The commands themselves are in ``read`` (scan, read) and ``control`` (set-address, set-id,
set-time, breaker, tariff, ct-ratio, baud, raw).

``--port`` is a serial device (``/dev/ttyUSB0``, ``COM3``), a pyserial URL (``rfc2217://``,
``socket://``) or a TCP gateway (``tcp://host:port``). Errors are one line on stderr naming the
meter or port and what to check, never a traceback; keys are never printed. After a command to
a secondary address the bus is left deselected (SND_NKE to 253).

Exit status (stable, for scripts):
  0 done · 1 other M-Bus error · 2 usage · 3 port or connection · 4 no answer (timeout) ·
  5 collision · 6 key or decryption · 7 value or address out of range · 8 meter broke the
  protocol or sent an undecodable telegram · 9 the meter refused the command ·
  10 the meter number is in use on the bus (set-id without --force) ·
  11 unverified: the meter acknowledged the command but reading it back does not show the
  change · 12 unreachable after the change: the meter acknowledged, then does not answer where
  it should now be (the new baud rate, primary address or meter number) ·
  130 interrupted (Ctrl-C; a scan prints what it found so far)
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from ..master.driver import Master
from ..master.transaction import DEFAULT_RETRIES, CollisionError, normalize_mask

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PORT = 3
EXIT_TIMEOUT = 4
EXIT_COLLISION = 5
EXIT_SECURITY = 6
EXIT_VALUE = 7
EXIT_PROTOCOL = 8
EXIT_REFUSED = 9
EXIT_IN_USE = 10
EXIT_UNVERIFIED = 11
EXIT_UNREACHABLE = 12
EXIT_INTERRUPTED = 130

T = TypeVar("T")


# RefusedError is raised by the write commands (control) but lives here, beside exit_code,
# which must tell it from other protocol errors: control imports this module, so defining it
# there would make the two modules import each other.
class RefusedError(ProtocolError):
    """The meter did not acknowledge a command and reports an application error (CI 70h)."""


class InUseError(LocalError):
    """set-id: a meter already answers the selection of the new meter number."""


# A slave acknowledges a SND_UD with E5 when it has taken the command (EN 13757-2 5.7), not
# when the change is done (a relay moves later, a clock may be clamped): only the read-back
# tells. These two are the ways the read-back can fail after an E5, told apart from a refusal.
class UnverifiedError(ProtocolError):
    """The meter acknowledged, but the value read back is not the one written."""


class UnreachableError(BusTimeout):
    """The meter acknowledged, then did not answer at its new baud rate, address or number."""


def exit_code(exc: BaseException) -> int:
    """The exit status for an error (order matters: the most specific class first)."""
    if isinstance(exc, InUseError):
        return EXIT_IN_USE
    if isinstance(exc, SecurityError):
        return EXIT_SECURITY
    if isinstance(exc, RefusedError):
        return EXIT_REFUSED
    if isinstance(exc, UnverifiedError):
        return EXIT_UNVERIFIED
    if isinstance(exc, UnreachableError):
        return EXIT_UNREACHABLE
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

# The broadcast and special addresses (EN 13757-2 5.5): 251/252 reserved, 253 the network layer
# (whoever is selected), 254 every meter answers (test), 255 every meter listens and none answers.
_SPECIAL = {251: "reserved", 252: "reserved", 253: "the network-layer address of whoever is "
            "selected", 254: "the test address every meter answers",
            255: "the broadcast address every meter obeys"}
_ONE_METER = ("a command changes one meter: give its primary address (0-250) or its complete "
              "secondary address (8 ID digits, or 16 hex digits without wildcards; mbus scan "
              "lists them)")


def parse_target(text: str) -> int | str:
    """The one meter a command changes: a primary address 0-250 or a complete secondary address
    (8 ID digits, or the 16-hex libmbus form without wildcards). Reads keep ``parse_address``.

    A wildcard (F nibble in the ID, FF byte elsewhere: EN 13757-3 network layer) or a prefix
    selects every meter it matches, and a special address reaches every meter or none, so a
    command to one would change meters nobody named."""
    value = text.strip().upper()
    if value.isdigit() and len(value) <= 3:
        number = int(value)
        if number in _SPECIAL:
            raise click.BadParameter(f"{number} is {_SPECIAL[number]}; {_ONE_METER}")
        if number > 250:
            raise click.BadParameter(f"primary address {number} is out of range (0-250)")
        return number
    if len(value) == 8 and value.isdigit():
        return normalize_mask(value)  # a complete meter number; any manufacturer, version, medium
    if len(value) == 16 and all(c in "0123456789ABCDEF" for c in value):
        if not value[:8].isdigit():
            raise click.BadParameter(f"{text!r}: the ID digits hold a wildcard (F); {_ONE_METER}")
        if "FF" in (value[8:10], value[10:12], value[12:14], value[14:16]):
            raise click.BadParameter(f"{text!r}: an FF byte is a wildcard; {_ONE_METER}")
        return value
    raise click.BadParameter(f"{text!r} is not a complete address (a prefix or a wildcard "
                             f"selects every meter it matches); {_ONE_METER}")


def exact_fabrication(value: str | None, address: int | str | None) -> str | None:
    """The fabrication number of an enhanced selection (EN 13757-3, ``0C 78`` record): all 8
    digits, no F wildcard, and only beside a secondary address (a primary one ignores it)."""
    if value is None:
        return None
    text = value.strip()
    if isinstance(address, int):
        raise click.BadParameter("applies to a secondary address only, not to primary "
                                 f"address {address}", param_hint="--serial")
    if len(text) != 8 or not text.isdigit():
        raise click.BadParameter(f"{value!r} must be all 8 digits of the fabrication number "
                                 "(no wildcard)", param_hint="--serial")
    return text


def target_argument() -> Callable[[Callable[..., Any]], Any]:
    return click.argument("address", callback=lambda c, p, v: parse_target(v))


FABRICATION = click.option("--fabrication", "--serial", "fabrication", default=None,
                           help="Fabrication (serial) number for enhanced secondary addressing.")
BAUD = click.option("--baud", "-b", default="2400", show_default=True, callback=lambda c, p, v:
                    _baud(v), help="Bus rate.")


def _secondary(address: int | str) -> bool:
    return isinstance(address, str)


__all__ = [
    "EXIT_COLLISION",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_IN_USE",
    "EXIT_PORT",
    "EXIT_PROTOCOL",
    "EXIT_REFUSED",
    "EXIT_SECURITY",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_UNVERIFIED",
    "EXIT_VALUE",
    "exact_fabrication",
    "exit_code",
    "parse_address",
    "parse_target",
    "target_argument",
]
