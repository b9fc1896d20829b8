"""The master's transactions as pure state machines: no I/O, no clock.

A transaction is a generator that yields :class:`Request` (a frame to put on the bus and what
kind of answer to wait for) and is sent back an :class:`Answer` (what came back within the
answer window). Retries, FCB toggling (EN 13757-2 5.4), selection (EN 13757-3 network layer,
CI 52h) and multi-telegram read-out live here and are tested by feeding answers by hand. Scans
(``scan``, ``scan_primary``) are transactions of the same kind; they and the async driver
(:class:`~mbuskit.master.driver.Master`) build on this module, which imports neither.

Also here: the frames the master sends (EN 13757-2 5.2-5.4), the checks and normal forms of
primary and secondary addresses, the payloads of the standard writes (SND_UD CI 51h, EN 13757-3
/ m-bus.com 6.5) and :class:`Found`, what a scan reports.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from ..codec import timing
from ..codec.link import (
    ADDRESS_BROADCAST,
    ADDRESS_MAX_PRIMARY,
    ADDRESS_NETWORK,
    ADDRESS_TEST,
    Ack,
    Frame,
    Function,
    LongFrame,
    ShortFrame,
    Skipped,
    control,
)
from ..errors import (
    BusTimeout,
    EncodeError,
    LocalError,
    MBusError,
    ProtocolError,
)

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
    from ..codec.selection import encode_selection

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
# What a scan reports


@dataclass(slots=True)
class Found:
    """A meter a scan found: primary and/or secondary address, and the rate it answered at."""

    address: str | None = None  # secondary, libmbus form
    primary: int | None = None
    fabrication: str | None = None
    baud: int = 2400
    frame: LongFrame | None = field(default=None, repr=False)
    note: str = ""  # e.g. "collision: two meters share this primary address"


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
    "Outcome",
    "Request",
    "Transaction",
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
