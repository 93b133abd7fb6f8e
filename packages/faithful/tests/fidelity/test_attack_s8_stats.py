"""Session 8 attack on the fidelity statistics: inputs that are no distribution, counts that are no counts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.stats as ss
from faithful.errors import FaithfulError
from faithful.fidelity import (
    binomial_pmf,
    binomial_test,
    jensen_shannon,
    kl_divergence,
    multinomial_pmf,
    multinomial_test,
    total_variation,
)

BAD_INPUT = r"must sum to 1|non-negative integers|one count per category"

PAIRWISE: list[Callable[[Any, Any], float]] = [total_variation, kl_divergence, jensen_shannon]


@pytest.mark.parametrize("measure", PAIRWISE, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("p", "q"),
    [
        ([1.0, 1.0], [0.25, 0.75]),  # before: KL = -1.0986, negative
        ([0.25, 0.75], [1.0, 3.0]),
        ([0.0, 0.0], [0.5, 0.5]),  # before: TV 0.5
        ([], []),  # before: TV 0.0
        ([0.5, 0.4], [0.5, 0.5]),
    ],
)
def test_a_measure_refuses_what_is_not_a_distribution(
    measure: Callable[[Any, Any], float], p: Any, q: Any
) -> None:
    with pytest.raises(FaithfulError, match="must sum to 1"):
        measure(p, q)


def test_measures_still_take_distributions_summing_to_one_up_to_rounding() -> None:
    p = np.full(10, 0.1)  # sums to 0.9999999999999999
    q = np.random.default_rng(0).dirichlet(np.ones(10))
    assert total_variation(p, q) == pytest.approx(0.5 * np.abs(p - q).sum(), rel=1e-15)
    assert kl_divergence(p, q) == pytest.approx(ss.entropy(p, q), rel=1e-12)


@pytest.mark.parametrize(
    ("counts", "probs"),
    [
        ([2, 1], [1.0, 1.0]),  # before: p = 0.0
        ([2, 1, 0], [0.5, 0.5, 0.5]),
        ([2.5, 1], [0.5, 0.5]),  # before: p = 1.0 for a count of 2.5
        ([-1, 3], [0.5, 0.5]),  # before: p = 0.0
        ([1, 2], [0.2, 0.3, 0.5]),
        ([[1, 2]], [0.5, 0.5]),
    ],
)
def test_the_multinomial_test_refuses_bad_counts_and_probabilities(counts: Any, probs: Any) -> None:
    with pytest.raises(FaithfulError, match=BAD_INPUT):
        multinomial_test(counts, probs)
    with pytest.raises(FaithfulError, match=BAD_INPUT):
        multinomial_pmf(counts, probs)


def test_whole_float_counts_are_counts() -> None:
    assert multinomial_test(np.array([2.0, 0.0, 0.0]), [1 / 3] * 3) == pytest.approx(3 / 9)
    assert multinomial_pmf(np.array([2.0, 1.0, 1.0]), [0.5, 0.25, 0.25]) == pytest.approx(
        ss.multinomial.pmf([2, 1, 1], 4, [0.5, 0.25, 0.25])
    )


def test_an_impossible_outcome_has_p_zero_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert multinomial_test([2, 1, 1], [0.5, 0.5, 0.0]) == 0.0


@pytest.mark.parametrize(
    ("k", "n", "p", "what"),
    [
        (1, 10, 1.5, "`p`"),  # before: p-value 0.0
        (1, 10, -0.1, "`p`"),
        (1, 10, math.nan, "`p`"),
        (-1, 10, 0.5, "`k`"),  # before: 0.0
        (11, 10, 0.5, "`k`"),
        (2.5, 10, 0.5, "`k`"),
        (1, -3, 0.5, "`n`"),
        (1, 10.0, 0.5, "`n`"),
    ],
)
def test_the_binomial_test_refuses_bad_input(k: Any, n: Any, p: Any, what: str) -> None:
    with pytest.raises(FaithfulError, match=what):
        binomial_test(k, n, p)


def test_the_binomial_pmf_is_zero_outside_the_range_but_checks_p() -> None:
    assert binomial_pmf(11, 10, 0.5) == 0.0 == ss.binom.pmf(11, 10, 0.5)
    assert binomial_pmf(-1, 10, 0.5) == 0.0
    with pytest.raises(FaithfulError, match="`p`"):
        binomial_pmf(3, 10, 1.5)  # before: 0.0
    assert binomial_test(np.int64(11), np.int64(20), np.float64(0.55)) == pytest.approx(1.0)
