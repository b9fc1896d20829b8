"""``python -m mbuskit.cli``: the ``mbus`` command."""

from .main import main

main()
