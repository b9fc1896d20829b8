"""Master side of a serial M-Bus level converter through pyserial.

The port is a device path (``/dev/ttyUSB0``, ``COM3``) or any pyserial URL (``rfc2217://``,
``socket://``, ``loop://``). M-Bus characters are 8E1 (EN 13757-2: start, 8 data, even
parity, stop) at any M-Bus rate. pyserial blocks, so reads and writes run in a worker thread.
A USB adapter adds buffering delay to every answer; ``latency`` (default 20 ms) is what the
master adds to the EN 13757-2 answer window for it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import serial

try:
    from termios import error as _TermiosError
except ImportError:  # not a POSIX system
    class _TermiosError(Exception):  # type: ignore[no-redef]
        pass

from ..codec import timing
from ..errors import TransportError

USB_LATENCY = 0.020
POLL = 0.001  # seconds between looks at the input buffer while waiting for an answer
_ERRORS = (serial.SerialException, OSError, ValueError, _TermiosError)


class SerialTransport:
    """A :class:`~mbuskit.transport.base.Transport` on a serial port or pyserial URL."""

    def __init__(self, port: str, *, baud: int = 2400, latency: float = USB_LATENCY) -> None:
        self.port = port
        self._baud = timing.check_baud(baud)
        self.latency = latency
        self._serial: Any = None

    @property
    def name(self) -> str:
        return self.port

    @property
    def baud(self) -> int:
        return self._baud

    async def open(self) -> None:
        try:
            self._serial = await asyncio.to_thread(
                serial.serial_for_url, self.port, baudrate=self._baud, bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_EVEN, stopbits=serial.STOPBITS_ONE, timeout=0)
        except _ERRORS as exc:
            raise TransportError(f"{self.port}: cannot open the port ({exc}); check the device "
                                 "path, that nothing else uses it, and your permissions") from None

    async def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            await asyncio.to_thread(port.close)

    def _port(self) -> Any:
        if self._serial is None:
            raise TransportError(f"{self.port}: port is not open")
        return self._serial

    async def send(self, data: bytes) -> None:
        port = self._port()
        try:
            await asyncio.to_thread(_write, port, bytes(data))
        except _ERRORS as exc:
            raise TransportError(f"{self.port}: write failed ({exc})") from None

    async def receive(self, timeout: float) -> bytes:
        port = self._port()
        try:
            return await asyncio.to_thread(_read, port, max(timeout, 0.0))
        except _ERRORS as exc:
            raise TransportError(f"{self.port}: read failed ({exc}); was the adapter "
                                 "unplugged?") from None

    async def set_baud(self, baud: int) -> None:
        self._baud = timing.check_baud(baud)
        if self._serial is not None:
            try:
                self._serial.baudrate = baud
            except _ERRORS as exc:
                raise TransportError(f"{self.port}: cannot switch to {baud} baud ({exc})") \
                    from None

    async def drain_input(self) -> None:
        port = self._port()
        try:
            port.reset_input_buffer()
        except _ERRORS as exc:
            raise TransportError(f"{self.port}: {exc}") from None


def _write(port: Any, data: bytes) -> None:
    port.write(data)
    port.flush()


def _read(port: Any, timeout: float) -> bytes:
    # Wait up to ``timeout`` for the first byte, then take what is there. The port stays
    # non-blocking (timeout 0): changing pyserial's timeout reconfigures the line with
    # tcsetattr, which some devices (ptys, some USB drivers) refuse.
    deadline = time.monotonic() + timeout
    while True:
        waiting = port.in_waiting
        if waiting:
            return bytes(port.read(waiting))
        if time.monotonic() >= deadline:
            return b""
        time.sleep(POLL)


__all__ = ["USB_LATENCY", "SerialTransport"]
