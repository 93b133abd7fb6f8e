from __future__ import annotations

import numpy as np
import pytest
from faithful.errors import FaithfulError, SamplingParameterError, ShapeMismatchError
from faithful.rng import KeyedRNG, as_keyed_rng
from scipy import stats


def test_uniforms_are_open_interval_float64_and_shaped() -> None:
    u = KeyedRNG(0).uniforms(np.arange(1000), step=3, n=7)
    assert u.shape == (1000, 7) and u.dtype == np.float64
    assert (u > 0).all() and (u < 1).all()


def test_uniforms_depend_only_on_key_not_on_batch() -> None:
    rng = KeyedRNG(123)
    batch = rng.uniforms(np.arange(512), step=9, n=4)
    for row in (0, 7, 511):
        alone = rng.uniforms([row], step=9, n=4)
        np.testing.assert_array_equal(alone[0], batch[row])
    shuffled = np.random.default_rng(0).permutation(512)
    np.testing.assert_array_equal(rng.uniforms(shuffled, step=9, n=4), batch[shuffled])
    # lanes are a prefix: asking for more lanes does not change the first ones
    np.testing.assert_array_equal(rng.uniforms([3], 9, 10)[:, :4], batch[3:4])


def test_uniforms_differ_across_seed_row_step_lane() -> None:
    base = KeyedRNG(1).uniforms([5], 2, 2)
    assert not np.array_equal(base, KeyedRNG(2).uniforms([5], 2, 2))
    assert not np.array_equal(base, KeyedRNG(1).uniforms([6], 2, 2))
    assert not np.array_equal(base, KeyedRNG(1).uniforms([5], 3, 2))
    assert base[0, 0] != base[0, 1]


def test_uniforms_are_uniform_and_uncorrelated() -> None:
    u = KeyedRNG(2024).uniforms(np.arange(1_000_000), step=0, n=1)[:, 0]
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    v = KeyedRNG(2024).uniforms(np.arange(1_000_000), step=1, n=1)[:, 0]
    assert abs(np.corrcoef(u, v)[0, 1]) < 5e-3
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5e-3


def test_negative_and_huge_keys_are_fine() -> None:
    u = KeyedRNG(-(2**70)).uniforms([-1, 2**62], step=-5, n=2)
    assert u.shape == (2, 2) and ((u > 0) & (u < 1)).all()


def test_as_keyed_rng() -> None:
    assert as_keyed_rng(5) == KeyedRNG(5)
    k = KeyedRNG(9)
    assert as_keyed_rng(k) is k
    fresh = as_keyed_rng(None)
    assert isinstance(fresh.seed, int)
    assert as_keyed_rng(None).seed != fresh.seed
    with pytest.raises(SamplingParameterError, match="rng"):
        as_keyed_rng(np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(FaithfulError):
        as_keyed_rng(True)


def test_bad_rows_and_lanes() -> None:
    with pytest.raises(ShapeMismatchError):
        KeyedRNG(0).uniforms(np.zeros((2, 2), dtype=int), 0)
    with pytest.raises(ShapeMismatchError):
        KeyedRNG(0).uniforms(np.array([0.5]), 0)
    with pytest.raises(SamplingParameterError):
        KeyedRNG(0).uniforms([0], 0, n=-1)
