"""The M-Bus master: transactions as pure state machines, and an async driver for a transport.

Core (no I/O, no clock): a transaction is a generator that yields :class:`Request` (a frame to
put on the bus and what kind of answer to wait for) and is sent back an :class:`Answer` (what
came back within the answer window). Retries, FCB toggling (EN 13757-2 5.4), selection
(EN 13757-3 network layer, CI 52h) and multi-telegram read-out live here and are tested by
feeding answers by hand. Scans (``scan.py``) are transactions of the same kind.

Driver: :class:`Master` runs transactions over a :class:`~mbuskit.transport.base.Transport`.
It owns the timing: the answer window comes from the baud rate (330 bit times + 50 ms,
EN 13757-2) plus the link latency the transport reports, and it drops the echo of our own bytes
that some level converters send back. It imports no asyncio: it only awaits the transport.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..codec import timing
from ..codec.link import (
    ADDRESS_BROADCAST,
    ADDRESS_MAX_PRIMARY,
    ADDRESS_NETWORK,
    ADDRESS_TEST,
    Ack,
    Frame,
    FrameReader,
    Function,
    LongFrame,
    ShortFrame,
    Skipped,
    control,
    frame_length,
)
from ..errors import (
    BusTimeout,
    DecodeError,
    EncodeError,
    FrameError,
    LocalError,
    MBusError,
    ProtocolError,
    TransportError,
)

if TYPE_CHECKING:
    from ..transport.base import Transport

T = TypeVar("T")

# CI codes the master sends (EN 13757-3 table 2, m-bus.com 6.1)
CI_APPLICATION_RESET = 0x50
CI_DATA_SEND = 0x51
CI_SELECT = 0x52
CI_RSP_VARIABLE = 0x72
CI_RSP_FIXED = 0x73

# Master-side defaults.
DEFAULT_RETRIES = 3  # extra sends of a request that got no or a garbled answer (libmbus: 3)
MAX_TELEGRAMS = 16  # cap on a multi-telegram read-out, as libmbus's max_frames
GAP_CHARS = 1  # line idle after an answer (11 bit times, EN 13757-2) before the next frame

ID_WILDCARD = "F"


class Expect(enum.Enum):
    ACK = "ack"  # E5 (SND_NKE, SND_UD, selection)
    DATA = "data"  # RSP_UD long frame (REQ_UD2)
    ANY = "any"  # raw frames: whatever comes
    NOTHING = "nothing"  # broadcast to 255: nobody answers


@dataclass(frozen=True, slots=True)
class Request:
    """One frame for the bus; ``address`` is where it goes (for messages and FCB state)."""

    frame: ShortFrame | LongFrame
    expect: Expect
    address: int

    def encode(self) -> bytes:
        return self.frame.encode()


class Outcome(enum.Enum):
    SILENT = "silent"  # nothing within the answer window
    ACK = "ack"  # exactly one clean E5
    FRAME = "frame"  # exactly one frame with a good checksum (not an E5)
    GARBLED = "garbled"  # bad checksum, stray bytes, several frames: collision or noise


@dataclass(frozen=True, slots=True)
class Answer:
    """What the driver heard after one Request, already without the echo of our own bytes."""

    outcome: Outcome
    frame: Frame | None = None
    raw: bytes = b""
    echo: bool = False  # our own bytes came back first (a level converter that echoes)

    @classmethod
    def classify(cls, items: Sequence[Frame | Skipped], raw: bytes, *,
                 echo: bool = False) -> Answer:
        """Sort what a FrameReader produced into one of the four outcomes."""
        frames = [i for i in items if not isinstance(i, Skipped)]
        noise = [i for i in items if isinstance(i, Skipped)]
        if not frames and not noise:
            return cls(Outcome.SILENT, raw=raw, echo=echo)
        if noise or len(frames) != 1:
            return cls(Outcome.GARBLED, raw=raw, echo=echo)
        frame = frames[0]
        if isinstance(frame, Ack):
            return cls(Outcome.ACK, frame, raw, echo)
        return cls(Outcome.FRAME, frame, raw, echo)


Transaction = Generator[Request, Answer, T]


# ---------------------------------------------------------------------------------------------
# Frames (EN 13757-2 5.2-5.4)


def snd_nke(address: int) -> ShortFrame:
    return ShortFrame(control(Function.SND_NKE), address)


def req_ud2(address: int, *, fcb: bool) -> ShortFrame:
    return ShortFrame(control(Function.REQ_UD2, fcb=fcb), address)


def snd_ud(address: int, ci: int, data: bytes = b"", *, fcb: bool = False) -> LongFrame:
    return LongFrame(control(Function.SND_UD, fcb=fcb), address, ci, bytes(data))


def check_primary(address: int, *, allow_special: bool = True) -> int:
    """A primary address we may send to: 0-250, plus 253/254/255 when ``allow_special``."""
    special = (ADDRESS_NETWORK, ADDRESS_TEST, ADDRESS_BROADCAST) if allow_special else ()
    if not isinstance(address, int) or not (0 <= address <= ADDRESS_MAX_PRIMARY
                                            or address in special):
        raise LocalError(f"primary address {address!r} is out of range (0-250)")
    return address


def _hex_nibble(ch: str) -> int:
    try:
        return int(ch, 16)
    except ValueError:
        raise LocalError(f"{ch!r} is not a hex digit") from None


def normalize_mask(mask: str) -> str:
    """A secondary address or wildcard mask in libmbus form: 8 ID digits (F = wildcard), then
    manufacturer (2 bytes, wire order), version and medium as hex; a short mask is padded with F.
    """
    text = str(mask).strip().upper()
    if len(text) < 16:
        text = text + "F" * (16 - len(text))
    if len(text) != 16 or any(c not in "0123456789ABCDEF" for c in text):
        raise LocalError(f"secondary address {mask!r} must be 16 hex digits "
                         "(8 ID digits, 2D2C manufacturer, version, medium; F = wildcard)")
    if any(c not in "0123456789F" for c in text[:8]):
        raise LocalError(f"secondary address {mask!r}: ID digits are BCD 0-9 or the wildcard F")
    return text


def normalize_fabrication(fabrication: str | int | None) -> str | None:
    if fabrication is None:
        return None
    if isinstance(fabrication, int):
        text = f"{fabrication:08d}"
    else:
        text = str(fabrication).strip().upper()
    if len(text) < 8:
        text = text.rjust(8, "0") if text.isdigit() else text + "F" * (8 - len(text))
    if len(text) != 8 or any(c not in "0123456789F" for c in text):
        raise LocalError(f"fabrication number {fabrication!r} must be 8 digits (F = wildcard)")
    return text


def _bcd_lsb_first(digits: str) -> bytes:
    # "12345678" -> 78 56 34 12; an F digit stays F in its nibble (EN 13757-3 network layer).
    out = bytearray()
    for i in range(len(digits) - 2, -1, -2):
        out.append((_hex_nibble(digits[i]) << 4) | _hex_nibble(digits[i + 1]))
    return bytes(out)


def selection_payload(mask: str, fabrication: str | None = None) -> bytes:
    """The data of a CI 52h selection: ID (BCD, LSB first), manufacturer (wire order), version,
    medium; for enhanced selection a ``0C 78`` fabrication-number record follows (BCD8, F nibbles
    are wildcards)."""
    from ..codec.telegram import encode_selection

    return encode_selection(normalize_mask(mask), normalize_fabrication(fabrication))


def select_frame(mask: str, fabrication: str | None = None) -> LongFrame:
    # C = 53h (SND_UD, FCV=1, FCB=0): the form of m-bus.com fig. 29; the selection is not part
    # of a FCB sequence, the first REQ_UD2 after it starts one.
    return snd_ud(ADDRESS_NETWORK, CI_SELECT, selection_payload(mask, fabrication))


def address_of(frame: LongFrame) -> str | None:
    """Secondary address (libmbus form) from an RSP_UD long header (CI 72h) or fixed header
    (CI 73h: ID only, no manufacturer), or None when the frame carries neither."""
    data = frame.data
    if frame.ci == CI_RSP_VARIABLE and len(data) >= 8:
        ident = data[3::-1].hex().upper()
        return ident + data[4:8].hex().upper()
    return None


def matches(address: str, mask: str) -> bool:
    return all(m in (ID_WILDCARD, a) for m, a in zip(normalize_mask(mask), address, strict=True))


def fabrication_of(frame: LongFrame) -> str | None:
    """The fabrication number of a ``0C 78`` record right after the long header, as Kamstrup
    and others put it first (libmbus ``kamstrup_multical_601``); None when not there."""
    data = frame.data
    if frame.ci == CI_RSP_VARIABLE and len(data) >= 18 and data[12] == 0x0C and data[13] == 0x78:
        return data[17:13:-1].hex().upper()
    return None


# ---------------------------------------------------------------------------------------------
# Transactions


class FcbState:
    """The next frame count bit per address (EN 13757-2 5.4): set after SND_NKE or a new
    selection, toggled after every exchange that got its answer, kept for a repeat."""

    def __init__(self) -> None:
        self._next: dict[int, bool] = {}

    def next(self, address: int) -> bool:
        return self._next.get(address, True)

    def advance(self, address: int) -> None:
        self._next[address] = not self.next(address)

    def reset(self, address: int) -> None:
        self._next[address] = True


def _describe(address: int) -> str:
    return "the selected meter" if address == ADDRESS_NETWORK else f"primary address {address}"


def exchange(request: Request, retries: int) -> Transaction[Answer]:
    """Send ``request`` until it gets a clean answer of the expected kind, at most
    ``retries`` extra times. Silence and garbling are both retried: noise passes on a repeat,
    a collision does not. Returns the last answer, good or not."""
    answer = Answer(Outcome.SILENT)
    for _ in range(retries + 1):
        answer = yield request
        if _wanted(request.expect, answer):
            return answer
    return answer


def _wanted(expect: Expect, answer: Answer) -> bool:
    if expect is Expect.ACK:
        return answer.outcome is Outcome.ACK
    if expect is Expect.DATA:
        return answer.outcome is Outcome.FRAME and isinstance(answer.frame, LongFrame)
    if expect is Expect.NOTHING:
        return True
    return answer.outcome in (Outcome.ACK, Outcome.FRAME)


def _fail(answer: Answer, address: int, what: str) -> MBusError:
    where = _describe(address)
    if answer.outcome is Outcome.SILENT:
        return BusTimeout(f"{where}: no answer to {what}; check the address, the baud rate and "
                          "the wiring")
    if answer.outcome is Outcome.GARBLED:
        return CollisionError(f"{where}: garbled answer to {what} after retries: two meters "
                              "answer (collision) or the line is noisy")
    return ProtocolError(f"{where}: unexpected answer to {what}: {answer.raw.hex(' ')}")


class CollisionError(ProtocolError):
    """Answers kept arriving garbled: two meters answer at once (or the line is very noisy)."""


def ping(address: int, retries: int) -> Transaction[bool]:
    """SND_NKE (link reset) answered by E5: whether a meter answers at ``address``."""
    check_primary(address)
    answer = yield from exchange(Request(snd_nke(address), Expect.ACK, address), retries)
    if answer.outcome is Outcome.GARBLED:
        raise _fail(answer, address, "SND_NKE")
    return answer.outcome is Outcome.ACK


def command(address: int, ci: int, data: bytes, fcb: FcbState, retries: int, *,
            what: str = "SND_UD") -> Transaction[None]:
    """SND_UD answered by E5 (writes, application reset, baud switch, readout selection)."""
    check_primary(address)
    if address == ADDRESS_BROADCAST:
        yield Request(snd_ud(address, ci, data), Expect.NOTHING, address)
        return
    frame = snd_ud(address, ci, data, fcb=fcb.next(address))
    answer = yield from exchange(Request(frame, Expect.ACK, address), retries)
    if answer.outcome is not Outcome.ACK:
        raise _fail(answer, address, what)
    fcb.advance(address)


def select(mask: str, fabrication: str | None, retries: int, fcb: FcbState) -> Transaction[None]:
    """Select one meter by secondary (or enhanced secondary) address; it then answers at 253."""
    frame = select_frame(mask, fabrication)
    answer = yield from exchange(Request(frame, Expect.ACK, ADDRESS_NETWORK), retries)
    if answer.outcome is not Outcome.ACK:
        name = mask + (f" fabrication {fabrication}" if fabrication else "")
        if answer.outcome is Outcome.SILENT:
            raise BusTimeout(f"meter {name}: no answer to the selection; check the secondary "
                             "address (mbus scan) and the baud rate")
        raise CollisionError(f"meter {name}: garbled answer to the selection (collision or noise)")
    fcb.reset(ADDRESS_NETWORK)


def read(address: int, fcb: FcbState, retries: int, *,
         more_follows: Callable[[LongFrame], bool],
         max_telegrams: int = MAX_TELEGRAMS) -> Transaction[list[LongFrame]]:
    """REQ_UD2 read-out with every telegram of a multi-telegram answer (EN 13757-2 5.4,
    EN 13757-3 DIF 1Fh): the FCB is toggled after each telegram received, and a request that
    got nothing or garbage is repeated with the same FCB, so the meter repeats its telegram."""
    check_primary(address)
    if address == ADDRESS_BROADCAST:
        raise LocalError("cannot read from the broadcast address 255: nobody answers it")
    telegrams: list[LongFrame] = []
    while True:
        frame = req_ud2(address, fcb=fcb.next(address))
        answer = yield from exchange(Request(frame, Expect.DATA, address), retries)
        if answer.outcome is not Outcome.FRAME or not isinstance(answer.frame, LongFrame):
            raise _fail(answer, address, f"REQ_UD2 (telegram {len(telegrams) + 1})")
        fcb.advance(address)
        telegrams.append(answer.frame)
        if len(telegrams) >= max_telegrams or not more_follows(answer.frame):
            return telegrams


def switch_baud(address: int, baud: int, fcb: FcbState, retries: int) -> Transaction[None]:
    """CI B8h-BFh (EN 13757-3): the meter acknowledges at the old rate, then listens at the new
    one; the driver follows after this returns."""
    ci = timing.ci_of_baud(baud)
    yield from command(address, ci, b"", fcb, retries, what=f"the switch to {baud} baud")


# ---------------------------------------------------------------------------------------------
# Payloads of the standard writes (SND_UD CI 51h, EN 13757-3 / m-bus.com 6.5)


def set_address_payload(new_address: int) -> bytes:
    check_primary(new_address, allow_special=False)
    return bytes((0x01, 0x7A, new_address))


def set_id_payload(meter_number: str | int) -> bytes:
    text = f"{meter_number:08d}" if isinstance(meter_number, int) else str(meter_number).strip()
    if len(text) != 8 or not text.isdigit():
        raise LocalError(f"meter number {meter_number!r} must be 8 decimal digits")
    return b"\x0c\x79" + _bcd_lsb_first(text)


def type_f(when: datetime) -> bytes:
    """EN 13757-3 annex A type F (CP32) date and time: minute, hour (+summer time bit), day and
    year low bits, month and year high bits; the century goes in the hour's HY bits."""
    if not 2000 <= when.year <= 2099 + 100:
        raise EncodeError(f"year {when.year} does not fit a type F date")
    year = when.year - 1900
    hy, y = divmod(year, 100)
    dst = bool(when.dst()) if when.tzinfo is not None else False
    return bytes((
        when.minute & 0x3F,
        (when.hour & 0x1F) | (hy << 5) | (0x80 if dst else 0),
        (when.day & 0x1F) | ((y & 0x07) << 5),
        (when.month & 0x0F) | ((y >> 3) << 4),
    ))


