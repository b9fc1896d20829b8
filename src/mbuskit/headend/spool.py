"""Polls that wait for the database on disk instead of in memory.

While the database is down the scheduler keeps what it reads in a queue. Past ``max_queue``
polls (and at shutdown) the rest goes here: JSON lines in numbered segment files, appended in
order. When the database is back the writer takes the oldest segment, commits its polls and
only then deletes the file, so a crash in between replays it; storing a poll twice writes
nothing the second time (one poll per meter, slot and sequence number). A segment that cannot
be written (a full disk) raises ``OSError`` and the poll stays in memory: nothing is dropped.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from .model import Identity, Poll, Reading

log = logging.getLogger("mbuskit.headend")

SEGMENT_POLLS = 1000  # polls per segment file: what the writer takes back in one go
_SUFFIX = ".jsonl"


def poll_to_json(poll: Poll) -> str:
    ident = poll.identity
    return json.dumps({
        "meter": poll.meter, "slot": poll.slot, "read_time": poll.read_time, "seq": poll.seq,
        "identity": ident.as_dict(),
        "readings": [[r.register, r.value, r.unit, r.meter_time, r.read_time]
                     for r in poll.readings],
    }, separators=(",", ":"))


def poll_from_json(line: str) -> Poll:
    """The poll of one spool line; ``ValueError`` (or ``KeyError``/``TypeError``) when the line
    is not one (a write cut short)."""
    d: dict[str, Any] = json.loads(line)
    meter = str(d["meter"])
    i = d["identity"]
    identity = Identity(id=i["id"], manufacturer=i["manufacturer"], version=i["version"],
                        medium=i["medium"], fabrication=i["fabrication"], primary=i["primary"])
    readings = tuple(Reading(meter, str(reg), float(value), str(unit), meter_time,
                             float(read_time))
                     for reg, value, unit, meter_time, read_time in d["readings"])
    return Poll(meter, int(d["slot"]), float(d["read_time"]), identity, readings,
                seq=int(d["seq"]))


class Spool:
    """Segment files under ``directory`` (created when first needed)."""

    def __init__(self, directory: Path | str, *, segment_polls: int = SEGMENT_POLLS) -> None:
        if segment_polls < 1:
            raise ValueError("segment_polls must be at least 1")
        self.directory = Path(directory)
        self.segment_polls = segment_polls
        self._writer: IO[str] | None = None
        self._writing: Path | None = None
        self._written = 0  # lines in the segment being written
        self._taken: set[Path] = set()  # handed to the writer, deleted once committed
        self.count = sum(self._lines(p) for p in self._segments())  # polls not yet taken
        self.skipped = 0  # lines that were not polls (a write cut short by a crash)

    # ---- files ----
    def _segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir()
                      if p.suffix == _SUFFIX and p.stem.isdigit())

    @staticmethod
    def _lines(path: Path) -> int:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())

    def _next_path(self) -> Path:
        existing = self._segments()
        number = int(existing[-1].stem) + 1 if existing else 1
        return self.directory / f"{number:012d}{_SUFFIX}"

    @property
    def pending(self) -> bool:
        """Whether polls wait on disk that the writer has not taken yet."""
        return self.count > 0

    # ---- writing ----
    def append(self, poll: Poll) -> None:
        """Add ``poll`` at the end. ``OSError`` (a full or read-only disk) leaves the spool as
        it was: the caller keeps the poll."""
        line = poll_to_json(poll) + "\n"
        if self._writer is None or self._written >= self.segment_polls:
            self._close_writer()
            self.directory.mkdir(parents=True, exist_ok=True)
            self._writing = self._next_path()
            self._writer = self._writing.open("a", encoding="utf-8")
            self._written = 0
        try:
            self._writer.write(line)
            self._writer.flush()
        except OSError:
            # the line may be half written: end this segment here, so the next append starts
            # a fresh one; the reader skips a broken last line
            self._close_writer()
            raise
        self._written += 1
        self.count += 1

    def _close_writer(self) -> None:
        writer, self._writer, self._writing = self._writer, None, None
        if writer is not None:
            try:
                writer.flush()
                os.fsync(writer.fileno())
            except OSError as exc:
                log.error("spool: cannot flush %s: %s", self.directory, exc)
            finally:
                writer.close()

    # ---- reading back ----
    def take(self) -> tuple[Path, list[Poll]] | None:
        """The oldest segment not taken yet and its polls, in order; the file stays until
        ``done``."""
        for path in self._segments():
            if path in self._taken:
                continue
            if path == self._writing:
                self._close_writer()  # appends from now on go to a new segment
            polls: list[Poll] = []
            lines = 0
            with path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        continue
                    lines += 1
                    try:
                        polls.append(poll_from_json(line))
                    except (ValueError, KeyError, TypeError, IndexError):
                        self.skipped += 1
                        log.warning("spool %s: skipped a line that is not a poll", path.name)
            self._taken.add(path)
            self.count = max(self.count - lines, 0)
            return path, polls
        return None

    def done(self, path: Path) -> None:
        """The polls of ``path`` are committed: delete it."""
        self._taken.discard(path)
        path.unlink(missing_ok=True)

    def close(self) -> None:
        self._close_writer()


__all__ = ["SEGMENT_POLLS", "Spool", "poll_from_json", "poll_to_json"]
