"""The statistics against scipy and against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from faithful.errors import FaithfulError
from faithful.fidelity import (
    binomial_pmf,
    binomial_test,
    chi2_sf,
    distinct_n,
    goodness_of_fit,
    jensen_shannon,
    kl_divergence,
    multinomial_pmf,
    multinomial_test,
    ngram_divergence,
    repetition_rate,
    sequence_duplicate_rate,
    strip_eos,
    total_variation,
)
from scipy import stats as ss
from scipy.spatial.distance import jensenshannon


@pytest.mark.parametrize("df", [1, 2, 3, 7.5, 20, 150, 3000])
@pytest.mark.parametrize("x", [1e-6, 0.1, 0.9, 3.84, 10.0, 50.0, 400.0, 3100.0])
def test_chi2_sf_matches_scipy(x: float, df: float) -> None:
    expected = ss.chi2.sf(x, df)
    assert chi2_sf(x, df) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_chi2_sf_edges() -> None:
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(math.inf, 3) == 0.0
    with pytest.raises(FaithfulError, match="df"):
        chi2_sf(1.0, 0)


def test_total_variation_by_hand() -> None:
    assert total_variation([0.55, 0.45], [1.0, 0.0]) == pytest.approx(0.45)
    assert total_variation([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    assert total_variation([1, 0], [0, 1]) == 1.0
    with pytest.raises(FaithfulError, match="same categories"):
        total_variation([1.0], [0.5, 0.5])


def test_kl_and_js_match_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        assert kl_divergence(p, q) == pytest.approx(ss.entropy(p, q), rel=1e-12)
        assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-9)
    # hand: KL([.5,.5] || [.9,.1]) = .5 ln(.5/.9) + .5 ln(.5/.1)
    assert kl_divergence([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.5 * math.log(5 / 9) + 0.5 * math.log(5))
    assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)


def test_binomial_exact_against_scipy_and_the_essay() -> None:
    assert binomial_pmf(20, 20, 0.55) == pytest.approx(0.55**20, rel=1e-12)
    assert binomial_pmf(20, 20, 0.55) == pytest.approx(6.4e-6, rel=0.01)  # the essay's 20 heads
    for k in (0, 3, 11, 17, 20):
        assert binomial_pmf(k, 20, 0.55) == pytest.approx(ss.binom.pmf(k, 20, 0.55), rel=1e-10)
        assert binomial_test(k, 20, 0.55) == pytest.approx(ss.binomtest(k, 20, 0.55).pvalue, rel=1e-9)
    assert binomial_test(11, 20, 0.55) == pytest.approx(1.0)
    assert binomial_pmf(0, 5, 0.0) == 1.0 and binomial_pmf(1, 5, 0.0) == 0.0


def test_multinomial_exact() -> None:
    assert multinomial_pmf([2, 1, 1], [0.5, 0.25, 0.25]) == pytest.approx(
        ss.multinomial.pmf([2, 1, 1], 4, [0.5, 0.25, 0.25])
    )
    # hand: all outcomes of 2 draws over 3 equal faces: (2,0,0)x3 at 1/9, (1,1,0)x3 at 2/9
    assert multinomial_test([2, 0, 0], [1 / 3] * 3) == pytest.approx(3 / 9)
    assert multinomial_test([1, 1, 0], [1 / 3] * 3) == pytest.approx(1.0)
    # two faces reduce to the binomial test
    assert multinomial_test([15, 5], [0.5, 0.5]) == pytest.approx(ss.binomtest(15, 20, 0.5).pvalue)
    assert multinomial_pmf([1, 0], [0.0, 1.0]) == 0.0


def test_goodness_of_fit_matches_scipy_without_pooling() -> None:
    counts = np.array([18, 25, 30, 27])
    p = np.array([0.2, 0.3, 0.3, 0.2])
    r = goodness_of_fit(counts, p)
    chi = ss.chisquare(counts, counts.sum() * p)
    g = ss.power_divergence(counts, counts.sum() * p, lambda_="log-likelihood")
    assert r.chi2 == pytest.approx(chi.statistic) and r.chi2_pvalue == pytest.approx(chi.pvalue)
    assert r.g == pytest.approx(g.statistic) and r.g_pvalue == pytest.approx(g.pvalue)
    assert r.df == 3 and r.pooled == 0


def test_goodness_of_fit_pools_small_bins_and_flags_impossible() -> None:
    p = np.array([0.9, 0.06, 0.02, 0.01, 0.01])
    r = goodness_of_fit([90, 5, 3, 1, 1], p)  # expected 90, 6, 2, 1, 1: the three smallest pool to 4 < 5
    assert r.pooled >= 3 and r.bins == 2 and r.df == 1
    # pooled by hand: bins (90, 10) observed vs (90, 10) expected -> 0
    assert r.chi2 == pytest.approx(0.0, abs=1e-12)
    bad = goodness_of_fit([5, 1], [1.0, 0.0])
    assert bad.impossible == 1 and bad.chi2 == math.inf and bad.g_pvalue == 0.0
    with pytest.raises(FaithfulError, match="sum to 1"):
        goodness_of_fit([1, 1], [0.5, 0.4])
    with pytest.raises(FaithfulError, match="at least one observation"):
        goodness_of_fit([0, 0], [0.5, 0.5])


def test_greedy_coin_rejected_by_goodness_of_fit() -> None:
    r = goodness_of_fit([20, 0], [0.55, 0.45])
    # hand: (20-11)^2/11 + (0-9)^2/9
    assert r.chi2 == pytest.approx(81 / 11 + 9)
    assert r.g == pytest.approx(2 * 20 * math.log(20 / 11))
    assert r.chi2_pvalue < 1e-3


def _level_range(trials: int, alpha: float) -> tuple[int, int]:
    """Rejections of a test at level alpha: the central 99.9% range of Binomial(trials, alpha)."""
    lo, hi = ss.binom.interval(0.999, trials, alpha)
    return int(lo), int(hi)


@pytest.fixture(scope="module")
def sparse_probs(ngram: object) -> np.ndarray:
    """The harness's own case: exact sequences of the char-bigram model up to 6 tokens (5,461 outcomes)."""
    from faithful.fidelity import enumerate_sequences

    d = enumerate_sequences(ngram, max_length=6, threshold=0.0)  # type: ignore[arg-type]
    p = np.append(d.vector(), d.pruned_mass)
    return p / p.sum()


