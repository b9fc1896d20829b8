"""``mbus decode``: one M-Bus frame (hex text or binary) to JSON, libmbus XML, a table or CSV.

Exit status: 0 decoded, 1 bad frame (link or application layer), 2 usage, 3 security (missing
or wrong key, bad key file). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import string
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from ..errors import FrameError, MBusError, SecurityError

if TYPE_CHECKING:
    from ..codec.telegram import Telegram

EXIT_FRAME = 1
EXIT_USAGE = 2
EXIT_SECURITY = 3

_HEX = frozenset(string.hexdigits)
_TEXT = frozenset(string.hexdigits + string.whitespace + ",:")


def parse_frame_text(data: bytes) -> bytes:
    """The frame bytes in ``data``: hex text (whitespace, ',' and ':' separators allowed,
    optional 0x prefixes) or, when it is not text at all, the binary frame itself."""
    stripped = data.strip()
    if not stripped:
        raise FrameError("no frame in the input", offset=0, expected="hex digits or a frame")
    # A binary frame begins with 68, 10 or E5; a text frame with a hex digit.
    if stripped[0] in (0x68, 0x10, 0xE5) and not all(chr(b) in _TEXT for b in stripped):
        return bytes(stripped)
    try:
        text = stripped.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("input is neither hex text nor a binary M-Bus frame",
                         offset=0) from None
    text = text.replace("0x", "").replace("0X", "")
    digits = "".join(c for c in text if c not in string.whitespace and c not in ",:")
    for i, c in enumerate(digits):
        if c not in _HEX:
            raise FrameError(f"{c!r} is not a hex digit", offset=i // 2, expected="0-9, A-F")
    if len(digits) % 2:
        raise FrameError(f"odd number of hex digits ({len(digits)})", offset=len(digits) // 2,
                         expected="whole bytes")
    return bytes.fromhex(digits)


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"mbus decode: {message}", err=True)
    sys.exit(code)


def _render(t: Telegram, fmt: str) -> str:
    from ..render import document as render

    if fmt == "json":
        return render.to_json(t)
    if fmt in ("xml", "xml-normalized"):
        from ..render.libmbus_xml import to_xml

        return to_xml(t, normalized=fmt == "xml-normalized")
    if fmt == "csv":
        return render.to_csv(t)
    to_text = getattr(render, "to_text", None)
    if to_text is None:
        _fail(EXIT_USAGE, "table output is not available in this build")
    return str(to_text(t))


@click.command("decode")
@click.option("--format", "fmt", type=click.Choice(["json", "xml", "xml-normalized", "table",
                                                     "csv"]), default="json", show_default=True,
              help="Output format (xml = libmbus mbus_parse_hex, xml-normalized = its -n).")
@click.option("--key", "key_hex", metavar="HEX",
              help="AES-128 key (32 hex digits) for an encrypted telegram.")
@click.option("--keys", "keys_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Key file: 'ID_OR_SECONDARY_ADDRESS = 32 hex digits' per line.")
@click.option("--lenient", is_flag=True,
              help="On a damaged record, print what decoded plus diagnostics.")
@click.argument("source", required=False, default="-", metavar="[FILE|-]")
def decode(fmt: str, key_hex: str | None, keys_file: str | None, lenient: bool,
           source: str) -> None:
    """Decode one M-Bus frame from FILE (or stdin), given as hex text or binary."""
    from ..codec import security
    from ..codec.telegram import decode_telegram

    if key_hex is not None and keys_file is not None:
        _fail(EXIT_USAGE, "give --key or --keys, not both")
    keys: security.KeyStore | bytes | None = None
    try:
        if key_hex is not None:
            keys = security.parse_key(key_hex)
        elif keys_file is not None:
            keys = security.KeyStore.load(keys_file)
    except SecurityError as exc:
        _fail(EXIT_SECURITY, str(exc))
    try:
        if source == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as fh:
                raw = fh.read()
    except OSError as exc:
        _fail(EXIT_USAGE, f"cannot read {source}: {exc.strerror or exc}")
    try:
        telegram = decode_telegram(parse_frame_text(raw), keys=keys, strict=not lenient)
    except SecurityError as exc:
        _fail(EXIT_SECURITY, str(exc))
    except MBusError as exc:
        _fail(EXIT_FRAME, f"{type(exc).__name__}: {exc}")
    try:
        out = _render(telegram, fmt)
    except MBusError as exc:
        _fail(EXIT_FRAME, f"{type(exc).__name__}: {exc}")
    click.echo(out, nl=not out.endswith("\n"))


__all__ = ["EXIT_FRAME", "EXIT_SECURITY", "EXIT_USAGE", "decode", "parse_frame_text"]
