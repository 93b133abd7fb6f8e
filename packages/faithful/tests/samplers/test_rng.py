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


# The generator outputs at the edges of the 64-bit range, and those whose top 52 or 53 bits are
# all ones or all zeros: with a 53-bit mapping, (2**53 - 1 + 0.5) * 2**-53 rounded to exactly 1.0.
_EDGE_BITS = [
    0,
    1,
    (1 << 11) - 1,
    (1 << 12) - 1,
    1 << 11,
    1 << 12,
    (1 << 63) - 1,
    1 << 63,
    ((1 << 53) - 1) << 11,
    ((1 << 52) - 1) << 12,
    (((1 << 53) - 1) << 11) - 1,
    (1 << 64) - (1 << 12),
    (1 << 64) - 2,
    (1 << 64) - 1,
]


def test_bits_to_uniform_is_strictly_inside_zero_one_at_every_edge() -> None:
    from faithful.rng import bits_to_uniform

    bits = np.array(_EDGE_BITS, dtype=np.uint64)
    u = bits_to_uniform(bits)
    assert u.dtype == np.float64
    assert (u > 0).all() and (u < 1).all(), dict(zip(_EDGE_BITS, u.tolist(), strict=True))
    assert u.min() == 2.0**-53 and u.max() == 1 - 2.0**-53
    # every value is exact: u * 2**53 is an odd integer (a midpoint), so no rounding happened
    scaled = u * 2.0**53
    assert (scaled == np.round(scaled)).all() and (scaled.astype(np.int64) % 2 == 1).all()
    # and is the documented formula, checked in Python's exact integers
    for b, v in zip(_EDGE_BITS, u.tolist(), strict=True):
        assert v * 2**53 == 2 * (b >> 12) + 1


def test_draws_at_boundary_uniforms_never_pick_a_zero_probability_token() -> None:
    from faithful.draw import gumbel_max, inverse_cdf, inverse_cdf_from_logits
    from faithful.rng import bits_to_uniform

    u = bits_to_uniform(np.array(_EDGE_BITS, dtype=np.uint64))
    b = u.size
    # token 2 is dead (-inf / weight 0) and sits at each end and in the middle of the support
    for z_row in ([0.0, 1.0, -np.inf], [-np.inf, 0.0, 1.0], [0.0, -np.inf, 0.0], [-np.inf, 5.0, -np.inf]):
        z = np.tile(np.array(z_row), (b, 1))
        alive = np.isfinite(z[0])
        for lane_u in u:  # every lane of every row at one boundary value, as a worst case for Gumbel-max
            tok = gumbel_max(z, np.full(z.shape, lane_u))
            assert alive[tok].all(), (z_row, lane_u, tok)
        tok = gumbel_max(z, np.tile(u[:, None], (1, z.shape[1])))
        assert alive[tok].all()
        assert alive[inverse_cdf_from_logits(z, u)].all()
        assert alive[inverse_cdf(np.where(alive, np.exp(np.where(alive, z, 0.0)), 0.0), u)].all()


def test_keyed_uniforms_use_the_exact_mapping() -> None:
    from faithful.rng import bits_to_uniform, splitmix64

    rng = KeyedRNG(11)
    u = rng.uniforms([0, 3], step=2, n=5)
    keys = rng._row_keys(np.array([0, 3]), 2)
    lanes = np.arange(5, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    np.testing.assert_array_equal(u, bits_to_uniform(splitmix64(keys[:, None] ^ lanes[None, :])))


def test_the_one_resolver() -> None:
    from faithful.rng import UniformSource, resolve_rng

    assert resolve_rng(4) == KeyedRNG(4)
    k = KeyedRNG(4)
    assert resolve_rng(k) is k
    assert isinstance(resolve_rng(None).seed, int)  # type: ignore[attr-defined]

    class Fixed:
        def uniforms(self, rows: object, step: int, n: int = 1) -> np.ndarray:
            return np.full((len(rows), n), 0.5)  # type: ignore[arg-type]

    f = Fixed()
    assert resolve_rng(f) is f and isinstance(f, UniformSource)
    for bad in (True, 1.5, "3", np.random.default_rng(0)):
        with pytest.raises(SamplingParameterError, match="rng"):
            resolve_rng(bad)
