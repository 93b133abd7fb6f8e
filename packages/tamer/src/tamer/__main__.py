"""`python -m tamer` is the `tamer` command."""

from __future__ import annotations

from tamer.cli import run

run()
