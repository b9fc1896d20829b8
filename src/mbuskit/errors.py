"""The one exception tree of mbuskit.

Split as h11 does: a *local* error means we were asked to build something invalid; a *remote*
error means a peer (a frame, a telegram, a meter) broke the rules. Remote errors carry the byte
offset where the problem was found, and for records the record index.
"""

from __future__ import annotations


class MBusError(Exception):
    """Root of every error mbuskit raises on purpose."""


class LocalError(MBusError, ValueError):
    """We were asked to build or send something the standard does not allow."""


class RemoteError(MBusError):
    """A peer sent something invalid.

    ``offset`` is the byte offset in the buffer being decoded (None when unknown),
    ``expected`` says what the decoder wanted to see there.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        expected: str | None = None,
        record: int | None = None,
    ) -> None:
        self.reason = message
        self.offset = offset
        self.expected = expected
        self.record = record
        parts = [message]
        if record is not None:
            parts.append(f"record {record}")
        if offset is not None:
            parts.append(f"offset {offset}")
        if expected is not None:
            parts.append(f"expected {expected}")
        super().__init__(
            ": ".join(parts[:1]) + ("" if len(parts) == 1 else f" ({', '.join(parts[1:])})")
        )


class FrameError(RemoteError):
    """EN 13757-2 link layer: bad start/stop byte, length, checksum or truncated frame."""


class DecodeError(RemoteError):
    """EN 13757-3 application layer: a header or record that cannot be decoded."""


class ProtocolError(RemoteError):
    """A peer answered against the protocol (wrong frame type, wrong address, unexpected ack)."""


class EncodeError(LocalError):
    """A frame, header or record we were asked to encode is not representable."""


class SecurityError(MBusError):
    """Encryption or authentication failed: missing key, wrong key, bad check bytes.

    ``meter`` names the meter (secondary address string) when known.
    """

    def __init__(self, message: str, *, meter: str | None = None) -> None:
        self.meter = meter
        super().__init__(f"{message} (meter {meter})" if meter else message)


class TransportError(MBusError):
    """The port or connection failed (cannot open, dropped, refused)."""


class BusTimeout(TransportError):
    """Nothing (or not a whole frame) arrived within the answer window."""


__all__ = [
    "BusTimeout",
    "DecodeError",
    "EncodeError",
    "FrameError",
    "LocalError",
    "MBusError",
    "ProtocolError",
    "RemoteError",
    "SecurityError",
    "TransportError",
]
