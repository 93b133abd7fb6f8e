"""Argument parsing, dispatch, and the one place where errors become exit codes.

Global options (`-H/--host`, `--json`, `-q/--quiet`, `--traceback`) work before or after
the command. argparse alone gets this wrong: a subcommand parses into a fresh namespace and
copies every attribute back, defaults included, so `tamer -H ADDR clean` used to lose
`-H ADDR` to the subcommand's default (None) and act on the default engine. Here every
parser in the tree has those options with no default at all (SUPPRESS), whoever defined
them and however, so only a value given on the command line ever lands in the namespace;
the defaults are filled in once, after parsing.

Start-up is part of the interface (`tamer --help` must feel instant): the command modules are
imported only for the command on the command line (COMMANDS says which module registers which
command and the one-line help the top-level listing shows), and none of them imports the docker
SDK at import time. `tamer --help`, `tamer --version` and a bad command import no command module.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence

from tamer.cli.output import discard as _discard
from tamer.cli.output import write as _write
from tamer.cli.output import write_message as _say
from tamer.errors import TamerError, UsageError

TYPE_CHECKING = False  # not typing's: importing typing alone costs ~2 ms of `tamer --help`
if TYPE_CHECKING:
    from typing import Any, TextIO

# Plain classes, not dataclasses, in this module: `dataclasses` imports `inspect`, a few
# milliseconds that `tamer --help` would pay for nothing (json, traceback and tamer.state
# are imported where they are needed, for the same reason).


class Outcome:
    """What a command produced: data for --json, text for humans, an exit code."""

    __slots__ = ("data", "errors", "exit_code", "text")

    def __init__(self, data: Any, text: str, exit_code: int = 0, errors: list[str] | None = None) -> None:
        self.data = data
        self.text = text
        self.exit_code = exit_code
        self.errors = errors

    def __repr__(self) -> str:
        return f"Outcome(exit_code={self.exit_code}, errors={self.errors!r}, text={self.text[:60]!r})"


Handler = Callable[[argparse.Namespace], Outcome]


class GlobalOption:
    """An option every command accepts, anywhere on the command line."""

    __slots__ = ("default", "dest", "flags", "options")

    def __init__(
        self, dest: str, flags: tuple[str, ...], default: Any, options: dict[str, Any] | None = None
    ) -> None:
        self.dest = dest
        self.flags = flags
        self.default = default
        self.options = options or {}


GLOBAL_OPTIONS = (
    GlobalOption(
        "host",
        ("--host", "-H"),
        None,
        {
            "metavar": "ADDR",
            "help": "engine address (default: $DOCKER_HOST, else the docker context: DOCKER_CONTEXT or the "
            "docker config's currentContext; else the local socket)",
        },
    ),
    GlobalOption(
        "json",
        ("--json",),
        False,
        {"action": "store_true", "help": "print a versioned JSON envelope on stdout"},
    ),
    GlobalOption("quiet", ("--quiet", "-q"), False, {"action": "store_true", "help": "no progress output"}),
    GlobalOption(
        "traceback", ("--traceback",), False, {"action": "store_true", "help": "show a traceback on errors"}
    ),
)
_DEST_BY_FLAG = {flag: opt.dest for opt in GLOBAL_OPTIONS for flag in opt.flags}
_TAKES_VALUE = {flag for opt in GLOBAL_OPTIONS if "action" not in opt.options for flag in opt.flags}


def _terminal_width() -> int:
    """What argparse would use for the help's width (shutil.get_terminal_size, less 2), without
    importing shutil: argparse imports it (and bz2, lzma, fnmatch) for every parser that gets an
    argument, some 3 ms of every command's start."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so --json still gets an envelope."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_terminal_width())  # type: ignore[call-arg]  # every HelpFormatter takes width


def parent_parser() -> argparse.ArgumentParser:
    """A parser of shared options for command modules (parents=[...]): no --help of its own."""
    return _Parser(add_help=False)


def global_options_parser() -> argparse.ArgumentParser:
    """The parent parser of the global options; no defaults (see the module docstring)."""
    common = _Parser(add_help=False)
    for opt in GLOBAL_OPTIONS:
        common.add_argument(*opt.flags, dest=opt.dest, default=argparse.SUPPRESS, **opt.options)
    return common


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    seen: set[int] = set()
    todo = [parser]
    while todo:
        p = todo.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())


def make_global_options_win(parser: argparse.ArgumentParser) -> None:
    """Make sure no parser in the tree can put a default for a global option into the namespace.

    Covers options added through the shared parent, options a subcommand defines itself,
    and `set_defaults(host=...)`. Abbreviated long options are turned off as well, so the
    options this module looks for before parsing (for an envelope on a usage error) are
    spelled exactly as argparse reads them.
    """
    for p in _parsers(parser):
        p.allow_abbrev = False
        for action in p._actions:
            dests = {_DEST_BY_FLAG[f] for f in action.option_strings if f in _DEST_BY_FLAG}
            if dests:
                (action.dest,) = dests
                action.default = argparse.SUPPRESS
                action.required = False
        for opt in GLOBAL_OPTIONS:
            p._defaults.pop(opt.dest, None)


