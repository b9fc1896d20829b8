"""A small M-Bus slave and a scripted transport for the master's tests.

The slave follows EN 13757-2/-3 just far enough to exercise the master: primary and secondary
(and enhanced) addressing, selection with F wildcards, FCB-driven multi-telegram read-out,
address/ID writes and baud switching. It is deliberately independent of ``mbuskit.slave`` so
the master's tests do not depend on the twin being finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mbuskit.codec.link import Ack, Frame, LongFrame, ShortFrame
from mbuskit.codec.timing import baud_of_ci


@dataclass(frozen=True)
class Reply:
    data: bytes
    new_baud: int | None = None


def bcd(digits: str) -> bytes:
    return bytes.fromhex(digits)[::-1]


def _digit_ok(mask: int, value: int) -> bool:
    return mask == 0xF or mask == value


def _bytes_match(pattern: bytes, actual: bytes, *, nibbles: bool) -> bool:
    for p, a in zip(pattern, actual, strict=True):
        if nibbles:
            if not (_digit_ok(p >> 4, a >> 4) and _digit_ok(p & 0xF, a & 0xF)):
                return False
        elif p not in (0xFF, a):
            return False
    return True


@dataclass
class FakeMeter:
    ident: str  # 8 digits
    primary: int = 0
    fabrication: str = "00000000"
    manufacturer: bytes = b"\x2d\x2c"
    version: int = 1
    medium: int = 2
    telegrams: int = 1
    energy: int = 1234
    baud: int = 2400
    selected: bool = False
    last_fcb: bool | None = None
    index: int = 0
    log: list[bytes] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.ident + self.manufacturer.hex().upper() + f"{self.version:02X}{self.medium:02X}"

    def _addressed(self, address: int) -> bool:
        return address in (self.primary, 254) or (address == 253 and self.selected)

    def telegram(self, index: int) -> bytes:
        header = bcd(self.ident) + self.manufacturer + bytes((self.version, self.medium, index, 0,
                                                             0, 0))
        records = b"\x0c\x78" + bcd(self.fabrication) + b"\x04\x06" + self.energy.to_bytes(4,
                                                                                      "little")
        records += b"\x02\xfd\x0e" + bytes((index, 0))
        if index + 1 < self.telegrams:
            records += b"\x1f"
        return LongFrame(0x08, self.primary, 0x72, header + records).encode()

    def handle(self, frame: Frame, now: float) -> Reply | None:
        if isinstance(frame, Ack):
            return None
        self.log.append(frame.encode())
        if isinstance(frame, ShortFrame):
            return self._short(frame)
        return self._long(frame)

    def _short(self, frame: ShortFrame) -> Reply | None:
        fn = frame.control & 0x4F
        if fn == 0x40:
            if frame.address == 253 and self.selected:
                self.selected = False
                self.last_fcb = None
                return Reply(b"\xe5")
            if self._addressed(frame.address):
                self.last_fcb = None
                self.index = 0
                return Reply(b"\xe5")
            return None
        if fn == 0x4B and self._addressed(frame.address):
            if frame.fcv and self.last_fcb is not None and frame.fcb != self.last_fcb:
                self.index = (self.index + 1) % self.telegrams
            elif frame.fcv and self.last_fcb is None:
                self.index = 0
            if frame.fcv:
                self.last_fcb = frame.fcb
            return Reply(self.telegram(self.index))
        return None

    def _long(self, frame: LongFrame) -> Reply | None:
        if frame.ci == 0x52 and frame.address == 253:
            self.selected = self._selected_by(frame.data)
            if self.selected:
                self.last_fcb = None
                return Reply(b"\xe5")
            return None
        if not self._addressed(frame.address):
            return None
        baud = baud_of_ci(frame.ci)
        if baud is not None:
            return Reply(b"\xe5", new_baud=baud)
        if frame.ci == 0x51:
            data = frame.data
            if data[:2] == b"\x01\x7a":
                self.primary = data[2]
            elif data[:2] == b"\x0c\x79":
                self.ident = data[5:1:-1].hex()
            elif data[:2] == b"\x04\x6d":
                pass
            else:
                return None
            return Reply(b"\xe5")
        if frame.ci == 0x50:
            self.index = 0
            return Reply(b"\xe5")
        return None

    def _selected_by(self, data: bytes) -> bool:
        if len(data) not in (8, 14):
            return False
        own = bcd(self.ident) + self.manufacturer + bytes((self.version, self.medium))
        if not _bytes_match(data[:4], own[:4], nibbles=True):
            return False
        if not _bytes_match(data[4:8], own[4:8], nibbles=False):
            return False
        if len(data) == 14:
            if data[8:10] != b"\x0c\x78":
                return False
            return _bytes_match(data[10:14], bcd(self.fabrication), nibbles=True)
        return True


class ScriptedTransport:
    """A transport that answers each send with the next scripted reply (b"" = silence) and
    records what was sent; ``latency`` is what a gateway would report."""

    def __init__(self, replies: list[bytes], *, baud: int = 2400, echo: bool = False,
                 latency: float = 0.0) -> None:
        self.replies = list(replies)
        self.sent: list[bytes] = []
        self.timeouts: list[float] = []
        self._baud = baud
        self._pending = b""
        self.echo = echo
        self.latency = latency
        self.opened = False

    @property
    def baud(self) -> int:
        return self._baud

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.opened = False

    async def send(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        reply = self.replies.pop(0) if self.replies else b""
        self._pending = (bytes(data) if self.echo else b"") + reply

    async def receive(self, timeout: float) -> bytes:
        self.timeouts.append(timeout)
        out, self._pending = self._pending, b""
        return out

    async def set_baud(self, baud: int) -> None:
        self._baud = baud

    async def drain_input(self) -> None:
        self._pending = b""
