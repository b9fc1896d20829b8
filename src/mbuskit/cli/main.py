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
    "scan": "mbuskit.cli.read:scan",
    "read": "mbuskit.cli.read:read",
    "set-address": "mbuskit.cli.control:set_address",
    "set-id": "mbuskit.cli.control:set_id",
    "set-time": "mbuskit.cli.control:set_time",
    "breaker": "mbuskit.cli.control:breaker",
    "tariff": "mbuskit.cli.control:tariff",
    "ct-ratio": "mbuskit.cli.control:ct_ratio",
    "baud": "mbuskit.cli.control:baud",
    "raw": "mbuskit.cli.control:raw",
    "demo": "mbuskit.cli.headend:demo",
    "serve": "mbuskit.cli.headend:serve",
}


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
