"""Atomic JSON state files (the meter twin's registers survive a restart or a crash).

``save_state`` never leaves a half-written file behind: it writes a temporary file in the same
directory, fsyncs it, and renames it over the target with ``os.replace`` (atomic on POSIX and
Windows within one file system), then fsyncs the directory so the rename itself is durable.
Before replacing, the current file is copied to ``<name>.bak`` if it still parses, so the last
good state is kept even if a later file gets damaged outside our control. A failed write (a
full disk, a read-only directory) leaves the old file as it was and raises StateFileError.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import MBusError

BACKUP_SUFFIX = ".bak"


class StateFileError(MBusError):
    """A state file cannot be written or read. ``path`` names the file."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


class StateFileMissing(StateFileError):
    """There is no state file yet (start afresh)."""


def backup_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.name + BACKUP_SUFFIX)


def _encode(path: Path, data: dict[str, Any]) -> bytes:
    if not isinstance(data, dict):
        raise StateFileError(path, f"state must be a dict, got {type(data).__name__}")
    try:
        text = json.dumps(data, sort_keys=True, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StateFileError(path, f"state is not JSON-safe: {exc}") from exc
    return (text + "\n").encode("utf-8")


def _write_atomic(path: Path, payload: bytes) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    # makes the rename durable; not every platform can open a directory (Windows cannot)
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFileError(path, f"corrupt state file (not JSON): {exc}") from exc
    if not isinstance(data, dict):
        raise StateFileError(path, "corrupt state file (top level is not an object)")
    return data


def save_state(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically, keeping the previous good file as .bak."""
    target = Path(path)
    payload = _encode(target, data)
    try:
        previous = target.read_bytes()
    except FileNotFoundError:
        previous = None
    except OSError as exc:
        raise StateFileError(target, f"cannot read the current state file: {exc}") from exc
    try:
        if previous is not None:
            try:
                _parse(target, previous)
            except StateFileError:
                pass  # a damaged current file must not overwrite the last good backup
            else:
                _write_atomic(backup_path(target), previous)
        _write_atomic(target, payload)
    except OSError as exc:
        reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise StateFileError(
            target, f"cannot write state ({reason}); the previous file is unchanged"
        ) from exc


def load_state(path: str | os.PathLike[str], *, use_backup: bool = False) -> dict[str, Any]:
    """Read a state file. A corrupt or unreadable file raises StateFileError naming it and is
    left in place for inspection; with ``use_backup`` the .bak copy is tried instead."""
    target = Path(path)
    try:
        return _parse(target, target.read_bytes())
    except FileNotFoundError as exc:
        if use_backup and backup_path(target).exists():
            return _load_backup(target)
        raise StateFileMissing(target, "no state file") from exc
    except OSError as exc:
        if use_backup:
            return _load_backup(target)
        raise StateFileError(target, f"cannot read state file: {exc}") from exc
    except StateFileError:
        if use_backup:
            return _load_backup(target)
        raise


def _load_backup(target: Path) -> dict[str, Any]:
    bak = backup_path(target)
    try:
        raw = bak.read_bytes()
    except OSError as exc:
        raise StateFileError(
            target, f"state file unusable and no readable backup {bak.name}: {exc}"
        ) from exc
    return _parse(bak, raw)


__all__ = [
    "BACKUP_SUFFIX",
    "StateFileError",
    "StateFileMissing",
    "backup_path",
    "load_state",
    "save_state",
]
