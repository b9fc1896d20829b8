"""The audit trail of the ``mbus`` commands that change a meter (docs/architecture.md 5).

Each command to each meter is one row in the head-end's ``commands`` table, in the storage that
``MBUS_AUDIT`` names (``sqlite:///PATH`` or ``postgresql://...``, the URL ``[storage]`` takes;
a head-end on the same storage lists the rows in ``GET /api/commands``). Without it the rows go
to ``$XDG_STATE_HOME/mbuskit/commands.db`` (``~/.local/state/mbuskit/commands.db``).

The row is committed as "pending" before anything is sent, and completed with the outcome
(ok, refused, unverified, unreachable, error) and what was read back: a command that cannot be
recorded is not sent, and one cut off by Ctrl-C stays "pending" (its outcome is unknown).
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import BusTimeout, MBusError, SecurityError, TransportError
from ..headend.model import CommandEntry
from ..headend.storage import open_storage
from ..headend.storage.base import Storage
from .session import RefusedError, UnreachableError, UnverifiedError

ENV = "MBUS_AUDIT"
T = TypeVar("T")


class AuditError(MBusError):
    """The audit row could not be written: the command is not sent."""


def audit_url() -> str:
    url = os.environ.get(ENV, "").strip()
    if url:
        return url
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return f"sqlite:///{state / 'mbuskit' / 'commands.db'}"


def outcome_of(exc: BaseException) -> str:
    """The audit outcome of a failed command, in the head-end's words."""
    if isinstance(exc, RefusedError | SecurityError):
        return "refused"
    if isinstance(exc, UnverifiedError):
        return "unverified"
    if isinstance(exc, UnreachableError | BusTimeout | TransportError):
        return "unreachable"
    return "error"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


class Audit:
    """One CLI run's trail; the storage is opened at the first command, so that a command
    refused before it reaches the bus (a usage error) needs no audit storage."""

    def __init__(self, command: str, params: dict[str, Any], url: str | None = None) -> None:
        self.command = command
        # what was asked, without the port and the session's own options
        skip = {"port", "baud", "timeout", "retries", "key_file", "trace", "yes"}
        self.args = {k: _jsonable(v) for k, v in params.items() if k not in skip}
        self.url = url or audit_url()
        self.origin = f"cli:{_user()}"
        self._storage: Storage | None = None

    def _open(self) -> Storage:
        if self._storage is None:
            if self.url.startswith("sqlite:///") and self.url != "sqlite:///":
                Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            storage = open_storage(self.url, worker="cli")
            storage.init()
            self._storage = storage
        return self._storage

    async def run(self, meter: str, step: Callable[[], Awaitable[str]]) -> str:
        """Record, then run ``step`` (which returns the "ok: ..." line), then complete the row."""
        try:
            row = self._open().open_command(
                CommandEntry(time.time(), self.origin, meter, self.command, self.args))
        except Exception as exc:  # whatever the storage raises: no record, no command
            raise AuditError(f"cannot record the command in the audit trail {self.url} "
                             f"({exc}); nothing sent (set {ENV} to a writable storage URL)"
                             ) from None
        try:
            result = await step()
        except MBusError as exc:
            self._close(row, outcome_of(exc), str(exc))
            raise
        self._close(row, "ok", None, result)
        return result

    def _close(self, row: int, outcome: str, message: str | None,
               result: str | None = None) -> None:
        assert self._storage is not None
        try:
            self._storage.close_command(row, outcome=outcome, message=message,
                                        readback={"result": result} if result else None,
                                        finished=time.time())
        except Exception as exc:
            # the command has run: it is not undone, the row stays "pending"; say so
            import click

            click.echo(f"mbus {self.command}: the audit row {row} stays pending: {exc}", err=True)

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()
            self._storage = None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


__all__ = ["ENV", "Audit", "AuditError", "audit_url", "outcome_of"]
