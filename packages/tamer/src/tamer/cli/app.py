"""Argument parsing, dispatch, and the one place where errors become exit codes."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tamer.errors import TamerError, UsageError
from tamer.report.envelope import envelope


@dataclass
class Outcome:
    """What a command produced: data for --json, text for humans, an exit code."""

    data: Any
    text: str
    exit_code: int = 0
    errors: list[str] | None = None


Handler = Callable[[argparse.Namespace], Outcome]


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so --json still gets an envelope."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    from tamer.cli import clean_cmds, inspect_cmds, volume_cmds

    common = _Parser(add_help=False)
    common.add_argument("--host", "-H", help="engine address (default: $DOCKER_HOST, else the local socket)")
    common.add_argument("--json", action="store_true", help="print a versioned JSON envelope on stdout")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    common.add_argument("--traceback", action="store_true", help="show a traceback on errors")
    parser = _Parser(prog="tamer", description="Keep a Docker host from becoming a 100 GB blob.",
                     parents=[common])
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    inspect_cmds.register(sub, common)
    clean_cmds.register(sub, common)
    volume_cmds.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `tamer`; returns the exit code (0 ok, 1 error, 2 usage, 3 partial, 130 interrupted)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in args_list
    want_tb = "--traceback" in args_list
    command = next((a for a in args_list if not a.startswith("-")), "")
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 0
        command = args.command
        outcome: Outcome = args.handler(args)
    except KeyboardInterrupt:
        return _fail(command, 130, "interrupted", want_json)
    except TamerError as exc:
        if want_tb:
            traceback.print_exc()
        return _fail(command, exc.exit_code, str(exc), want_json)
    except Exception as exc:  # a bug: say so plainly, traceback on request
        if want_tb:
            traceback.print_exc()
        return _fail(command, 1, f"internal error: {type(exc).__name__}: {exc} (rerun with --traceback "
                     "and report it)", want_json)
    try:
        if want_json:
            print(envelope(command, outcome.exit_code, outcome.data, outcome.errors))
        elif outcome.text:
            print(outcome.text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `tamer df | head`: the reader left; that is not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return outcome.exit_code


def _fail(command: str, code: int, message: str, want_json: bool) -> int:
    if want_json:
        print(envelope(command, code, None, [message]))
    else:
        print(f"tamer: error: {message}", file=sys.stderr)
    return code
