"""The conformance matrix: identical logits through each engine's own chain and sampler, against exact targets.

For every setting (a faithful spec, e.g. ``"temperature:0.7+top-p:0.9"``) and every case (rows of
logits: random, ties at the cutoffs, ``-inf`` entries, extreme scales, at each vocabulary size),
each engine computes its own q and draws ``n`` tokens per row. Every row comes with a history (the
tokens generated so far, likely tokens repeated among them), which the penalties (repetition,
presence/frequency, DRY, no-repeat-ngram) read; an engine without a setting's processor reports
the cell "n/a" ("not supported by this engine"), never an approximation. Two exact targets:

- canonical: faithful's q (:meth:`faithful.samplers.Sampler.distribution`), the definition;
- own: the q the engine's processors give (its documented semantics, as it implements them);
  drawing from anything else is a bug in its sampler.

A cell (engine x setting) reports, over all its cases' rows: support mismatches (tokens the
canonical q keeps and the engine's drops, and the reverse: exact, no sampling involved), draws of
tokens the canonical q gives probability 0, the largest TV between the draws' frequencies and the
canonical q, the exact TV between the two q's, and calibrated p-values of the draws against both
targets. The p-value of a cell uses the summed G statistic over its rows, with a null simulated
from :class:`~faithful.fidelity.stats.GoodnessOfFitNull` per row (independent rows: a shuffled
sample of each row's null, summed, is a sample of the sum's null), so it is valid at any size.
A cell fails on a support mismatch (beyond float underflow: :data:`NEGLIGIBLE_MASS`), a zero-probability draw, or ``p < alpha / cells`` (Bonferroni
over the engine's cells, so an exact engine's matrix is all green with probability >= 1 - alpha).

Example:
    >>> m = conformance_matrix(["faithful"], ["top-k:2"], vocab_sizes=[50], n=200, reps=199)
    >>> m.cells[0].status
    'pass'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from faithful.decode._common import reads_history
from faithful.errors import FaithfulError
from faithful.fidelity.stats import GoodnessOfFitNull, total_variation
from faithful.referee.engines import Engine, get_engine
from faithful.referee.settings import keywords_of
from faithful.samplers import parse_sampler_spec

__all__ = [
    "DEFAULT_SETTINGS",
    "Case",
    "Cell",
    "ConformanceMatrix",
    "cases_for",
    "conformance_matrix",
]

DEFAULT_SETTINGS = (
    "sample",
    "temperature:0.7",
    "top-k:1",
    "top-k:5",
    "top-p:0.5",
    "top-p:0.9",
    "min-p:0.1",
    "typical:0.9",
    "epsilon:0.02",
    "eta:0.05",
    "temperature:0.7+top-k:10+top-p:0.9+min-p:0.05",
    "repetition-penalty:1.3",
    "presence:0.5+frequency:0.25",
    "repetition-penalty:1.3+top-p:0.9",
)
_SAME_Q_TV = 1e-6  # a null simulated for q is reused for an own q this close with the same support
# A support difference whose tokens carry less mass than this (in the q that keeps them) is float
# underflow, not semantics: float32 cannot hold a probability below ~1.4e-45, so an engine computing in
# float32 "drops" tokens of canonical probability 1e-50. Counted (negligible_tokens), never failed.
NEGLIGIBLE_MASS = 1e-30


class ConformanceError(FaithfulError):
    """A bad request to the conformance matrix (unknown setting, vocabulary too small, ...)."""


@dataclass(frozen=True)
class Case:
    """Rows of logits every engine sees, and each row's history (int64 ``(B, L)``, or None for none).

    The name starts with one of :data:`CASE_KINDS`.
    """

    name: str
    logits: np.ndarray
    history: np.ndarray | None = None

    def history_rows(self) -> list[list[int]] | None:
        """The history as per-row token lists (what faithful's processors read), or None."""
        return None if self.history is None else np.asarray(self.history, dtype=np.int64).tolist()


MAX_VOCAB = 2**20

CASE_KINDS = ("random", "ties", "neg-inf", "peaked", "flat", "offset")


HISTORY_LENGTH = 12


def _histories(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row: ``HISTORY_LENGTH`` tokens, half among the row's 5 likeliest (the likeliest always; repeats,
    so frequency counts), half anywhere, so a penalty moves mass that matters and meets tokens of every
    kind (``-inf`` ones too)."""
    b, v = z.shape
    top = np.argsort(-z, axis=1, kind="stable")[:, : min(5, v)]
    half = HISTORY_LENGTH // 2
    likely = np.take_along_axis(top, rng.integers(0, top.shape[1], size=(b, half)), axis=1)
    likely[:, 0] = top[:, 0]  # the likeliest token is always seen: a penalty moves real mass on every row
    anywhere = rng.integers(0, v, size=(b, HISTORY_LENGTH - half))
    both = np.concatenate([likely, anywhere], axis=1)
    return np.asarray(rng.permuted(both, axis=1), dtype=np.int64)


def cases_for(
    vocab_size: int, *, seed: int = 0, rows: int = 2, kinds: Sequence[str] = CASE_KINDS
) -> list[Case]:
    """The standard cases at one vocabulary size (``rows`` rows each, float64 holding float32 values).

    - random: ``N(0, 2^2)`` logits. ties: integer logits (``round(N(0, 1.5^2))``), so most cutoffs
      fall inside a group of equal logits. neg-inf: random with 40% of the entries ``-inf``.
    - peaked: ``N(0, 30^2)`` (extreme scale). flat: ``N(0, 0.001^2)``. offset: random ``+ 1e4``.

    Each row has a history of :data:`HISTORY_LENGTH` tokens (from a generator of its own, so the
    logits are those of a seed whatever the history).
    """
    # the grid allocates (rows, V) float64 cases and counts: --vocab 10**11 was "unexpected error
    # (MemoryError): Unable to allocate 1.46 TiB"; real vocabularies are under 300k ids
    if not 2 <= vocab_size <= MAX_VOCAB:
        raise ConformanceError(f"vocabulary sizes must be >= 2 and <= {MAX_VOCAB}, got {vocab_size}")
    unknown = [k for k in kinds if k not in CASE_KINDS]
    if unknown:
        raise ConformanceError(f"unknown case kind(s) {unknown}; expected some of {', '.join(CASE_KINDS)}")
    rng = np.random.default_rng([seed, vocab_size])
    history_rng = np.random.default_rng([seed, vocab_size, 1])
    out = []
    for kind in kinds:
        g = rng.standard_normal((rows, vocab_size))
        if kind == "random":
            z = 2.0 * g
        elif kind == "ties":
            z = np.round(1.5 * g)
        elif kind == "neg-inf":
            z = 2.0 * g
            dead = rng.random((rows, vocab_size)) < 0.4
            dead[:, 0] = False  # at least one live token
            z[dead] = -np.inf
        elif kind == "peaked":
            z = 30.0 * g
        elif kind == "flat":
            z = 1e-3 * g
        else:
            z = 2.0 * g + 1e4
        # float32-representable: engines that compute in float32 see exactly these logits, not a rounding
        # of them (a rounding moves the offset rows' logits by 1e-3 and can swap a cutoff)
        z = z.astype(np.float32).astype(np.float64)
        out.append(Case(f"{kind}/V={vocab_size}", z, _histories(z, history_rng)))
    return out


@dataclass(frozen=True)
class Mismatch:
    """Tokens of one row on which the engine's q and the canonical q disagree about support."""

    case: str
    row: int
    dropped: list[int]  # canonical keeps, engine drops
    added: list[int]  # engine keeps, canonical drops
    tied: bool  # every mismatched token's logit equals a logit on the other side: a tie at the cutoff
    rules: list[str] = field(default_factory=list)  # the canonical processors whose cutoff the tokens sit at


@dataclass
class Cell:
    """One engine x setting. status: "pass", "fail", "n/a" (not available / unsupported) or "error"."""

    engine: str
    setting: str
    status: str
    reason: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)
    zero_draws: int = 0
    zero_draws_own: int = 0
    tv_draws: float | None = None
    tv_exact: float | None = None
    p_canonical: float | None = None
    p_own: float | None = None
    rows: int = 0
    negligible_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConformanceMatrix:
    """The matrix: cells in engine-major order, and what it was run with."""

    engines: list[str]
    settings: list[str]
    cells: list[Cell]
    n: int
    alpha: float
    reps: int
    seed: int
    cases: list[str]
    unavailable: dict[str, str]

    def cell(self, engine: str, setting: str) -> Cell:
        for c in self.cells:
            if c.engine == engine and c.setting == setting:
                return c
        raise KeyError((engine, setting))

    def failures(self) -> list[Cell]:
        return [c for c in self.cells if c.status in ("fail", "error")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "engines": self.engines,
            "settings": self.settings,
            "n": self.n,
            "alpha": self.alpha,
            "reps": self.reps,
            "seed": self.seed,
            "cases": self.cases,
            "unavailable": self.unavailable,
            "cells": [c.to_dict() for c in self.cells],
            "failures": len(self.failures()),
        }


