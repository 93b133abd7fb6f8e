"""The commands of faithful's CLI: each takes the parsed arguments and returns (data, text).

Heavy imports (numpy, models, transformers) happen inside each command, so `faithful --help` stays light.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from faithful.cli_render import render_coin, render_comparison, render_generation
from faithful.errors import FaithfulError

DEFAULT_DECODERS = "greedy,sample,top-p:0.9,beam:4"


class UsageError(FaithfulError):
    """The command line itself was wrong (exit code 2)."""


class ChecksFailed(FaithfulError):
    """The command ran to the end and its checks found failures (exit code 3, status "partial").

    Its result is still printed (the text on stdout, or the envelope's ``data``); the message says
    what failed. ``conformance`` raises it when a cell fails or errors, ``speculative`` when its
    outputs are not consistent with the target's distribution, ``audit-logprobs`` when a record's
    logprob matches neither the processed nor the raw distribution or its token is impossible.
    """

    def __init__(self, message: str, data: dict[str, Any], text: str) -> None:
        super().__init__(message)
        self.data = data
        self.text = text


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    if getattr(args, "json", False) or getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None

    def say(msg: str) -> None:
        print(f"faithful: {msg}...", file=sys.stderr, flush=True)

    return say


def _progress_bar(args: argparse.Namespace) -> Callable[[int, int], None] | None:
    """A bar on stderr for rows decoded by workers; None (silent) under --json, -q or without a terminal."""
    if getattr(args, "json", False) or getattr(args, "quiet", False) or not sys.stderr.isatty():
        return None

    def draw(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        bar = "#" * filled + "-" * (width - filled)
        print(f"\rfaithful: [{bar}] {done}/{total} outputs", end=end, file=sys.stderr, flush=True)

    return draw


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
    import numpy as np

    from faithful.decode._common import reads_history
    from faithful.fidelity import coin_experiment
    from faithful.fidelity.coin import _validate_p
    from faithful.samplers import parse_sampler_spec

    with _usage(f"bad --p {' '.join(f'{x:g}' for x in args.p)}"):
        _validate_p(args.p)
    with _usage(f"bad --decoder {args.decoder!r}"):
        sampler = parse_sampler_spec(args.decoder)
        if reads_history(sampler):
            raise FaithfulError(
                "the coin's tosses are independent and have no history, so penalties, no-repeat-ngram and "
                "DRY have nothing to act on; leave them out"
            )
        # the rest a decoder can refuse (token ids past the coin's faces, masks that remove every face)
        # depends on the command line alone: a usage error, found on one toss (it was exit 1)
        with np.errstate(divide="ignore"):
            sampler.distribution(np.log(_validate_p(args.p))[None, :], rng=0)
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
    from faithful.fidelity.parallel import Runner

    # --workers 1 without --ray decodes here, as before; the runner then starts nothing
    with Runner(
        model, args.model, workers=args.workers, ray_address=args.ray, progress=_progress_bar(args)
    ) as runner:
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
            decode=runner.decode_outputs if runner.parallel else None,
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
    from faithful.referee.audit import audit_file
    from faithful.referee.render import render_audit

    if not (args.tol > 0 and math.isfinite(args.tol)):
        raise UsageError(f"--tol must be a positive number of nats, got {args.tol}")
    data = audit_file(args.file, tol=args.tol).to_dict()
    text = render_audit(data)
    s = data["summary"]
    neither, impossible = s["counts"]["neither"], s["impossible_tokens"]
    if neither or impossible:
        # raw logprobs are a legitimate (if off-policy) answer and exit 0; a logprob of no
        # distribution, or a chosen token the stated settings cannot produce, is a failed check
        parts = [f"{neither} match neither the processed nor the raw distribution"] if neither else []
        if impossible:
            parts.append(f"{impossible} chose a token of probability 0 under the stated settings")
        raise ChecksFailed(
            f"{' and '.join(parts)} (of {s['records']} records); the table lists them", data, text
        )
    return data, text


def cmd_conformance(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``faithful conformance``."""
    from faithful.fidelity.specs import split_spec_list
    from faithful.referee.conformance import DEFAULT_SETTINGS, conformance_matrix
    from faithful.referee.render import render_matrix

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    settings = DEFAULT_SETTINGS if args.settings is None else split_spec_list(args.settings)
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
    failed = matrix.failures()
    if failed:
        names = ", ".join(f"{c.engine} x {c.setting}" for c in failed[:6])
        more = f" (+{len(failed) - 6} more)" if len(failed) > 6 else ""
        raise ChecksFailed(
            f"{len(failed)} of {len(matrix.cells)} cells failed: {names}{more}; the matrix says which tokens and rule",
            data,
            text,
        )
    return data, text


def cmd_speculative(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """``faithful speculative``."""
    from faithful.decode.speculative import check_same_vocabulary
    from faithful.fidelity.specs import load_model
    from faithful.referee.render import render_speculative
    from faithful.referee.speculation import check_speculative
    from faithful.samplers import parse_sampler_spec

    if args.greedy and args.sampler is not None:
        raise UsageError(
            "--greedy checks the target's argmax and takes no --sampler; give the draft one with --draft-sampler"
        )
    with _usage("bad --sampler"):
        sampler = None if args.sampler is None else parse_sampler_spec(args.sampler)
    with _usage("bad --draft-sampler"):
        draft_sampler = None if args.draft_sampler is None else parse_sampler_spec(args.draft_sampler)
    with _usage("bad --target"):
        target = load_model(args.target)
    with _usage("bad --draft"):
        draft = load_model(args.draft)
    with _usage(f"--draft {args.draft} does not fit --target {args.target}"):
        check_same_vocabulary(draft, target)
    with _usage(f"bad --prompt {args.prompt!r}"):
        prompt = _encode_prompt(target, args.prompt)
    check = check_speculative(
        target,
        draft,
        sampler=sampler,
        draft_sampler=draft_sampler,
        gamma=args.gamma,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        prompt=prompt,
        seed=args.seed,
        mode="greedy" if args.greedy else "sample",
        exact=args.exact,
        min_coverage=args.min_coverage,
        names=(args.target, args.draft),
    )
    data = check.to_dict()
    text = render_speculative(data)
    if not check.consistent:
        raise ChecksFailed(
            "the speculative outputs are not consistent with the target's distribution "
            f"(p = {check.p_value}); the acceptance rule or the models' distributions are off",
            data,
            text,
        )
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
    "speculative": cmd_speculative,
}
