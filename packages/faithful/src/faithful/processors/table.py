"""The processor table: the one source of truth for every processor.

Each :class:`Entry` names a processor, its parameters (the keyword of
:func:`faithful.samplers.make_sampler`, the processor's field, the validation and
its message, the default, the spec syntax), its place in the default order (the
table's order is :data:`DEFAULT_ORDER`) and its Hugging Face equivalent.
:func:`~faithful.samplers.make_sampler`, :func:`~faithful.samplers.parse_sampler_spec`,
the CLI's help (:func:`spec_help`) and the docs (:func:`render_table`, the table in
:mod:`faithful.processors`) are built from it, and every processor validates its
fields through it (:func:`validate_fields`), so a rule is written once.
"""

from __future__ import annotations

import textwrap

from faithful.mirostat import Mirostat
from faithful.processors._base import Processor
from faithful.processors._params import (
    Entry,
    Param,
    SpecKey,
    bias_map,
    breaker_list,
    finite,
    fmt_bias,
    fmt_breakers,
    fmt_ids,
    integer,
    one_of,
    parse_bias,
    parse_breakers,
    parse_ids,
    real_in,
    token_ids,
)
from faithful.processors.dry import DRY
from faithful.processors.history import (
    AllowedTokens,
    ForbiddenTokens,
    LogitBias,
    NoRepeatNGram,
    OccurrencePenalty,
    RepetitionPenalty,
)
from faithful.processors.truncation import Epsilon, Eta, MinP, Temperature, TopK, TopNSigma, TopP, Typical
from faithful.processors.xtc import XTC

__all__ = [
    "DEFAULT_ORDER",
    "KEYWORDS",
    "TABLE",
    "Entry",
    "Param",
    "SpecKey",
    "entry_for",
    "render_table",
    "spec_help",
    "validate_fields",
]

