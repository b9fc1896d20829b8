"""The protocol core does no I/O, reads no clock and draws no randomness (docs/architecture.md 2).

Checked on the source (AST), so that an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mbuskit"
# Adapters that do I/O by design; every other module is protocol core and must stay pure.
ADAPTERS = ("cli/", "slave/emulator.py", "slave/persist.py", "transport/", "headend/")
CORE = sorted(
    str(p.relative_to(SRC))
    for p in SRC.rglob("*.py")
    if not str(p.relative_to(SRC)).startswith(ADAPTERS)
)
FORBIDDEN = {
    "socket",
    "asyncio",
    "serial",
    "time",
    "random",
    "threading",
    "selectors",
    "subprocess",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", CORE)
def test_core_module_imports_no_io(name: str) -> None:
    path = SRC / name
    bad = _imports(path) & FORBIDDEN
    assert not bad, f"{name} imports {sorted(bad)}"


def test_core_covers_the_protocol_modules() -> None:
    # guards against the test passing because the core modules were renamed away
    for name in (
        "codec/link.py", "codec/records.py", "codec/telegram.py", "slave/machine.py",
        "master/driver.py", "master/scan.py",
    ):
        assert name in CORE
