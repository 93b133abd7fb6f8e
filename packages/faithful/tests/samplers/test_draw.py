from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from faithful.draw import AliasTable, gumbel_max, inverse_cdf, inverse_cdf_from_logits, search_cdf
from faithful.errors import EmptySupportError, InvalidLogitsError, ShapeMismatchError
from faithful.rng import KeyedRNG

N = 1_000_000
Q = np.array([0.3, 0.0, 0.25, 0.15, 0.0, 0.2, 0.05, 0.05])


def test_essay_bands() -> None:
    # coin [0.5, 0.5]: 0.2 -> heads, 0.7 -> tails; weighted [0.8, 0.2]: both heads
    fair = np.array([[0.5, 0.5]] * 2)
    assert inverse_cdf(fair, np.array([0.2, 0.7])).tolist() == [0, 1]
    weighted = np.array([[0.8, 0.2]] * 2)
    assert inverse_cdf(weighted, np.array([0.2, 0.7])).tolist() == [0, 0]


def test_band_edges_and_zero_weights_are_skipped() -> None:
    # bands are half-open [c_{i-1}, c_i): u = 0.5 starts the second positive band
    w = np.array([[0.0, 0.5, 0.0, 0.0, 0.5, 0.0]] * 4)
    u = np.array([1e-300, np.nextafter(0.5, 0), 0.5, np.nextafter(1.0, 0)])
    assert inverse_cdf(w, u).tolist() == [1, 1, 4, 4]


def test_rounding_up_to_total_still_gives_a_positive_token() -> None:
    # u * total can round to total: the last positive weight takes it, never a trailing zero.
    cdf = np.cumsum(np.array([[0.1, 0.2, 0.7, 0.0, 0.0]]), axis=1)
    assert search_cdf(cdf, np.array([np.nextafter(1.0, 0)])).tolist() == [2]


def test_inverse_cdf_goodness_of_fit(fits: Callable[..., None]) -> None:
    u = KeyedRNG(11).uniforms(np.arange(N), 0)[:, 0]
    tokens = inverse_cdf(np.broadcast_to(Q, (N, Q.size)), u)
    fits(tokens, Q)


def test_inverse_cdf_from_logits_goodness_of_fit(fits: Callable[..., None]) -> None:
    with np.errstate(divide="ignore"):
        z = np.log(Q) + 40.0  # unnormalised, shifted
    u = KeyedRNG(12).uniforms(np.arange(N), 0)[:, 0]
    fits(inverse_cdf_from_logits(np.broadcast_to(z, (N, Q.size)), u), Q)


def test_gumbel_goodness_of_fit(fits: Callable[..., None]) -> None:
    with np.errstate(divide="ignore"):
        z = np.log(Q)
    u = KeyedRNG(13).uniforms(np.arange(N), 0, n=Q.size)
    fits(gumbel_max(np.broadcast_to(z, (N, Q.size)), u), Q)


def test_alias_goodness_of_fit(fits: Callable[..., None]) -> None:
    table = AliasTable.build(Q * 7.0)
    assert set(table.support.tolist()) == {0, 2, 3, 5, 6, 7}
    fits(table.sample(N, rng=14), Q)


def test_alias_is_keyed_and_handles_a_single_token() -> None:
    table = AliasTable.build(Q)
    np.testing.assert_array_equal(table.sample(100, rng=3, step=2), table.sample(100, rng=3, step=2))
    assert set(AliasTable.build(np.array([0.0, 0.0, 2.0])).sample(1000, rng=0).tolist()) == {2}


def test_gof_check_catches_a_one_percent_error(fits: Callable[..., None]) -> None:
    # Negative control: draws from Q, tested against Q with 1% of mass moved between two cells.
    u = KeyedRNG(15).uniforms(np.arange(N), 0)[:, 0]
    tokens = inverse_cdf(np.broadcast_to(Q, (N, Q.size)), u)
    wrong = Q.copy()
    wrong[0] *= 1.01
    wrong[2] -= Q[0] * 0.01
    with pytest.raises(AssertionError, match="goodness of fit"):
        fits(tokens, wrong)


def test_draw_inputs_are_not_mutated() -> None:
    w = np.tile(Q, (3, 1))
    before = w.copy()
    u = np.array([0.1, 0.5, 0.9])
    inverse_cdf(w, u)
    gumbel_max(np.log(w + 1e-3), np.full((3, Q.size), 0.5))
    AliasTable.build(w[0])
    np.testing.assert_array_equal(w, before)


def test_draw_errors() -> None:
    with pytest.raises(ShapeMismatchError):
        inverse_cdf(np.ones((2, 3)), np.array([0.5]))
    with pytest.raises(ShapeMismatchError):
        inverse_cdf(np.ones((1, 3)), np.array([1.0]))
    with pytest.raises(InvalidLogitsError):
        inverse_cdf(np.array([[1.0, -0.5]]), np.array([0.5]))
    with pytest.raises(EmptySupportError):
        inverse_cdf(np.zeros((1, 3)), np.array([0.5]))
    with pytest.raises(EmptySupportError):
        inverse_cdf_from_logits(np.full((1, 3), -np.inf), np.array([0.5]))
    with pytest.raises(EmptySupportError):
        gumbel_max(np.full((1, 2), -np.inf), np.full((1, 2), 0.5))
    # NaN or +inf is a bad input, not an empty row (the one validator, faithful._numeric, says which)
    for bad in (np.nan, np.inf):
        z = np.array([[0.0, 1.0], [bad, 0.0]])
        with pytest.raises(InvalidLogitsError, match=r"rows \[1\]"):
            gumbel_max(z, np.full((2, 2), 0.5))
        with pytest.raises(InvalidLogitsError, match=r"rows \[1\]"):
            inverse_cdf_from_logits(z, np.array([0.5, 0.5]))
    with pytest.raises(EmptySupportError):
        AliasTable.build(np.zeros(4))
    with pytest.raises(ShapeMismatchError):
        AliasTable.build(np.ones((2, 2)))
