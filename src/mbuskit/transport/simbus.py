"""A simulated multi-drop M-Bus segment on a virtual clock (EN 13757-2 physical layer model).

:class:`Segment` is what the wire does: it hands the master's bytes to every slave listening
at that baud rate and combines simultaneous answers. :class:`SimBus` puts a virtual clock, bus
time accounting and seeded noise around a segment and gives the master side the
:class:`~mbuskit.transport.base.Transport` interface. Nothing here sleeps; the TCP and serial
servers (``transport.server``) reuse :class:`Segment` with the wall clock.

Physical facts modelled (EN 13757-2 clause 4, m-bus.com chapter 4):

* The master talks by voltage modulation, which every slave hears; slaves answer by current
  modulation, which only the master detects. So slaves never hear each other.
* A slave sends a 0 (space) by drawing extra current, so when several answer at once the master
  sees the bitwise AND of their bytes (a wired AND). Two identical E5 look like one E5; two
  different long frames arrive as garbage with a bad checksum. Bytes are aligned at the first
  byte (all slaves answer after the same delay); where one answer is longer, its tail arrives as
  sent.
* Bytes sent at a baud rate a slave does not listen at are noise to it: it gets no frame, and
  any partial frame it was receiving is lost.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from ..codec import timing
from ..codec.link import ADDRESS_MAX_PRIMARY, Ack, Frame, FrameReader, Skipped
from ..errors import LocalError, TransportError


class ReplyLike(Protocol):
    """What :meth:`SlaveLike.handle` returns (``mbuskit.slave.machine.Reply``)."""

    @property
    def data(self) -> bytes: ...

    @property
    def new_baud(self) -> int | None: ...


class _Timed(Protocol):
    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class SlaveLike(Protocol):
    """The part of ``mbuskit.slave.machine.Slave`` the bus uses."""

    @property
    def baud(self) -> int: ...

    def handle(self, frame: Frame, now: float) -> ReplyLike | None: ...


COLLISION_MODES = ("and", "skew")


def check_collisions(mode: str) -> str:
    """``mode`` when it is one of ``COLLISION_MODES``; ``LocalError`` otherwise."""
    if mode not in COLLISION_MODES:
        raise LocalError(f"collisions must be one of {', '.join(COLLISION_MODES)}, got {mode!r}")
    return mode


def wired_and(replies: Sequence[bytes]) -> bytes:
    """Combine answers that start at the same moment as the master's receiver sees them.

    Each byte position is the AND of the bytes the slaves send there; past the end of the
    shorter answers the longer ones arrive unchanged (nobody else draws current then).
    """
    if not replies:
        return b""
    if len(replies) == 1:
        return replies[0]
    out = bytearray(max(len(r) for r in replies))
    for i in range(len(out)):
        value = 0xFF
        for reply in replies:
            if i < len(reply):
                value &= reply[i]
        out[i] = value
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Exchange:
    """What happened on the segment after one master frame."""

    frame: Frame
    answered: int  # how many slaves answered
    reply: bytes  # the combined bytes the master receives (wired AND), b"" when nobody answered


class Segment:
    """The slaves on one pair of wires and what each of them hears.

    Frames are parsed once per baud rate (all slaves at one rate hear the same bytes), then given
    to each slave at that rate; a slave that is not addressed returns None.
    """

    def __init__(self, slaves: Iterable[SlaveLike], *, collisions: str = "and") -> None:
        # "and": answers start together and the master sees their wired AND, byte for byte;
        # "skew": slaves answer after different delays (anywhere in the 11-330 bit window), so
        # the answers do not line up: the master sees them one after another, garbled
        self.collisions = check_collisions(collisions)
        self.slaves: list[SlaveLike] = []
        self._timed: list[_Timed] = []
        self._readers: dict[int, FrameReader] = {}
        self.skipped: list[Skipped] = []  # noise the slaves' receivers threw away (for tracing)
        for slave in slaves:
            self.add(slave)

    def add(self, slave: SlaveLike) -> None:
        self.slaves.append(slave)
        if callable(getattr(slave, "get_timer", None)) and callable(
                getattr(slave, "handle_timer", None)):
            self._timed.append(cast(_Timed, slave))

    @staticmethod
    def _elsewhere(slave: SlaveLike, address: int | None) -> bool:
        own = getattr(slave, "primary_address", None)
        if not isinstance(own, int) or own == address:
            return False
        timer = getattr(slave, "get_timer", None)
        return timer is None or timer() is None

    def tick(self, now: float) -> None:
        """Run the slaves' due timers (mbuskit.slave's baud fall-back), which a slave at another
        rate than the master's would otherwise never see, since it hears no frame."""
        for slave in self._timed:
            due = slave.get_timer()
            if due is not None and due <= now:
                slave.handle_timer(now)

    def interrupt(self, reason: str) -> None:
        """The line went idle in the middle of a frame: every receiver drops what it held.

        EN 13757-2 uses the FT 1.2 format class of EN 60870-5-1, which admits no line idle
        between the characters of a frame; a slave's UART treats the gap as the end of a
        broken frame.
        """
        for baud, reader in self._readers.items():
            if reader.pending:
                reader.flush()
                self._note(Skipped(b"", f"partial frame at {baud} baud dropped: {reason}"))

    def transmit(self, data: bytes, baud: int, now: float) -> list[Exchange]:
        """The master puts ``data`` on the bus at ``baud``; returns one Exchange per whole frame.

        A frame split over several calls is completed by the later call.
        """
        for other, other_reader in self._readers.items():
            if other != baud and other_reader.pending:
                # Line activity at the wrong rate: the UART of a slave at ``other`` sees framing
                # errors, so whatever partial frame it held is gone.
                other_reader.flush()
                self._note(Skipped(b"", f"partial frame at {other} baud cut by bytes at {baud}"))
        reader = self._readers.get(baud)
        if reader is None:
            reader = FrameReader()
            self._readers[baud] = reader
        exchanges: list[Exchange] = []
        for item in reader.feed(data):
            if isinstance(item, Skipped):
                self._note(item)
                continue
            exchanges.append(self.offer(item, baud, now))
        return exchanges

    def _note(self, item: Skipped) -> None:
        self.skipped.append(item)
        if len(self.skipped) > 100:
            del self.skipped[:50]

    def offer(self, frame: Frame, baud: int, now: float) -> Exchange:
        """One whole, checked frame from the master at ``baud``, and what the slaves answer."""
        if self._timed:
            self.tick(now)
        answers: list[bytes] = []
        address = frame.address if not isinstance(frame, Ack) else None
        # A frame to one primary address (EN 13757-2 5.5: 1..250, or 0) cannot concern a slave
        # with another primary address that has no timer running (an unconfirmed baud switch
        # is confirmed by any frame it hears): skip it, which saves the ignored-frame work of
        # every other slave on a busy bus. 253/254/255 and selections reach every slave.
        direct = address is not None and address <= ADDRESS_MAX_PRIMARY
        # Snapshot the listeners first: a slave that switches rate in this exchange has heard
        # this frame at the old rate and answers at it (EN 13757-2 baud switch: E5 at the old rate).
        for slave in [s for s in self.slaves if s.baud == baud]:
            if direct and self._elsewhere(slave, address):
                continue
            reply = slave.handle(frame, now)
            if reply is not None and reply.data:
                answers.append(bytes(reply.data))
        if self.collisions == "skew":
            return Exchange(frame, len(answers), b"".join(answers))
        return Exchange(frame, len(answers), wired_and(answers))