def _summed_pvalue(nulls: list[GoodnessOfFitNull], gs: list[float], seed: int) -> float:
    """p of the summed G over independent rows, from the rows' simulated nulls (shuffled, summed)."""
    if any(np.isinf(g) for g in gs):
        return 0.0
    rng = np.random.default_rng(seed)
    total = np.zeros(nulls[0].reps)
    for null in nulls:
        total += rng.permutation(null.g_null)
    obs = float(sum(gs))
    at_least = int(np.sum(total >= obs * (1.0 - 1e-12) - 1e-12))
    return (1.0 + at_least) / (len(total) + 1.0)


def _rules(
    processors: Sequence[Any],
    z: np.ndarray,
    dropped: np.ndarray,
    added: np.ndarray,
    history: list[list[int]] | None = None,
) -> list[str]:
    """Which of the canonical chain's processors a mismatch is about.

    A token the engine keeps and the canonical chain removes: the processor that removes it. A token
    the engine drops and the canonical chain keeps: the processor whose cutoff falls inside the
    token's tie group (breaking the group's ties by 1e-9 makes it keep part of the group), else the
    last processor that cut the row at that token's logit (its smallest kept logit).
    """
    xs = [z[None, :]]
    for p in processors:
        xs.append(p(xs[-1], history))
    kept = [np.isfinite(x[0]) for x in xs]
    out: list[str] = []
    for t in added:
        for i, p in enumerate(processors):
            if kept[i][t] and not kept[i + 1][t]:
                out.append(p.name)
                break
    # tokens of one tie group share their answer: one pass per distinct logit, not per token
    for value in np.unique(z[dropped]):
        t = int(dropped[np.flatnonzero(z[dropped] == value)[0]])
        found = []
        for i, p in enumerate(processors):
            group = np.flatnonzero(kept[i] & (z == z[t]))
            if len(group) < 2:
                continue
            broken = xs[i].copy()
            broken[0, group] -= max(1.0, abs(float(broken[0, t]))) * 1e-9 * np.arange(len(group))
            inside = np.isfinite(p(broken, history)[0, group])
            if inside.any() and not inside.all():
                found.append(p.name)
        if not found:
            for i in range(len(processors), 0, -1):
                if (kept[i - 1] & ~kept[i]).any() and z[kept[i]].min() == z[t]:
                    found.append(processors[i - 1].name)
                    break
        out.extend(found)
    return sorted(set(out))


