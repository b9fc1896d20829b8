"""The package's shape (docs/architecture.md): no import circles, layers import only downwards,
at most three loose modules at the top, no module over 700 lines.

Read from the source (AST), so an import inside a function counts like one at the top; only
imports under ``if TYPE_CHECKING:`` are left out (they never run). Beside test_core_purity.py,
which checks that the protocol core does no I/O.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mbuskit"

# What each layer may import (besides itself); docs/architecture.md draws the same picture.
# "mbuskit" is the public face (__init__): only the layers above the core may lean on it.
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "codec": frozenset({"errors"}),
    "mbuskit": frozenset({"errors", "codec"}),
    "render": frozenset({"errors", "codec"}),
    "transport": frozenset({"errors", "codec"}),
    "master": frozenset({"errors", "codec", "transport"}),
    "slave": frozenset({"errors", "codec", "transport"}),
    "headend": frozenset({"errors", "codec", "mbuskit", "render", "transport", "master", "slave"}),
    "cli": frozenset(
        {"errors", "codec", "mbuskit", "render", "transport", "master", "slave", "headend"}
    ),
}
LOOSE_MAX = 3  # __init__, errors and at most one more module at the top of the package
LINES_MAX = 700


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skipped.update(id(n) for n in ast.walk(stmt))
    return skipped


def imports_of(name: str, path: Path, modules: Iterable[str]) -> set[str]:
    """The package's modules that ``name`` imports at run time (a ``from P import m`` of a
    submodule ``m`` is an edge to ``P.m``, of any other name an edge to ``P``)."""
    known = set(modules)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target not in known:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mbuskit"


def test_the_circle_finder_finds_circles() -> None:
    # the check below would pass vacuously if this did not
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_lazy_and_skips_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n    from .c import C\n"
        "def f() -> None:\n    from .d import D\n"
    )
    modules = ["p", "p.a", "p.b", "p.c", "p.d"]
    assert imports_of("p.a", pkg / "a.py", modules) == {"p.b", "p.d"}


def test_no_import_circles() -> None:
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_layers_import_only_downwards() -> None:
    graph = import_graph()
    assert set(map(layer_of, graph)) <= set(ALLOWED), "a layer docs/architecture.md lacks"
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) != layer_of(module)
        and layer_of(target) not in ALLOWED[layer_of(module)]
    )
    assert not wrong, "imports against the layer order: " + ", ".join(wrong)


def test_at_most_three_loose_modules() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= LOOSE_MAX, loose
    assert {"__init__.py", "errors.py"} <= set(loose)


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_under_the_line_bar(name: str) -> None:
    lines = _modules()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= LINES_MAX, f"{name}: {lines} lines"
