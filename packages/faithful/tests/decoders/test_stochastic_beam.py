"""Stochastic beam search: k distinct sequences whose inclusion probabilities match exact sampling
without replacement, and unbiased estimators."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from faithful.decode import BeamWidthError, DecodeError, sbs_estimate, score_sequences, stochastic_beam_search
from scipy.stats import chisquare

from .conftest import exact_distribution, random_table_model


def exact_inclusion(p: dict[tuple[int, ...], float], k: int) -> dict[tuple[int, ...], float]:
    """P(y is among k draws without replacement, each proportional to p of what is left)."""
    keys = list(p)
    incl = dict.fromkeys(keys, 0.0)
    for order in itertools.permutations(range(len(keys)), k):
        prob, left = 1.0, 1.0
        for i in order:
            prob *= p[keys[i]] / left
            left -= p[keys[i]]
        for i in order:
            incl[keys[i]] += prob
    return incl


@pytest.fixture(scope="module")
def sbs_run() -> tuple[dict[tuple[int, ...], float], object, int]:
    m = random_table_model(vocab_size=3, eos=0, seed=6)
    exact = exact_distribution(m, [], 3)  # 15 sequences
    n = 4000
    r = stochastic_beam_search(m, [[]] * n, 3, k=3, rng=2024)
    return exact, r, n


def test_samples_are_distinct_valid_and_exactly_scored(sbs_run: tuple) -> None:
    exact, r, _n = sbs_run
    seqs = r.sequences()
    for row in seqs[:200]:
        assert len({tuple(s) for s in row}) == 3
        assert all(tuple(s) in exact for s in row)
    np.testing.assert_allclose(
        r.logprobs[:20], np.log([[exact[tuple(s)] for s in row] for row in seqs[:20]]), atol=1e-12
    )
    assert np.all(np.diff(r.scores, axis=1) <= 0)


def test_inclusion_frequencies_match_sampling_without_replacement(sbs_run: tuple) -> None:
    exact, r, n = sbs_run
    target = exact_inclusion(exact, 3)
    counts = dict.fromkeys(exact, 0)
    for row in r.sequences():
        for s in row:
            counts[tuple(s)] += 1
    for y, pi in target.items():
        se = np.sqrt(pi * (1 - pi) / n)
        assert abs(counts[y] / n - pi) < 4.5 * se + 1e-9, (y, counts[y] / n, pi)


def test_first_sample_is_an_exact_sample(sbs_run: tuple) -> None:
    exact, r, n = sbs_run
    keys = sorted(exact)
    firsts = [tuple(row[0]) for row in r.sequences()]
    counts = np.array([firsts.count(k) for k in keys])
    assert chisquare(counts, np.array([exact[k] for k in keys]) * n).pvalue > 1e-3


def test_horvitz_thompson_estimator_is_unbiased(sbs_run: tuple) -> None:
    exact, r, n = sbs_run
    f = r.lengths.astype(float)  # estimate the expected length
    truth = sum(p * len(y) for y, p in exact.items())
    est = sbs_estimate(r, f)
    assert abs(est.mean() - truth) < 4.5 * est.std() / np.sqrt(n)
    ones = sbs_estimate(r, np.ones_like(f))
    assert abs(ones.mean() - 1.0) < 4.5 * ones.std() / np.sqrt(n)
    normed = sbs_estimate(r, f, normalize=True)
    assert abs(normed.mean() - truth) < 0.05
    with pytest.raises(DecodeError, match="shape"):
        sbs_estimate(r, f[:, :2])


def test_k_equal_to_all_sequences_returns_all_with_probability_one() -> None:
    m = random_table_model(vocab_size=3, eos=0, seed=8)
    exact = exact_distribution(m, [1], 2)  # 7 sequences
    r = stochastic_beam_search(m, [[1]], 2, k=7, rng=0, return_distributions=True)
    assert {tuple(s) for s in r.sequences()[0]} == set(exact)
    np.testing.assert_allclose(r.extras["inclusion_probs"], 1.0)
    assert sbs_estimate(r, np.ones((1, 7)))[0] == pytest.approx(1.0)
    assert r.distributions is not None
    np.testing.assert_allclose(r.logprobs, score_sequences(m, [[1]], r.sequences()))
    with pytest.raises(BeamWidthError):
        stochastic_beam_search(m, [[1]], 2, k=8, rng=0)


def test_sampler_distribution_is_used_and_reported() -> None:
    from .conftest import InverseCDFTestSampler

    m = random_table_model(vocab_size=4, eos=0, seed=3)
    r = stochastic_beam_search(m, [[1]], 3, k=4, sampler=InverseCDFTestSampler(temperature=3.0), rng=5)
    from faithful.models import CallableModel

    hot = CallableModel(lambda p: m.fn(p) / 3.0, vocab_size=4, eos_token_id=0)
    np.testing.assert_allclose(r.proposal_logprobs, score_sequences(hot, [[1]], r.sequences()))
    np.testing.assert_allclose(r.logprobs, score_sequences(m, [[1]], r.sequences()))


def test_width_above_the_sequences_with_positive_probability() -> None:
    from faithful.decode import beam_search
    from faithful.models import NGramModel

    # two tokens after <bos> are impossible (<bos> itself) -> only <eos>, a<eos>, b<eos>, <unk><eos> in 2 steps
    m = NGramModel.from_text("ab\n", n=2)
    n_possible = 1 + 3 + 9  # EOS | x EOS | x y, with x, y in {a, b, <unk>}
    assert stochastic_beam_search(m, [[]], 2, k=n_possible, rng=0).tokens.shape[1] == n_possible
    with pytest.raises(BeamWidthError, match="positive probability"):
        stochastic_beam_search(m, [[]], 2, k=n_possible + 1, rng=0)
    with pytest.raises(BeamWidthError, match="positive probability"):
        beam_search(m, [[]], 2, num_beams=n_possible + 1, length_penalty=0.0, early_stopping="never")
