"""The README's promises: its Python quick start runs, and its two set-up commands are there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_quick_start_runs() -> None:
    (block,) = _blocks("python")
    result = subprocess.run([sys.executable, "-c", block], check=False, capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "KAM" in result.stdout


def test_two_commands_open_the_readme() -> None:
    first = _blocks("sh")[0].strip().splitlines()
    assert len(first) == 2
    assert first[0].startswith("bash scripts/setup.sh && .venv/bin/mbus demo")
    assert first[1].startswith("bash scripts/setup.sh && .venv/bin/pytest")
    assert (ROOT / "scripts" / "setup.sh").exists()
    # CI runs the same test command
    assert ".venv/bin/pytest" in (ROOT / ".ci" / "run").read_text()


def test_documents_named_in_the_readme_exist() -> None:
    for name in re.findall(r"`((?:docs|bench)/[\w.-]+\.(?:md|py))`", README):
        assert (ROOT / name).exists(), name