TABLE: tuple[Entry, ...] = (
    Entry(
        "logit_bias",
        LogitBias,
        (
            Param(
                "logit_bias",
                "bias",
                bias_map,
                "{token: bias} added to logits (-inf bans)",
                spec=(SpecKey("logit-bias"),),
                parse=parse_bias,
                fmt=fmt_bias,
            ),
        ),
        "add a bias per token",
        {"logit_bias": {3: 2.5, 7: -1.0}},
        hf="SequenceBiasLogitsProcessor",
        hf_args=lambda p: {"sequence_bias": [[[t], b] for t, b in p["logit_bias"].items()]},
    ),
    Entry(
        "repetition_penalty",
        RepetitionPenalty,
        (
            Param(
                "repetition_penalty",
                "penalty",
                finite(0, lo_open=True),
                "seen token: z * r if z < 0 else z / r",
                spec=(SpecKey("repetition-penalty"),),
            ),
        ),
        "CTRL / Hugging Face repetition penalty on tokens in the history",
        {"repetition_penalty": 1.3},
        hf="RepetitionPenaltyLogitsProcessor",
        hf_args=lambda p: {"penalty": p["repetition_penalty"]},
    ),
    Entry(
        "occurrence_penalty",
        OccurrencePenalty,
        (
            Param(
                "presence_penalty",
                "presence",
                finite(),
                "subtracted once from seen tokens",
                default=0.0,
                spec=(SpecKey("presence"),),
            ),
            Param(
                "frequency_penalty",
                "frequency",
                finite(),
                "subtracted per occurrence",
                default=0.0,
                spec=(SpecKey("frequency"),),
            ),
        ),
        "OpenAI presence and frequency penalties",
        {"presence_penalty": 0.5, "frequency_penalty": 0.25},
    ),
    Entry(
        "dry",
        DRY,
        (
            Param(
                "dry_multiplier",
                "multiplier",
                finite(0),
                "penalty scale; 0 turns DRY off",
                spec=(SpecKey("dry"),),
            ),
            Param(
                "dry_base",
                "base",
                finite(1),
                "penalty grows as base ** (length - allowed_length)",
                default=1.75,
                spec=(SpecKey("dry-base"),),
                primary=False,
            ),
            Param(
                "dry_allowed_length",
                "allowed_length",
                integer(0),
                "repetitions this short are free",
                default=2,
                spec=(SpecKey("dry-allowed-length"),),
                parse=int,
                primary=False,
            ),
            Param(
                "dry_penalty_last_n",
                "penalty_last_n",
                integer(-1, note=" (-1: all history, 0: off)"),
                "history tokens scanned",
                default=-1,
                spec=(SpecKey("dry-last-n"),),
                parse=int,
                primary=False,
            ),
            Param(
                "dry_sequence_breakers",
                "sequence_breakers",
                breaker_list,
                "token sequences that cut repetitions (spec: 13,25/7)",
                default=(),
                spec=(SpecKey("dry-breakers"),),
                parse=parse_breakers,
                fmt=fmt_breakers,
                primary=False,
            ),
        ),
        "llama.cpp's DRY penalty on tokens that would extend a repeated sequence",
        {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2},
    ),
    Entry(
        "no_repeat_ngram",
        NoRepeatNGram,
        (
            Param(
                "no_repeat_ngram_size",
                "size",
                integer(1),
                "n-gram size",
                spec=(SpecKey("no-repeat-ngram"),),
                parse=int,
            ),
        ),
        "forbid tokens that would repeat an n-gram of the history",
        {"no_repeat_ngram_size": 3},
        hf="NoRepeatNGramLogitsProcessor",
        hf_args=lambda p: {"ngram_size": p["no_repeat_ngram_size"]},
    ),
    Entry(
        "allowed_tokens",
        AllowedTokens,
        (
            Param(
                "allowed_tokens",
                "tokens",
                token_ids,
                "the only tokens kept",
                spec=(SpecKey("allowed-tokens"),),
                parse=parse_ids,
                fmt=fmt_ids,
            ),
        ),
        "keep only the listed tokens",
        {"allowed_tokens": (0, 2, 5, 9)},
    ),
    Entry(
        "forbidden_tokens",
        ForbiddenTokens,
        (
            Param(
                "forbidden_tokens",
                "tokens",
                token_ids,
                "tokens removed",
                spec=(SpecKey("forbidden-tokens"),),
                parse=parse_ids,
                fmt=fmt_ids,
            ),
        ),
        "remove the listed tokens",
        {"forbidden_tokens": (0, 5, 500)},
        hf="SuppressTokensLogitsProcessor",
        hf_args=lambda p: {"suppress_tokens": list(p["forbidden_tokens"])},
    ),
    Entry(
        "temperature",
        Temperature,
        (
            Param(
                "temperature",
                "temperature",
                finite(0, note=" (0 means argmax)"),
                "0: uniform over the maximal logits",
                spec=(SpecKey("temperature"),),
            ),
        ),
        "(z - max z) / T",
        {"temperature": 0.7},
        hf="TemperatureLogitsWarper",
        hf_args=lambda p: {"temperature": p["temperature"]},
        identity=lambda p: p.get("temperature") == 1.0,
    ),
    Entry(
        "top_n_sigma",
        TopNSigma,
        (
            Param(
                "top_n_sigma", "n", finite(0), "keep z >= max z - n * std z", spec=(SpecKey("top-n-sigma"),)
            ),
        ),
        "top-n-sigma (Tang et al. 2024)",
        {"top_n_sigma": 1.5},
    ),
    Entry(
        "top_k",
        TopK,
        (
            Param(
                "top_k",
                "top_k",
                integer(1),
                "keep the k largest (and ties)",
                spec=(SpecKey("top-k"),),
                parse=int,
            ),
        ),
        "top-k",
        {"top_k": 40},
        hf="TopKLogitsWarper",
        hf_args=lambda p: {"top_k": p["top_k"]},
    ),
    Entry(
        "top_p",
        TopP,
        (Param("top_p", "top_p", real_in(0, 1, lo_open=True), "nucleus mass", spec=(SpecKey("top-p"),)),),
        "nucleus (top-p); ties at the boundary all kept",
        {"top_p": 0.9},
        hf="TopPLogitsWarper",
        hf_args=lambda p: {"top_p": p["top_p"]},
    ),
    Entry(
        "min_p",
        MinP,
        (Param("min_p", "min_p", real_in(0, 1), "keep p >= min_p * max p", spec=(SpecKey("min-p"),)),),
        "min-p",
        {"min_p": 0.05},
        hf="MinPLogitsWarper",
        hf_args=lambda p: {"min_p": p["min_p"]},
    ),
    Entry(
        "typical_p",
        Typical,
        (
            Param(
                "typical_p",
                "typical_p",
                real_in(0, 1, lo_open=True),
                "typical mass",
                spec=(SpecKey("typical"),),
            ),
        ),
        "locally typical sampling",
        {"typical_p": 0.9},
        hf="TypicalLogitsWarper",
        hf_args=lambda p: {"mass": p["typical_p"]},
    ),
    Entry(
        "epsilon",
        Epsilon,
        (
            Param(
                "epsilon",
                "epsilon",
                real_in(0, 1, lo_open=True, hi_open=True),
                "drop p < epsilon",
                spec=(SpecKey("epsilon"),),
            ),
        ),
        "epsilon sampling",
        {"epsilon": 3e-4},
        hf="EpsilonLogitsWarper",
        hf_args=lambda p: {"epsilon": p["epsilon"]},
    ),
    Entry(
        "eta",
        Eta,
        (
            Param(
                "eta",
                "epsilon",
                real_in(0, 1, lo_open=True, hi_open=True),
                "drop p < min(eta, sqrt(eta) e^-H)",
                spec=(SpecKey("eta"),),
            ),
        ),
        "eta sampling",
        {"eta": 3e-4},
        hf="EtaLogitsWarper",
        hf_args=lambda p: {"epsilon": p["eta"]},
    ),
    Entry(
        "xtc",
        XTC,
        (
            Param(
                "xtc_probability",
                "probability",
                real_in(0, 1),
                "chance XTC acts on a row at a step",
                spec=(SpecKey("xtc"),),
            ),
            Param(
                "xtc_threshold",
                "threshold",
                real_in(0, 1),
                "top choices: p >= threshold",
                default=0.1,
                spec=(SpecKey("xtc-threshold"),),
                primary=False,
            ),
            Param(
                "xtc_min_keep",
                "min_keep",
                integer(0),
                "acts only if this many tokens remain",
                default=1,
                spec=(SpecKey("xtc-min-keep"),),
                parse=int,
                primary=False,
            ),
        ),
        "llama.cpp's XTC: exclude top choices (stochastic: keyed coin per row and step)",
        {"xtc_probability": 0.5, "xtc_threshold": 0.1},
    ),
    Entry(
        "mirostat",
        Mirostat,
        (
            Param("mirostat", "version", one_of(1, 2), "version 1 or 2 (or a Mirostat object)"),
            Param(
                "mirostat_tau",
                "tau",
                finite(0, lo_open=True),
                "target surprise in bits",
                default=5.0,
                primary=False,
                spec=(SpecKey("mirostat", {"mirostat": 2}), SpecKey("mirostat-v1", {"mirostat": 1})),
            ),
            Param(
                "mirostat_eta",
                "eta",
                finite(0, lo_open=True),
                "learning rate of mu",
                default=0.1,
                spec=(SpecKey("mirostat-eta"),),
                primary=False,
            ),
        ),
        "Mirostat v1/v2 (stateful: per-row mu in the sampler), always last",
        {"mirostat": 2, "mirostat_tau": 5.0},
    ),
)

