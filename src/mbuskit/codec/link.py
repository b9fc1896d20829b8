"""EN 13757-2 link layer: the four frame formats, the C-field, checksums and a streaming reader.

Frame formats (EN 13757-2 clause 5, m-bus.com chapter 5):

* single character ``E5`` (acknowledge),
* short frame ``10 C A CS 16``,
* control frame ``68 03 03 68 C A CI CS 16``,
* long frame ``68 L L 68 C A CI data CS 16`` with L = 3 + len(data) <= 255.

The checksum is the arithmetic sum modulo 256 of C, A, CI and the data bytes.
Nothing here does I/O: :class:`FrameReader` is fed bytes and hands back frames.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import EncodeError, FrameError

ACK_BYTE = 0xE5
START_SHORT = 0x10
START_LONG = 0x68
STOP = 0x16
MAX_DATA = 252  # L is one byte and counts C, A and CI as well

# C-field bits (EN 13757-2 5.4)
C_PRM = 0x40  # 1 = message from the master (primary station)
C_FCB = 0x20  # master: frame count bit;  slave: ACD (access demand)
C_FCV = 0x10  # master: frame count bit valid;  slave: DFC (data flow control)
C_ACD = C_FCB
C_DFC = C_FCV

# Addresses (EN 13757-2 5.5, EN 13757-3 network layer)
ADDRESS_UNCONFIGURED = 0
ADDRESS_MAX_PRIMARY = 250
ADDRESS_NETWORK = 253  # the slave selected by secondary address
ADDRESS_TEST = 254  # broadcast, every slave answers
ADDRESS_BROADCAST = 255  # broadcast, nobody answers


class Function(enum.IntEnum):
    """Function codes in the low nibble of the C-field, combined with the PRM bit."""

    SND_NKE = 0x40  # link reset
    SND_UD = 0x43  # send user data (with FCV 0x53, 0x73)
    REQ_UD2 = 0x4B  # request class 2 data (with FCV 0x5B, 0x7B)
    REQ_UD1 = 0x4A  # request class 1 data (with FCV 0x5A, 0x7A)
    REQ_SKE = 0x49  # request status of link
    RSP_UD = 0x08  # response with user data
    RSP_SKE = 0x0B  # status of link


_FUNCTION_BY_CODE = {int(f) & 0x4F: f for f in Function}


def control(function: Function, *, fcb: bool = False, fcv: bool | None = None) -> int:
    """Build a C-field.

    For the master functions that use the frame count bit (SND_UD, REQ_UD1, REQ_UD2) FCV
    defaults to set; SND_NKE and REQ_SKE carry neither bit.
    """
    code = int(function)
    if function in (Function.SND_NKE, Function.REQ_SKE):
        if fcb or fcv:
            raise EncodeError(f"{function.name} carries no frame count bit")
        return code
    if function in (Function.RSP_UD, Function.RSP_SKE):
        return code | (C_ACD if fcb else 0) | (C_DFC if fcv else 0)
    if fcv is None:
        fcv = True
    return code | (C_FCV if fcv else 0) | (C_FCB if fcb else 0)


def function_of(c: int) -> Function | None:
    """The function of a C-field, or None for a code EN 13757-2 does not define."""
    return _FUNCTION_BY_CODE.get(c & 0x4F)


def checksum(data: bytes | bytearray | memoryview) -> int:
    return sum(data) & 0xFF


@dataclass(frozen=True, slots=True)
class Ack:
    """The single character E5."""

    def encode(self) -> bytes:
        return b"\xe5"


class _ControlField:
    """The C-field views shared by short and long frames (EN 13757-2 5.4)."""

    __slots__ = ()
    control: int

    @property
    def function(self) -> Function | None:
        return function_of(self.control)

    @property
    def fcb(self) -> bool:
        return bool(self.control & C_FCB)

    @property
    def fcv(self) -> bool:
        return bool(self.control & C_FCV)

    @property
    def from_master(self) -> bool:
        return bool(self.control & C_PRM)


@dataclass(frozen=True, slots=True)
class ShortFrame(_ControlField):
    control: int
    address: int

    def __post_init__(self) -> None:
        _check_byte("control", self.control)
        _check_byte("address", self.address)

    def encode(self) -> bytes:
        return bytes(
            (START_SHORT, self.control, self.address, (self.control + self.address) & 0xFF, STOP)
        )


@dataclass(frozen=True, slots=True)
class LongFrame(_ControlField):
    """A long frame; with no data it is a control frame (L = 3)."""

    control: int
    address: int
    ci: int
    data: bytes = field(default=b"")

    def __post_init__(self) -> None:
        _check_byte("control", self.control)
        _check_byte("address", self.address)
        _check_byte("CI", self.ci)
        if len(self.data) > MAX_DATA:
            raise EncodeError(f"long frame data is {len(self.data)} bytes, at most {MAX_DATA}")

    @property
    def is_control_frame(self) -> bool:
        return not self.data

    def encode(self) -> bytes:
        body = bytes((self.control, self.address, self.ci)) + self.data
        n = len(body)
        return bytes((START_LONG, n, n, START_LONG)) + body + bytes((checksum(body), STOP))


Frame = Ack | ShortFrame | LongFrame


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise EncodeError(f"{name} must be a byte (0-255), got {value}")


def frame_length(buf: bytes | bytearray | memoryview, start: int = 0) -> int | None:
    """How many bytes the frame beginning at ``start`` occupies, or None if more are needed.

    Raises FrameError when the bytes at ``start`` cannot begin a frame.
    """
    if len(buf) <= start:
        return None
    first = buf[start]
    if first == ACK_BYTE:
        return 1
    if first == START_SHORT:
        return 5
    if first == START_LONG:
        if len(buf) < start + 4:
            return None
        n1, n2, again = buf[start + 1], buf[start + 2], buf[start + 3]
        if n1 != n2:
            raise FrameError(
                "long frame length bytes differ", offset=start + 2, expected=f"{n1:02X}"
            )
        if again != START_LONG:
            raise FrameError("long frame has no second start byte", offset=start + 3, expected="68")
        if n1 < 3:
            raise FrameError("long frame length below 3", offset=start + 1, expected=">= 3")
        return n1 + 6
    raise FrameError(f"byte {first:02X} starts no frame", offset=start, expected="E5, 10 or 68")


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Decode exactly one frame; trailing bytes are an error."""
    buf = bytes(data)
    if not buf:
        raise FrameError("empty frame", offset=0, expected="E5, 10 or 68")
    n = frame_length(buf)
    if n is None or len(buf) < n:
        raise FrameError(
            f"truncated frame: {len(buf)} bytes of {n or 'at least 4'}",
            offset=len(buf),
            expected="more bytes",
        )
    if len(buf) > n:
        raise FrameError(
            f"{len(buf) - n} bytes after the end of the frame", offset=n, expected="end of data"
        )
    return _decode_exact(buf)


