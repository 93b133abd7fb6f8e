"""Compare N decoded outputs with the model: exactly, or through the surprisal check and a reference.

Two entry points, one per kind of model:

* :func:`compare_exact` for enumerable models: total variation, KL both ways, chi-square and
  G-test with p-values against the exact sequence distribution, the length distribution
  against the one the EOS probabilities imply, unigram/bigram divergence from the model's
  expected n-gram frequencies, distinct-n and repetition against what exact sampling at the
  same N gives.
* :func:`compare_to_reference` for models too large to enumerate: the surprisal check, and
  the same length, n-gram and diversity statistics against a reference set of outputs
  (exact samples of the model, or a corpus).

Both return a :class:`Fidelity` whose ``to_dict()`` is JSON-ready and whose ``consistent``
answers the question a test suite asks.

What each mode can and cannot see:

* **exact** sees any deviation of the output distribution, given enough outputs: the G-test over
  all outputs (p-values from the simulated multinomial null, so its level holds with thousands
  of sparse outputs), the G-test over the likely outputs (a shift of mass among them: 1% TV at
  N = 50,000 on the test bigram), and the surprisal check (systematic sharpening or flattening).
  It cannot see what the enumeration pruned (``covered_mass`` says how much that is).
* **reference** runs the surprisal check alone for ``consistent``: the mean gap (temperature,
  truncation), the variance of per-token surprisal against the model's varentropy, the dispersion
  of whole outputs (a per-output mixture of sharp and flat decoding whose mean gap is zero), and
  the gap along positions. It is blind to any change that keeps those four null means, e.g. two
  equally likely tokens swapped in some context, or a change confined to contexts too rare to move
  the averages at this N; lengths, n-grams and diversity are reported against the reference but
  not tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faithful.errors import FaithfulError
from faithful.fidelity.diversity import (
    distinct_n,
    length_counts,
    ngram_divergence,
    ngram_frequencies,
    repetition_rate,
    sequence_duplicate_rate,
    strip_eos,
)
from faithful.fidelity.exact import SequenceDistribution, normalize_output
from faithful.fidelity.stats import (
    GoodnessOfFit,
    GoodnessOfFitNull,
    goodness_of_fit,
    kl_divergence,
    total_variation,
)
from faithful.fidelity.surprisal import (
    SurprisalCheck,
    implied_length_distribution,
    score_outputs,
    surprisal_check,
)
from faithful.models.base import LanguageModel

__all__ = ["Fidelity", "compare_exact", "compare_to_reference"]

Key = tuple[int, ...]


@dataclass(frozen=True)
class Fidelity:
    """How well N outputs of a decoder reproduce the model's distribution.

    Attributes:
        mode: ``"exact"`` (against the enumerated distribution) or ``"reference"``.
        n: number of outputs.
        alpha: significance level used for ``consistent``.
        sequence: TV, KL both ways (with ``smoothing`` stated), the G-test and chi-square with
            p-values, the TV exact sampling would show at this N (``tv_null_mean``,
            ``tv_null_q95``), ``covered_mass`` and ``outside_support`` (exact mode only).
        surprisal: the :class:`SurprisalCheck`, when a model was given.
        lengths: observed mean content length, the model's (``model_mean``), the TV between the
            two length distributions, the truncated share of each, and a goodness-of-fit test
            (exact mode).
        ngrams: ``unigram``/``bigram`` JS divergence (bits) and TV from the model's expected
            n-gram frequencies (exact) or the reference's.
        diversity: distinct-1/2, repetition rate and duplicate-output rate, observed and
            ``model_*`` (exact sampling at the same N, or the reference).
        length_hist / model_length_hist: distributions over content lengths, for charts.
        rank_freq / model_rank_freq: output frequencies by rank, for charts.
        token_rank_freq / model_token_rank_freq: token (unigram) frequencies by rank, for charts.
    """

    mode: str
    n: int
    alpha: float
    sequence: dict[str, Any] = field(default_factory=dict)
    surprisal: SurprisalCheck | None = None
    lengths: dict[str, Any] = field(default_factory=dict)
    ngrams: dict[str, Any] = field(default_factory=dict)
    diversity: dict[str, Any] = field(default_factory=dict)
    length_hist: dict[int, float] = field(default_factory=dict)
    model_length_hist: dict[int, float] = field(default_factory=dict)
    rank_freq: list[float] = field(default_factory=list)
    model_rank_freq: list[float] = field(default_factory=list)
    token_rank_freq: list[float] = field(default_factory=list)
    model_token_rank_freq: list[float] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """True when no test rejects "these outputs are exact samples of the model" at ``alpha``.

        Exact mode uses ``sequence["pvalue"]``: the Bonferroni combination of the G-test over all outputs,
        the G-test over the likely outputs alone (model probability >= ``head_min_prob``, the rest
        pooled) and, when a model was given, the surprisal check. Each catches a different way of being
        off: the likely outputs' test a shift of mass among them, the surprisal check a systematic
        sharpening or flattening such as temperature 0.98. Both G-tests take their p-values from
        ``gof_reps`` simulated exact-sampling runs at the same N (the chi-square approximation is
        anti-conservative with thousands of sparse outputs). Reference mode uses the surprisal check.
        """
        if self.mode == "exact":
            return bool(self.sequence["pvalue"] >= self.alpha)
        if self.surprisal is None:
            return True
        return self.surprisal.p_value >= self.alpha

    @property
    def headline(self) -> dict[str, float]:
        """The numbers of the summary table: TV (exact) or surprisal gap, distinct-2, mean lengths."""
        out: dict[str, float] = {}
        if self.mode == "exact":
            out["tv"] = float(self.sequence["tv"])
            out["tv_null_q95"] = float(self.sequence["tv_null_q95"])
        if self.surprisal is not None:
            out["surprisal_gap"] = self.surprisal.gap
        out["distinct_2"] = float(self.diversity["distinct_2"])
        out["model_distinct_2"] = float(self.diversity["model_distinct_2"])
        out["mean_length"] = float(self.lengths["mean"])
        out["model_mean_length"] = float(self.lengths["model_mean"])
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (infinities become the strings ``"inf"``)."""
        out: dict[str, Any] = _jsonable(
            {
                "mode": self.mode,
                "n": self.n,
                "alpha": self.alpha,
                "consistent": self.consistent,
                "headline": self.headline,
                "sequence": self.sequence,
                "surprisal": None if self.surprisal is None else self.surprisal.to_dict(),
                "lengths": self.lengths,
                "ngrams": self.ngrams,
                "diversity": self.diversity,
                "length_hist": {str(k): v for k, v in self.length_hist.items()},
                "model_length_hist": {str(k): v for k, v in self.model_length_hist.items()},
            }
        )
        return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _check_outputs(outputs: Sequence[Sequence[int]]) -> None:
    if len(outputs) < 1:
        raise FaithfulError("need at least one decoded output to compare, got none; decode with n >= 1")


