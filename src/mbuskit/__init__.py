"""mbuskit: EN 13757-2/-3 M-Bus stack, Kamstrup electricity meter twin, master and head-end."""

from __future__ import annotations

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

__all__ = [
    "BusTimeout",
    "DecodeError",
    "EncodeError",
    "FrameError",
    "MBusError",
    "ProtocolError",
    "SecurityError",
    "TransportError",
]
