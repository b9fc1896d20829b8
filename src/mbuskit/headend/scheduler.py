"""The poll scheduler: every bus in parallel, one transaction at a time on each bus.

A bus is a shared medium (EN 13757-2: one master, half duplex), so each bus has one task and a
lock that also serialises triggered reads and commands. Time is cut into slots of each meter's
interval; one poll per meter and slot is stored. After downtime a meter whose last stored slot
is behind is read once at once (catch-up), not once per missed slot, and a slot already
committed before a crash is not read again. A silent meter is retried with exponential back-off
and marked offline; its time-outs only cost its own transaction, never the bus's other meters.
Readings go through a queue to the storage writer, which retries a lost database and keeps the
queue, so a database outage delays readings but drops none. Past ``max_queue`` polls, and at a
shutdown during an outage, they wait in the spool on disk (``spool.Spool``) instead of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..codec import timing
from ..errors import MBusError, TransportError
from .config import Config, MeterConfig
from .model import (
    BREAKER_STATES,
    CommandEntry,
    Identity,
    Poll,
    TelegramLike,
    breaker_state,
    identity_from,
    readings_from,
    with_breaker,
)
from .spool import Spool
from .storage.base import Storage, StorageError, json_text

log = logging.getLogger("mbuskit.headend")

_LONGEST_FRAME = 261  # 68 L L 68 + 255 + CS 16 (EN 13757-2 5.1)
_GUARD_FRAMES = 12
_WRITE_BATCH = 256


def _raise_if_cancelled() -> None:
    """End a loop whose cancellation was swallowed on the way (a wait that completed as the
    cancel arrived): a task that cannot be cancelled hangs whoever shuts the loop down."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Reader(Protocol):
    """Reads one bus. Implemented over ``mbuskit.master.driver.Master``; tests use a fake."""

    async def read(self, meter: MeterConfig) -> Sequence[TelegramLike]: ...

    async def command(self, meter: MeterConfig, name: str, args: Mapping[str, Any]) -> Any: ...


@runtime_checkable
class ReadsBreaker(Protocol):
    """A reader that can read a Kamstrup module's breaker state on its own (a readout
    selection), for meters whose standard read-out does not carry it."""

    async def read_breaker(self, meter: MeterConfig) -> tuple[int, int | None] | None: ...


class CommandError(MBusError):
    """A command was refused (unknown meter or command, or not enabled for the meter)."""


class MeterRefused(MBusError):
    """The meter refused a command (CI 70h application error), or its key does not match."""


class Unverified(MBusError):
    """The meter took a command, but the state read back does not show the change (or could
    not be read): the command may or may not have acted, so it is not reported as done."""

    def __init__(self, message: str, *, readback: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.readback = readback


class AuditUnavailable(MBusError):
    """The command's audit row could not be written, so the command was not sent."""


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, Unverified):
        return "unverified"
    if isinstance(exc, CommandError | MeterRefused):
        return "refused"  # by the head-end (not enabled, bus leased elsewhere) or the meter
    if isinstance(exc, TransportError | TimeoutError | OSError):
        return "unreachable"  # silence or a lost link: the meter may not have heard it
    return "error"


@dataclass(slots=True)
class MeterHealth:
    name: str
    bus: str
    state: str = "unknown"  # unknown, ok, retrying, offline
    failures: int = 0  # consecutive
    reads: int = 0
    errors: int = 0
    last_ok: float | None = None
    last_error: str | None = None
    last_duration: float | None = None
    next_due: float = 0.0
    identity: Identity = field(default_factory=Identity)

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "failures": self.failures, "reads": self.reads,
                "errors": self.errors, "last_ok": self.last_ok, "last_error": self.last_error,
                "last_duration": self.last_duration, "next_due": self.next_due}


@dataclass(slots=True)
class BusStats:
    name: str
    busy_seconds: float = 0.0  # time spent inside transactions on this bus
    started: float = 0.0
    polls: int = 0
    owned: bool = True  # False while another worker holds the lease (PostgreSQL)


PollListener = Callable[[Poll], None]
# called with (meter, new health state) when a meter's state changes (MQTT availability)
StateListener = Callable[[str, str], None]


