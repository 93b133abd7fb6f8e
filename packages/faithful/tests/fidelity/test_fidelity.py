"""The harness finds decoders that are 1% off and leaves exact sampling alone.

Stated power (checked here): on the bigram model of ``conftest.TEXT`` with outputs of at most 6
tokens, N = 50,000 outputs detect (p < 0.01), in every seed tried,
  * a decoder whose output distribution moves 1% of mass between the two likeliest outputs
    (TV = 0.01 exactly), through the G-test on the likely outputs (10 seeds);
  * ancestral sampling at temperature 0.98 (TV = 0.0093 from the model), through the surprisal
    check (4 seeds).
False alarms: exact samples are flagged at about the nominal 1% rate (here <= 3% of 300 runs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from faithful.decode import ancestral_sample, beam_search, greedy_argmax, stochastic_beam_search
from faithful.fidelity import (
    SequenceDistribution,
    compare_exact,
    compare_to_reference,
    enumerate_sequences,
    implied_length_distribution,
    score_outputs,
    surprisal_check,
    total_variation,
)
from faithful.models import CallableModel, NGramModel
from faithful.samplers import make_sampler


@pytest.fixture(scope="module")
def dist(ngram: NGramModel) -> SequenceDistribution:
    return enumerate_sequences(ngram, max_length=6, threshold=0.0)


def test_exact_samples_are_not_flagged_false_alarm_rate(dist: SequenceDistribution) -> None:
    """300 runs of exact sampling, N = 2000 over 5,461 outcomes: every G-test rejects within the
    binomial range of its level (the chi-square approximation of the all-outputs G-test rejected
    about 10% at 0.05 here), and the combined verdict at most at the nominal rate."""
    from scipy.stats import binom

    runs = 300
    flagged = 0
    pvalues: dict[str, list[float]] = {"g_pvalue": [], "head_g_pvalue": []}
    for seed in range(runs):
        outputs = dist.sample(2000, np.random.default_rng(10_000 + seed))
        f = compare_exact(outputs, dist, null_reps=20)
        flagged += not f.consistent
        for name, values in pvalues.items():
            values.append(f.sequence[name])
    assert flagged <= 9, f"{flagged}/300 exact-sample runs flagged at alpha = 0.01"
    for name, values in pvalues.items():
        for alpha in (0.01, 0.05):
            lo, hi = binom.interval(0.999, runs, alpha)
            rejected = int((np.array(values) < alpha).sum())
            assert lo <= rejected <= hi, f"{name}: {rejected}/{runs} rejected at alpha = {alpha}"


def test_harness_g_tests_take_their_pvalues_from_the_simulated_null(dist: SequenceDistribution) -> None:
    """The all-outputs and likely-outputs G-tests use the Monte Carlo null whose level
    test_stats checks over 1,000 runs (the chi-square approximation was anti-conservative)."""
    from faithful.fidelity.stats import GoodnessOfFitNull

    p = np.append(dist.vector(), dist.pruned_mass)
    p = p / p.sum()
    null = GoodnessOfFitNull.simulate(p, 2000, reps=3000, seed=4)
    for seed in range(3):
        outputs = dist.sample(2000, np.random.default_rng(seed))
        f = compare_exact(outputs, dist, seed=4, gof_reps=3000)
        counts_in, outside = dist.counts_of([tuple(o) for o in outputs])
        g_p, _ = null.pvalues(np.append(counts_in, outside))
        assert f.sequence["g_pvalue"] == pytest.approx(float(g_p))
        assert "Monte Carlo" in f.sequence["pvalue_method"]
        assert f.sequence["g_pvalue"] >= 1 / 3001 and f.sequence["head_g_pvalue"] >= 1 / 3001


def test_independent_ancestral_sampler_and_faithful_decoder_pass(
    ancestral: Callable[..., list[list[int]]], ngram: NGramModel, dist: SequenceDistribution
) -> None:
    flagged = 0
    for seed in range(10):
        flagged += not compare_exact(ancestral(ngram, 2000, 6, seed), dist, model=ngram).consistent
        result = ancestral_sample(ngram, [[]], 6, num_samples=2000, rng=seed)
        flagged += not compare_exact(result.sequences()[0], dist, model=ngram).consistent
    assert flagged <= 2, f"{flagged}/20 exact-sampling runs flagged at alpha = 0.01"


def test_detects_one_percent_mass_shift_at_stated_n(dist: SequenceDistribution) -> None:
    q = dist.vector()
    q[0] -= 0.01
    q[1] += 0.01
    assert total_variation(q, dist.vector()) == pytest.approx(0.01)
    for seed in range(10):
        idx = np.random.default_rng(seed).choice(len(q), size=50_000, p=q / q.sum())
        f = compare_exact([dist.keys[i] for i in idx], dist, null_reps=20)
        assert not f.consistent, f"seed {seed}: p = {f.sequence['pvalue']}"
        assert f.sequence["head_g_pvalue"] < 0.005


def test_detects_temperature_098_at_stated_n(ngram: NGramModel, dist: SequenceDistribution) -> None:
    tempered = CallableModel(
        lambda prefixes: ngram.next_logprobs(ngram.start([list(p) for p in prefixes])) / 0.98,
        vocab_size=ngram.vocab_size,
        eos_token_id=ngram.eos_token_id,
    )
    q = enumerate_sequences(tempered, max_length=6, threshold=0.0)
    tv = 0.5 * sum(abs(p - q.probs.get(k, 0.0)) for k, p in dist.probs.items())
    assert 0.008 < tv < 0.011
    sampler = make_sampler(temperature=0.98)
    for seed in range(4):
        out = ancestral_sample(ngram, [[]], 6, sampler=sampler, num_samples=50_000, rng=seed).sequences()[0]
        f = compare_exact(out, dist, model=ngram, null_reps=20)
        assert not f.consistent, f"seed {seed}: p = {f.sequence['pvalue']}"
        assert f.surprisal is not None and f.surprisal.gap < 0


def test_greedy_and_beam_are_flagged_with_the_numbers_they_earn(
    ngram: NGramModel, dist: SequenceDistribution
) -> None:
    best = greedy_argmax(ngram, [[]], 6).best()[0]
    f = compare_exact([best] * 500, dist, model=ngram)
    assert not f.consistent
    assert f.sequence["tv"] == pytest.approx(1.0 - dist.probs[tuple(best)])
    assert f.diversity["duplicate_outputs"] == pytest.approx(499 / 500)
    assert f.surprisal is not None and f.surprisal.gap < 0
    beam = beam_search(ngram, [[]], 6, num_beams=4).best()[0]
    assert not compare_exact([beam] * 500, dist, model=ngram).consistent


def test_stochastic_beam_top_candidate_is_an_exact_sample(
    ngram: NGramModel, dist: SequenceDistribution
) -> None:
    # the Gumbel-top-1 of stochastic beam search is an exact sample: the harness must agree
    out = stochastic_beam_search(ngram, [[]] * 2000, 6, k=3, rng=5).best()
    assert compare_exact(out, dist, model=ngram).consistent


def test_top_p_is_flagged(ngram: NGramModel, dist: SequenceDistribution) -> None:
    out = ancestral_sample(
        ngram, [[]], 6, sampler=make_sampler(top_p=0.8), num_samples=3000, rng=1
    ).sequences()[0]
    f = compare_exact(out, dist, model=ngram)
    assert not f.consistent and f.sequence["tv"] > f.sequence["tv_null_q95"]


def test_kl_smoothing_is_stated_and_kl_detects_impossible_outputs(dist: SequenceDistribution) -> None:
    f = compare_exact(dist.sample(500, np.random.default_rng(0)), dist, smoothing=0.5)
    assert "add-0.5" in f.sequence["smoothing"]
    assert np.isfinite(f.sequence["kl_model_decoder"]) and np.isfinite(f.sequence["kl_decoder_model"])
    pruned = enumerate_sequences(NGramModel.from_text("ab\nb\n", n=2), max_length=3, threshold=0.2)
    assert pruned.pruned_mass > 0
    outside = compare_exact([(3, 3, 3)] * 10, pruned)
    assert outside.sequence["outside_support"] == 10


def test_surprisal_check_false_alarms_and_power(
    ancestral: Callable[..., list[list[int]]], stopping: CallableModel
) -> None:
    flagged = 0
    for seed in range(60):
        scored = score_outputs(stopping, ancestral(stopping, 300, 8, seed))
        flagged += surprisal_check(scored).p_value < 0.01
    assert flagged <= 3
    sharp = ancestral_sample(stopping, [[]], 8, sampler=make_sampler(temperature=0.7), num_samples=300, rng=0)
    check = surprisal_check(score_outputs(stopping, sharp.sequences()[0]))
    assert check.gap < 0 and not check.consistent and check.ci_high < 0


def test_each_surprisal_statistic_keeps_its_level_on_exact_samples(
    ancestral: Callable[..., list[list[int]]], ngram: NGramModel
) -> None:
    """250 runs of 300 exact samples (the independent sampler): every statistic of the check, and
    their combination, rejects within the binomial range of its level at 0.01 and 0.05."""
    from scipy.stats import binom

    runs, size = 250, 300
    scored = score_outputs(ngram, ancestral(ngram, runs * size, 8, 2024), batch_size=4096)
    names = ("gap_p_value", "variance_p_value", "dispersion_p_value", "position_p_value", "p_value")
    checks = [surprisal_check(scored.take(range(r * size, (r + 1) * size))) for r in range(runs)]
    pvalues = np.array([[getattr(c, k) for k in names] for c in checks])
    for alpha in (0.01, 0.05):
        lo, hi = binom.interval(0.999, runs, alpha)
        rejected = (pvalues < alpha).sum(axis=0)
        for name, count in zip(names, rejected, strict=True):
            assert count <= hi, f"{name}: {count}/{runs} exact-sample runs rejected at {alpha}"
            if name != "p_value":  # the Bonferroni combination may be conservative
                assert lo <= count, f"{name}: {count}/{runs} rejected at {alpha}: the test is blind"


def test_surprisal_check_catches_a_mixture_whose_mean_gap_is_zero() -> None:
    """Outputs at temperature 0.8 and 1.3, mixed in the proportion that makes the mean surprisal gap
    vanish (the first-moment check alone passes it), on the pydoc-words character trigram: the
    variance, dispersion and per-position statistics reject it; the 51/49 mixture is rejected too,
    and exact samples pass."""
    from faithful.fidelity.specs import load_model

    model = load_model("pydoc-words")
    n = 4000
    cold = ancestral_sample(model, [[]], 20, sampler=make_sampler(temperature=0.8), num_samples=n, rng=11)
    hot = ancestral_sample(model, [[]], 20, sampler=make_sampler(temperature=1.3), num_samples=n, rng=12)
    scored = score_outputs(model, cold.sequences()[0] + hot.sequences()[0])
    gaps = np.array([float((s - h).sum()) for s, h in zip(scored.surprisal, scored.entropy, strict=True)])
    cum_cold = np.concatenate([[0.0], np.cumsum(gaps[:n])])
    cum_hot = np.concatenate([[0.0], np.cumsum(gaps[n:])])
    k = int(np.argmin(np.abs(cum_cold + cum_hot[::-1])))  # k cold outputs and n - k hot ones
    assert 0.5 < k / n < 0.8
    mixed = surprisal_check(scored.take([*range(k), *range(n, 2 * n - k)]))
    assert mixed.n_outputs == n and mixed.gap_p_value > 0.5 and mixed.ci_low < 0 < mixed.ci_high
    assert mixed.p_value < 1e-6 and not mixed.consistent
    assert mixed.dispersion_z > 5 and mixed.dispersion_ratio > 1.2
    assert mixed.variance_z > 3 and mixed.variance_ratio > 1.05
    assert mixed.position_p_value < 1e-4
    half = int(0.51 * n)
    assert not surprisal_check(scored.take([*range(half), *range(n, 2 * n - half)])).consistent
    exact = ancestral_sample(model, [[]], 20, num_samples=n, rng=13).sequences()[0]
    assert surprisal_check(score_outputs(model, exact)).consistent


def test_surprisal_numbers_by_hand(coin: CallableModel) -> None:
    # tosses H,T of the coin: surprisals -ln .55, -ln .45; entropy H = -.55 ln .55 - .45 ln .45 each step
    scored = score_outputs(coin, [[0, 1], [0, 0]])
    h = -(0.55 * np.log(0.55) + 0.45 * np.log(0.45))
    assert scored.entropy[0] == pytest.approx([h, h])
    assert scored.surprisal[0] == pytest.approx([-np.log(0.55), -np.log(0.45)])
    check = surprisal_check(scored)
    assert check.mean_entropy == pytest.approx(h)
    assert check.gap == pytest.approx((-3 * np.log(0.55) - np.log(0.45)) / 4 - h)


def test_implied_length_distribution_matches_enumeration(
    ancestral: Callable[..., list[list[int]]], stopping: CallableModel
) -> None:
    exact = enumerate_sequences(stopping, max_length=6, threshold=0.0).length_distribution()
    est = implied_length_distribution(score_outputs(stopping, ancestral(stopping, 4000, 6, 3)), 6)
    assert sum(est.values()) == pytest.approx(1.0)
    for k, v in exact.items():
        assert est.get(k, 0.0) == pytest.approx(v, abs=0.015)


def test_compare_to_reference(ancestral: Callable[..., list[list[int]]], stopping: CallableModel) -> None:
    ref = ancestral(stopping, 1500, 8, 100)
    ok = compare_to_reference(ancestral(stopping, 1500, 8, 7), ref, model=stopping, max_length=8)
    assert ok.mode == "reference" and ok.consistent
    assert ok.lengths["mean"] == pytest.approx(ok.lengths["model_mean"], abs=0.15)
    assert ok.ngrams["bigram"]["js_bits"] < 0.01
    greedy = greedy_argmax(stopping, [[]], 8).best()[0]
    bad = compare_to_reference([greedy] * 1500, ref, model=stopping, max_length=8)
    assert not bad.consistent
    assert bad.diversity["distinct_2"] < bad.diversity["model_distinct_2"]
    no_model = compare_to_reference(ref[:10], ref, eos_token_id=0)
    assert no_model.surprisal is None and no_model.consistent
