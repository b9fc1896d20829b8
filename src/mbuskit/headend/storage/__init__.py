"""Reading storage: :func:`open_storage` picks the back-end for a storage URL.

The interface and what the back-ends share are in ``base``, SQLite in ``sqlite``, PostgreSQL in
``postgres``.
"""

from __future__ import annotations

from .base import Storage, StorageError
from .sqlite import SqliteStorage


def open_storage(url: str, *, worker: str = "headend") -> Storage:
    """Storage for a URL: sqlite:///path (default) or postgresql://... (``postgres``)."""
    if url.startswith("sqlite:///"):
        return SqliteStorage(url[len("sqlite:///"):] or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        # imported here, not at the top: psycopg is loaded only by a PostgreSQL head-end
        from .postgres import PostgresStorage

        return PostgresStorage(url, worker=worker)
    raise StorageError(f"unsupported storage URL {url!r} (sqlite:///path or postgresql://...)")


__all__ = ["open_storage"]
