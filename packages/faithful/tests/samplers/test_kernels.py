"""The fused numba kernel against the numpy reference: same keyed uniforms, same tokens, same q."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from faithful.errors import EmptySupportError, InvalidLogitsError, SamplingParameterError
from faithful.samplers import make_sampler

pytest.importorskip("numba")

# q = w / Z with Z summed in the reference's order; libm's and numpy's exp differ by an ulp: a few ulps in all
Q_RTOL = 1e-15
CHAINS: list[dict[str, Any]] = [
    {},
    {"temperature": 0.7},
    {"top_k": 1},
    {"top_k": 50},
    {"top_k": 3000},
    {"top_p": 0.9},
    {"top_p": 0.3},
    {"min_p": 0.05},
    {"typical_p": 0.9},
    {"typical_p": 0.3},
    {"epsilon": 3e-4},
    {"eta": 3e-4},
    {"temperature": 0.7, "top_k": 100, "top_p": 0.8, "min_p": 0.01},
    {"temperature": 1.3, "top_p": 0.95, "typical_p": 0.9, "eta": 1e-3},
    {"temperature": 0.8, "top_p": 0.9, "epsilon": 1e-4},
    {"top_k": 40, "typical_p": 0.8},
]


def lm_like(seed: int, b: int, v: int, dtype: Any = np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = -1.1 * np.log(np.arange(1, v + 1))
    rows = [(base + rng.normal(0, 0.5, v))[rng.permutation(v)] * rng.uniform(0.5, 2.0) for _ in range(b)]
    return np.asarray(rows, dtype=dtype)


def hard_rows(v: int) -> np.ndarray:
    ar = np.arange(v, dtype=np.float64)
    rows = [
        np.zeros(v),  # all tied: every cutoff falls inside a tie
        np.repeat(np.arange(v // 7 + 1, dtype=np.float64), 7)[:v] * 0.3,  # blocks of ties
        np.where(ar % 3 == 0, -np.inf, -0.01 * ar),  # -inf entries
        np.where(ar < v - 3, -np.inf, ar),  # three finite tokens
        np.where(ar % 97 == 5, 1.0, 0.0),  # ties at the top
        1e12 + np.round(np.sin(ar) * 20),  # extreme scale, ties (integers near 1e12 are exact)
        -1e12 * (1 + (ar % 5)),  # extreme negative spread
    ]
    return np.asarray(rows)


def assert_same(x: np.ndarray, seed: int = 0, **kwargs: Any) -> None:
    fused = make_sampler(kernels="numba", **kwargs)
    ref = make_sampler(fast=False, **kwargs)
    assert fused._fused is not None, f"{kwargs} should run fused"
    a = fused(x, rng=seed, step=3, return_q=True)
    b = ref(x, rng=seed, step=3, return_q=True)
    assert a.q is not None and b.q is not None
    np.testing.assert_array_equal(a.q > 0, b.q > 0, err_msg=f"kept sets differ for {kwargs}")
    np.testing.assert_array_equal(a.tokens, b.tokens, err_msg=f"tokens differ for {kwargs}")
    normal = b.q > 1e-290  # subnormal q: libm's and numpy's exp keep different low bits
    np.testing.assert_allclose(a.q[normal], b.q[normal], rtol=Q_RTOL, atol=0)
    np.testing.assert_allclose(a.q, b.q, rtol=Q_RTOL, atol=1e-300)
    np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=0, atol=1e-12)
    # without q: the same tokens
    np.testing.assert_array_equal(fused(x, rng=seed, step=3).tokens, a.tokens)


@pytest.mark.parametrize(
    "kwargs", CHAINS, ids=lambda k: "+".join(f"{a}={b}" for a, b in k.items()) or "plain"
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lm_rows_match_the_reference(kwargs: dict[str, Any], dtype: Any) -> None:
    assert_same(lm_like(1, 12, 50257, dtype), seed=5, **kwargs)


@pytest.mark.parametrize(
    "kwargs", CHAINS, ids=lambda k: "+".join(f"{a}={b}" for a, b in k.items()) or "plain"
)
def test_hard_rows_match_the_reference(kwargs: dict[str, Any]) -> None:
    for v in (5, 300, 5000):
        assert_same(hard_rows(v), seed=v, **kwargs)


@pytest.mark.parametrize("v", [1, 2, 3, 17, 1000, 131072])
def test_vocab_sizes(v: int) -> None:
    x = lm_like(v, 3, v, np.float64)
    for kwargs in ({}, {"top_k": 5}, {"top_p": 0.5}, {"min_p": 0.1}, {"typical_p": 0.7}, {"eta": 1e-3}):
        assert_same(x, seed=v, **kwargs)


def test_many_draws_match_token_for_token() -> None:
    x = lm_like(7, 4, 2000, np.float64)
    fused = make_sampler(kernels="numba", temperature=0.9, top_p=0.9, min_p=0.001)
    ref = make_sampler(fast=False, temperature=0.9, top_p=0.9, min_p=0.001)
    for step in range(200):
        np.testing.assert_array_equal(fused(x, rng=11, step=step).tokens, ref(x, rng=11, step=step).tokens)


def test_batch_invariance() -> None:
    x = np.concatenate([lm_like(3, 6, 6000, np.float64), hard_rows(6000)])
    rows = np.arange(100, 100 + x.shape[0])
    s = make_sampler(kernels="numba", top_p=0.9, typical_p=0.95)
    whole = s(x, rng=2, rows=rows, return_q=True)
    assert whole.q is not None
    for i in range(x.shape[0]):
        alone = s(x[i : i + 1], rng=2, rows=rows[i : i + 1], return_q=True)
        assert alone.q is not None
        assert alone.tokens[0] == whole.tokens[i]
        np.testing.assert_array_equal(alone.q[0], whole.q[i])


def test_reference_typical_is_batch_invariant() -> None:
    # regression: mass_threshold_ascending left a row's threshold at +inf (keep all) when another
    # row of the batch had its whole vocabulary in the first window
    x = np.concatenate([lm_like(1, 1, 50257, np.float64), np.zeros((1, 50257))])
    ref = make_sampler(fast=False, top_p=0.95, typical_p=0.9)
    together = ref.distribution(x)[0]
    alone = ref.distribution(x[:1])[0]
    np.testing.assert_array_equal(together > 0, alone > 0)


def test_input_not_modified_and_float32_read_in_place() -> None:
    x = lm_like(2, 3, 4000)
    before = x.copy()
    make_sampler(kernels="numba", top_p=0.9)(x, rng=0)
    np.testing.assert_array_equal(x, before)


def test_errors_match_the_reference() -> None:
    s = make_sampler(kernels="numba", top_p=0.9)
    with pytest.raises(InvalidLogitsError, match=r"rows \[1\]"):
        s(np.array([[0.0, 1.0], [np.nan, 0.0]]), rng=0)
    with pytest.raises(InvalidLogitsError):
        s(np.array([[0.0, np.inf]]), rng=0)
    with pytest.raises(EmptySupportError, match=r"rows \[0\]"):
        s(np.array([[-np.inf, -np.inf]]), rng=0)
    with pytest.raises(SamplingParameterError, match="kernels"):
        make_sampler(kernels="cuda")


def test_never_draws_a_zero_probability_token() -> None:
    x = hard_rows(300)
    s = make_sampler(kernels="numba", top_p=0.6)
    q = s.distribution(x)
    for step in range(300):
        t = s(x, rng=1, step=step).tokens
        assert (q[np.arange(x.shape[0]), t] > 0).all()


def test_reference_modules_do_not_import_the_kernels() -> None:
    code = (
        "import sys\n"
        "import faithful.processors, faithful.selection, faithful.draw, faithful.rng, faithful.tensors\n"
        "from faithful.samplers import make_sampler\n"
        "import numpy as np\n"
        "make_sampler(fast=False, top_p=0.9)(np.zeros((2, 5)), rng=0)\n"
        "bad = [m for m in sys.modules if m.startswith(('numba', 'faithful.kernels'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_kernels_still_run_when_asked() -> None:
    x = lm_like(4, 4, 6000, np.float64)
    s = make_sampler(kernels="numpy", top_k=50, top_p=0.9)
    assert s._fused is None
    ref = make_sampler(fast=False, top_k=50, top_p=0.9)
    np.testing.assert_array_equal(s(x, rng=0).tokens, ref(x, rng=0).tokens)
