"""Command line entry point of faithful: ``coin``, ``compare``, ``generate``, ``audit-logprobs``, ``conformance``.

Parses arguments, calls the library, renders the result; nothing else. Human output by default;
``--json`` prints one versioned envelope on stdout, also on failure and on usage errors, the
same as tamer's::

    {"version": 1, "command": "coin" | null, "status": "ok" | "error" | "usage" | "interrupted",
     "exit_code": 0, "data": ... | null, "errors": ["message", ...]}

Exit codes: 0 ok, 1 error, 2 usage (anything wrong with the command line or its values), 130
interrupted. Tracebacks only with ``--traceback``. The global options (``--json``, ``-q``,
``--traceback``) work before or after the command.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

from faithful import __version__
from faithful.errors import FaithfulError

__all__ = ["ENVELOPE_VERSION", "UsageError", "main"]

ENVELOPE_VERSION = 1
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
STATUS_BY_CODE = {EXIT_OK: "ok", EXIT_ERROR: "error", EXIT_USAGE: "usage", EXIT_INTERRUPTED: "interrupted"}
DEFAULT_DECODERS = "greedy,sample,top-p:0.9,beam:4"


class UsageError(FaithfulError):
    """The command line itself was wrong (exit code 2)."""


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


def _positive_int(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be >= 1, got {value}")
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


# -- rendering ----------------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x != 0 and (abs(x) < 10 ** (-digits) or abs(x) >= 10**6):
            return f"{x:.{max(1, digits - 1)}e}"
        return f"{x:.{digits}f}"
    return str(x)


def _fmt_p(p: Any) -> str:
    # a p-value that underflowed is "smaller than anything we can compute", not zero
    return "<1e-300" if isinstance(p, float) and p == 0.0 else _fmt(p)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def render_coin(data: dict[str, Any]) -> str:
    """Human text of a coin experiment's data."""
    labels, counts, expected = data["labels"], data["counts"], data["expected"]
    p = ", ".join(f"{x:g}" for x in data["p"])
    lines = [
        f"{data['n']} tosses of a coin the model puts at [{p}], decoded with {data['decoder']} (seed {data['seed']}):",
        "",
        f"  {data['tosses']}",
        "",
        "  "
        + ", ".join(f"{lab}: {c}" for lab, c in zip(labels, counts, strict=True))
        + "   (the model expects "
        + ", ".join(f"{e:g}" for e in expected)
        + ")",
    ]
    if len(labels) == 2:
        lines.append(
            f"  P(exactly {counts[0]} {labels[0]} in {data['n']} tosses) = {_fmt(data['probability_of_counts'], 4)}"
            "   (binomial, exact)"
        )
    else:
        lines.append(f"  P(these counts) = {_fmt(data['probability_of_counts'], 4)}   (multinomial, exact)")
    verdict = (
        "not what the model's distribution produces"
        if data["p_value"] < 0.01
        else "consistent with the model"
    )
    lines.append(f"  exact two-sided test: p = {_fmt_p(data['p_value'])}  -> {verdict}")
    if data.get("decoder_q") is not None:
        q = ", ".join(f"{x:.3g}" for x in data["decoder_q"])
        lines.append(f"  the decoder drew every toss from q = [{q}]; the model says [{p}]")
    return "\n".join(lines)