class Scheduler:
    def __init__(self, config: Config, readers: Mapping[str, Reader], storage: Storage, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 retry_base: float = 1.0, storage_retry: float = 1.0,
                 spool: Spool | None = None, max_queue: int = 10_000) -> None:
        self.config = config
        self.readers = dict(readers)
        self.storage = storage
        self.clock = clock
        self.monotonic = monotonic
        self.retry_base = retry_base
        self.storage_retry = storage_retry
        self.listeners: list[PollListener] = []
        self.state_listeners: list[StateListener] = []
        self.latest: dict[str, Poll] = {}  # the last poll of each meter read by this process
        self.health = {m.name: MeterHealth(m.name, m.bus) for m in config.meters}
        self.buses = {b.name: BusStats(b.name) for b in config.buses}
        self.meters = {m.name: m for m in config.meters}
        self._locks = {b.name: asyncio.Lock() for b in config.buses}
        self._wake = {b.name: asyncio.Event() for b in config.buses}
        self._last_slot: dict[str, int] = {}
        self._queue: deque[Poll] = deque()
        # past ``max_queue`` polls in memory the rest waits in the spool (disk), in order
        self.spool = spool
        self.max_queue = max(int(max_queue), 1)
        self._from_spool: deque[tuple[Path, int]] = deque()  # taken segments at the queue head
        self._spool_failed = False
        self._queued = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._bus_tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping_buses: set[str] = set()
        self.stored = 0  # readings committed by this process
        self.storage_errors = 0
        self.storage_ok = True

    # ---- lifecycle ----
    async def start(self, *, buses: Sequence[str] | None = None, loops: bool = True) -> None:
        """Open storage and poll ``buses`` (default: all; PostgreSQL leases pass the ones
        held). ``loops=False`` polls nothing on its own: reads are triggered (tests)."""
        await asyncio.to_thread(self.storage.init)
        for m in self.config.meters:
            address = str(m.primary) if m.primary is not None else \
                f"{m.secondary}" + (f"/{m.fabrication}" if m.fabrication else "")
            await asyncio.to_thread(self.storage.register_meter, m.name, m.bus, address)
        self._last_slot = await asyncio.to_thread(self.storage.last_slots)
        for row in await asyncio.to_thread(self.storage.meters):
            if row.name in self.health:
                self.health[row.name].identity = row.identity
        now = self.clock()
        for m in self.config.meters:
            self.health[m.name].next_due = self._first_due(m, now)
        self._tasks.append(asyncio.create_task(self._writer(), name="headend-writer"))
        mine = set(buses if buses is not None else self.buses)
        for name, stats in self.buses.items():
            stats.owned = name in mine
            stats.started = self.monotonic()
            if stats.owned and loops:
                self.start_bus(name)

    def start_bus(self, name: str) -> None:
        if name in self._bus_tasks and not self._bus_tasks[name].done():
            return
        stats = self.buses[name]
        stats.owned = True
        stats.started = self.monotonic()
        stats.busy_seconds = 0.0
        self._bus_tasks[name] = asyncio.create_task(self._run_bus(name), name=f"bus-{name}")

    async def stop_bus(self, name: str) -> None:
        task = self._bus_tasks.pop(name, None)
        # the flag as well as the cancel: Python 3.11's wait_for can swallow a cancellation
        # that arrives as the read completes, and the loop must still end
        self._stopping_buses.add(name)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # only once our last transaction on it is over
        self.buses[name].owned = False
        self._stopping_buses.discard(name)

    async def stop(self, *, flush_timeout: float = 5.0) -> None:
        for name in list(self._bus_tasks):
            await self.stop_bus(name)
        # give the writer a chance to commit what is queued
        deadline = self.monotonic() + flush_timeout
        while self._queue and self.monotonic() < deadline:
            self._queued.set()
            await asyncio.sleep(0.01)
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        await asyncio.to_thread(self._spill)

    @property
    def pending(self) -> int:
        """Polls read but not committed: in memory and in the spool."""
        return len(self._queue) + (self.spool.count if self.spool is not None else 0)

    def _enqueue(self, poll: Poll) -> None:
        spool = self.spool
        if spool is not None and (spool.pending or len(self._queue) >= self.max_queue):
            try:
                spool.append(poll)
            except OSError as exc:
                # a full disk: keep it in memory, past the bound, rather than lose it
                if not self._spool_failed:
                    log.error("spool %s: %s; keeping polls in memory", spool.directory, exc)
                self._spool_failed = True
            else:
                self._spool_failed = False
                self._queued.set()
                return
        self._queue.append(poll)
        self._queued.set()

    def _committed(self, count: int) -> None:
        """``count`` polls left the head of the queue: spool segments all of whose polls are
        committed are deleted."""
        for _ in range(count):
            self._queue.popleft()
        spool = self.spool
        while count and self._from_spool and spool is not None:
            path, left = self._from_spool[0]
            used = min(left, count)
            count -= used
            if used == left:
                self._from_spool.popleft()
                spool.done(path)
            else:
                self._from_spool[0] = (path, left - used)

    def _spill(self) -> None:
        """At shutdown: polls still in memory go to the spool (those taken from it are still
        there), so a restart commits them."""
        spool = self.spool
        if spool is None:
            return
        on_disk = sum(left for _, left in self._from_spool)
        kept = list(itertools.islice(self._queue, on_disk))
        for spilled, poll in enumerate(itertools.islice(self._queue, on_disk, None)):
            try:
                spool.append(poll)
            except OSError as exc:
                log.error("spool %s: %s; %d polls not committed are lost at exit",
                          spool.directory, exc, len(self._queue) - on_disk - spilled)
                return
        self._queue = deque(kept)
        spool.close()

    # ---- timing ----
    def _first_due(self, m: MeterConfig, now: float) -> float:
        slot = math.floor(now / m.interval)
        last = self._last_slot.get(m.name)
        if last is None or last < slot:
            return now  # never read, or behind: catch up with one read now
        return (slot + 1) * m.interval

    def _backoff(self, m: MeterConfig, failures: int) -> float:
        delay = self.retry_base * float(2 ** min(failures - 1, 20))
        # a dead meter may be tried less often than its interval (backoff_max), so that
        # a bus with several dead meters still spends its time on the live ones
        return min(delay, self.config.poll.backoff_max)

    # ---- the bus loop ----
    async def _run_bus(self, name: str) -> None:
        meters = self.config.meters_on(name)
        if not meters:
            return
        wake = self._wake[name]
        while name not in self._stopping_buses:
            _raise_if_cancelled()
            now = self.clock()
            meter = min(meters, key=lambda m: self.health[m.name].next_due)
            wait = self.health[meter.name].next_due - now
            if wait > 0:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await wake.wait()
                continue
            if name in self._stopping_buses or not self.buses[name].owned:
                return
            await self.poll(meter, scheduled=True)

    def wake(self, bus: str) -> None:
        self._wake[bus].set()

    async def poll(self, meter: MeterConfig, *, scheduled: bool = False) -> Poll | None:
        """Read one meter now (holding its bus) and queue the result for storage."""
        if not self.buses[meter.bus].owned:
            # another worker holds the bus lease: our frames would collide with its
            raise CommandError(f"bus {meter.bus!r} is polled by another head-end worker")
        reader = self.readers[meter.bus]
        health = self.health[meter.name]
        stats = self.buses[meter.bus]
        bus = self.config.bus(meter.bus)
        # A guard against a hung transport, not the answer window (the master keeps that):
        # room for a retried multi-telegram read-out of long frames at the bus's baud rate.
        guard = (self.config.poll.timeout + 4 * (bus.timeout or 0.0)
                 + _GUARD_FRAMES * timing.frame_time(_LONGEST_FRAME, bus.baud))
        async with self._locks[meter.bus]:
            t0 = self.monotonic()
            try:
                async with asyncio.timeout(guard):
                    telegrams = await reader.read(meter)
            except Exception as exc:  # a bad meter or a decoder bug must never stop its bus
                stats.busy_seconds += self.monotonic() - t0
                if not isinstance(exc, MBusError | TimeoutError | OSError):
                    log.error("meter %s: unexpected %r", meter.name, exc)
                self._failed(meter, exc)
                return None
            finally:
                health.last_duration = self.monotonic() - t0
            stats.busy_seconds += health.last_duration
            stats.polls += 1
        read_time = self.clock()
        slot = math.floor(read_time / meter.interval)
        ident = identity_from(telegrams)
        readings = with_breaker(readings_from(meter.name, telegrams, read_time,
                                                zone=meter.zone), ident)
        # a triggered read in a slot already polled is an extra reading, kept beside it
        extra = not scheduled and self._last_slot.get(meter.name, -1) >= slot
        poll = Poll(meter.name, slot, read_time, ident, tuple(readings),
                    seq=max(int(read_time * 1000), 1) if extra else 0)
        self._set_state(health, "ok")
        health.failures = 0
        health.reads += 1
        health.last_ok = read_time
        health.identity = ident
        if scheduled or self._last_slot.get(meter.name, -1) < slot:
            health.next_due = (slot + 1) * meter.interval
        self._last_slot[meter.name] = max(slot, self._last_slot.get(meter.name, slot))
        self.latest[meter.name] = poll
        self._enqueue(poll)
        for listener in self.listeners:
            try:
                listener(poll)
            except Exception:  # a broken listener (e.g. MQTT) must not stop polling
                log.exception("poll listener failed")
        return poll

    def _failed(self, meter: MeterConfig, exc: BaseException) -> None:
        health = self.health[meter.name]
        health.failures += 1
        health.errors += 1
        health.last_error = str(exc) or type(exc).__name__
        self._set_state(health, "offline" if health.failures >= self.config.poll.offline_after
                        else "retrying")
        health.next_due = self.clock() + self._backoff(meter, health.failures)
        log.warning("meter %s: %s (failure %d)", meter.name, health.last_error, health.failures)

    def _set_state(self, health: MeterHealth, state: str) -> None:
        if health.state == state:
            return
        health.state = state
        for listener in self.state_listeners:
            try:
                listener(health.name, state)
            except Exception:  # a broken listener (e.g. MQTT) must not stop polling
                log.exception("state listener failed")

    # ---- triggered reads and commands ----
    async def read_now(self, name: str) -> Poll | None:
        meter = self.meters.get(name)
        if meter is None:
            raise CommandError(f"no meter named {name!r}")
        return await self.poll(meter)

    async def command(self, name: str, command: str, args: Mapping[str, Any], *,
                      origin: str = "http") -> Any:
        """Run a command on a meter, audited: its row is committed before anything goes on the
        bus, and a command whose row cannot be written is refused (``AuditUnavailable``), so
        that no breaker is ever switched without a trace (docs/headend.md, "Audit trail")."""
        meter = self.meters.get(name)
        if meter is None:
            raise CommandError(f"no meter named {name!r}")
        entry = CommandEntry(time=self.clock(), origin=origin, meter=name, command=command,
                             args=dict(args))
        try:
            entry_id = await asyncio.to_thread(self.storage.open_command, entry)
        except Exception as exc:
            log.error("meter %s: %s %s from %s refused: audit row not written: %r", name,
                      command, json_text(entry.args), origin, exc)
            raise AuditUnavailable(f"meter {name}: command not sent: the audit trail cannot "
                                   f"be written ({exc})") from exc
        try:
            result = await self._command(meter, command, args)
        except Exception as exc:
            await self._audit_close(entry_id, name, _outcome(exc), str(exc) or
                                    type(exc).__name__,
                                    exc.readback if isinstance(exc, Unverified) else None)
            raise
        readback = {k: result[k] for k in ("breaker_state", "breaker_detail")
                    if k in result} if isinstance(result, dict) else {}
        await self._audit_close(entry_id, name, "ok", None, readback or None)
        return result

    async def _audit_close(self, entry_id: int, meter: str, outcome: str, message: str | None,
                           readback: dict[str, Any] | None) -> None:
        try:
            await asyncio.to_thread(self.storage.close_command, entry_id, outcome=outcome,
                                    message=message, readback=readback, finished=self.clock())
        except Exception as exc:
            # the command has run and cannot be taken back: its row stays "pending" (outcome
            # unknown), which the log completes
            log.error("meter %s: command %d %s (%s), but its audit row was not completed: %r",
                      meter, entry_id, outcome, message or "", exc)

    async def _command(self, meter: MeterConfig, command: str, args: Mapping[str, Any]) -> Any:
        name = meter.name
        if command == "breaker" and not meter.breaker:
            raise CommandError(f"breaker control is not enabled for meter {name!r}")
        if not self.buses[meter.bus].owned:
            raise CommandError(f"bus {meter.bus!r} is polled by another head-end worker")
        reader = self.readers[meter.bus]
        codes: tuple[int, int | None] | None = None
        async with self._locks[meter.bus]:
            result = await reader.command(meter, command, args)
            if command == "breaker" and meter.data != "additional" and \
                    isinstance(reader, ReadsBreaker):
                # its standard read-out does not carry the state: ask for the two records
                codes = await reader.read_breaker(meter)
        if command == "breaker" and (meter.data == "additional"
                                     or isinstance(reader, ReadsBreaker)):
            # read the state back: with the additional read-out, which carries it, by a poll
            # (the stored and published state follow at once), else by its records alone; a
            # command that did not take shows either way
            if meter.data == "additional":
                poll = await self.poll(meter)
                state = breaker_state(poll.readings) if poll is not None else None
            else:
                state = None if codes is None or codes[0] not in BREAKER_STATES else (
                    "closed" if codes[0] == 1 else "open", BREAKER_STATES[codes[0]], 0.0)
            if state is None:
                raise Unverified(f"meter {name}: breaker {args.get('state')} sent, but the "
                                 "state could not be read back", readback=None)
            readback = {"breaker_state": state[0], "breaker_detail": state[1]}
            if state[0] != args.get("state"):
                raise Unverified(f"meter {name}: breaker {args.get('state')} sent, but the meter "
                                 f"reads back {state[0]} ({state[1]})", readback=readback)
            if isinstance(result, dict):
                result = {**result, **readback}
        return result

    # ---- storage writer ----
    def _store_batch(self, batch: list[Poll]) -> tuple[int, int, Exception | None]:
        """Commit polls in order, each in its own transaction (worker thread): how many were
        committed, how many readings were new, and the error that stopped the batch."""
        done = new = 0
        for poll in batch:
            try:
                new += self.storage.store(poll)
            except Exception as exc:  # a writer that dies would queue readings forever
                return done, new, exc
            done += 1
        return done, new, None

    async def _writer(self) -> None:
        while True:
            if not self._queue:
                if self.spool is not None and self.spool.pending:
                    taken = await asyncio.to_thread(self.spool.take)
                    if taken is not None:
                        path, polls = taken
                        if polls:
                            self._from_spool.append((path, len(polls)))
                            self._queue.extend(polls)
                        else:
                            self.spool.done(path)
                        continue
                self._queued.clear()
                await self._queued.wait()
                continue
            # one hop to the worker thread for everything queued (still one transaction per
            # poll): at hundreds of polls a second the hops, not the commits, cost the CPU
            batch = list(itertools.islice(self._queue, _WRITE_BATCH))
            done, new, exc = await asyncio.to_thread(self._store_batch, batch)
            self._committed(done)
            self.stored += new
            if exc is None:
                self.storage_ok = True
                continue
            self.storage_errors += 1
            if self.storage_ok or not isinstance(exc, StorageError):
                log.error("storage failed, %d polls queued: %r", len(self._queue), exc)
            self.storage_ok = False
            # polls are independent: one the database refuses goes to the back, so it
            # cannot hold up the others (not while the head came from the spool: its
            # segment is deleted by count once the head is committed)
            if not self._from_spool:
                self._queue.rotate(-1)
            await asyncio.sleep(self.storage_retry)

    async def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every queued poll is committed (tests, shutdown)."""
        end = self.monotonic() + timeout
        while self._queue:
            if self.monotonic() > end:
                return False
            await asyncio.sleep(0.005)
        return True


async def run_forever(scheduler: Scheduler, *extra: Awaitable[Any]) -> None:
    await scheduler.start()
    try:
        await asyncio.gather(*extra) if extra else await asyncio.Event().wait()
    finally:
        await scheduler.stop()


__all__ = ["AuditUnavailable", "BusStats", "CommandError", "MeterHealth", "MeterRefused",
           "Reader", "Scheduler", "StateListener", "Unverified", "run_forever"]
