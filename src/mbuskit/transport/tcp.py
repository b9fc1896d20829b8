"""Master side of an M-Bus-to-TCP gateway (``tcp://host:port``) with asyncio streams.

A gateway passes bytes between the TCP connection and its M-Bus level converter; the bus rate is
set on the gateway, so ``set_baud`` only tells the master's timing what the bus now runs at.
The connection adds its round trip to every answer: ``latency`` (measured when connecting,
or given) is what the master adds to the EN 13757-2 answer window.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from urllib.parse import urlsplit

from ..codec import timing
from ..errors import LocalError, TransportError

DEFAULT_CONNECT_TIMEOUT = 5.0
# A gateway forwards bytes in chunks as its UART fills; allow that on top of the round trip.
GATEWAY_ALLOWANCE = 0.020


def parse_tcp_url(url: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``) -> (host, port)."""
    text = url if "://" in url else f"tcp://{url}"
    parts = urlsplit(text)
    if parts.scheme != "tcp" or not parts.hostname:
        raise LocalError(f"{url!r} is not a TCP gateway address (tcp://HOST:PORT)")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        raise LocalError(f"{url!r} has no valid port (tcp://HOST:PORT)")
    return parts.hostname, port


class TcpTransport:
    """A :class:`~mbuskit.transport.base.Transport` over a TCP connection to a gateway."""

    def __init__(self, host: str, port: int, *, baud: int = 2400,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 latency: float | None = None) -> None:
        self.host = host
        self.port = port
        self._baud = timing.check_baud(baud)
        self.connect_timeout = connect_timeout
        self._fixed_latency = latency
        self._measured = 0.0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def from_url(cls, url: str, **options: object) -> TcpTransport:
        host, port = parse_tcp_url(url)
        return cls(host, port, **options)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def latency(self) -> float:
        if self._fixed_latency is not None:
            return self._fixed_latency
        return self._measured + GATEWAY_ALLOWANCE

    async def open(self) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        except TimeoutError:
            raise TransportError(f"{self.name}: no connection within {self.connect_timeout:g} s; "
                                 "check the host and that the gateway is reachable") from None
        except ConnectionRefusedError:
            raise TransportError(f"{self.name}: connection refused; is the gateway running "
                                 "and is the port right?") from None
        except socket.gaierror:
            raise TransportError(f"{self.name}: unknown host; check the gateway's name or "
                                 "address") from None
        except OSError as exc:
            raise TransportError(f"{self.name}: cannot connect ({exc.strerror or exc})") from None
        # The TCP handshake is one round trip: a fair first estimate of what each answer adds.
        self._measured = time.monotonic() - started

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise TransportError(f"{self.name}: not connected")
        return self._reader, self._writer

    async def send(self, data: bytes) -> None:
        _, writer = self._streams()
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            raise TransportError(f"{self.name}: connection lost while sending ({exc})") from None

    async def receive(self, timeout: float) -> bytes:
        reader, _ = self._streams()
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                data = await reader.read(4096)
        except TimeoutError:
            return b""
        except (ConnectionError, OSError) as exc:
            raise TransportError(f"{self.name}: connection lost ({exc})") from None
        if not data:
            raise TransportError(f"{self.name}: the gateway closed the connection")
        return data

    async def set_baud(self, baud: int) -> None:
        self._baud = timing.check_baud(baud)

    async def drain_input(self) -> None:
        reader, _ = self._streams()
        # Late bytes of an earlier answer are already in the stream buffer; take them without
        # waiting for more.
        while True:
            try:
                async with asyncio.timeout(0.0005):
                    data = await reader.read(4096)
            except TimeoutError:
                return
            except (ConnectionError, OSError) as exc:
                raise TransportError(f"{self.name}: connection lost ({exc})") from None
            if not data:
                raise TransportError(f"{self.name}: the gateway closed the connection")


__all__ = ["TcpTransport", "parse_tcp_url"]