@dataclass(frozen=True, slots=True)
class Noise:
    """Seeded line noise: each data bit flips with ``bit_error_rate``, each byte is lost with
    ``drop_rate``. Applied to both directions."""

    bit_error_rate: float = 0.0
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        for name, rate in (("bit_error_rate", self.bit_error_rate), ("drop_rate", self.drop_rate)):
            if not 0.0 <= rate < 1.0:
                raise LocalError(f"{name} must be in [0, 1), got {rate}")

    @classmethod
    def one_in(cls, bits: int, *, drop_one_in: int | None = None) -> Noise:
        """Noise of one flipped bit in ``bits`` (and one lost byte in ``drop_one_in``)."""
        if bits < 1 or (drop_one_in is not None and drop_one_in < 1):
            raise LocalError("noise is given as one error in N, N >= 1")
        return cls(1.0 / bits, 0.0 if drop_one_in is None else 1.0 / drop_one_in)

    @property
    def silent(self) -> bool:
        return self.bit_error_rate == 0.0 and self.drop_rate == 0.0

    def apply(self, data: bytes, rng: random.Random) -> bytes:
        if self.silent or not data:
            return data
        out = bytearray()
        for sent in data:
            if self.drop_rate and rng.random() < self.drop_rate:
                continue
            byte = sent
            if self.bit_error_rate:
                for bit in range(8):
                    if rng.random() < self.bit_error_rate:
                        byte ^= 1 << bit
            # A flip also breaks the even parity bit, which a master UART with INPCK would
            # catch; masters in practice (libmbus) do not check it, so the byte is delivered and
            # the frame checksum is what catches the error.
            out.append(byte)
        return bytes(out)


