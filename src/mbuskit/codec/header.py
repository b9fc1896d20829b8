"""EN 13757-3 application-layer headers and the identification fields they carry.

* Identification: the 8 BCD-digit ID, the manufacturer code (three letters in 15 bits,
  EN 13757-3 clause 6.3.3), version and medium (``ci.MEDIA``); together the secondary
  address, which is also what a selection (``selection``) matches.
* The status byte (EN 13757-3:2018 clause 6.4, table 9).
* The headers after the CI: short (CI 7Ah/5Ah, 4 bytes), long (CI 72h/76h/5Bh, 12 bytes)
  and the header part of the fixed data structure (CI 73h/77h), each with its parser. The
  configuration word (EN 13757-7 clause 7.5.8) names the security mode; in mode 7 one more
  byte follows, the configuration field extension, which is why the parsers ask
  ``security`` for the mode.

Header fields keep their wire bytes (``id_raw``, ``manufacturer_code``): meters in the field
send IDs with non-BCD digits, and re-encoding must give back exactly what was received.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import DecodeError, EncodeError
from . import security
from .ci import FIXED_MEDIA, medium_name


def manufacturer_code(letters: str) -> int:
    """'KAM' -> 0x2C2D: three letters, 5 bits each, 'A' = 1 (EN 13757-3 clause 6.3.3)."""
    if len(letters) != 3 or not all("A" <= c <= "Z" for c in letters.upper()):
        raise EncodeError(f"manufacturer must be 3 letters A-Z, got {letters!r}")
    up = letters.upper()
    return ((ord(up[0]) - 64) << 10) | ((ord(up[1]) - 64) << 5) | (ord(up[2]) - 64)


def manufacturer_letters(code: int) -> str:
    return (chr(((code >> 10) & 0x1F) + 64) + chr(((code >> 5) & 0x1F) + 64)
            + chr((code & 0x1F) + 64))


def _bcd_id(raw: bytes) -> int:
    # Like libmbus, a non-decimal nibble counts with its hex value at its decimal place; the
    # exact digits stay in the raw bytes (ID_text) so nothing is lost.
    value = 0
    for byte in reversed(raw):
        value = value * 100 + (byte >> 4) * 10 + (byte & 0x0F)
    return value


def _id_bytes(ident: int) -> bytes:
    if not 0 <= ident <= 99_999_999:
        raise EncodeError(f"ID {ident} is not 8 BCD digits")
    return bytes.fromhex(f"{ident:08d}")[::-1]


def _init_ident(obj: object, ident: int, raw: bytes | None, letters: str,
                code: int | None) -> None:
    if raw is None:
        raw = _id_bytes(ident)
    elif len(raw) != 4:
        raise EncodeError(f"ID must be 4 bytes, got {len(raw)}")
    elif _bcd_id(raw) != ident:
        raise EncodeError(f"ID {ident} does not match its bytes {raw.hex()}")
    object.__setattr__(obj, "id_raw", bytes(raw))
    if code is None:
        code = manufacturer_code(letters)
        object.__setattr__(obj, "manufacturer", letters.upper())
    elif not 0 <= code <= 0xFFFF:
        raise EncodeError(f"manufacturer code {code:#x} is not 16 bits")
    elif manufacturer_letters(code) != letters:
        raise EncodeError(f"manufacturer {letters!r} does not match code {code:#06x}")
    object.__setattr__(obj, "manufacturer_code", code)


@dataclass(frozen=True, slots=True)
class SecondaryAddress:
    """ID + manufacturer + version + medium; ``str()`` is libmbus's 'IIIIIIIIMMMMVVDD'."""

    id: int
    manufacturer: str
    version: int
    medium: int
    id_raw: bytes | None = None
    manufacturer_code: int | None = None

    def __post_init__(self) -> None:
        _init_ident(self, self.id, self.id_raw, self.manufacturer, self.manufacturer_code)
        for name in ("version", "medium"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise EncodeError(f"{name} must be a byte")

    @property
    def id_text(self) -> str:
        """The 8 ID digits as sent (hex digits where a meter sent non-BCD nibbles)."""
        assert self.id_raw is not None
        return self.id_raw[::-1].hex().upper()

    def to_bytes(self) -> bytes:
        """The 8 address bytes as in a long header or a selection (wire order)."""
        assert self.id_raw is not None and self.manufacturer_code is not None
        return (self.id_raw + self.manufacturer_code.to_bytes(2, "little")
                + bytes((self.version, self.medium)))

    def __str__(self) -> str:
        return self.to_bytes()[:4][::-1].hex().upper() + self.to_bytes()[4:].hex().upper()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecondaryAddress:
        if len(data) != 8:
            raise DecodeError(f"secondary address is 8 bytes, got {len(data)}")
        raw, code = bytes(data[:4]), int.from_bytes(data[4:6], "little")
        return cls(_bcd_id(raw), manufacturer_letters(code), data[6], data[7], raw, code)

    @classmethod
    def parse(cls, text: str) -> SecondaryAddress:
        """Parse 'IIIIIIIIMMMMVVDD' (manufacturer bytes in wire order, e.g. 2D2C for KAM)."""
        t = text.strip()
        if len(t) != 16 or not all(c in "0123456789abcdefABCDEF" for c in t):
            raise DecodeError(f"secondary address {text!r} is not 16 hex digits")
        return cls.from_bytes(bytes.fromhex(t[:8])[::-1] + bytes.fromhex(t[8:]))


# status byte bits (EN 13757-3:2018 clause 6.4, table 9)
STATUS_APPLICATION_MASK = 0x03  # 00 no error, 01 busy, 10 application error, 11 alarm
STATUS_POWER_LOW = 0x04
STATUS_PERMANENT_ERROR = 0x08
STATUS_TEMPORARY_ERROR = 0x10
STATUS_APPLICATION = {0: "no error", 1: "application busy", 2: "application error",
                      3: "abnormal condition / alarm"}


def status_flags(status: int) -> tuple[str, ...]:
    out = [] if not status & 3 else [STATUS_APPLICATION[status & 3]]
    for bit, name in ((STATUS_POWER_LOW, "power low"), (STATUS_PERMANENT_ERROR, "permanent error"),
                      (STATUS_TEMPORARY_ERROR, "temporary error")):
        if status & bit:
            out.append(name)
    if status & 0xE0:
        out.append(f"manufacturer bits {status >> 5:03b}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ShortHeader:
    """CI 7Ah/5Ah: access number, status, configuration word (+ extension in mode 7)."""

    access_number: int = 0
    status: int = 0
    signature: int = 0  # the configuration word (EN 13757-7 clause 7.5.8)
    config_ext: int | None = None  # configuration field extension, security mode 7 only

    @property
    def security_mode(self) -> int:
        return security.security_mode(self.signature)

    @property
    def encrypted_blocks(self) -> int:
        return security.encrypted_blocks(self.signature)

    def _tail(self, msb: bool) -> bytes:
        sig = self.signature.to_bytes(2, "big" if msb else "little")
        ext = b"" if self.config_ext is None else bytes((self.config_ext,))
        return bytes((self.access_number, self.status)) + sig + ext

    def encode(self, *, msb_first: bool = False) -> bytes:
        return self._tail(msb_first)


@dataclass(frozen=True, slots=True)
class LongHeader:
    """CI 72h/76h/5Bh: ID, manufacturer, version, medium, access number, status, config word."""

    id: int
    manufacturer: str
    version: int
    medium: int
    access_number: int = 0
    status: int = 0
    signature: int = 0
    config_ext: int | None = None
    id_raw: bytes | None = None
    manufacturer_code: int | None = None

    def __post_init__(self) -> None:
        _init_ident(self, self.id, self.id_raw, self.manufacturer, self.manufacturer_code)
        for name in ("version", "medium", "access_number", "status"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise EncodeError(f"{name} must be a byte")
        if not 0 <= self.signature <= 0xFFFF:
            raise EncodeError("signature must be 16 bits")

    @property
    def address(self) -> SecondaryAddress:
        return SecondaryAddress(self.id, self.manufacturer, self.version, self.medium,
                                self.id_raw, self.manufacturer_code)

    @property
    def id_text(self) -> str:
        return self.address.id_text

    @property
    def medium_name(self) -> str:
        return medium_name(self.medium)

    @property
    def security_mode(self) -> int:
        return security.security_mode(self.signature)

    @property
    def encrypted_blocks(self) -> int:
        return security.encrypted_blocks(self.signature)

    def encode(self, *, msb_first: bool = False) -> bytes:
        assert self.id_raw is not None and self.manufacturer_code is not None
        order: Literal["big", "little"] = "big" if msb_first else "little"
        ident = self.id_raw[::-1] if msb_first else self.id_raw
        short = ShortHeader(self.access_number, self.status, self.signature, self.config_ext)
        return (ident + self.manufacturer_code.to_bytes(2, order)
                + bytes((self.version, self.medium)) + short.encode(msb_first=msb_first))


@dataclass(frozen=True, slots=True)
class FixedHeader:
    """CI 73h/77h fixed data structure: ID, access number, status, the two unit bytes."""

    id: int
    access_number: int
    status: int
    unit1: int  # counter 1 type byte: bits 7-6 are medium bits 1-0
    unit2: int  # counter 2 type byte: bits 7-6 are medium bits 3-2
    id_raw: bytes | None = None

    def __post_init__(self) -> None:
        raw = _id_bytes(self.id) if self.id_raw is None else self.id_raw
        if len(raw) != 4 or _bcd_id(raw) != self.id:
            raise EncodeError(f"ID {self.id} does not match its bytes {raw.hex()}")
        object.__setattr__(self, "id_raw", bytes(raw))

    @property
    def medium(self) -> int:
        return ((self.unit1 & 0xC0) >> 6) | ((self.unit2 & 0xC0) >> 4)

    @property
    def medium_name(self) -> str:
        return FIXED_MEDIA[self.medium]

    @property
    def binary_counters(self) -> bool:
        return bool(self.status & 0x80)  # status bit 7: counters binary, else BCD

    @property
    def stored(self) -> bool:
        return bool(self.status & 0x40)  # status bit 6: counters are stored (fixed date) values

    def encode(self, *, msb_first: bool = False) -> bytes:
        assert self.id_raw is not None
        ident = self.id_raw[::-1] if msb_first else self.id_raw
        return ident + bytes((self.access_number, self.status, self.unit1, self.unit2))


Header = LongHeader | ShortHeader | FixedHeader


def parse_long_header(data: bytes, msb: bool) -> LongHeader:
    """The long header at the start of ``data`` (after the CI); ``msb`` for mode 2."""
    if len(data) < 12:
        raise DecodeError(f"long header needs 12 bytes, got {len(data)}", offset=len(data),
                          expected="12-byte header")
    raw = bytes(data[:4][::-1] if msb else data[:4])
    code = int.from_bytes(data[4:6], "big" if msb else "little")
    sig = int.from_bytes(data[10:12], "big" if msb else "little")
    ext = None
    if security.security_mode(sig) == security.MODE_AES_CBC_NO_IV:
        if len(data) < 13:
            raise DecodeError("mode 7 header lacks its configuration extension", offset=12)
        ext = data[12]
    # Every field is derived from the bytes just read, so LongHeader.__post_init__'s checks
    # (ID against its bytes, letters against the code, byte ranges) cannot fail here; skipping
    # them saves about 4 us of the ~55 us a corpus telegram costs (bench/decode.py).
    header = object.__new__(LongHeader)
    put = object.__setattr__
    put(header, "id", _bcd_id(raw))
    put(header, "manufacturer", manufacturer_letters(code))
    put(header, "version", data[6])
    put(header, "medium", data[7])
    put(header, "access_number", data[8])
    put(header, "status", data[9])
    put(header, "signature", sig)
    put(header, "config_ext", ext)
    put(header, "id_raw", raw)
    put(header, "manufacturer_code", code)
    return header


def parse_short_header(data: bytes) -> ShortHeader:
    """The short header at the start of ``data`` (after the CI)."""
    if len(data) < 4:
        raise DecodeError(f"short header needs 4 bytes, got {len(data)}", offset=len(data))
    sig = int.from_bytes(data[2:4], "little")
    ext = None
    if security.security_mode(sig) == security.MODE_AES_CBC_NO_IV:
        if len(data) < 5:
            raise DecodeError("mode 7 header lacks its configuration extension", offset=4)
        ext = data[4]
    return ShortHeader(data[0], data[1], sig, ext)


def parse_fixed_header(data: bytes, msb: bool) -> FixedHeader:
    """The header part of a 16-byte fixed data structure (CI 73h/77h); ``msb`` for 77h."""
    raw = data[:4][::-1] if msb else data[:4]
    return FixedHeader(_bcd_id(raw), data[4], data[5], data[6], data[7], raw)


__all__ = [
    "STATUS_APPLICATION",
    "STATUS_APPLICATION_MASK",
    "STATUS_PERMANENT_ERROR",
    "STATUS_POWER_LOW",
    "STATUS_TEMPORARY_ERROR",
    "FixedHeader",
    "Header",
    "LongHeader",
    "SecondaryAddress",
    "ShortHeader",
    "manufacturer_code",
    "manufacturer_letters",
    "parse_fixed_header",
    "parse_long_header",
    "parse_short_header",
    "status_flags",
]