def _mismatch(
    case: Case, row: int, canon: np.ndarray, own: np.ndarray, processors: Sequence[Any] = ()
) -> tuple[Mismatch | None, int]:
    """The material support difference of one row, and how many tokens differ by a negligible mass only."""
    c_keep, o_keep = canon > 0, own > 0
    dropped = np.flatnonzero(c_keep & ~o_keep)
    added = np.flatnonzero(o_keep & ~c_keep)
    if canon[dropped].sum() < NEGLIGIBLE_MASS and own[added].sum() < NEGLIGIBLE_MASS:
        return None, int(dropped.size + added.size)
    z = case.logits[row]
    tied = all(np.any(z[o_keep] == z[t]) for t in dropped) and all(np.any(z[c_keep] == z[t]) for t in added)
    hist = case.history_rows()
    rules = _rules(processors, z, dropped, added, None if hist is None else [hist[row]])
    return Mismatch(case.name, row, dropped.tolist(), added.tolist(), bool(tied), rules), 0


def _explain(m: Mismatch, setting: str) -> str:
    parts = []
    if m.dropped:
        parts.append(f"drops {_ids(m.dropped)} that {setting} keeps")
    if m.added:
        parts.append(f"keeps {_ids(m.added)} that {setting} removes")
    at = f" at {' and '.join(m.rules)}'s cutoff" if m.rules else ""
    why = f"{at} (tied at the cutoff with tokens on the other side)" if m.tied else at
    return f"{m.case} row {m.row}: {' and '.join(parts)}{why}"


