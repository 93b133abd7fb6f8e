"""Session 9 attack on the fidelity statistics against scipy: the normal tail the surprisal check prints."""

from __future__ import annotations

import numpy as np
import pytest
from faithful.fidelity.stats import normal_sf

stats = pytest.importorskip("scipy.stats")


def test_the_normal_tail_is_right_far_out() -> None:
    # 1 - cdf(z) cancelled: 4e-5 relative error at z = 7, 7% at z = 8, and 0 from 8.3 on
    zs = np.concatenate([np.linspace(-10, 10, 201), [7.0, 8.0, 8.3, 9.0, 20.0, 37.5]])
    for z in zs:
        assert normal_sf(float(z)) == pytest.approx(stats.norm.sf(z), rel=1e-12, abs=0.0)
    assert normal_sf(40.0) == 0.0 and normal_sf(-40.0) == 1.0


def test_the_binomial_pmf_is_right_at_a_hundred_million_tosses() -> None:
    # coin --n goes to 10**8: a difference of lgammas (~2e9 there) lost 1.3e-7 relative
    from faithful.fidelity.stats import binomial_pmf

    g = np.random.default_rng(3)
    cases = [(55_000_000, 10**8, 0.55), (3, 10**8, 3e-8), (99_999_999, 10**8, 1 - 1e-9), (11, 20, 0.55)]
    for _ in range(200):
        n = int(g.choice([17, 100, 10**4, 10**6, 10**8]))
        p = float(g.choice([1e-6, 0.3, 0.5, 0.999, g.random()]))
        k = int(min(n - 1, max(1, round(n * p + g.normal() * np.sqrt(n * p * (1 - p) + 1)))))
        cases.append((k, n, p))
    for k, n, p in cases:
        expected = stats.binom.pmf(k, n, p)
        if expected > 1e-290:
            assert binomial_pmf(k, n, p) == pytest.approx(expected, rel=1e-11), (k, n, p)


def test_the_multinomial_pmf_is_right_at_a_hundred_million_tosses() -> None:
    # a coin with three faces and --n 10**8: the lgamma differences lost 6e-8 relative (scipy's
    # multinomial.pmf does too, so the oracle is exact arithmetic)
    mpmath = pytest.importorskip("mpmath")
    from faithful.fidelity.stats import multinomial_pmf

    g = np.random.default_rng(4)
    cases = [([33_333_333, 33_333_333, 33_333_334], [1 / 3, 1 / 3, 1 / 3]), ([3, 0, 2], [0.2, 0.3, 0.5])]
    for _ in range(40):
        probs = g.dirichlet(np.ones(int(g.integers(2, 6))))
        n = int(g.choice([20, 10**6, 10**8]))
        cases.append((g.multinomial(n, probs).tolist(), probs.tolist()))
    for counts, probs in cases:
        with mpmath.workdps(50):
            exact = mpmath.factorial(sum(counts))
            for c, p in zip(counts, probs, strict=True):
                exact = exact / mpmath.factorial(c) * mpmath.mpf(p) ** c
            want = float(exact)
        if want > 1e-290:
            assert multinomial_pmf(counts, probs) == pytest.approx(want, rel=1e-11), counts
