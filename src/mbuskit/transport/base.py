"""What the master needs from a transport, and what a served slave looks like to a server.

The master core never touches a socket; an asyncio ``Transport`` moves bytes for it. Every
transport (serial, TCP gateway, simulated bus) implements this protocol.
"""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """A byte pipe to an M-Bus segment, seen from the master."""

    @property
    def baud(self) -> int:
        """The baud rate the segment runs at (used for answer windows and bus-time accounting)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, data: bytes) -> None:
        """Write bytes to the bus."""
        ...

    async def receive(self, timeout: float) -> bytes:
        """Bytes that arrived, waiting at most ``timeout`` seconds for the first one.

        Returns b"" when nothing arrived in time; never raises on a timeout. Raises
        TransportError when the connection is gone.
        """
        ...

    async def set_baud(self, baud: int) -> None:
        """Change our side's baud rate (after a slave acknowledged a baud switch)."""
        ...

    async def drain_input(self) -> None:
        """Drop whatever is buffered on input."""
        ...