DEFAULT_ORDER: tuple[str, ...] = tuple(e.name for e in TABLE)
KEYWORDS: tuple[str, ...] = tuple(p.keyword for e in TABLE for p in e.params)


def entry_for(cls: type) -> Entry:
    """The table entry of a processor class."""
    for e in TABLE:
        if e.cls is cls:
            return e
    raise KeyError(cls.__name__)


def validate_fields(obj: Processor | Mirostat) -> None:
    """Check and normalise an instance's fields by its table entry (called from ``__post_init__``)."""
    try:
        entry = entry_for(type(obj))
    except KeyError:
        return  # a user-defined processor: its own business
    for p in entry.params:
        value = p.check(p.keyword, getattr(obj, p.field))
        object.__setattr__(obj, p.field, value)


def spec_index() -> dict[str, tuple[Entry, Param, SpecKey]]:
    """``{spec key: (entry, param, spec key)}`` over the table."""
    return {k.key: (e, p, k) for e in TABLE for p in e.params for k in p.spec}


def spec_help(*, detailed: bool = False) -> str:
    """The valid spec parts, for error messages (short) and the CLI's help (``detailed``).

    Example:
        >>> spec_help().startswith("greedy, sample, gumbel, logit-bias:VALUE")
        True
        >>> "top-p:VALUE (top_p in (0, 1])" in spec_help(detailed=True)
        True
    """
    parts = ["greedy", "sample", "gumbel"]
    for e in TABLE:
        for p in e.params:
            for k in p.spec:
                parts.append(f"{k.key}:VALUE ({p.keyword} {p.expected})" if detailed else f"{k.key}:VALUE")
    return ", ".join(parts)


def render_table() -> str:
    """The table as reStructuredText-ish plain text, in default order (the docs' generated section)."""
    rows = []
    for i, e in enumerate(TABLE, 1):
        specs = ", ".join(f"``{k.key}:``" for p in e.params for k in p.spec) or "-"
        params = "; ".join(
            f"``{p.keyword}`` {p.expected}"
            + (f" (default {p.fmt(p.default)})" if p.default not in (None, ()) else "")
            for p in e.params
        )
        text = (
            f"{i}. ``{e.name}`` ({e.cls.__name__}): {e.summary}. Parameters: {params}. Spec: {specs}. "
            f"Hugging Face: {e.hf or 'none'}."
        )
        rows.append(textwrap.fill(text, width=104, subsequent_indent="   ", break_on_hyphens=False))
    return "\n".join(rows)