def render_comparison(data: dict[str, Any]) -> str:
    """Human text of a comparison's data: a header and one row per decoder."""
    head = (
        f"faithful compare: {data['model']}, {data['n']} outputs per decoder, "
        f"at most {data['max_new_tokens']} new tokens, seed {data['seed']}"
    )
    rows = []
    exact = data["mode"] == "exact"
    for r in data["table"]:
        gap = "-" if r["surprisal_gap"] is None else _fmt(r["surprisal_gap"])
        if r["gap_ci"] is not None and not exact:
            gap += f" [{_fmt(r['gap_ci'][0])}, {_fmt(r['gap_ci'][1])}]"
        d = data["decoders"][r["decoder"]]
        row = [r["decoder"]]
        if exact:
            row += [f"{_fmt(r['tv'])} ({_fmt(r['tv_null_q95'])})", _fmt_p(d["sequence"]["pvalue"])]
        row += [
            gap,
            f"{_fmt(r['distinct_2'])} ({_fmt(r['model_distinct_2'])})",
            f"{_fmt(r['mean_length'], 1)} ({_fmt(r['model_mean_length'], 1)})",
            "yes" if r["consistent"] else "NO",
        ]
        rows.append(row)
    headers = ["decoder"]
    if exact:
        headers += ["TV (exact-sampling q95)", "p"]
    headers += [
        "surprisal gap" + ("" if exact else " [95% CI]"),
        "distinct-2 (model)",
        "mean length (model)",
        "faithful?",
    ]
    legend = (
        "TV: total variation between the decoder's outputs and the exact distribution; exact sampling at this "
        "N stays below the q95 in 95% of runs.\np: that the outputs are exact samples (G-tests on all and on the "
        "likely outputs, surprisal check; Bonferroni); faithful? = p >= 0.01."
        if exact
        else "surprisal gap: mean -log p(token) minus the model's mean entropy, nats/token; 0 for exact samples;"
        " faithful? = its test gives p >= 0.01."
    )
    return "\n".join(
        [
            head,
            f"mode: {data['mode']} - {data['note']}",
            "",
            _table(headers, rows),
            "",
            legend,
            "model columns: what exact samples of the model give (distinct-2 at the same N; length implied by EOS).",
        ]
    )


def render_generation(data: dict[str, Any]) -> str:
    """Human text of generated continuations (an empty one is said, not printed as a blank line)."""
    texts = [t if t else "(empty continuation: the model ended the sequence at once)" for t in data["texts"]]
    if len(texts) == 1:
        return str(texts[0])
    return "\n".join(f"[{i}] {t}" for i, t in enumerate(texts))


# -- commands -----------------------------------------------------------------------------------


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if getattr(args, "json", False) or getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None

    def say(msg: str) -> None:
        print(f"faithful: {msg}...", file=sys.stderr, flush=True)

    return say


