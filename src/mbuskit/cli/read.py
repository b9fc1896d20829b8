"""The ``mbus`` commands that find and read meters: scan and read.

Beside them: the scan's progress bar, its ``--addresses`` range and ``render_found``, the scan
result as a table, JSON, CSV or XML. The session, options and exit status are in ``session``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import LocalError
from ..master.driver import Master
from ..master.transaction import Found, normalize_mask
from .session import (
    ADDRESS,
    BAUD,
    EXIT_INTERRUPTED,
    FABRICATION,
    _baud,
    _secondary,
    _session,
    common,
)

AUTO_BAUDS = (2400, 9600, 300)  # the rates Kamstrup's module runs at, most common first
FORMATS = ("table", "json", "csv", "xml")


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
    unresolved: list[Any] = []
    interrupted = False
    for rate in rates:
        bar = _Bar(f"{mode} scan at {rate} Bd", show, unresolved)

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
    _warn_unresolved(unresolved, no_enhanced)
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


def _warn_unresolved(unresolved: Sequence[Any], no_enhanced: bool) -> None:
    # Meters that share a meter number answer one complete secondary address together; only
    # the enhanced selection (fabrication number, EN 13757-3 0C 78 record) separates them, and
    # the table above lists none of them.
    if not unresolved:
        return
    masks = ", ".join(sorted({u.mask for u in unresolved}))
    how = ("scan without --no-enhanced to tell them apart by fabrication number"
           if no_enhanced else "they answer alike even by fabrication number")
    click.echo(f"mbus scan: warning: several meters answer {masks} and were not separated "
               f"(not listed above); {how}", err=True)


class _Bar:
    def __init__(self, title: str, show: bool, unresolved: list[Any] | None = None) -> None:
        self._progress: Any = None
        self._unresolved = unresolved
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
        from ..master.scan import Progress, Unresolved

        if isinstance(event, Unresolved) and self._unresolved is not None:
            self._unresolved.append(event)
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
            from ..master.transaction import GLOBAL_READOUT

            if _secondary(address):
                await master.select(address, fabrication=fabrication)
            return await master.request_data(253 if _secondary(address) else address,
                                              GLOBAL_READOUT)
        return await master.read(address, fabrication=fabrication, all_telegrams=not first)

    telegrams = session.run(body, deselect=_secondary(address))
    if fmt == "json":
        out = json.dumps([render.to_dict(t) for t in telegrams], indent=2)
    elif fmt == "xml":
        from ..render.libmbus_xml import to_xml

        out = to_xml(telegrams)
    elif fmt == "csv":
        out = render.to_csv(telegrams)
    else:
        out = "\n".join(render.to_text(t) for t in telegrams)
    click.echo(out.rstrip("\n"))


__all__ = ["read", "render_found", "scan"]
