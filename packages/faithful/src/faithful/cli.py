"""Command line entry point of faithful."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run the `faithful` command; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["--help"], ["-h"]):
        print("usage: faithful COMMAND ...\n\nfaithful decodes model output distributions properly.")
        return 0
    print(f"faithful: unknown command {args[0]!r}; run `faithful --help` for the list", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
