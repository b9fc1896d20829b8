"""The M-Bus master's async driver: :class:`Master` runs the pure transactions (``transaction``)
and scans (``scan``, ``scan_primary``) over a :class:`~mbuskit.transport.base.Transport`.

It owns the timing: the answer window comes from the baud rate (330 bit times + 50 ms,
EN 13757-2) plus the link latency the transport reports, and it drops the echo of our own bytes
that some level converters send back. It imports no asyncio: it only awaits the transport.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..codec import timing
from ..codec.ci import CI
from ..codec.link import (
    ADDRESS_MAX_PRIMARY,
    ADDRESS_NETWORK,
    Frame,
    FrameReader,
    LongFrame,
    ShortFrame,
    Skipped,
    frame_length,
)
from ..errors import (
    DecodeError,
    FrameError,
    LocalError,
    MBusError,
    TransportError,
)
from .scan import restore_requests, secondary_search
from .scan_primary import primary_scan
from .transaction import (
    CI_APPLICATION_RESET,
    CI_DATA_SEND,
    DEFAULT_RETRIES,
    MAX_TELEGRAMS,
    Answer,
    Expect,
    FcbState,
    Found,
    Outcome,
    Request,
    application_reset_payload,
    check_primary,
    command,
    exchange,
    normalize_fabrication,
    normalize_mask,
    ping,
    read,
    select,
    set_address_payload,
    set_id_payload,
    set_time_payload,
    snd_nke,
    switch_baud,
)

if TYPE_CHECKING:
    from ..transport.base import Transport

T = TypeVar("T")

# The driver owns the timing: no transaction waits, so this is its constant.
GAP_CHARS = 1  # line idle after an answer (11 bit times, EN 13757-2) before the next frame


@dataclass(slots=True)
class LinkStats:
    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    garbled: int = 0
    echoes: int = 0


def _default_more_follows(frame: LongFrame) -> bool:
    # DIF 1Fh "more records follow" is the last record of the telegram (EN 13757-3 6.3.1).
    # Decoding the records is the only way to find it reliably (1F can occur inside values).
    from ..codec.telegram import decode_telegram  # the codec may be absent while the tree grows

    try:
        telegram = decode_telegram(frame, strict=False)
    except (DecodeError, MBusError):
        return False
    records: Sequence[object] = getattr(telegram, "records", None) or []
    return bool(records) and bool(getattr(records[-1], "more_records_follow", False))


class Master:
    """An M-Bus master on one segment.

    ``timeout`` overrides the answer window (seconds to wait for the first byte of an answer);
    by default it is 330 bit times + 50 ms at the current baud rate (EN 13757-2) plus the link
    latency the transport reports as ``latency`` (TCP gateways, USB adapters).
    """

    def __init__(self, transport: Transport, *, timeout: float | None = None,
                 retries: int = DEFAULT_RETRIES, keys: Any = None,
                 more_follows: Callable[[LongFrame], bool] | None = None) -> None:
        if timeout is not None and timeout <= 0:
            raise LocalError(f"timeout must be positive, got {timeout}")
        if not 0 <= retries <= 9:
            raise LocalError(f"retries must be 0-9, got {retries}")
        self.transport = transport
        self._timeout = timeout
        self.retries = retries
        self.keys = keys
        self.fcb = FcbState()
        self.stats = LinkStats()
        self.trace: Callable[[str, bytes], None] | None = None
        self._more_follows = more_follows or _default_more_follows

    # -- timing ---------------------------------------------------------------------------

    @property
    def baud(self) -> int:
        return self.transport.baud

    @property
    def latency(self) -> float:
        value = getattr(self.transport, "latency", 0.0)
        return float(value) if isinstance(value, int | float) else 0.0

    @property
    def timeout(self) -> float:
        if self._timeout is not None:
            return self._timeout
        return timing.master_timeout(self.baud, self.latency)

    def _gap(self) -> float:
        return timing.frame_time(GAP_CHARS, self.baud)

    def _rest_timeout(self, missing: int) -> float:
        # A frame already started arrives back to back: the missing characters plus slack
        # for the link (and a gateway that forwards in chunks).
        return timing.frame_time(max(missing, 1), self.baud) + self._gap() + self.latency

    # -- one exchange ---------------------------------------------------------------------

    async def exchange(self, request: Request) -> Answer:
        """Put one request on the bus and collect what answers it."""
        transport = self.transport
        data = request.encode()
        await transport.drain_input()
        if self.trace:
            self.trace(">", data)
        self.stats.requests += 1
        await transport.send(data)
        if request.expect is Expect.NOTHING:
            return Answer(Outcome.SILENT)
        reader = FrameReader()
        items: list[Frame | Skipped] = []
        raw = bytearray()
        echo = False
        chunk = await transport.receive(self.timeout)
        while chunk:
            raw += chunk
            for item in reader.feed(chunk):
                if not echo and not items and _is_echo(item, data):
                    echo = True  # the converter echoed our frame; the answer follows
                    self.stats.echoes += 1
                    continue
                items.append(item)
            if reader.pending:
                missing = _missing(bytes(raw[-reader.pending:]))
                chunk = await transport.receive(self._rest_timeout(missing))
                if not chunk:
                    items.extend(reader.flush())
            elif items:
                # A short quiet gap instead of a whole answer window: a second answer that
                # overlaps ours has started by now (EN 13757-2 answer delay of 11 bit times).
                chunk = await transport.receive(self._gap())
            else:
                chunk = await transport.receive(self.timeout)  # only our echo so far
        if echo:
            raw = raw[len(data):] if raw.startswith(data) else raw
        answer = Answer.classify(items, bytes(raw), echo=echo)
        if self.trace and answer.raw:
            self.trace("<", answer.raw)
        if answer.outcome is Outcome.SILENT:
            self.stats.timeouts += 1
        elif answer.outcome is Outcome.GARBLED:
            self.stats.garbled += 1
        return answer

    async def run(self, transaction: Generator[Request, Answer, T]) -> T:
        """Drive a transaction to its end."""
        try:
            request = next(transaction)
            while True:
                answer = await self.exchange(request)
                request = transaction.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # -- operations -----------------------------------------------------------------------

    async def ping(self, address: int) -> bool:
        found = await self.run(ping(address, self.retries))
        if found:
            self.fcb.reset(address)  # SND_NKE clears the meter's FCB (EN 13757-2 5.4)
        return found

    async def select(self, address: str | object, *, fabrication: str | None = None) -> None:
        mask, fab = _target(address, fabrication)
        await self.run(select(mask, fab, self.retries, self.fcb))

    async def deselect(self) -> None:
        """SND_NKE to 253 deselects the selected meter (EN 13757-3 network layer)."""
        await self.run(exchange(Request(snd_nke(ADDRESS_NETWORK), Expect.ACK, ADDRESS_NETWORK), 0))

    async def _address(self, address: int | str | object, fabrication: str | None) -> int:
        if isinstance(address, int):
            return check_primary(address)
        await self.select(address, fabrication=fabrication)
        return ADDRESS_NETWORK

    async def read_frames(self, address: int | str | object, *, fabrication: str | None = None,
                          all_telegrams: bool = True) -> list[LongFrame]:
        """The RSP_UD frames of one read-out (all telegrams of a multi-telegram answer)."""
        target = await self._address(address, fabrication)
        limit = MAX_TELEGRAMS if all_telegrams else 1
        return await self.run(read(target, self.fcb, self.retries,
                                   more_follows=self._more_follows, max_telegrams=limit))

    async def read(self, address: int | str | object, *, fabrication: str | None = None,
                   all_telegrams: bool = True) -> list[Any]:
        """Read a meter and decode its telegrams (decrypted with ``keys`` when encrypted)."""
        from ..codec.telegram import decode_telegram

        frames = await self.read_frames(address, fabrication=fabrication,
                                        all_telegrams=all_telegrams)
        return [decode_telegram(frame, keys=self.keys) for frame in frames]

    async def command(self, address: int | str | object, data: bytes, *, ci: int = CI_DATA_SEND,
                      fabrication: str | None = None, what: str = "SND_UD") -> None:
        """SND_UD with ``data`` answered by E5, to a primary or a selected secondary address."""
        target = await self._address(address, fabrication)
        await self.run(command(target, ci, bytes(data), self.fcb, self.retries, what=what))

    async def application_reset(self, address: int | str | object,
                                subcode: int | None = None) -> None:
        await self.command(address, application_reset_payload(subcode), ci=CI_APPLICATION_RESET,
                           what="the application reset")

    async def application_error(self, address: int) -> int | None:
        """The CI 70h error code a slave holds after refusing a SND_UD: it stays silent and
        reports the error in its next RSP_UD (EN 13757-3 6.6); None when that answer is
        something else or nothing, so that "refused" can be told from "not there"."""
        try:
            frames = await self.read_frames(address, all_telegrams=False)
        except MBusError:
            return None
        if frames and frames[0].ci == CI.APPLICATION_ERROR:
            return frames[0].data[0] if frames[0].data else 0
        return None

    async def request_data(self, address: int | str | object, records: bytes) -> list[Any]:
        """Specific data request: SND_UD CI 51h with selection records (DIF data field 8h) or
        the global readout DIF 7Fh, then the read-out (EN 13757-3 readout selection)."""
        await self.command(address, records, what="the data request")
        target = address if isinstance(address, int) else ADDRESS_NETWORK
        return await self.read(target)

    async def set_primary_address(self, address: int | str | object, new_address: int) -> None:
        payload = set_address_payload(new_address)
        probe = Request(snd_nke(new_address), Expect.ACK, new_address)
        if new_address != address and (
                await self.run(exchange(probe, self.retries))).outcome is not Outcome.SILENT:
            raise LocalError(f"primary address {new_address} is already in use on this bus; "
                             "choose a free one (mbus scan)")
        await self.command(address, payload, what=f"setting primary address {new_address}")

    async def set_meter_number(self, address: int | str | object, meter_number: str | int) -> None:
        await self.command(address, set_id_payload(meter_number),
                           what=f"setting meter number {meter_number}")

    async def set_time(self, address: int | str | object, when: datetime) -> None:
        await self.command(address, set_time_payload(when), what="setting the clock")

    async def switch_baud(self, address: int, baud: int) -> None:
        """Switch a meter to ``baud`` and follow on our side (its E5 comes at the old rate)."""
        timing.check_baud(baud)
        target = await self._address(address, None)
        await self.run(switch_baud(target, baud, self.fcb, self.retries))
        await self.transport.set_baud(baud)

    async def raw(self, frame: bytes, *, expect: Expect = Expect.ANY) -> Answer:
        """Send a frame as given (after checking it is one frame) and return what answered."""
        from ..codec.link import decode_frame

        parsed = decode_frame(frame)
        if not isinstance(parsed, ShortFrame | LongFrame):
            raise LocalError("raw: send a short or long frame, not E5")
        request = Request(parsed, expect, parsed.address)
        return await self.exchange(request)

    # -- scans (the search logic is in scan.py; this drives it) --------------------------

    async def scan_primary(self, addresses: Iterable[int] = range(ADDRESS_MAX_PRIMARY + 1), *,
                           identify: bool = True,
                           on_event: Callable[[object], None] | None = None) -> list[Found]:
        return await self._scan(primary_scan(list(addresses), identify=identify,
                                             retries=self.retries), on_event)

    async def scan_secondary(self, mask: str = "FFFFFFFFFFFFFFFF", *, enhanced: bool = True,
                             short_reads: bool = True,
                             on_event: Callable[[object], None] | None = None) -> list[Found]:
        # stopped half-way, a search with short reads leaves meters on their readout selection
        cleanup = restore_requests(mask) if short_reads else []
        return await self._scan(secondary_search(mask, enhanced=enhanced,
                                                 short_reads=short_reads), on_event, cleanup)

    async def _scan(self, search: Generator[object, Answer | None, None],
                    on_event: Callable[[object], None] | None,
                    cleanup: Sequence[Request] = ()) -> list[Found]:
        """Drive a search; ``on_event`` sees every Found and Progress as it happens. If the
        caller cancels (Ctrl-C), the meters found so far are in ``self.found``, and the
        ``cleanup`` requests are sent (best effort) to leave the meters as they were."""
        self.found: list[Found] = []
        item = next(search, None)
        completed = False
        try:
            while item is not None:
                if isinstance(item, Request):
                    answer = await self.exchange(item)
                    item = search.send(answer)
                    continue
                if isinstance(item, Found):
                    item.baud = self.baud
                    self.found.append(item)
                if on_event is not None:
                    on_event(item)
                item = search.send(None)
            completed = True
        except StopIteration:
            completed = True
        finally:
            search.close()
            if not completed and cleanup:
                await self._cleanup(cleanup)
        return self.found

    async def _cleanup(self, requests: Sequence[Request]) -> None:
        for request in requests:
            with contextlib.suppress(MBusError, OSError):
                await self.exchange(request)


def _target(address: str | object, fabrication: str | None) -> tuple[str, str | None]:
    fab = normalize_fabrication(fabrication if fabrication is not None
                                else getattr(address, "fabrication", None))
    return normalize_mask(str(address)), fab


def _is_echo(item: Frame | Skipped, sent: bytes) -> bool:
    return (isinstance(item, ShortFrame | LongFrame) and item.from_master
            and item.encode() == sent)


def _missing(partial: bytes) -> int:
    # How many characters the partial frame the reader holds still needs (the L field tells
    # once 4 bytes are in; before that, assume the largest frame).
    try:
        need = frame_length(partial)
    except FrameError:
        need = None
    if need is None:
        return max(1, timing.MAX_FRAME_BYTES - len(partial))
    return max(1, need - len(partial))


def addresses(found: Iterable[Found]) -> list[str]:
    return [f.address for f in found if f.address]


__all__ = [
    "GAP_CHARS",
    "LinkStats",
    "Master",
    "TransportError",
    "addresses",
]