def test_monte_carlo_goodness_of_fit_has_its_level_with_thousands_of_sparse_bins(
    sparse_probs: np.ndarray,
) -> None:
    """1,000 runs of exact sampling (numpy's multinomial), N = 2000 over 5,461 outcomes: the Monte
    Carlo G- and chi-square tests reject within the binomial range of alpha; the chi-square
    approximation of G does not (it rejects about twice too often at 0.05)."""
    from faithful.fidelity.stats import GoodnessOfFitNull

    n, runs = 2000, 1000
    assert len(sparse_probs) > 5000 and (n * sparse_probs < 1).mean() > 0.9
    counts = np.random.default_rng(7).multinomial(n, sparse_probs, size=runs)
    null = GoodnessOfFitNull.simulate(sparse_probs, n, reps=5000, seed=1)
    g_p, chi2_p = null.pvalues(counts)
    for alpha in (0.01, 0.05):
        lo, hi = _level_range(runs, alpha)
        assert lo <= int((g_p < alpha).sum()) <= hi, (alpha, (g_p < alpha).mean())
        assert lo <= int((chi2_p < alpha).sum()) <= hi, (alpha, (chi2_p < alpha).mean())
    # the asymptotic p-values of the same statistic on the same runs: too many rejections
    obs, _ = null._pool(counts.astype(np.float64))
    g = 2 * np.where(obs > 0, obs * np.log(np.maximum(obs, 1) / null.expected), 0.0).sum(axis=1)
    asym = ss.chi2.sf(g, len(null.expected) - 1)
    assert int((asym < 0.05).sum()) > _level_range(runs, 0.05)[1], (asym < 0.05).mean()
    # one vector through `test` gives the batch's numbers and the asymptotic statistics
    one = null.test(counts[0])
    plain = goodness_of_fit(counts[0], sparse_probs)
    assert one.g == pytest.approx(plain.g) and one.chi2 == pytest.approx(plain.chi2) and one.df == plain.df
    assert one.g_pvalue == g_p[0] and one.chi2_pvalue == chi2_p[0] and one.reps == 5000


def test_monte_carlo_goodness_of_fit_has_power_and_edges(sparse_probs: np.ndarray) -> None:
    from faithful.fidelity.stats import GoodnessOfFitNull

    null = GoodnessOfFitNull.simulate(sparse_probs, 2000, reps=2000, seed=3)
    q = sparse_probs.copy()
    top = np.argsort(-q)[:2]
    q[top[0]] -= 0.05  # 5% of the mass moved between the two likeliest outputs
    q[top[1]] += 0.05
    counts = np.random.default_rng(0).multinomial(2000, q, size=50)
    g_p, _ = null.pvalues(counts)
    assert (g_p < 0.01).mean() > 0.9
    assert null.pvalues(counts)[0].min() >= 1 / 2001  # resolution of 2000 simulations
    # an observation in a category of probability zero is impossible: p = 0
    p = np.array([0.5, 0.5, 0.0])
    small = GoodnessOfFitNull.simulate(p, 10, reps=99)
    assert small.test([5, 4, 1]).g_pvalue == 0.0 and small.test([5, 4, 1]).impossible == 1
    assert small.pvalues([[5, 5, 0], [5, 4, 1]])[0].tolist()[1] == 0.0
    # exactly the expected counts: the smallest statistic, p = 1
    assert goodness_of_fit([5, 5, 0], p, monte_carlo=99).g_pvalue == 1.0
    with pytest.raises(FaithfulError, match="n = 10"):
        small.pvalues([[5, 5, 1]])
    with pytest.raises(FaithfulError, match="reps"):
        GoodnessOfFitNull.simulate(p, 10, reps=0)
    with pytest.raises(FaithfulError, match="one per category"):
        small.test([5, 5])


def test_diversity_by_hand() -> None:
    seqs = [(1, 2, 3), (1, 2, 4)]
    assert distinct_n(seqs, 1) == pytest.approx(4 / 6)
    assert distinct_n(seqs, 2) == pytest.approx(3 / 4)
    assert distinct_n([(1,)], 2) == 0.0
    assert repetition_rate([(1, 2, 1, 2, 1, 2)], n=2) == pytest.approx(3 / 5)
    assert repetition_rate([(1, 2, 3, 4)], n=2) == 0.0
    assert sequence_duplicate_rate([(0,)] * 20) == pytest.approx(0.95)
    assert sequence_duplicate_rate([(i,) for i in range(20)]) == 0.0
    assert strip_eos([[3, 4, 0, 7], [0], [5]], 0) == [(3, 4), (), (5,)]
    same = ngram_divergence({(1,): 0.5, (2,): 0.5}, {(1,): 0.5, (2,): 0.5})
    assert same == {"js_bits": 0.0, "tv": 0.0}
    disjoint = ngram_divergence({(1,): 1.0}, {(2,): 1.0})
    assert disjoint["js_bits"] == pytest.approx(1.0) and disjoint["tv"] == pytest.approx(1.0)
    with pytest.raises(FaithfulError, match="n"):
        distinct_n(seqs, 0)
