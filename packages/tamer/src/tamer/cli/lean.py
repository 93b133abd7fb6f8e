"""The lean path of `tamer ls`: plain listings run without argparse or the command tree.

`tamer ls images` on a small host must cost about what `docker images` does. Python's own start
is most of that; argparse (with gettext and locale), building the command tree and the `re` module
argparse and json import are a further 10 ms or so. So main() first offers the command line to
run_lean(): when it is exactly a listing the lean tables answer (tamer.quick_ls: `ls` with a kind,
--sort name|age, --filter, -H/--host and -q, on a unix socket), it runs here and prints what the
full CLI would print; anything else (an option it does not know, a usage error, --json, --help,
--size, --users, an ssh or tcp host) returns None, untouched, and the full CLI parses it. So
every error and every help text keeps one source; a test runs each listing both ways and requires
the same output, exit code and stderr. TAMER_FULL_CLI=1 turns this path off.

A plain `tamer df` (df's own options and the global ones, on a unix socket, sizing not left to the
engine) still goes through the full CLI, but its first engine reads and its walk's workers are started
here first (tamer.early), so that the engine answers while the command line is parsed.
"""

from __future__ import annotations

import os
import sys

_GLOBAL_WITH_VALUE = ("-H", "--host")
_LS_WITH_VALUE = ("--sort", "--filter", "-f")
_QUIET = ("-q", "--quiet")
# what a plain df's command line may hold (see _plain_df): the global options anywhere, df's own only after
# `df` (before it argparse refuses them: `tamer -v df` is a usage error)
_GLOBAL_FLAGS = ("--json", "-q", "--quiet", "--traceback")
_DF_FLAGS = ("-v", "--verbose")
_DF_WITH_VALUE = ("-H", "--host", "--top", "--sizing")


def _split(argv: list[str]) -> tuple[str | None, list[str], list[str], str | None] | None:
    """(host, words, filter specs, sort) of a plain listing, else None. Options as argparse reads
    them here: global ones anywhere, ls's own only after `ls`, the last of a repeated one wins."""
    host: str | None = None
    sort: str | None = None
    specs: list[str] = []
    words: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token in _QUIET:
            continue
        if not token.startswith("-") or token == "-":
            words.append(token)
            continue
        flag, eq, value = token.partition("=")
        if not eq:
            if token not in _GLOBAL_WITH_VALUE + _LS_WITH_VALUE or i >= len(argv):
                return None
            value = argv[i]
            i += 1
            if value.startswith("-"):  # argparse would read it as an option: its error to give
                return None
        elif flag not in ("--host", "--sort", "--filter"):
            return None
        if flag in _GLOBAL_WITH_VALUE:
            # parse_args refuses an empty -H: DOCKER_HOST's engine is not the one named
            if not value.strip():
                return None
            host = value
        elif not words:  # an ls option before `ls`: the full CLI says it is unknown there
            return None
        elif flag == "--sort":
            sort = value
        else:
            specs.append(value)
    return host, words, specs, sort


def _plain_df(argv: list[str]) -> tuple[bool, str | None]:
    """(True, the -H value or None) when `argv` is plainly a df whose sizes are walked here and that
    argparse will take (every value checked as df's parser checks it: a usage error must cost nothing),
    else (False, None). tamer.early checks the engine it is given again."""
    host: str | None = None
    words: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token in _GLOBAL_FLAGS or (token in _DF_FLAGS and words):
            continue
        if not token.startswith("-"):
            words.append(token)
            continue
        flag, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if flag not in _DF_WITH_VALUE or (flag not in _GLOBAL_WITH_VALUE and not words):
            return False, None
        if not eq:
            if i >= len(argv):
                return False, None
            value = argv[i]
            i += 1
        if value.startswith("-"):  # argparse would read it as an option: its error to give
            return False, None
        if flag in _GLOBAL_WITH_VALUE:
            if not value.strip():  # parse_args refuses an empty -H
                return False, None
            host = value
        elif not (_positive(value) if flag == "--top" else value in ("auto", "local")):
            return False, None  # a --top or --sizing df's parser refuses; or engine: nothing is walked here
    return words == ["df"], host


def _positive(text: str) -> bool:
    """Whether --top's type (tamer.cli.argtypes.positive_int) takes `text`, without importing argparse."""
    try:
        return int(text) >= 1
    except ValueError:
        return False


def run_lean(argv: list[str]) -> int | None:
    """Run `tamer ARGV` here when it is a plain listing on a unix socket; its exit code, else None.
    A plain df: its first reads are started (see the module), and None."""
    early = sys.modules.get("tamer.early")
    if early is not None:  # an earlier df on this thread left it (Ctrl-C before main could drop it): not ours
        early.drop_unused()
    if os.environ.get("TAMER_FULL_CLI"):
        return None
    if "df" in argv:
        plain, df_host = _plain_df(argv)
        if plain:
            from tamer.early import drop_unused, start

            try:
                # with --json or -q no progress is shown, which the volumes' walk would report to
                start(df_host, walk_volumes=any(t in ("--json", "-q", "--quiet") for t in argv))
            except KeyboardInterrupt:  # said as the full CLI says it
                drop_unused()  # a caller may go on: what was started goes now
                from tamer.cli.app import interrupted

                return interrupted(argv)
            return None
    split = _split(argv)
    if split is None:
        return None
    host, words, specs, sort = split
    if not words or words[0] != "ls" or len(words) > 2:
        return None
    kind = words[1] if len(words) == 2 else "containers"  # ls's default kind
    if sort not in (None, "name", "age"):
        return None
    from tamer.cli.output import write, write_message
    from tamer.errors import TamerError
    from tamer.listing import parse_filters
    from tamer.quick_ls import answers, run_quick_ls

    try:
        filters = parse_filters(kind, specs)
    except TamerError:
        return None  # a bad kind or filter: the full CLI's usage error
    order = sort or "name"
    if not answers(kind, filters, order):
        return None
    # checked after the usage checks: a usage error must not import the engine package
    from tamer.engine.context import ContextError, resolve_host

    try:
        where = resolve_host(host)  # the engine the docker CLI would use (a docker context too)
    except ContextError:
        return None  # the full CLI says what is wrong with it
    if not where.startswith("unix://"):
        return None
    try:
        text = run_quick_ls(host, kind, filters, order)
    except TamerError as exc:  # the engine's answer, said once (a second try would wait for it again)
        write_message(sys.stderr, f"tamer: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        write(sys.stderr, "tamer: error: interrupted")
        return 130
    except Exception:  # a bug: the full CLI runs it again (a listing only reads) and says it its way
        return None
    if text:
        write(sys.stdout, text)
    return 0
