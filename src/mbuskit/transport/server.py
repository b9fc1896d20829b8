"""Serve a bus of slaves the way an M-Bus level converter or an M-Bus-to-TCP gateway does.

A :class:`Gateway` is one bus segment (a :class:`~mbuskit.transport.simbus.Segment`) at a fixed
baud rate with a clock. A master reaches it over TCP (:func:`serve_tcp`, each connection is
the master port of that bus) or over a serial line (:func:`serve_serial`, a real port or a
pseudo-terminal created here whose path is printed, for serial masters; see
:class:`SerialServer` for the one kind of master a pty cannot serve).

Bytes in go through a :class:`~mbuskit.codec.link.FrameReader` per connection (a bad frame is
silence, as on a real bus), whole frames go to the slaves, the combined answer goes back. In
``realtime`` mode the gateway waits as the wire would (EN 13757-2 timing: the request's bytes
at the baud rate, the slave's answer delay, then the answer paced byte by byte); otherwise it
answers as fast as it can. Bad bytes never stop a server; a dropped connection is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..codec import timing
from ..codec.link import Frame, FrameReader, LongFrame, ShortFrame, Skipped
from ..errors import TransportError
from .simbus import Segment, SlaveLike

log = logging.getLogger("mbuskit.server")

Clock = Callable[[], float]

# Pacing granularity of realtime answers: bytes are written in slices of about this many seconds
# of wire time, so that a master sees the first byte early without a sleep per byte.
_PACE_SLICE = 0.025


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


@dataclass
class GatewayStats:
    frames: int = 0
    answers: int = 0
    collisions: int = 0
    skipped: int = 0  # pieces of noise / bad frames that got silence
    connections: int = 0
    dropped: int = 0  # connections that ended with an error
    errors: int = 0  # frames a slave failed on (answered with silence)


@dataclass
class Gateway:
    """One served bus: its slaves, its baud rate and the clock the slaves see.

    ``clock`` gives the ``now`` passed to the slaves (wall time by default; the emulator passes
    an accelerated clock). A lock makes frames from several masters reach the bus one by one,
    as the one pair of wires would carry them.
    """

    slaves: Iterable[SlaveLike]
    baud: int = 2400
    realtime: bool = False
    answer_bits: float = timing.ANSWER_MIN_BITS
    clock: Clock = time.time
    name: str = ""
    stats: GatewayStats = field(default_factory=GatewayStats)
    collisions: str = "and"  # how collided answers reach the master (simbus.COLLISION_MODES)

    def __post_init__(self) -> None:
        timing.check_baud(self.baud)
        timing.answer_delay(self.baud, self.answer_bits)  # refuses a delay outside the window
        self.segment = Segment(self.slaves, collisions=self.collisions)
        self._lock = asyncio.Lock()
        self.connections: set[asyncio.Task[None]] = set()

    async def close_connections(self) -> None:
        """End every master connection (asyncio.Server.close leaves them open)."""
        tasks = [t for t in self.connections if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def exchange(self, frame: Frame, wire_bytes: int, baud: int | None = None) -> bytes:
        """Put one master frame on the bus; the combined answer (b"" when nobody answers).

        ``wire_bytes`` is the frame's length on the wire (for realtime pacing), ``baud`` the rate
        the master sent it at when the port tells us (a pty), else the gateway's rate.
        """
        rate = self.baud if baud is None else baud
        loop = asyncio.get_running_loop()
        sent = 0.0
        async with self._lock:
            if self.realtime:
                # the master's last stop bit is on the wire the request's length after it
                # reached the gateway; the slave's answer starts its answer delay later
                sent = loop.time() + timing.frame_time(wire_bytes, rate)
                await _sleep_until(loop, sent)
            self.stats.frames += 1
            try:
                result = self.segment.offer(frame, rate, self.clock())
            except Exception:
                # a bug in a slave: the bus stays silent for this frame, the gateway goes on
                self.stats.errors += 1
                log.exception("%s: a slave failed on %s; no answer", self.name,
                              frame.encode().hex(" "))
                return b""
            if result.answered:
                self.stats.answers += 1
            if result.answered > 1:
                self.stats.collisions += 1
            if result.reply and self.realtime:
                await _sleep_until(loop, sent + timing.answer_delay(rate, self.answer_bits))
            return result.reply

    async def write_paced(self, write: Callable[[bytes], Any], data: bytes,
                          baud: int | None = None) -> None:
        """Write ``data``; in realtime mode at the rate the wire would carry it.

        Deadlines are absolute from the first byte, so a late wake-up of a busy event loop
        does not add up over the slices of one answer.
        """
        if not self.realtime:
            write(data)
            return
        loop = asyncio.get_running_loop()
        per = timing.byte_time(self.baud if baud is None else baud)
        step = max(1, int(_PACE_SLICE / per))
        start = loop.time()
        for i in range(0, len(data), step):
            chunk = data[i:i + step]
            await _sleep_until(loop, start + i * per)
            write(chunk)
        await _sleep_until(loop, start + len(data) * per)

    def idle_gap(self, baud: int | None = None) -> float:
        """A pause in the master's bytes longer than this ends a partial frame.

        On the wire no idle is allowed inside a frame (FT 1.2, EN 60870-5-1). Bytes reach us
        through TCP or a pty with their own jitter, so only a pause as long as a master's
        answer timeout (330 bit times + 50 ms) counts: by then the master has given up on it.
        """
        return timing.master_timeout(self.baud if baud is None else baud)

    def drop_partial(self, reader: FrameReader, idle: float, baud: int | None = None) -> None:
        if idle > self.idle_gap(baud) and reader.pending:
            reader.flush()
            self.note_skipped([Skipped(b"", f"partial frame dropped after {idle:.3f} s idle")])

    def note_skipped(self, items: list[Skipped]) -> None:
        for item in items:
            self.stats.skipped += 1
            log.debug("%s: silence for %d bytes of noise (%s)", self.name, len(item.data),
                      item.reason)


def _wire_length(frame: Frame) -> int:
    if isinstance(frame, ShortFrame):
        return 5
    if isinstance(frame, LongFrame):
        return 9 + len(frame.data)  # 68 L L 68 C A CI data CS 16
    return 1


def _frames(reader: FrameReader, data: bytes, gateway: Gateway) -> list[tuple[Frame, int]]:
    """Whole frames in ``data`` with their length on the wire; noise is logged and dropped."""
    out: list[tuple[Frame, int]] = []
    for item in reader.feed(data):
        if isinstance(item, Skipped):
            gateway.note_skipped([item])
        else:
            out.append((item, _wire_length(item)))
    return out


async def _serve_connection(gateway: Gateway, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    gateway.stats.connections += 1
    log.info("%s: master connected from %s", gateway.name, peer)
    frames = FrameReader()
    loop = asyncio.get_running_loop()
    last = loop.time()
    try:
        while True:
            data = await reader.read(4096)
            if not data:
                break
            now = loop.time()
            gateway.drop_partial(frames, now - last)
            last = now
            for frame, size in _frames(frames, data, gateway):
                reply = await gateway.exchange(frame, size)
                if reply:
                    await gateway.write_paced(writer.write, reply)
                    await writer.drain()
        log.info("%s: master %s disconnected", gateway.name, peer)
    except (ConnectionError, OSError) as exc:
        gateway.stats.dropped += 1
        log.warning("%s: connection from %s dropped: %s", gateway.name, peer, exc)
    except Exception:  # a bug here must not take the gateway down
        gateway.stats.dropped += 1
        log.exception("%s: error while serving %s; connection closed", gateway.name, peer)
    finally:
        writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


def _as_gateway(bus: Gateway | Iterable[SlaveLike], **options: Any) -> Gateway:
    if isinstance(bus, Gateway):
        return bus
    return Gateway(bus, **options)


async def serve_tcp(bus: Gateway | Iterable[SlaveLike], host: str, port: int,
                    **options: Any) -> asyncio.Server:
    """Serve ``bus`` (a Gateway, or slaves plus Gateway options) as an M-Bus-to-TCP gateway.

    Port 0 picks a free port (``server.sockets[0].getsockname()[1]``). Raises TransportError
    when the address cannot be bound.
    """
    gateway = _as_gateway(bus, **options)
    if not gateway.name:
        gateway.name = f"tcp {host}:{port}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            gateway.connections.add(task)
        try:
            await _serve_connection(gateway, reader, writer)
        except asyncio.CancelledError:
            # the server is shutting down: this connection simply ends (asyncio's stream
            # callback would report a cancelled handler as an error)
            writer.close()
        finally:
            if task is not None:
                gateway.connections.discard(task)

    try:
        server = await asyncio.start_server(handle, host, port)
    except OSError as exc:
        raise TransportError(f"cannot listen on {host}:{port}: {exc}") from exc
    if port == 0:
        gateway.name = f"tcp {host}:{server.sockets[0].getsockname()[1]}"
    return server


# -- serial side --------------------------------------------------------------------------------

def _termios_rates() -> dict[int, int]:
    import termios

    rates: dict[int, int] = {}
    for baud in timing.BAUD_RATES:
        const = getattr(termios, f"B{baud}", None)
        if isinstance(const, int):
            rates[const] = baud
    return rates


class SerialServer:
    """A bus served on a serial line: a real port (pyserial) or a pseudo-terminal we create.

    With a pty, ``path`` is the device a master opens (``/dev/pts/N``). The baud rate the master
    set on its side of the pty is honoured (``follow_baud``): frames sent at a rate the slaves
    do not listen at are noise to them, as on a real line.

    Known limit: a Linux pty cannot keep even parity (the kernel clears PARENB) and glibc's
    tcsetattr then reports EINVAL, so libmbus's serial code (``mbus_serial_set_baudrate``,
    which node-mbus always calls) refuses to open a pty; libmbus tools reach the emulator over
    TCP instead. pyserial and other masters that tolerate this work on the pty.
    """

    def __init__(self, gateway: Gateway, device: str = "pty", *, follow_baud: bool = True) -> None:
        self.gateway = gateway
        self.device = device
        self.follow_baud = follow_baud
        self.path = device
        self._fd = -1
        self._peer_fd: int | None = None  # our copy of the pty's slave side
        self._port: Any = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._rates: dict[int, int] = {}

    def open(self) -> None:
        if self.device == "pty":
            import tty

            master, peer = os.openpty()
            # raw, no echo: otherwise the line discipline would echo the master's frames back
            tty.setraw(peer)
            self._fd, self._peer_fd = master, peer
            self.path = os.ttyname(peer)
            self._rates = _termios_rates()
        else:
            import serial

            try:
                self._port = serial.serial_for_url(
                    self.device, baudrate=self.gateway.baud, bytesize=8,
                    parity=serial.PARITY_EVEN, stopbits=1, timeout=0)
                self._fd = self._port.fileno()
            except (serial.SerialException, OSError, ValueError) as exc:
                raise TransportError(f"cannot open serial port {self.device}: {exc}") from exc
        os.set_blocking(self._fd, False)
        self.gateway.name = self.gateway.name or f"serial {self.path}"

    def _line_baud(self) -> int | None:
        if self._peer_fd is None or not self.follow_baud:
            return None
        import termios

        try:
            speed = termios.tcgetattr(self._peer_fd)[5]
        except termios.error:
            return None
        return self._rates.get(speed)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO on a pty when the master's side is closed: wait for the next opener
            log.debug("%s: read failed: %s", self.gateway.name, exc)
            return
        if data:
            self._queue.put_nowait(data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        give_up = time.monotonic() + 1.0
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                # nobody drains the line (no master has the pty open): drop, as a wire would
                if time.monotonic() > give_up:
                    log.warning("%s: line blocked, %d bytes lost", self.gateway.name, len(view))
                    return
                time.sleep(0.001)
                continue
            view = view[n:]

    async def _run(self) -> None:
        frames = FrameReader()
        gateway = self.gateway
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            data = await self._queue.get()
            rate = self._line_baud()
            now = loop.time()
            gateway.drop_partial(frames, now - last, rate)
            last = now
            try:
                for frame, size in _frames(frames, data, gateway):
                    reply = await gateway.exchange(frame, size, rate)
                    if reply:
                        await gateway.write_paced(self._write, reply, rate)
            except OSError as exc:
                log.warning("%s: write failed: %s", gateway.name, exc)
            except Exception:
                log.exception("%s: error while serving a frame", gateway.name)

    async def start(self) -> None:
        if self._fd < 0:
            self.open()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._readable)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._fd)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._port is not None:
            self._port.close()
        elif self._fd >= 0:
            os.close(self._fd)
        if self._peer_fd is not None:
            os.close(self._peer_fd)
            self._peer_fd = None
        self._fd = -1


async def serve_serial(bus: Gateway | Iterable[SlaveLike], device: str = "pty",
                       **options: Any) -> SerialServer:
    """Serve ``bus`` on serial port ``device``, or on a new pty when ``device`` is "pty"."""
    server = SerialServer(_as_gateway(bus, **options), device)
    await server.start()
    return server


__all__ = [
    "Clock",
    "Gateway",
    "GatewayStats",
    "SerialServer",
    "serve_serial",
    "serve_tcp",
]