def _silence_libraries() -> None:
    """Under -q or --json nothing but the result (and errors) may reach the terminal.

    transformers and huggingface_hub draw loading bars and log advice on stderr on their own;
    they read these switches when imported, and expose functions once they are.
    """
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    for name in ("transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        hf_logging = sys.modules["transformers"].utils.logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


@contextmanager
def _usage(what: str) -> Iterator[None]:
    """Turn an error raised while reading the command line's values into a usage error (exit 2)."""
    try:
        yield
    except UsageError:
        raise
    except FaithfulError as exc:
        raise UsageError(f"{what}: {exc}" if what else str(exc)) from None


def _encode_prompt(model: Any, text: str) -> list[int]:
    if not text:
        return []
    from faithful.decode.generate import find_tokenizer

    return [int(t) for t in find_tokenizer(model).encode(text)]


def cmd_coin(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``faithful coin``."""
    from faithful.fidelity import coin_experiment
    from faithful.fidelity.coin import _validate_p
    from faithful.samplers import parse_sampler_spec

    with _usage(f"bad --p {' '.join(f'{x:g}' for x in args.p)}"):
        _validate_p(args.p)
    with _usage(f"bad --decoder {args.decoder!r}"):
        sampler = parse_sampler_spec(args.decoder)
    result = coin_experiment(args.p, args.n, sampler, seed=args.seed)
    data = result.to_dict()
    data["decoder"] = args.decoder
    return data, render_coin(data)


def cmd_compare(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``faithful compare``."""
    from faithful.fidelity.harness import compare_decoders
    from faithful.fidelity.specs import load_model, parse_decoder_list

    with _usage(""):
        choices = parse_decoder_list(args.decoders)
        model = load_model(args.model)
    with _usage(f"bad --prompt {args.prompt!r}"):
        prompt = _encode_prompt(model, args.prompt)
    comparison = compare_decoders(
        model,
        choices,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        prompt=prompt,
        seed=args.seed,
        exact=args.exact,
        threshold=args.threshold,
        min_coverage=args.min_coverage,
        model_name=args.model,
        progress=_progress(args),
    )
    data = comparison.to_dict()
    text = render_comparison(data)
    if args.report:
        from faithful.fidelity.report import write_report

        path = write_report(comparison, args.report)
        data["report"] = str(path)
        text += f"\n\nreport: {path}"
    return data, text


def cmd_generate(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``faithful generate``."""
    from faithful.decode import generate_text, parse_decoder_spec
    from faithful.fidelity.specs import check_sampler_fits, load_model
    from faithful.samplers import parse_sampler_spec

    with _usage(f"bad --decoder {args.decoder!r}"):
        parse_decoder_spec(args.decoder)
    with _usage(f"bad --sampler {args.sampler!r}"):
        if args.sampler is not None:
            parse_sampler_spec(args.sampler)
        check_sampler_fits(args.decoder, args.sampler)
    with _usage(""):
        model = load_model(args.model)
    gen = generate_text(
        model,
        args.prompt,
        decoder=args.decoder,
        sampler=args.sampler,
        max_new_tokens=args.max_new_tokens,
        rng=args.seed,
    )
    r = gen.result
    data = {
        "model": args.model,
        "decoder": args.decoder,
        "sampler": args.sampler,
        "prompt": args.prompt,
        "seed": args.seed,
        "texts": gen.texts,
        "tokens": r.sequences()[0],
        "logprobs": [float(x) for x in r.logprobs[0]],
        "finished": [bool(x) for x in r.finished[0]],
    }
    return data, render_generation(data)


def cmd_audit_logprobs(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``faithful audit-logprobs``."""
    from faithful.referee.audit import audit_records, read_records
    from faithful.referee.render import render_audit

    if not (args.tol > 0 and math.isfinite(args.tol)):
        raise UsageError(f"--tol must be a positive number of nats, got {args.tol}")
    records, names = read_records(args.file)
    data = audit_records(records, tol=args.tol, names=names).to_dict()
    return data, render_audit(data)


def cmd_conformance(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``faithful conformance``."""
    from faithful.referee.conformance import DEFAULT_SETTINGS, conformance_matrix
    from faithful.referee.render import render_matrix

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    settings = (
        DEFAULT_SETTINGS
        if args.settings is None
        else [s.strip() for s in args.settings.split(",") if s.strip()]
    )
    try:
        vocab = [int(v) for v in args.vocab.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--vocab must be comma-separated integers, got {args.vocab!r}") from None
    if not engines or not settings or not vocab:
        raise UsageError("--engines, --settings and --vocab each need at least one value")
    with _usage(""):
        matrix = conformance_matrix(
            engines, settings, vocab_sizes=vocab, n=args.n, reps=args.reps, alpha=args.alpha, seed=args.seed
        )
    data = matrix.to_dict()
    text = render_matrix(data)
    if args.report:
        from faithful.referee.report import write_report

        path = write_report(data, args.report)
        data["report"] = str(path)
        text += f"\n\nreport: {path}"
    return data, text


def cmd_processors(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``faithful processors``: every processor from the one table, in the default order."""
    from faithful.processors.table import TABLE, render_table, spec_help

    rows = [
        {
            "order": i,
            "name": e.name,
            "summary": e.summary,
            "parameters": [
                {"keyword": p.keyword, "expected": p.expected, "spec": [k.key for k in p.spec], "doc": p.doc}
                for p in e.params
            ],
            "hf": e.hf,
        }
        for i, e in enumerate(TABLE, 1)
    ]
    text = render_table() + "\n\nSpec parts (join with '+'): " + spec_help(detailed=True)
    return {"processors": rows}, text


COMMANDS: dict[str, Callable[[argparse.Namespace], tuple[dict[str, Any], str]]] = {
    "coin": cmd_coin,
    "processors": cmd_processors,
    "compare": cmd_compare,
    "generate": cmd_generate,
    "audit-logprobs": cmd_audit_logprobs,
    "conformance": cmd_conformance,
}


def _envelope(command: str | None, exit_code: int, data: Any, errors: list[str]) -> str:
    from faithful.fidelity.compare import _jsonable

    env = {
        "version": ENVELOPE_VERSION,
        "command": command,
        "status": STATUS_BY_CODE.get(exit_code, "error"),
        "exit_code": exit_code,
        "data": _jsonable(data),
        "errors": [str(e) for e in errors],
    }
    return json.dumps(env, indent=2, allow_nan=False)


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
        _write(out, _envelope(command, code, data, errors))
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