def _ids(ids: list[int]) -> str:
    return "tokens " + ", ".join(map(str, ids[:8])) + (f" (+{len(ids) - 8} more)" if len(ids) > 8 else "")


def _run_cell(
    engine: Engine,
    setting: str,
    keywords: dict[str, Any],
    cases: list[Case],
    targets: list[np.ndarray],
    nulls: list[list[GoodnessOfFitNull]],
    *,
    n: int,
    reps: int,
    seed: int,
    alpha_cell: float,
) -> Cell:
    cell = Cell(engine.name, setting, "pass")
    sampler = parse_sampler_spec(setting)
    processors = sampler.processors
    # only a setting that reads the history hands it over: adapters of logits-only engines need not take it
    with_history = reads_history(sampler)
    gs_c: list[float] = []
    gs_o: list[float] = []
    nulls_c: list[GoodnessOfFitNull] = []
    nulls_o: list[GoodnessOfFitNull] = []
    tv_draws, tv_exact = 0.0, 0.0
    for ci, case in enumerate(cases):
        extra: dict[str, Any] = {"history": case.history} if with_history else {}
        own = engine.distribution(case.logits, keywords, **extra)
        counts = engine.sample(case.logits, keywords, n, seed + 7919 * ci, **extra)
        if own.shape != case.logits.shape or counts.shape != case.logits.shape:
            raise FaithfulError(
                f"{engine.name} returned shapes {own.shape}, {counts.shape} for {case.logits.shape}"
            )
        canon = targets[ci]
        for r in range(case.logits.shape[0]):
            cell.rows += 1
            mm, negligible = _mismatch(case, r, canon[r], own[r], processors)
            cell.negligible_tokens += negligible
            if mm is not None:
                cell.mismatches.append(mm)
            cell.zero_draws += int(counts[r][canon[r] == 0].sum())
            cell.zero_draws_own += int(counts[r][own[r] == 0].sum())
            tv_draws = max(tv_draws, total_variation(counts[r] / n, canon[r]))
            tv_exact = max(tv_exact, total_variation(own[r], canon[r]))
            null_c = nulls[ci][r]
            gs_c.append(null_c.test(counts[r]).g)
            nulls_c.append(null_c)
            same = mm is None and not negligible and total_variation(own[r], canon[r]) < _SAME_Q_TV
            null_o = (
                null_c if same else GoodnessOfFitNull.simulate(own[r], n, reps=reps, seed=seed + 31 * r + ci)
            )
            gs_o.append(null_o.test(counts[r]).g)
            nulls_o.append(null_o)
    cell.tv_draws, cell.tv_exact = tv_draws, tv_exact
    cell.p_canonical = _summed_pvalue(nulls_c, gs_c, seed)
    cell.p_own = _summed_pvalue(nulls_o, gs_o, seed + 1)
    reasons = [_explain(m, "the canonical " + setting) for m in cell.mismatches]
    if cell.zero_draws:
        reasons.append(f"{cell.zero_draws} draws of tokens the canonical q gives probability 0")
    if cell.p_canonical < alpha_cell:
        reasons.append(f"draws differ from the canonical q (p = {cell.p_canonical:.2g} < {alpha_cell:.2g})")
    if cell.zero_draws_own:
        reasons.append(f"sampler bug: {cell.zero_draws_own} draws of tokens its own processors removed")
    if cell.p_own < alpha_cell:
        reasons.append(f"sampler bug: draws differ from its own q (p = {cell.p_own:.2g} < {alpha_cell:.2g})")
    if reasons:
        cell.status = "fail"
        cell.reason = "; ".join(reasons)
    return cell