def _decode_exact(buf: bytes) -> Frame:
    first = buf[0]
    if first == ACK_BYTE:
        return Ack()
    if first == START_SHORT:
        if buf[4] != STOP:
            raise FrameError("short frame has no stop byte", offset=4, expected="16")
        if (buf[1] + buf[2]) & 0xFF != buf[3]:
            raise FrameError(
                f"short frame checksum {buf[3]:02X} is wrong",
                offset=3,
                expected=f"{(buf[1] + buf[2]) & 0xFF:02X}",
            )
        return ShortFrame(buf[1], buf[2])
    n = buf[1]
    body = buf[4 : 4 + n]
    cs = buf[4 + n]
    if buf[5 + n] != STOP:
        raise FrameError("long frame has no stop byte", offset=5 + n, expected="16")
    if checksum(body) != cs:
        raise FrameError(
            f"long frame checksum {cs:02X} is wrong", offset=4 + n, expected=f"{checksum(body):02X}"
        )
    return LongFrame(body[0], body[1], body[2], body[3:])


@dataclass(frozen=True, slots=True)
class Skipped:
    """Bytes the reader threw away while looking for a frame, and why."""

    data: bytes
    reason: str


class FrameReader:
    """Streaming frame parser: ``feed(chunk)`` returns the frames (and skipped noise) completed.

    Bytes that cannot begin a frame, or a frame whose checksum or stop byte is wrong, are
    reported as :class:`Skipped`; the reader then resynchronises at the next byte that can
    start a frame. A partial frame stays buffered until more bytes arrive (or :meth:`flush`).
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet make a whole frame."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Frame | Skipped]:
        self._buf += chunk
        out: list[Frame | Skipped] = []
        buf = self._buf
        pos = 0
        noise_start: int | None = None
        noise_reason = ""
        while pos < len(buf):
            try:
                n = frame_length(buf, pos)
            except FrameError as exc:
                if noise_start is None:
                    noise_start, noise_reason = pos, exc.reason
                pos += 1
                continue
            if n is None or pos + n > len(buf):
                break  # wait for more bytes
            try:
                frame = _decode_exact(bytes(buf[pos : pos + n]))
            except FrameError as exc:
                if noise_start is None:
                    noise_start, noise_reason = pos, exc.reason
                pos += 1
                continue
            if noise_start is not None:
                out.append(Skipped(bytes(buf[noise_start:pos]), noise_reason))
                noise_start = None
            out.append(frame)
            pos += n
        if noise_start is not None:
            out.append(Skipped(bytes(buf[noise_start:pos]), noise_reason))
        del buf[:pos]
        return out

    def flush(self) -> list[Frame | Skipped]:
        """Give up waiting (e.g. after a timeout): report the partial frame's bytes as noise.

        A stray 68h in noise can announce a long frame that never comes and hide a good frame
        behind it, so the buffered bytes are re-scanned from the next byte on; whatever still
        makes no frame is reported as skipped.
        """
        out: list[Frame | Skipped] = []
        while self._buf:
            head = bytes(self._buf[:1])
            rest = bytes(self._buf[1:])
            self._buf.clear()
            found = self.feed(rest)
            if found and isinstance(found[0], Skipped):
                out.append(Skipped(head + found[0].data, "incomplete frame"))
                out += found[1:]
            else:
                out.append(Skipped(head, "incomplete frame"))
                out += found
        return _merge_skipped(out)


def _merge_skipped(items: list[Frame | Skipped]) -> list[Frame | Skipped]:
    merged: list[Frame | Skipped] = []
    for item in items:
        last = merged[-1] if merged else None
        if isinstance(item, Skipped) and isinstance(last, Skipped):
            merged[-1] = Skipped(last.data + item.data, last.reason)
        else:
            merged.append(item)
    return merged


__all__ = [
    "ACK_BYTE",
    "ADDRESS_BROADCAST",
    "ADDRESS_MAX_PRIMARY",
    "ADDRESS_NETWORK",
    "ADDRESS_TEST",
    "ADDRESS_UNCONFIGURED",
    "C_ACD",
    "C_DFC",
    "C_FCB",
    "C_FCV",
    "C_PRM",
    "Ack",
    "Frame",
    "FrameReader",
    "Function",
    "LongFrame",
    "ShortFrame",
    "Skipped",
    "checksum",
    "control",
    "decode_frame",
    "frame_length",
    "function_of",
]