def set_time_payload(when: datetime) -> bytes:
    return b"\x04\x6d" + type_f(when)


def application_reset_payload(subcode: int | None) -> bytes:
    if subcode is None:
        return b""
    if not 0 <= subcode <= 0xFF:
        raise LocalError(f"application reset subcode {subcode} is not a byte")
    return bytes((subcode,))


GLOBAL_READOUT = b"\x7f"  # DIF 7Fh: global readout request (EN 13757-3 table 6)


# ---------------------------------------------------------------------------------------------
# The driver


@dataclass(slots=True)
class LinkStats:
    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    garbled: int = 0
    echoes: int = 0


@dataclass(slots=True)
class Found:
    """A meter a scan found: primary and/or secondary address, and the rate it answered at."""

    address: str | None = None  # secondary, libmbus form
    primary: int | None = None
    fabrication: str | None = None
    baud: int = 2400
    frame: LongFrame | None = field(default=None, repr=False)
    note: str = ""  # e.g. "collision: two meters share this primary address"


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
        from .scan_primary import primary_scan

        return await self._scan(primary_scan(list(addresses), identify=identify,
                                             retries=self.retries), on_event)

    async def scan_secondary(self, mask: str = "FFFFFFFFFFFFFFFF", *, enhanced: bool = True,
                             short_reads: bool = True,
                             on_event: Callable[[object], None] | None = None) -> list[Found]:
        from .scan import restore_requests, secondary_search

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
    "CI_APPLICATION_RESET",
    "CI_DATA_SEND",
    "CI_SELECT",
    "DEFAULT_RETRIES",
    "GLOBAL_READOUT",
    "MAX_TELEGRAMS",
    "Answer",
    "CollisionError",
    "Expect",
    "FcbState",
    "Found",
    "LinkStats",
    "Master",
    "Outcome",
    "Request",
    "Transaction",
    "TransportError",
    "address_of",
    "application_reset_payload",
    "check_primary",
    "command",
    "exchange",
    "fabrication_of",
    "matches",
    "normalize_fabrication",
    "normalize_mask",
    "ping",
    "read",
    "req_ud2",
    "select",
    "select_frame",
    "selection_payload",
    "set_address_payload",
    "set_id_payload",
    "set_time_payload",
    "snd_nke",
    "snd_ud",
    "switch_baud",
    "type_f",
]
