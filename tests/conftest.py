"""Shared test set-up: the CLI's audit trail goes to a temporary database, never to the home
directory of whoever runs the tests (``mbus`` commands record every command, cli/audit.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _audit_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("audit") / "commands.db"
    monkeypatch.setenv("MBUS_AUDIT", f"sqlite:///{path}")
    yield path
