"""Atomic state files: round trip, backups, corrupt files and a full disk."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mbuskit.errors import MBusError
from mbuskit.slave.persist import (
    StateFileError,
    StateFileMissing,
    backup_path,
    load_state,
    save_state,
)


def test_round_trip_and_no_temp_files_left(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    data = {"a": 1, "big": 2**70, "nested": {"x": [1, None, True, "s"]}, "f": 0.1}
    save_state(path, data)
    assert load_state(path) == data
    assert [p.name for p in tmp_path.iterdir()] == ["meter.json"]


def test_second_save_keeps_previous_as_backup(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    save_state(path, {"v": 1})
    save_state(path, {"v": 2})
    assert load_state(path) == {"v": 2}
    assert json.loads(backup_path(path).read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meter.json", "meter.json.bak"]


def test_missing_file_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(StateFileMissing) as info:
        load_state(tmp_path / "nope.json")
    assert isinstance(info.value, MBusError)
    assert "nope.json" in str(info.value)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b""])
def test_corrupt_file_names_the_file_and_is_kept(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "meter.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError) as info:
        load_state(path)
    assert "meter.json" in str(info.value)
    assert info.value.path == path
    assert path.read_bytes() == content  # left in place for inspection


def test_corrupt_file_falls_back_to_backup_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    save_state(path, {"v": 1})
    save_state(path, {"v": 2})
    path.write_bytes(b'{"v": 3')  # torn by something outside our control
    with pytest.raises(StateFileError):
        load_state(path)
    assert load_state(path, use_backup=True) == {"v": 1}


def test_corrupt_file_does_not_overwrite_good_backup(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    save_state(path, {"v": 1})
    save_state(path, {"v": 2})  # backup now holds v=1
    path.write_bytes(b"garbage")
    save_state(path, {"v": 4})
    assert load_state(path) == {"v": 4}
    assert json.loads(backup_path(path).read_text()) == {"v": 1}


def test_backup_fallback_without_backup_is_clear(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    path.write_bytes(b"garbage")
    with pytest.raises(StateFileError, match="backup"):
        load_state(path, use_backup=True)


def test_unserialisable_state_is_refused_and_old_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "meter.json"
    save_state(path, {"v": 1})
    with pytest.raises(StateFileError, match="JSON-safe"):
        save_state(path, {"v": object()})
    with pytest.raises(StateFileError, match="JSON-safe"):
        save_state(path, {"v": float("nan")})
    with pytest.raises(StateFileError, match="dict"):
        save_state(path, [1, 2])  # type: ignore[arg-type]
    assert load_state(path) == {"v": 1}


def test_disk_full_keeps_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "meter.json"
    save_state(path, {"v": 1})
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, fd: int) -> None:
            self._fh = real_fdopen(fd, "wb")

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self._fh.close()

        def write(self, data: bytes) -> int:
            self._fh.write(data[: len(data) // 2])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            self._fh.flush()

        def fileno(self) -> int:
            return self._fh.fileno()

    def fake_fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return FullFile(fd)

    monkeypatch.setattr(os, "fdopen", fake_fdopen)
    with pytest.raises(StateFileError, match="disk full") as info:
        save_state(path, {"v": 2, "pad": "x" * 1000})
    assert "meter.json" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_state(path) == {"v": 1}
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_unwritable_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "meter.json"
    save_state(path, {"v": 1})

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(StateFileError, match="previous file is unchanged"):
        save_state(path, {"v": 2})
    monkeypatch.undo()
    assert load_state(path) == {"v": 1}


def test_public_api_is_pinned() -> None:
    from mbuskit.slave import persist

    assert set(persist.__all__) == {
        "BACKUP_SUFFIX", "StateFileError", "StateFileMissing", "backup_path", "load_state",
        "save_state",
    }  # fmt: skip
