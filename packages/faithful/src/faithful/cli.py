"""Command line entry point of faithful: ``coin``, ``compare``, ``generate``, ``audit-logprobs``, ``conformance``, ``speculative``.

Parses arguments, calls the library, renders the result; nothing else (the commands are in
:mod:`faithful.cli_commands`, their human rendering in :mod:`faithful.cli_render`). Human output by default;
``--json`` prints one versioned envelope on stdout, also on failure and on usage errors, the
same as tamer's::

    {"version": 1, "command": "coin" | null, "status": "ok" | "error" | "usage" | "interrupted",
     "exit_code": 0, "data": ... | null, "errors": ["message", ...]}

Exit codes: 0 ok, 1 error, 2 usage (anything wrong with the command line or its values), 3 partial
(the command ran to the end and its checks failed: a ``conformance`` cell failed or errored, or
``speculative`` outputs are not the target's distribution; the result is printed as on success and
the failures are named on stderr or in ``errors``), 130 interrupted. Tracebacks only with ``--traceback``. The global options (``--json``, ``-q``,
``--traceback``) work before or after the command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from faithful import __version__
from faithful.cli_commands import COMMANDS, DEFAULT_DECODERS, ChecksFailed, UsageError, _silence_libraries
from faithful.errors import FaithfulError

__all__ = ["ENVELOPE_VERSION", "UsageError", "main"]

ENVELOPE_VERSION = 1
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
STATUS_BY_CODE = {
    EXIT_OK: "ok",
    EXIT_ERROR: "error",
    EXIT_USAGE: "usage",
    EXIT_PARTIAL: "partial",
    EXIT_INTERRUPTED: "interrupted",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; run `{self.prog} --help` for usage")


GLOBAL_FLAGS = {"--json": "json", "--traceback": "traceback", "--quiet": "quiet", "-q": "quiet"}


def _common(p: argparse.ArgumentParser) -> None:
    # no defaults: a subcommand's parser must not overwrite a value given before the command
    # (see _make_global_options_win); main() fills in False for what was not given
    p.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print a JSON envelope on stdout"
    )
    p.add_argument(
        "--traceback", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks on errors"
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress on stderr"
    )


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out: list[argparse.ArgumentParser] = []
    todo = [parser]
    while todo:
        p = todo.pop()
        if any(p is q for q in out):
            continue
        out.append(p)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return out


def _make_global_options_win(parser: argparse.ArgumentParser) -> None:
    """No parser in the tree may default a global option; long options are never abbreviated.

    argparse copies a subcommand's defaults over what the main parser read, so a default
    anywhere would undo ``faithful --json coin``; an abbreviation (``--js``) would be read by
    argparse but not by the scan that decides how to report a usage error.
    """
    for p in _parsers(parser):
        p.allow_abbrev = False
        for action in p._actions:
            dests = {GLOBAL_FLAGS[f] for f in action.option_strings if f in GLOBAL_FLAGS}
            if dests:
                (action.dest,) = dests
                action.default = argparse.SUPPRESS
        for dest in GLOBAL_FLAGS.values():
            p._defaults.pop(dest, None)


# Upper bounds of the counts: past them the arrays a command allocates up front do not fit in memory
# (coin --n 10**12: "unexpected error (MemoryError): Unable to allocate 14.6 TiB"; --max-new-tokens
# 10**20: "Maximum allowed dimension exceeded"), so a usage error says so before anything runs.
_MOST = {
    "--n": 10**8,
    "--max-new-tokens": 10**6,
    "--workers": 1024,
    "--gamma": 1024,
    "--reps": 10**6,
}


def _positive_int(name: str) -> Callable[[str], int]:
    most = _MOST.get(name)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {value}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"{name} must be at most {most}, got {value}")
        return value

    return parse


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"probabilities must be in [0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``faithful`` (exposed for documentation and tests)."""
    parser = _Parser(
        prog="faithful",
        description="Decode model output distributions properly, and measure whether a decoder does.",
    )
    parser.add_argument("--version", action="version", version=f"faithful {__version__}")
    _common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    coin = sub.add_parser(
        "coin",
        help="toss a model's coin N times with a decoder: the essay's experiment",
        description="Toss a coin the model puts at --p, N times, with a decoder, and report the exact "
        "binomial probability of what came out (greedy on [0.55, 0.45]: 20 heads, p = 6.4e-06).",
    )
    coin.add_argument(
        "--p",
        type=_probability,
        nargs="+",
        default=[0.55, 0.45],
        metavar="P",
        help="the model's face probabilities (default: 0.55 0.45)",
    )
    coin.add_argument("--n", type=_positive_int("--n"), default=20, help="tosses (default: 20)")
    coin.add_argument(
        "--decoder",
        default="greedy",
        help="a sampler spec: greedy, sample, top-p:0.9, temperature:0.7, ... (every part: `faithful processors`; default: greedy)",
    )
    coin.add_argument("--seed", type=int, default=0, help="seed of the keyed randomness (default: 0)")
    _common(coin)

    cmp_ = sub.add_parser(
        "compare",
        help="measure how faithfully decoders reproduce a model's distribution",
        description="Decode N outputs with each decoder and compare them with the model: exactly (TV, KL, "
        "G-test against the enumerated sequence distribution) when the model is small enough, else with the "
        "surprisal check and exact samples; plus lengths, n-gram divergence, distinct-n and repetition.",
    )
    cmp_.add_argument(
        "--model",
        required=True,
        help="pydoc[:N], pydoc-words[:N], ngram:PATH_TO_TEXT[:N[:char|word]], or a Hugging Face model directory",
    )
    cmp_.add_argument(
        "--decoders",
        default=DEFAULT_DECODERS,
        help=f"comma-separated decoders or sampler specs (default: {DEFAULT_DECODERS})",
    )
    cmp_.add_argument(
        "--n", type=_positive_int("--n"), default=1000, help="outputs per decoder (default: 1000)"
    )
    cmp_.add_argument(
        "--max-new-tokens",
        type=_positive_int("--max-new-tokens"),
        default=32,
        help="length bound of every decoder, EOS included (default: 32)",
    )
    cmp_.add_argument("--prompt", default="", help="text every output continues (default: none)")
    cmp_.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    mode = cmp_.add_mutually_exclusive_group()
    mode.add_argument(
        "--exact",
        dest="exact",
        action="store_true",
        default=None,
        help="require exact metrics; fail when the model cannot be enumerated",
    )
    mode.add_argument(
        "--no-exact", dest="exact", action="store_false", help="skip enumeration; use the surprisal check"
    )
    cmp_.add_argument(
        "--threshold",
        type=_probability,
        default=1e-6,
        help="prune prefixes below this probability when enumerating (default: 1e-6)",
    )
    cmp_.add_argument(
        "--min-coverage",
        type=_probability,
        default=0.95,
        help="least enumerated mass for exact metrics (default: 0.95)",
    )
    cmp_.add_argument("--report", metavar="DIR", help="write an HTML report with PNG charts into DIR")
    cmp_.add_argument(
        "--workers",
        type=_positive_int("--workers"),
        default=None,
        metavar="N",
        help="decode in N worker processes (with --ray: N Ray actors, default one per CPU of the cluster); "
        "sharded by row, the results are those of one process for the same seed",
    )
    cmp_.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="decode on a Ray cluster: at ADDRESS (auto, HOST:PORT, ray://HOST:PORT), or a local one when "
        "no address is given (needs `pip install 'faithful[ray]'`)",
    )
    _common(cmp_)

    gen = sub.add_parser(
        "generate",
        help="continue a prompt with a model and a decoder",
        description="Continue --prompt with the model, decoder and sampler given.",
    )
    gen.add_argument(
        "--model",
        required=True,
        help="pydoc[:N], pydoc-words[:N], ngram:PATH_TO_TEXT[:N[:char|word]], or a Hugging Face model directory",
    )
    gen.add_argument(
        "--decoder",
        default="sample",
        help="greedy, sample[:K], beam:K, diverse-beam:K, stochastic-beam:K, mbr:N (default: sample)",
    )
    gen.add_argument(
        "--sampler",
        default=None,
        help="sampler spec for sampling decoders: top-p:0.9, temperature:0.8+top-k:40, ... (every part: `faithful processors`)",
    )
    gen.add_argument("--prompt", default="", help="the text to continue (default: empty)")
    gen.add_argument(
        "--max-new-tokens",
        type=_positive_int("--max-new-tokens"),
        default=64,
        help="longest continuation (default: 64)",
    )
    gen.add_argument("--seed", type=int, default=None, help="seed (default: fresh randomness)")
    _common(gen)

    audit = sub.add_parser(
        "audit-logprobs",
        help="check that an engine's reported logprobs are log q of the distribution it sampled from",
        description="Read JSONL records (the logits or top-k logprobs the engine saw, the sampler settings as a "
        "faithful spec `sampler` or Hugging Face keys `settings`, the chosen `token` and the reported `logprob`) and "
        "say per record and in total whether the reported logprob is log q of the processed distribution, of the "
        "raw one, or neither, and how far off.",
    )
    audit.add_argument("file", metavar="FILE", help="JSONL file, one record per line")
    audit.add_argument(
        "--tol", type=float, default=1e-3, help="match tolerance in nats (relative beyond 1; default: 1e-3)"
    )
    _common(audit)

    procs = sub.add_parser(
        "processors",
        help="every processor, its spec syntax, parameters and Hugging Face equivalent, in the default order",
        description="List the processors from faithful's one processor table, in the order a sampler applies them.",
    )
    _common(procs)

    spec = sub.add_parser(
        "speculative",
        help="speculative decoding with a draft and a target model, checked against the target's distribution",
        description="Decode N outputs with exact speculative sampling (the draft proposes --gamma tokens, the "
        "target accepts each with probability min(1, q_target/q_draft), a rejection is redrawn from the residual) "
        "and check them against the target under the sampler: exactly when it enumerates, else with the surprisal "
        "check against exact samples. Prints the acceptance rate and the target calls saved. Exit 3 when the "
        "outputs are not consistent with the target's distribution.",
    )
    spec.add_argument(
        "--target", required=True, help="the target model: a --model spec of `faithful compare`"
    )
    spec.add_argument(
        "--draft",
        required=True,
        help="the draft model (same vocabulary as the target), e.g. a smaller n-gram",
    )
    spec.add_argument(
        "--sampler", default=None, help="sampler spec applied to both models (default: plain sampling)"
    )
    spec.add_argument(
        "--draft-sampler", default=None, help="the draft's own sampler spec (default: --sampler)"
    )
    spec.add_argument(
        "--gamma", type=_positive_int("--gamma"), default=4, help="draft proposals per round (default: 4)"
    )
    spec.add_argument(
        "--greedy", action="store_true", help="greedy verification: must equal greedy decoding of the target"
    )
    spec.add_argument("--n", type=_positive_int("--n"), default=2000, help="outputs (default: 2000)")
    spec.add_argument(
        "--max-new-tokens",
        type=_positive_int("--max-new-tokens"),
        default=8,
        help="length bound, EOS included (default: 8)",
    )
    spec.add_argument("--prompt", default="", help="text every output continues (default: none)")
    spec.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    smode = spec.add_mutually_exclusive_group()
    smode.add_argument(
        "--exact", dest="exact", action="store_true", default=None, help="require exact metrics (enumeration)"
    )
    smode.add_argument("--no-exact", dest="exact", action="store_false", help="use the surprisal check")
    spec.add_argument(
        "--min-coverage",
        type=_probability,
        default=0.95,
        help="least enumerated mass for exact metrics (default: 0.95)",
    )
    _common(spec)

    conf = sub.add_parser(
        "conformance",
        help="a matrix engine x setting: each engine's sampler against the exact distribution",
        description="Feed identical logits (random rows, ties at the cutoff, -inf entries, extreme scales) through "
        "each engine's own processor chain and sampler, and compare the draws with faithful's exact q (the "
        "canonical definition) and with the engine's own q.",
    )
    conf.add_argument(
        "--engines",
        default="faithful,hf,torch-naive",
        help="comma-separated: faithful, hf, torch-naive, vllm, flashinfer (default: faithful,hf,torch-naive)",
    )
    conf.add_argument(
        "--settings", default=None, help="comma-separated sampler specs (default: a standard grid)"
    )
    conf.add_argument(
        "--vocab",
        default="50,1000",
        help="comma-separated vocabulary sizes of the test rows (default: 50,1000)",
    )
    conf.add_argument("--n", type=_positive_int("--n"), default=2000, help="draws per row (default: 2000)")
    conf.add_argument(
        "--reps",
        type=_positive_int("--reps"),
        default=2999,
        help="simulated samples per null (default: 2999)",
    )
    conf.add_argument("--alpha", type=_probability, default=0.01, help="level per engine (default: 0.01)")
    conf.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    conf.add_argument("--report", metavar="DIR", help="write conformance.html and conformance.json into DIR")
    _common(conf)
    _make_global_options_win(parser)
    return parser