@dataclass(slots=True)
class _Pending:
    start: float  # virtual time the first byte begins on the wire
    end: float  # virtual time the last stop bit ends
    data: bytes


class SimBus:
    """A simulated segment whose master port is a :class:`Transport` on a virtual clock.

    ``send`` delivers at once and schedules the answers; ``receive(timeout)`` advances the clock
    to the end of the answer (or by the whole timeout when nothing starts in time) and returns
    it. ``bus_seconds`` is the virtual time spent, split per baud rate in
    ``bus_seconds_by_baud``: master bytes + answer delay + slave bytes, and the full timeout when
    the master waited for nothing.
    """

    def __init__(
        self,
        slaves: Iterable[SlaveLike],
        *,
        baud: int = 2400,
        noise: Noise | float | None = None,
        seed: int = 0,
        answer_bits: float = timing.ANSWER_MIN_BITS,
        start: float = 0.0,
        collisions: str = "and",
    ) -> None:
        self.segment = Segment(slaves, collisions=collisions)
        self._baud = timing.check_baud(baud)
        if noise is None:
            noise = Noise()
        elif not isinstance(noise, Noise):
            noise = Noise(bit_error_rate=float(noise))
        self.noise = noise
        self._rng = random.Random(seed)
        timing.answer_delay(baud, answer_bits)  # refuses a delay outside the 11..330 bit window
        self.answer_bits = answer_bits
        self.now = start
        self._start = start
        self.bus_seconds_by_baud: dict[int, float] = {}
        self._pending: list[_Pending] = []
        self._closed = False
        self._sent_end: float | None = None  # when the master's last byte ended
        self.frames_sent = 0
        self.collisions = 0  # exchanges where more than one slave answered

    # -- accounting -----------------------------------------------------------------------

    @property
    def bus_seconds(self) -> float:
        return self.now - self._start

    def _advance(self, to: float) -> None:
        if to > self.now:
            by = self.bus_seconds_by_baud
            by[self._baud] = by.get(self._baud, 0.0) + (to - self.now)
            self.now = to

    # -- Transport ------------------------------------------------------------------------

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def slaves(self) -> list[SlaveLike]:
        return self.segment.slaves

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._pending.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("simulated bus port is closed")

    async def send(self, data: bytes) -> None:
        self._check_open()
        baud = self._baud
        # The master cannot talk over an answer still on the wire; it starts when the bus is idle.
        busy_until = max((p.end for p in self._pending), default=self.now)
        self._advance(busy_until)
        if self._sent_end is not None and self.now > self._sent_end:
            self.segment.interrupt("the line was idle")
        wire = self.noise.apply(bytes(data), self._rng)
        sent_end = self.now + timing.frame_time(len(data), baud)
        self._sent_end = sent_end
        delay = timing.answer_delay(baud, self.answer_bits)
        for exchange in self.segment.transmit(wire, baud, sent_end):
            self.frames_sent += 1
            if exchange.answered > 1:
                self.collisions += 1
            if not exchange.reply:
                continue
            reply = self.noise.apply(exchange.reply, self._rng)
            if not reply:
                continue
            start = max(sent_end, self._pending[-1].end if self._pending else sent_end) + delay
            # a byte lost to noise still took its time on the wire
            end = start + timing.frame_time(len(exchange.reply), baud)
            self._pending.append(_Pending(start, end, reply))
        self._advance(sent_end)

    async def receive(self, timeout: float) -> bytes:
        self._check_open()
        if timeout < 0:
            raise LocalError(f"timeout cannot be negative ({timeout})")
        deadline = self.now + timeout
        if not self._pending or self._pending[0].start > deadline:
            self._advance(deadline)
            return b""
        # Everything that starts before the master gives up arrives back to back.
        out = bytearray()
        while self._pending and self._pending[0].start <= max(deadline, self.now):
            item = self._pending.pop(0)
            out += item.data
            self._advance(item.end)
        return bytes(out)

    async def set_baud(self, baud: int) -> None:
        self._baud = timing.check_baud(baud)

    async def drain_input(self) -> None:
        self._pending.clear()

    # -- conveniences for tests and benchmarks -----------------------------------------------

    def idle(self, seconds: float) -> None:
        """Let virtual time pass with nothing on the bus (e.g. a master's pause between polls)."""
        if seconds < 0:
            raise LocalError(f"cannot idle for {seconds} s")
        self._advance(self.now + seconds)


__all__ = [
    "COLLISION_MODES",
    "Exchange",
    "Noise",
    "ReplyLike",
    "Segment",
    "SimBus",
    "SlaveLike",
    "check_collisions",
    "wired_and",
]