def _diversity(contents: Sequence[Key], rep_n: int) -> dict[str, float]:
    return {
        "distinct_1": distinct_n(contents, 1),
        "distinct_2": distinct_n(contents, 2),
        f"repetition_{rep_n}": repetition_rate(contents, rep_n),
        "duplicate_outputs": sequence_duplicate_rate(contents),
    }


def _rank_freq(keys: Sequence[Key]) -> list[float]:
    counts: dict[Key, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return [c / len(keys) for c in sorted(counts.values(), reverse=True)]


def _token_rank_freq(freqs: dict[Key, float]) -> list[float]:
    return sorted(freqs.values(), reverse=True)


def _length_hist(contents: Sequence[Key]) -> dict[int, float]:
    return {k: v / len(contents) for k, v in length_counts(contents).items()}


def _null_tv(
    dist: SequenceDistribution, p_model: NDArray[np.float64], n: int, reps: int, seed: int
) -> NDArray[np.float64]:
    """TV between N exact samples and the model, ``reps`` times: what exact sampling shows at this N."""
    key = ("null_tv", n, reps, seed)
    if key not in dist._cache:
        rng = np.random.default_rng(seed)
        p = p_model / p_model.sum()
        null = np.empty(max(1, reps))
        for i in range(len(null)):
            counts = rng.multinomial(n, p)
            null[i] = 0.5 * np.abs(counts / n - p).sum()
        dist._cache[key] = null
    out: NDArray[np.float64] = dist._cache[key]
    return out


def _gof_null(
    dist: SequenceDistribution, kind: object, probs: NDArray[np.float64], n: int, reps: int, seed: int
) -> GoodnessOfFitNull:
    """The simulated null of a G-test at this N, cached on the distribution (it depends on nothing observed)."""
    key = ("gof_null", kind, n, reps, seed)
    if key not in dist._cache:
        dist._cache[key] = GoodnessOfFitNull.simulate(probs, n, reps=reps, seed=seed)
    null: GoodnessOfFitNull = dist._cache[key]
    return null


def _baseline_diversity(
    dist: SequenceDistribution, n: int, reps: int, seed: int, rep_n: int
) -> dict[str, float]:
    """Diversity statistics of N exact samples, averaged over up to 10 runs."""
    key = ("diversity", n, reps, seed, rep_n)
    if not dist.keys:
        return dict.fromkeys(_diversity([], rep_n), math.nan)
    if key not in dist._cache:
        rng = np.random.default_rng(seed + 1)
        runs = [
            _diversity(strip_eos(dist.sample(n, rng), dist.eos_token_id), rep_n)
            for _ in range(max(1, min(10, reps)))
        ]
        dist._cache[key] = {name: float(np.mean([r[name] for r in runs])) for name in runs[0]}
    return dict(dist._cache[key])


def compare_exact(
    outputs: Sequence[Sequence[int]],
    dist: SequenceDistribution,
    *,
    model: LanguageModel | None = None,
    alpha: float = 0.01,
    smoothing: float = 0.5,
    null_reps: int = 200,
    rep_n: int = 4,
    seed: int = 0,
    head_min_prob: float = 0.01,
    gof_reps: int = 5000,
) -> Fidelity:
    """Compare decoded ``outputs`` with the exact distribution ``dist`` of the model.

    Parameters:
        outputs: N decoded outputs, each the generated token ids (anything after the first EOS is
            ignored; an output without EOS counts as cut at the length bound).
        dist: from :func:`~faithful.fidelity.enumerate_sequences` with the same prompt and bound.
        model: when given, the surprisal check is added.
        alpha: significance level of ``Fidelity.consistent``.
        smoothing: the add-``smoothing`` pseudo-count on the decoder's output frequencies used for
            ``KL(model || decoder)`` (over the enumerated outputs plus one "everything else" bin);
            ``KL(decoder || model)`` uses raw frequencies and is infinite when an output has
            model probability zero.
        null_reps: simulated exact-sampling runs for the TV and diversity baselines.
        rep_n: n of the repetition rate.
        seed: seeds the baseline simulations (never the decoder).
        head_min_prob: outputs at least this probable get a G-test of their own (see ``consistent``).
        gof_reps: simulated exact-sampling runs behind both G-tests' p-values (their resolution
            is ``1 / (gof_reps + 1)``).

    Returns: a :class:`Fidelity` in ``"exact"`` mode.

    Raises: FaithfulError on no outputs or a negative smoothing.

    Example::

        >>> import numpy as np
        >>> from faithful.models import CallableModel
        >>> from faithful.fidelity import enumerate_sequences
        >>> coin = CallableModel(lambda p: np.log([[0.55, 0.45]] * len(p)), vocab_size=2)
        >>> d = enumerate_sequences(coin, max_length=1)
        >>> f = compare_exact([[0]] * 20, d)   # greedy: 20 heads
        >>> round(f.sequence["tv"], 2), f.consistent
        (0.45, False)
    """
    _check_outputs(outputs)
    if smoothing < 0:
        raise FaithfulError(f"`smoothing` must be >= 0, got {smoothing}")
    eos = dist.eos_token_id
    keys = [normalize_output(o, eos) for o in outputs]
    n = len(keys)
    counts_in, outside = dist.counts_of(keys)
    p_model = np.append(dist.vector(), dist.pruned_mass)
    counts = np.append(counts_in, outside).astype(np.float64)
    p_hat = counts / n
    # Thousands of sparse bins: the chi-square approximation of G is anti-conservative there even after
    # pooling (exact samples were flagged 2.5% of the time at alpha 0.01), so the p-values come from the
    # simulated multinomial null, simulated once per (distribution, N) and cached.
    gof: GoodnessOfFit = _gof_null(dist, "all", p_model / p_model.sum(), n, gof_reps, seed).test(counts)
    # The omnibus test spreads its power over every bin; a deviation among the likely outputs (where a
    # decoder that is slightly off shows first) is found with far fewer outputs by a test on those alone.
    head = np.nonzero(p_model[:-1] >= head_min_prob)[0]
    if len(head) >= 1:
        rest_p = max(0.0, 1.0 - float(p_model[head].sum()))
        head_probs = np.append(p_model[head], rest_p) / (p_model[head].sum() + rest_p)
        head_null = _gof_null(dist, ("head", head_min_prob), head_probs, n, gof_reps, seed)
        head_p = head_null.test(np.append(counts[head], n - counts[head].sum())).g_pvalue
    else:
        head_p = 1.0
    smoothed = (counts + smoothing) / (n + smoothing * len(counts)) if smoothing > 0 else p_hat
    null_tv = _null_tv(dist, p_model, n, null_reps, seed)
    sequence = {
        "tv": total_variation(p_hat, p_model),
        "tv_null_mean": float(null_tv.mean()),
        "tv_null_q95": float(np.quantile(null_tv, 0.95)),
        "kl_decoder_model": kl_divergence(p_hat, p_model),
        "kl_model_decoder": kl_divergence(p_model, smoothed),
        "smoothing": f"KL(model||decoder) uses add-{smoothing} smoothing of the decoder's counts over "
        f"{len(counts)} bins (enumerated outputs + 1 for the pruned rest); KL(decoder||model) is unsmoothed",
        "chi2": gof.chi2,
        "chi2_pvalue": gof.chi2_pvalue,
        "g": gof.g,
        "g_pvalue": gof.g_pvalue,
        "pvalue_method": f"Monte Carlo: {gof_reps} simulated exact-sampling runs at this N",
        "df": gof.df,
        "pooled_bins": gof.pooled,
        "head_g_pvalue": head_p,
        "head_outputs": len(head),
        "pvalue": math.nan,  # filled in below, once the surprisal check has run
        "distinct_outputs": int((counts_in > 0).sum()) + (1 if outside else 0),
        "support": len(dist.probs),
        "covered_mass": dist.covered_mass,
        "outside_support": outside,
        "threshold": dist.threshold,
        "max_length": dist.max_length,
    }
    contents = strip_eos(keys, eos)
    # lengths: joint events (content length, enumerated) plus the pruned rest, so the test is exact
    model_len = dist.length_distribution()
    known = set(dist.probs)
    obs_len: dict[int, int] = {}
    for k, c in zip(keys, contents, strict=True):
        if k in known:
            obs_len[len(c)] = obs_len.get(len(c), 0) + 1
    len_keys = sorted(set(model_len) | set(obs_len))
    len_p = np.array([model_len.get(k, 0.0) for k in len_keys] + [dist.pruned_mass])
    len_c = np.array([obs_len.get(k, 0) for k in len_keys] + [outside], dtype=np.float64)
    len_gof = goodness_of_fit(len_c, len_p / len_p.sum())
    obs_hist = _length_hist(contents)
    model_hist = {k: v / dist.covered_mass for k, v in model_len.items()} if dist.covered_mass > 0 else {}
    all_len = sorted(set(obs_hist) | set(model_hist))
    truncated_obs = sum(1 for k in keys if eos is None or not k or k[-1] != eos) / n
    lengths = {
        "mean": float(np.mean([len(c) for c in contents])),
        "model_mean": dist.mean_length(),
        "tv": total_variation(
            [obs_hist.get(k, 0.0) for k in all_len], [model_hist.get(k, 0.0) for k in all_len]
        ),
        "truncated": truncated_obs,
        "model_truncated": dist.truncated_mass() / dist.covered_mass if dist.covered_mass > 0 else math.nan,
        "g": len_gof.g,
        "g_pvalue": len_gof.g_pvalue,
        "chi2": len_gof.chi2,
        "chi2_pvalue": len_gof.chi2_pvalue,
        "df": len_gof.df,
    }
    unigrams, model_unigrams = ngram_frequencies(contents, 1), dist.ngram_frequencies(1)
    ngrams = {
        "unigram": ngram_divergence(unigrams, model_unigrams),
        "bigram": ngram_divergence(ngram_frequencies(contents, 2), dist.ngram_frequencies(2)),
    }
    diversity = _diversity(contents, rep_n)
    for name, value in _baseline_diversity(dist, n, null_reps, seed, rep_n).items():
        diversity[f"model_{name}"] = value
    check = (
        surprisal_check(score_outputs(model, keys, prompt=dist.prompt))
        if model is not None and n >= 2
        else None
    )
    tests = {"g": gof.g_pvalue, "head_g": head_p}
    if check is not None:
        tests["surprisal"] = check.p_value
    sequence["pvalue"] = min(1.0, len(tests) * min(tests.values()))
    sequence["pvalue_tests"] = sorted(tests)
    return Fidelity(
        mode="exact",
        n=n,
        alpha=alpha,
        sequence=sequence,
        surprisal=check,
        lengths=lengths,
        ngrams=ngrams,
        diversity=diversity,
        length_hist=obs_hist,
        model_length_hist=model_hist,
        rank_freq=_rank_freq(keys),
        model_rank_freq=[
            float(x) / dist.covered_mass for x in dist.vector()[: max(100, 10 * len(set(keys)))]
        ],
        token_rank_freq=_token_rank_freq(unigrams),
        model_token_rank_freq=_token_rank_freq(model_unigrams),
    )


def compare_to_reference(
    outputs: Sequence[Sequence[int]],
    reference: Sequence[Sequence[int]],
    *,
    model: LanguageModel | None = None,
    eos_token_id: int | None = None,
    max_length: int | None = None,
    reference_is_exact: bool = True,
    prompt: Sequence[int] = (),
    alpha: float = 0.01,
    rep_n: int = 4,
) -> Fidelity:
    """Compare decoded ``outputs`` with a ``reference`` set, for models too large to enumerate.

    Parameters:
        outputs: N decoded outputs (token ids; EOS included when they ended).
        reference: outputs to compare against: exact ancestral samples of the model (the
            default reading) or a tokenized corpus.
        model: when given, the surprisal check runs on ``outputs`` and, when
            ``reference_is_exact``, the model's implied length distribution is estimated from the
            reference's EOS probabilities (Rao-Blackwellised), otherwise the reference's lengths
            stand in for the model's.
        eos_token_id: defaults to ``model.eos_token_id``.
        max_length: the decoders' bound on generated tokens; defaults to the longest output.
        reference_is_exact: whether ``reference`` holds exact samples of ``model``.
        prompt: the prompt the outputs continue (for the surprisal check).
        alpha: significance level of ``Fidelity.consistent`` (on the surprisal check).
        rep_n: n of the repetition rate.

    Returns: a :class:`Fidelity` in ``"reference"`` mode.

    Raises: FaithfulError on empty outputs or reference.
    """
    _check_outputs(outputs)
    if len(reference) < 1:
        raise FaithfulError(
            "the reference set is empty; pass exact samples of the model or a tokenized corpus"
        )
    eos = eos_token_id if eos_token_id is not None else (model.eos_token_id if model is not None else None)
    keys = [normalize_output(o, eos) for o in outputs]
    ref_keys = [normalize_output(o, eos) for o in reference]
    bound = max_length if max_length is not None else max(len(k) for k in [*keys, *ref_keys])
    contents = strip_eos(keys, eos)
    ref_contents = strip_eos(ref_keys, eos)
    check = (
        surprisal_check(score_outputs(model, keys, prompt=prompt))
        if model is not None and len(keys) >= 2
        else None
    )
    if model is not None and reference_is_exact:
        model_hist = implied_length_distribution(score_outputs(model, ref_keys, prompt=prompt), bound)
        length_source = "implied by the model's EOS probabilities along exact samples"
    else:
        model_hist = _length_hist(ref_contents)
        length_source = "the reference's lengths"
    obs_hist = _length_hist(contents)
    all_len = sorted(set(obs_hist) | set(model_hist))
    total_model = sum(model_hist.values())
    n = len(keys)
    lengths = {
        "mean": float(np.mean([len(c) for c in contents])),
        "model_mean": float(sum(k * v for k, v in model_hist.items()) / total_model)
        if total_model
        else math.nan,
        "reference_mean": float(np.mean([len(c) for c in ref_contents])),
        "tv": total_variation(
            [obs_hist.get(k, 0.0) for k in all_len], [model_hist.get(k, 0.0) / total_model for k in all_len]
        ),
        "truncated": sum(1 for k in keys if eos is None or not k or k[-1] != eos) / n,
        "model_truncated": sum(1 for k in ref_keys if eos is None or not k or k[-1] != eos) / len(ref_keys),
        "model_source": length_source,
    }
    unigrams, ref_unigrams = ngram_frequencies(contents, 1), ngram_frequencies(ref_contents, 1)
    ngrams = {
        "unigram": ngram_divergence(unigrams, ref_unigrams),
        "bigram": ngram_divergence(ngram_frequencies(contents, 2), ngram_frequencies(ref_contents, 2)),
    }
    diversity = _diversity(contents, rep_n)
    for name, value in _diversity(ref_contents, rep_n).items():
        diversity[f"model_{name}"] = value
    return Fidelity(
        mode="reference",
        n=n,
        alpha=alpha,
        sequence={"reference_size": len(ref_keys), "distinct_outputs": len(set(keys))},
        surprisal=check,
        lengths=lengths,
        ngrams=ngrams,
        diversity=diversity,
        length_hist=obs_hist,
        model_length_hist={k: v / total_model for k, v in model_hist.items()} if total_model else {},
        rank_freq=_rank_freq(keys),
        model_rank_freq=_rank_freq(ref_keys),
        token_rank_freq=_token_rank_freq(unigrams),
        model_token_rank_freq=_token_rank_freq(ref_unigrams),
    )