class Command:
    """A top-level command: the module whose `register(sub, common)` defines it, and its one-line help."""

    __slots__ = ("help", "module", "name")

    def __init__(self, name: str, module: str, help: str) -> None:
        self.name = name
        self.module = module
        self.help = help


# In the order `tamer --help` lists them. A module registers all of its commands at once.
COMMANDS = (
    Command("df", "tamer.cli.inspect_cmds", "what everything costs, what could go, who owns it"),
    Command("ls", "tamer.cli.inspect_cmds", "list images, containers, volumes or build cache"),
    Command("record", "tamer.cli.history_cmds", "add a snapshot of what the host costs to its history"),
    Command("history", "tamer.cli.history_cmds", "what grew, top growers, when the disk fills at this rate"),
    Command("plan", "tamer.cli.clean_cmds", "preview what a clean would remove, and why"),
    Command("clean", "tamer.cli.clean_cmds", "remove what the policy allows (preview by default)"),
    Command("policy", "tamer.cli.clean_cmds", "check or show a cleanup policy"),
    Command("watch", "tamer.cli.clean_cmds", "record when images and volumes are used (for LRU)"),
    Command("volume", "tamer.cli.volume_cmds", "place, move, back up and restore named volumes"),
    Command(
        "adopt",
        "tamer.cli.volume_cmds",
        "name a container's anonymous volumes and re-create it using them; previews unless --apply",
    ),
    Command("run", "tamer.cli.volume_cmds", "run a container with every declared VOLUME named (and placed)"),
    Command("fleet", "tamer.cli.fleet_cmds", "df, plan, clean or history on every host of a fleet, over ssh"),
    Command("schedule", "tamer.cli.schedule_cmds", "run clean, record and watch from systemd timers"),
    Command("compose", "tamer.cli.compose_cmds", "check a compose file for anonymous volumes and more"),
    Command("metrics", "tamer.cli.metrics_cmds", "print the Prometheus text format (or write a textfile)"),
    Command("serve", "tamer.cli.metrics_cmds", "serve /metrics (Prometheus) and a status page over HTTP"),
)
_COMMAND_NAMES = tuple(c.name for c in COMMANDS)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser tree; given `argv`, only the tree its command needs.

    With `argv`, only the module of the command named there is imported and registered; every
    other command is a placeholder that carries its help line (enough for `tamer --help` and for
    argparse to name the valid choices). `parse_command_line` re-parses with the whole tree in
    the one case where the placeholder would be reached.
    """
    import importlib

    wanted = None if argv is None else _scan(argv, _COMMAND_NAMES).command
    common = global_options_parser()
    parser = _Parser(
        prog="tamer", description="Keep a Docker host from becoming a 100 GB blob.", parents=[common]
    )
    parser.add_argument("--version", action="store_true", help="print tamer's version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    modules = list(dict.fromkeys(c.module for c in COMMANDS if argv is None or c.name == wanted))
    for name in modules:
        importlib.import_module(name).register(sub, common)
    for command in COMMANDS:
        if command.name not in sub.choices:
            sub.add_parser(command.name, help=command.help, add_help=False)
    order = {name: i for i, name in enumerate(_COMMAND_NAMES)}
    sub._choices_actions.sort(key=lambda a: order.get(a.dest, len(order)))
    make_global_options_win(parser)
    return parser


def parse_command_line(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse `argv` with the lean parser (see build_parser); the whole tree only if it must."""
    parser = build_parser(argv)
    args = parse_args(parser, argv)
    if args.command is not None and not getattr(args, "handler", None):
        # the scan did not see the command argparse chose (cannot happen today): be right, not fast
        parser = build_parser()
        args = parse_args(parser, argv)
    return parser, args


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv`, then give each global option not given anywhere its default."""
    args, extras = parser.parse_known_args(list(argv))
    if extras:
        # argparse would report leftovers from the top parser ("see `tamer --help`"), whose page
        # lists no command's options: point at the help of the (sub)command that was parsed
        named = [getattr(args, "command", None)]
        named += [v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)]
        where = " ".join(["tamer", *(n for n in named if n)])
        raise UsageError(f"unrecognized arguments: {' '.join(extras)} (see `{where} --help`)")
    if not hasattr(args, "version"):
        args.version = False
    for opt in GLOBAL_OPTIONS:
        if not hasattr(args, opt.dest):
            setattr(args, opt.dest, opt.default)
    if args.host is not None and not args.host.strip():
        # an empty -H would quietly mean "DOCKER_HOST, else the local socket": not the engine named
        raise UsageError(
            "-H/--host needs an engine address, got an empty one; expected e.g. "
            "-H unix:///var/run/docker.sock or -H tcp://HOST:2376 (nothing was done)"
        )
    return args


class _Scan:
    """What the raw arguments say before parsing: enough to report a usage error properly."""

    __slots__ = ("command", "json", "traceback")

    def __init__(self, json: bool, traceback: bool, command: str | None) -> None:
        self.json = json
        self.traceback = traceback
        self.command = command


def _scan(argv: Sequence[str], commands: Sequence[str]) -> _Scan:
    flags: set[str] = set()
    command: str | None = None
    skip = False
    for token in argv:
        if token == "--":  # the rest is a container's command (`tamer run IMAGE -- ...`)
            break
        if skip:
            skip = False
            continue
        if token in _TAKES_VALUE:
            skip = True
        elif token in _DEST_BY_FLAG:
            flags.add(_DEST_BY_FLAG[token])
        elif token.startswith("-") and not token.startswith("--") and len(token) > 2:
            # a cluster of short flags such as -qy, or -Hunix://... (a value glued on)
            for ch in token[1:]:
                dest = _DEST_BY_FLAG.get(f"-{ch}")
                if dest is None or f"-{ch}" in _TAKES_VALUE:
                    break
                flags.add(dest)
        elif command is None and not token.startswith("-") and token in commands:
            command = token
    return _Scan("json" in flags, "traceback" in flags, command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `tamer`; returns the exit code (0 ok, 1 error, 2 usage, 3 partial, 130 interrupted)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args_list)
    except BrokenPipeError:
        # output cut short mid-command (the reader left): no traceback, no second error at exit
        _discard(sys.stdout)
        return 1


def _main(args_list: list[str]) -> int:
    notes: list[str] = []
    scan = _Scan("--json" in args_list, "--traceback" in args_list, None)
    with warnings.catch_warnings(record=True) as caught:
        try:
            scan = _scan(args_list, _COMMAND_NAMES)
            parser, args = parse_command_line(args_list)
            scan = _Scan(args.json, args.traceback, args.command)
            if args.version:
                outcome = Outcome({"name": "tamer", "version": _version()}, f"tamer {_version()}")
            elif not getattr(args, "handler", None):
                commands = _COMMAND_NAMES
                if args.json:
                    raise UsageError(
                        f"no command given; expected one of {', '.join(commands)} (see `tamer --help`)"
                    )
                _write(sys.stdout, parser.format_help().rstrip())
                return 0
            else:
                from tamer.errors import StateUnavailable  # only a command's work can meet tamer's state

                warnings.simplefilter("always", StateUnavailable)
                outcome = args.handler(args)
        except KeyboardInterrupt:
            return _fail(scan, 130, "interrupted", _notes(caught, notes))
        except TamerError as exc:
            if scan.traceback:
                _print_traceback()
            return _fail(scan, exc.exit_code, str(exc), _notes(caught, notes))
        except Exception as exc:  # a bug: say so plainly, traceback on request
            if scan.traceback:
                _print_traceback()
            return _fail(
                scan,
                1,
                f"internal error: {type(exc).__name__}: {exc} (rerun with --traceback and report it)",
                _notes(caught, notes),
            )
        _notes(caught, notes)
    if scan.json:
        from tamer.report.envelope import envelope

        _write(
            sys.stdout,
            envelope(
                scan.command,
                outcome.exit_code,
                outcome.data,
                [*notes, *(outcome.errors or [])],
                pretty=_is_terminal(sys.stdout),
            ),
        )
    else:
        _warn(notes)
        if outcome.text:
            _write(sys.stdout, outcome.text)
    return outcome.exit_code


def interrupted(args_list: list[str]) -> int:
    """Ctrl-C before the command line was parsed (tamer.cli.lean): said as _main says it, exit 130."""
    return _fail(_scan(args_list, _COMMAND_NAMES), 130, "interrupted", [])


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


def _version() -> str:
    from tamer import __version__

    return __version__


def _notes(caught: list[warnings.WarningMessage], into: list[str]) -> list[str]:
    """tamer's own warnings (say, an unreadable state database) for stderr or the envelope's errors."""
    from tamer.errors import StateUnavailable

    for w in caught:
        if issubclass(w.category, StateUnavailable):
            into.append(f"warning: {w.message}")
        else:  # not ours: let Python's usual filters decide, as if we had not looked
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    caught.clear()
    return into


def _warn(notes: list[str]) -> None:
    for note in notes:
        _say(sys.stderr, f"tamer: {note}")


def _fail(scan: _Scan, code: int, message: str, notes: list[str]) -> int:
    if scan.json:
        from tamer.report.envelope import envelope

        _write(
            sys.stdout, envelope(scan.command, code, None, [*notes, message], pretty=_is_terminal(sys.stdout))
        )
    else:
        _warn(notes)
        _say(sys.stderr, f"tamer: error: {message}")
    return code
