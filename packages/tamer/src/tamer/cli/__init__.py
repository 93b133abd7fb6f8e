"""The `tamer` command line: parses arguments, calls the library, renders the result."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run `tamer`; returns the exit code (0 ok, 1 error, 2 usage, 3 partial, 130 interrupted).

    A plain listing runs on the lean path (tamer.cli.lean), everything else through argparse
    (tamer.cli.app), imported only then."""
    args = list(sys.argv[1:] if argv is None else argv)
    from tamer.cli.lean import run_lean

    code = run_lean(args)
    if code is not None:
        return code
    try:
        from tamer.cli.app import main as full  # some 20-30 ms: a Ctrl-C may land in it
    except KeyboardInterrupt:  # said as the full CLI says it, not as a traceback
        early = sys.modules.get("tamer.early")
        if early is not None:
            early.drop_unused()
        sys.stderr.write("tamer: error: interrupted\n")
        return 130
    try:
        return full(args)
    finally:
        early = sys.modules.get("tamer.early")
        if early is not None:  # what run_lean started for a df the parse then refused: its workers go
            early.drop_unused()
