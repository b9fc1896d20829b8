"""The ``mbus`` command.

Subcommands live in their own modules and are imported only when run, so that one command's
dependencies (a web server, a database driver) never slow down or break another.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# name -> "module:attribute" of a click.Command
_COMMANDS: dict[str, str] = {
    "decode": "mbuskit.cli.decode:decode",
    "emulate": "mbuskit.cli.emulate:emulate",
    "scan": "mbuskit.cli.master:scan",
    "read": "mbuskit.cli.master:read",
    "set-address": "mbuskit.cli.master:set_address",
    "set-id": "mbuskit.cli.master:set_id",
    "set-time": "mbuskit.cli.master:set_time",
    "breaker": "mbuskit.cli.master:breaker",
    "tariff": "mbuskit.cli.master:tariff",
    "ct-ratio": "mbuskit.cli.master:ct_ratio",
    "baud": "mbuskit.cli.master:baud",
    "raw": "mbuskit.cli.master:raw",
    "demo": "mbuskit.cli.headend:demo",
    "serve": "mbuskit.cli.headend:serve",
}


def host_port(value: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (or a bare port on 127.0.0.1; IPv6 hosts in brackets) of a command option."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=option)
    return host.strip("[]") or "127.0.0.1", int(port)


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in _COMMANDS if _available(name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        command = getattr(module, attr, None)
        return command if isinstance(command, click.Command) else None


def _available(name: str) -> bool:
    module_name = _COMMANDS[name].split(":")[0]
    return importlib.util.find_spec(module_name) is not None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mbuskit")
def main() -> None:
    """M-Bus (EN 13757-2/-3) toolkit: decode, emulate Kamstrup meters, scan, read, serve."""


if __name__ == "__main__":
    main()
