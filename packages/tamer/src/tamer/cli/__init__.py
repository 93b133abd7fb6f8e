"""The `tamer` command line: parses arguments, calls the library, renders the result."""

from __future__ import annotations

from tamer.cli.app import main

__all__ = ["main"]