def conformance_matrix(
    engines: Sequence[str | Engine],
    settings: Sequence[str] = DEFAULT_SETTINGS,
    *,
    vocab_sizes: Sequence[int] = (50, 1000),
    cases: Sequence[Case] | None = None,
    n: int = 2000,
    reps: int = 2999,
    alpha: float = 0.01,
    seed: int = 0,
) -> ConformanceMatrix:
    """Run the matrix.

    Parameters:
        engines: engine names (``faithful``, ``hf``, ``torch-naive``, ``vllm``, ``flashinfer``) or adapter
            objects (:class:`~faithful.referee.engines.Engine`). settings: faithful specs
            (penalties read each case's history). vocab_sizes: sizes of the standard cases (:func:`cases_for`), or
            ``cases`` to give the rows yourself. n: draws per row and engine. reps: simulated
            samples of each null (p resolution ``1 / (reps + 1)``; keep ``reps + 1 > cells / alpha``).
            alpha: family-wise level per engine. seed: of the cases, draws and nulls.

    Returns:
        A :class:`ConformanceMatrix`; an unavailable engine's cells are "n/a" with the reason.

    Raises:
        ConformanceError: a bad setting (unparsable, greedy, stochastic), a setting that reads the
            history with a given case that has none, a bad n/reps/alpha; UnknownEngineError: an unknown engine name.
    """
    if int(n) != n or n < 1 or int(reps) != reps or reps < 1:
        raise ConformanceError(f"`n` and `reps` must be integers >= 1, got n={n}, reps={reps}")
    if not 0 < alpha < 1:
        raise ConformanceError(f"`alpha` must be in (0, 1), got {alpha}")
    adapters = [get_engine(e) if isinstance(e, str) else e for e in engines]
    if not adapters or not settings:
        raise ConformanceError("give at least one engine and one setting")
    parsed: list[dict[str, Any]] = []
    for s in settings:
        try:
            sampler = parse_sampler_spec(s)
            kw = keywords_of(sampler)
        except FaithfulError as exc:
            raise ConformanceError(f"bad setting {s!r}: {exc}") from None
        if sampler.stochastic:
            raise ConformanceError(
                f"setting {s!r} is stochastic (XTC): its q depends on the coin, not the logits"
            )
        parsed.append(kw)
    all_cases = (
        list(cases) if cases is not None else [c for v in vocab_sizes for c in cases_for(v, seed=seed)]
    )
    for s in settings:
        bare = [c.name for c in all_cases if c.history is None]
        if bare and reads_history(parse_sampler_spec(s)):
            raise ConformanceError(
                f"setting {s!r} reads the tokens generated so far, and case(s) {', '.join(bare[:3])} have no "
                "history; give each Case a history (int (B, L) token ids) or drop the setting"
            )
    unavailable = {a.name: why for a in adapters if (why := a.unavailable()) is not None}
    live = [a for a in adapters if a.name not in unavailable]
    alpha_cell = alpha / max(1, len(settings))
    cells: list[Cell] = []
    by_setting: dict[str, list[Cell]] = {}
    for si, (s, kw) in enumerate(zip(settings, parsed, strict=True)):
        canonical = parse_sampler_spec(s)
        targets: list[np.ndarray] = []
        nulls: list[list[GoodnessOfFitNull]] = []
        for ci, case in enumerate(all_cases):
            q = canonical.distribution(case.logits, history=case.history_rows())
            targets.append(q)
            nulls.append(
                [GoodnessOfFitNull.simulate(q[r], n, reps=reps, seed=seed + 1000 * si + 10 * ci + r)
                 for r in range(q.shape[0])]
            )  # fmt: skip
        row: list[Cell] = []
        for a in live:
            why = a.unsupported(kw)
            if why is not None:
                row.append(Cell(a.name, s, "n/a", why))
                continue
            try:
                row.append(
                    _run_cell(
                        a, s, kw, all_cases, targets, nulls, n=n, reps=reps, seed=seed, alpha_cell=alpha_cell
                    )
                )
            except Exception as exc:  # an engine that raises on a setting is a finding, not a crash
                row.append(Cell(a.name, s, "error", f"{type(exc).__name__}: {exc}"))
        by_setting[s] = row
    for a in adapters:
        for s in settings:
            if a.name in unavailable:
                cells.append(Cell(a.name, s, "n/a", f"not available: {unavailable[a.name]}"))
            else:
                cells.append(next(c for c in by_setting[s] if c.engine == a.name))
    return ConformanceMatrix(
        [a.name for a in adapters], list(settings), cells, int(n), float(alpha), int(reps), int(seed),
        [c.name for c in all_cases], unavailable,
    )  # fmt: skip
