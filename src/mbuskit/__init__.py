"""mbuskit: EN 13757-2/-3 M-Bus stack, Kamstrup electricity meter twin, master and head-end."""

from __future__ import annotations

from .codec.ci import CI
from .codec.header import LongHeader, SecondaryAddress, ShortHeader
from .codec.records import DataRecord
from .codec.security import KeyStore
from .codec.selection import Selection
from .codec.telegram import Telegram, decode_telegram, encode_telegram
from .errors import (
    BusTimeout,
    DecodeError,
    EncodeError,
    FrameError,
    MBusError,
    ProtocolError,
    SecurityError,
    TransportError,
)


def decode(data: bytes | bytearray, *, keys: KeyStore | bytes | None = None, strict: bool = True
           ) -> Telegram:
    """Decode one whole long frame (68 L L 68 ... 16) into a Telegram.

    ``keys``: a KeyStore or one 16-byte AES key for encrypted telegrams. ``strict=False``
    keeps what decoded before a damaged record and lists the damage in ``diagnostics``.
    """
    return decode_telegram(bytes(data), keys=keys, strict=strict)


def encode(telegram: Telegram) -> bytes:
    """The whole frame for a telegram; ``encode(decode(b)) == b`` for every valid frame."""
    return encode_telegram(telegram).encode()


__all__ = [
    "CI",
    "BusTimeout",
    "DataRecord",
    "DecodeError",
    "EncodeError",
    "FrameError",
    "KeyStore",
    "LongHeader",
    "MBusError",
    "ProtocolError",
    "SecondaryAddress",
    "SecurityError",
    "Selection",
    "ShortHeader",
    "Telegram",
    "TransportError",
    "decode",
    "encode",
]
