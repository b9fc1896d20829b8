"""EN 13757-3 selection payloads (CI 52h, and CI 56h to deselect), clause 11 network layer.

A selection is the eight address bytes of a long header (ID, manufacturer, version, medium)
used as a mask: 'F' nibbles in the ID and FF bytes elsewhere are wildcards. Enhanced
selection appends the record ``0C 78`` (BCD8 fabrication number) with its own mask. A master
encodes it to address one meter on the bus; a slave decodes it and asks
:meth:`Selection.matches` whether it is the one meant.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecodeError, EncodeError
from .header import SecondaryAddress

_ENHANCED_DIF_VIF = b"\x0c\x78"  # BCD8 fabrication number (enhanced secondary addressing)


def _nibble_match(pattern: str, actual: str) -> bool:
    # An 'F' in the mask matches any digit: EN 13757-3 wildcards work per BCD nibble.
    return len(pattern) == len(actual) and all(p in ("F", a) for p, a in zip(pattern, actual,
                                                                              strict=True))


@dataclass(frozen=True, slots=True)
class Selection:
    """A selection mask: 'F' nibbles in the ID (and fabrication no.), FF bytes elsewhere."""

    id_mask: str  # 8 digits, most significant first, 'F' = wildcard
    manufacturer: bytes  # 2 bytes wire order, FF = wildcard per byte
    version: int
    medium: int
    fabrication: str | None = None  # 8 digits, 'F' = wildcard

    def __post_init__(self) -> None:
        for name, text in (("ID", self.id_mask), ("fabrication number", self.fabrication)):
            if text is not None and (len(text) != 8
                                     or not all(c in "0123456789ABCDEF" for c in text)):
                raise EncodeError(f"{name} mask must be 8 hex digits, got {text!r}")
        if len(self.manufacturer) != 2:
            raise EncodeError("manufacturer mask must be 2 bytes")

    @property
    def mask(self) -> str:
        tail = f"{self.version:02X}{self.medium:02X}"
        return self.id_mask + self.manufacturer.hex().upper() + tail

    def encode(self) -> bytes:
        data = (bytes.fromhex(self.id_mask)[::-1] + self.manufacturer
                + bytes((self.version, self.medium)))
        if self.fabrication is not None:
            data += _ENHANCED_DIF_VIF + bytes.fromhex(self.fabrication)[::-1]
        return data

    def matches(self, address: SecondaryAddress, fabrication: int | str | None = None) -> bool:
        if not _nibble_match(self.id_mask, address.id_text):
            return False
        wire = address.to_bytes()
        for i, want in enumerate(self.manufacturer):
            if want != 0xFF and want != wire[4 + i]:
                return False
        if self.version not in (0xFF, address.version) or self.medium not in (0xFF,
                                                                             address.medium):
            return False
        if self.fabrication is None:
            return True
        if fabrication is None:
            return False
        fab = f"{fabrication:08d}" if isinstance(fabrication, int) else fabrication.upper()
        return _nibble_match(self.fabrication, fab)


def encode_selection(mask: str | SecondaryAddress, fabrication: int | str | None = None) -> bytes:
    """Selection payload for CI 52h from a 16-character mask (or an address) and an optional
    fabrication number (enhanced selection appends ``0C 78`` + 8 BCD digits)."""
    text = str(mask).strip().upper()
    if len(text) != 16 or not all(c in "0123456789ABCDEF" for c in text):
        raise EncodeError(f"selection mask {mask!r} is not 16 hex digits")
    fab: str | None
    if fabrication is None:
        fab = None
    elif isinstance(fabrication, int):
        if not 0 <= fabrication <= 99_999_999:
            raise EncodeError(f"fabrication number {fabrication} is not 8 BCD digits")
        fab = f"{fabrication:08d}"
    else:
        fab = fabrication.strip().upper()
    return Selection(text[:8], bytes.fromhex(text[8:12]), int(text[12:14], 16),
                     int(text[14:16], 16), fab).encode()


def decode_selection(data: bytes) -> Selection:
    """The selection of a CI 52h/56h payload: 8 address bytes, or 14 with 0C 78 + 4 bytes."""
    if len(data) not in (8, 14):
        raise DecodeError(f"selection payload is {len(data)} bytes, expected 8 or 14",
                          offset=len(data) if len(data) < 8 else 8)
    fab = None
    if len(data) == 14:
        if data[8:10] != _ENHANCED_DIF_VIF:
            raise DecodeError("enhanced selection record is not 0C 78 (fabrication no.)",
                              offset=8, expected="0C 78")
        fab = data[10:14][::-1].hex().upper()
    return Selection(data[:4][::-1].hex().upper(), bytes(data[4:6]), data[6], data[7], fab)


__all__ = ["Selection", "decode_selection", "encode_selection"]
