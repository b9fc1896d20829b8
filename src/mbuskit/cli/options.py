"""Option value parsers shared by ``mbus`` commands that do not open a bus session.

``host_port`` reads the ``HOST:PORT`` of ``emulate --tcp`` and ``serve``/``demo --http``. It
lives here, not in ``main``: ``main`` loads the command modules, so a command module importing
it would close an import circle.
"""

from __future__ import annotations

import click

__all__ = ["host_port"]


def host_port(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (or a bare port on 127.0.0.1; IPv6 hosts in brackets) of a command option."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=option)
    return host.strip("[]") or "127.0.0.1", int(port)
