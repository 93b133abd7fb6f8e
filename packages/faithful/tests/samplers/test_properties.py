"""Property tests: bad and extreme inputs never give a wrong token or a raw numpy error."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from faithful.errors import EmptySupportError, FaithfulError
from faithful.samplers import Sampler, greedy, make_sampler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

SAMPLERS = [
    make_sampler(),
    make_sampler(temperature=0.3, top_p=0.9),
    make_sampler(temperature=1e-3),
    make_sampler(top_k=3),
    make_sampler(min_p=0.1),
    make_sampler(typical_p=0.5),
    make_sampler(epsilon=0.01),
    make_sampler(eta=0.01),
    make_sampler(top_n_sigma=1.0),
    make_sampler(temperature=0.0),
    make_sampler(mirostat=2),
    make_sampler(draw="gumbel", top_p=0.5),
    make_sampler(xtc_probability=1.0, xtc_threshold=0.05),
    make_sampler(xtc_probability=0.5, xtc_threshold=0.2, temperature=0.5, top_k=5, draw="gumbel"),
    greedy(),
]

finite_or_neg_inf = st.one_of(
    st.floats(min_value=-1e308, max_value=1e308, allow_nan=False, allow_infinity=False),
    st.sampled_from([-np.inf, 0.0, 1e-300, -1e-300, 1e300, -1e300, 700.0, -745.0]),
)
logit_arrays = st.tuples(st.integers(1, 4), st.integers(1, 40)).flatmap(
    lambda shape: arrays(np.float64, shape, elements=finite_or_neg_inf)
)


def check_result(sampler: Sampler, z: np.ndarray) -> None:
    before = z.copy()
    try:
        r = sampler(z, rng=0, return_q=True)
    except EmptySupportError:
        assert not np.isfinite(z.max(axis=1)).all()
        return
    np.testing.assert_array_equal(z, before)
    assert r.q is not None
    rows = np.arange(z.shape[0])
    assert np.isfinite(r.q).all() and (r.q >= 0).all()
    np.testing.assert_allclose(r.q.sum(axis=1), 1.0, rtol=1e-9)
    assert (r.q[rows, r.tokens] > 0).all()
    assert np.isfinite(z[rows, r.tokens]).all()  # never a -inf token
    assert np.isfinite(r.logprobs).all() and (r.logprobs <= 0).all()


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(z=logit_arrays)
def test_extreme_logits(sampler: Sampler, z: np.ndarray) -> None:
    check_result(sampler, z)


@given(z=logit_arrays, bias=st.floats(-1e308, 1e308))
@settings(max_examples=60, deadline=None)
def test_only_faithful_errors_escape(z: np.ndarray, bias: float) -> None:
    z = z.copy()
    z[0, 0] = np.nan if bias > 0 else z[0, 0]
    with contextlib.suppress(FaithfulError):
        make_sampler(logit_bias={0: bias}, temperature=0.5, top_p=0.5)(z, rng=1)


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_vocab_of_one(sampler: Sampler) -> None:
    r = sampler(np.array([[3.0], [-1e308]]), rng=0, return_q=True)
    assert r.tokens.tolist() == [0, 0]
    assert r.q is not None and r.q.tolist() == [[1.0], [1.0]]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_rows_of_minus_inf_but_one(sampler: Sampler) -> None:
    z = np.full((3, 50), -np.inf)
    z[np.arange(3), [0, 25, 49]] = [-1e300, 0.0, 1e300]
    r = sampler(z, rng=0)
    assert r.tokens.tolist() == [0, 25, 49]


def test_a_row_of_minus_inf_is_an_error_that_says_which_row() -> None:
    z = np.zeros((3, 4))
    z[1] = -np.inf
    with pytest.raises(EmptySupportError, match=r"rows \[1\]"):
        make_sampler()(z)


def test_huge_and_tiny_logits_give_the_exact_limit() -> None:
    z = np.array([[1e308, -1e308, 1e308, 0.0]])
    q = make_sampler(temperature=0.5).distribution(z)
    np.testing.assert_array_equal(q, [[0.5, 0.0, 0.5, 0.0]])
    tiny = np.array([[1e-300, 0.0, -1e-300]])
    np.testing.assert_allclose(make_sampler().distribution(tiny), [[1 / 3] * 3])


@pytest.mark.parametrize(
    "kwargs", [{}, {"top_k": 50}, {"top_p": 0.9}, {"min_p": 0.05}, {"temperature": 0.7, "top_p": 0.5}]
)
def test_million_token_vocabulary(kwargs: dict[str, float]) -> None:
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((2, 1_000_000)) * 4).astype(np.float32)
    s = make_sampler(**kwargs)  # type: ignore[arg-type]
    r = s(z, rng=3, return_q=True)
    assert r.q is not None
    assert (r.q[np.arange(2), r.tokens] > 0).all()
    if "top_k" in kwargs:
        assert ((r.q > 0).sum(axis=1) == 50).all()
        np.testing.assert_array_equal(np.sort(np.flatnonzero(r.q[0])), np.sort(np.argsort(-z[0])[:50]))