def _envelope(
    command: str | None, exit_code: int, data: Any, errors: list[str], *, pretty: bool = True
) -> str:
    """The envelope as tamer lays it out: indented on a terminal, one line for a pipe or a log."""
    from faithful.fidelity.compare import _jsonable

    env = {
        "version": ENVELOPE_VERSION,
        "command": command,
        "status": STATUS_BY_CODE.get(exit_code, "error"),
        "exit_code": exit_code,
        "data": _jsonable(data),
        "errors": [str(e) for e in errors],
    }
    if pretty:
        return json.dumps(env, indent=2, allow_nan=False)
    return json.dumps(env, separators=(",", ":"), allow_nan=False)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _scan(argv: Sequence[str]) -> tuple[set[str], str | None]:
    """The global flags and the command in raw arguments: how to report a usage error."""
    flags: set[str] = set()
    command = None
    for token in argv:
        if token in GLOBAL_FLAGS:
            flags.add(GLOBAL_FLAGS[token])
        elif token.startswith("-") and not token.startswith("--") and len(token) > 2 and "q" in token[1:]:
            flags.add("quiet")
        elif command is None and token in COMMANDS:
            command = token
    return flags, command


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the ``faithful`` command line; returns the exit code.

    Parameters: ``argv`` (default ``sys.argv[1:]``), ``stdout``/``stderr`` streams (default the
    process's). Never raises: every failure becomes an exit code and a message (or envelope);
    a reader that goes away (``faithful coin | head``) ends the output quietly.

    Example::

        >>> main(["coin", "--n", "3", "--json"])  # doctest: +SKIP
        0
    """
    args_list = sys.argv[1:] if argv is None else list(argv)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        return _main(args_list, out, err)
    except BrokenPipeError:
        _discard(out)
        return EXIT_ERROR


def _main(args_list: list[str], out: TextIO, err: TextIO) -> int:
    flags, command = _scan(args_list)
    parser = build_parser()
    if not args_list:
        _write(out, parser.format_help().rstrip("\n"))
        return EXIT_OK
    code, data, text = EXIT_OK, None, ""
    errors: list[str] = []
    failure: BaseException | None = None
    try:
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # --help and --version print and stop; usage errors raise UsageError
            return int(exc.code or 0)
        for dest in GLOBAL_FLAGS.values():
            if not hasattr(args, dest):
                setattr(args, dest, False)
        flags = {dest for dest in GLOBAL_FLAGS.values() if getattr(args, dest)}
        command = args.command
        if command is None:
            raise UsageError(
                f"no command given; expected one of {', '.join(COMMANDS)} (run `faithful --help`)"
            )
        if flags & {"json", "quiet"}:
            _silence_libraries()
        data, text = COMMANDS[command](args)
    except UsageError as exc:
        failure, code, errors = exc, EXIT_USAGE, [str(exc)]
    except ChecksFailed as exc:  # a result with failures in it: printed in full, then the failures named
        code, data, text, errors = EXIT_PARTIAL, exc.data, exc.text, [str(exc)]
    except KeyboardInterrupt as exc:
        failure, code, errors = exc, EXIT_INTERRUPTED, ["interrupted"]
    except FaithfulError as exc:
        failure, code, errors = exc, EXIT_ERROR, [str(exc)]
    except Exception as exc:  # the CLI's last line of defence: one clear line, a traceback on request
        failure, code = exc, EXIT_ERROR
        errors = [
            f"unexpected error ({type(exc).__name__}): {exc}; rerun with --traceback and report it if it persists"
        ]
    if failure is not None and "traceback" in flags:
        traceback.print_exception(failure, file=err)
    if "json" in flags:
        _write(out, _envelope(command, code, data, errors, pretty=_is_terminal(out)))
    elif code == EXIT_PARTIAL:
        _write(out, text)
        for e in errors:
            _write(err, f"faithful: {e}")
    elif errors:
        for e in errors:
            _write(err, f"faithful: error: {e}")
    else:
        _write(out, text)
    return code


def _write(stream: TextIO, text: str) -> None:
    """Print, treating a reader that went away (``faithful coin | head``) as the end of output."""
    try:
        print(text, file=stream)
        stream.flush()
    except BrokenPipeError:
        _discard(stream)


def _discard(stream: TextIO) -> None:
    # what is still buffered would fail again when Python flushes at exit
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    raise SystemExit(main())
