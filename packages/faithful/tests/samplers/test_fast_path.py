"""The candidate kernels against the dense reference, on vocabularies large enough to use them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from faithful.processors import TopK, TopP, softmax, top_p_threshold
from faithful.rng import KeyedRNG
from faithful.samplers import make_sampler
from faithful.selection import candidate_superset, sample_truncated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

B, V = 48, 50257


def lm_like(seed: int, b: int = B, v: int = V, dtype: Any = np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = -1.1 * np.log(np.arange(1, v + 1))
    rows = [(base + rng.normal(0, 0.5, v))[rng.permutation(v)] * rng.uniform(0.5, 2.0) for _ in range(b)]
    return np.asarray(rows, dtype=dtype)


def adversarial(v: int = V) -> np.ndarray:
    rows = [
        np.arange(v, dtype=np.float64),  # ascending: the sample's stride hits none of the top
        -np.arange(v, dtype=np.float64),
        np.zeros(v),  # all tied
        np.where(np.arange(v) % 1000 == 999, 1.0, 0.0),  # ties at the top, off the sample's stride
        np.where(np.arange(v) < v - 10, -np.inf, np.arange(v, dtype=np.float64)),  # 10 finite tokens
        np.repeat(np.arange(v // 32 + 1, dtype=np.float64), 32)[:v],  # blocks of ties
    ]
    return np.asarray(rows)


@pytest.mark.parametrize("k", [1, 5, 50, 300, 2000, 10000])
def test_candidate_superset_contains_the_top_k_and_ties(k: int) -> None:
    for x in (lm_like(1, b=8), adversarial()):
        idx = candidate_superset(x, k)
        for row in range(x.shape[0]):
            cand = idx[row][idx[row] >= 0]
            assert (np.diff(cand) > 0).all()
            kth = np.sort(x[row])[-k]
            assert set(np.flatnonzero(x[row] >= kth)) <= set(cand.tolist())


def dense_top_p_threshold(z: np.ndarray, top_p: float) -> np.ndarray:
    """Full-sort reference, with the same arithmetic as faithful.processors.top_p_threshold."""
    m = z.max(axis=1)
    need = top_p * np.exp(z - m[:, None]).sum(axis=1)
    desc = -np.sort(-z, axis=1)
    cum = np.cumsum(np.exp(desc - m[:, None]), axis=1)
    reached = cum >= need[:, None]
    j = np.where(reached.any(axis=1), reached.argmax(axis=1), np.isfinite(desc).sum(axis=1) - 1)
    return desc[np.arange(z.shape[0]), j]


@pytest.mark.parametrize("top_p", [0.01, 0.5, 0.9, 0.99, 0.9999])
def test_top_p_threshold_equals_a_full_sort(top_p: float) -> None:
    for x in (lm_like(2, b=16).astype(np.float64), adversarial()):
        np.testing.assert_array_equal(top_p_threshold(x, top_p), dense_top_p_threshold(x, top_p))


def test_top_k_processor_equals_a_full_sort() -> None:
    x = np.concatenate([lm_like(3, b=8).astype(np.float64), adversarial()])
    for k in (1, 40, 1000):
        kth = -np.sort(-x, axis=1)[:, k - 1 : k]
        np.testing.assert_array_equal(np.isfinite(TopK(k)(x)), np.isfinite(np.where(x >= kth, x, -np.inf)))


FAST_CONFIGS: list[dict[str, Any]] = [
    {},
    {"temperature": 0.7},
    {"top_k": 1},
    {"top_k": 50},
    {"top_k": 5000},
    {"top_p": 0.9},
    {"top_p": 0.3, "temperature": 0.6},
    {"min_p": 0.05},
    {"min_p": 0.3, "temperature": 1.7},
    {"top_k": 100, "top_p": 0.8},
    {"temperature": 0.8, "top_k": 200, "top_p": 0.95, "min_p": 0.02},
    {"top_p": 0.9, "min_p": 0.1},
]


@pytest.mark.parametrize("kwargs", FAST_CONFIGS, ids=lambda k: "+".join(f"{a}={b}" for a, b in k.items()))
def test_fast_path_equals_the_dense_reference(kwargs: dict[str, Any]) -> None:
    fast = make_sampler(**kwargs)
    slow = make_sampler(fast=False, **kwargs)
    assert fast._fast is not None and slow._fast is None
    for x in (lm_like(4), adversarial()):
        before = x.copy()
        a = fast(x, rng=5, step=2, return_q=True)
        b = slow(x, rng=5, step=2, return_q=True)
        np.testing.assert_array_equal(x, before)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=1e-12)
        assert a.q is not None and b.q is not None
        np.testing.assert_array_equal(a.q > 0, b.q > 0)
        np.testing.assert_allclose(a.q, b.q, rtol=1e-12, atol=1e-300)
        # without q, the same tokens
        np.testing.assert_array_equal(fast(x, rng=5, step=2).tokens, a.tokens)


@pytest.mark.parametrize("kwargs", FAST_CONFIGS[:8], ids=lambda k: "+".join(f"{a}={b}" for a, b in k.items()))
def test_fast_path_is_batch_invariant(kwargs: dict[str, Any]) -> None:
    s = make_sampler(**kwargs)
    x = lm_like(6, b=16)
    rows = np.arange(500, 516)
    batch = s(x, rng=8, rows=rows)
    for i in (0, 9, 15):
        alone = s(x[i : i + 1], rng=8, rows=rows[i : i + 1])
        assert alone.tokens[0] == batch.tokens[i] and alone.logprobs[0] == batch.logprobs[i]


def test_fast_path_goodness_of_fit_on_a_large_vocabulary(fits: Callable[..., None]) -> None:
    # one LM-like row over 5000 tokens (large enough for the sampled-threshold kernel); the 10^6-draw
    # fits are on the dense reference, which this path equals token for token (tests above)
    v = 5000
    x = lm_like(7, b=1, v=v)
    s = make_sampler(temperature=0.9, top_k=40, top_p=0.9)
    assert s._fast is not None
    q = s.distribution(x)[0]
    support = np.flatnonzero(q)
    assert 1 <= support.size <= 40
    n, chunk = 60_000, 10_000
    tokens = np.concatenate(
        [
            s(np.broadcast_to(x, (chunk, v)), rng=KeyedRNG(9), rows=np.arange(i, i + chunk)).tokens
            for i in range(0, n, chunk)
        ]
    )
    fits(tokens, q)


def test_sample_truncated_shifts_before_dividing_so_temperature_cannot_overflow() -> None:
    x = np.array([[1e308, 0.0, -1e308]])
    with np.errstate(over="ignore"):  # (-1e308 - 1e308) / 0.5 -> -inf: probability 0, as it should be
        fast = sample_truncated(x, np.array([0.5]), temperature=0.5, top_k=1)
    assert fast is not None and fast[0].tolist() == [0]
    r = make_sampler(temperature=0.5, top_k=2)(x, rng=0, return_q=True)
    assert r.tokens.tolist() == [0] and r.q is not None
    np.testing.assert_allclose(r.q, softmax(TopP(1.0)(np.array([[0.0, -np.inf, -np.inf]]))))


@pytest.mark.parametrize("scale", [1e12, -1e12])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"top_k": 3}, {"top_p": 0.9}, {"min_p": 0.01}, {"top_k": 4, "top_p": 0.8, "min_p": 0.001}],
    ids=lambda k: "+".join(k) or "plain",
)
def test_sample_truncated_is_exact_for_logits_near_1e12(scale: float, kwargs: dict[str, Any]) -> None:
    # issue 13 bug 4 in the numpy fast path: x / T - max / T rounded each logit to an ulp of 1e12 / T
    # (~1e-4), moving q by ~1e-4; shifting by the row max first leaves the offsets exact
    offsets = np.array([0.0, -0.5, -1.0, -1.25, -2.0, -3.0, -4.5, -7.0, -9.0, -30.0])
    v = 5000  # past _SMALL_ROW: top-k takes the sampled-bound candidate path
    row = np.full(v, -np.inf)
    row[np.arange(offsets.size) * 37] = offsets
    x = np.stack([scale + row, scale + row[::-1]])
    t = 0.7
    got = sample_truncated(x, np.array([0.3, 0.8]), temperature=t, return_q=True, **kwargs)
    assert got is not None and got[2] is not None
    ref = make_sampler(fast=False, temperature=t, **kwargs).distribution(np.stack([row, row[::-1]]))
    np.testing.assert_array_equal(got[2] > 0, ref > 0)
    np.testing.assert_allclose(got[2], ref, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got[1], np.log(ref[[0, 1], got[0]]), rtol=0, atol=1e-12)


def test_band_search_equals_a_full_running_sum() -> None:
    from faithful.draw import band_search, search_cdf

    rng = np.random.default_rng(10)
    w = rng.exponential(size=(64, 5000)) * (rng.random((64, 5000)) < 0.3)
    w[0] = 0.0
    w[0, [0, 4999]] = 1.0  # first and last token only
    w[1, :] = 0.0
    w[1, 2600] = 3.0  # one token, in the middle of a block
    n = 0
    for seed in range(20):
        u = KeyedRNG(seed).uniforms(np.arange(64), 0)[:, 0]
        tokens, total = band_search(w, u)
        assert (w[np.arange(64), tokens] > 0).all()
        np.testing.assert_allclose(total, w.sum(axis=1), rtol=1e-12)
        n += int((tokens == search_cdf(np.cumsum(w, axis=1), u)).sum())
    assert n == 64 * 20  # band edges move only by rounding; no uniform hit one here


def test_greedy_fast_path_checks_its_input() -> None:
    from faithful.errors import EmptySupportError, InvalidLogitsError
    from faithful.samplers import greedy

    x = lm_like(11, b=4)
    np.testing.assert_array_equal(greedy()(x).tokens, x.argmax(axis=1))
    bad = x.copy()
    bad[2, 7] = np.nan
    with pytest.raises(InvalidLogitsError, match=r"rows \[2\]"):
        greedy()(bad)
    bad[2, 7] = -np.inf
    bad[3] = -np.inf
    with pytest.raises(EmptySupportError, match=r"rows \[3\]"):
        greedy()(bad)


@st.composite
def structured_logits(draw: st.DrawFn) -> np.ndarray:
    """Wide rows (past the sampled-threshold cut-off) with ties, -inf runs and odd scales."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    b = draw(st.integers(1, 3))
    v = draw(st.sampled_from([4097, 5000, 8191]))
    kind = draw(st.sampled_from(["normal", "integers", "sorted", "sparse", "flat"]))
    scale = draw(st.sampled_from([1e-3, 1.0, 10.0, 300.0]))
    if kind == "normal":
        x = rng.standard_normal((b, v)) * scale
    elif kind == "integers":
        x = rng.integers(-3, 3, (b, v)).astype(np.float64) * scale
    elif kind == "sorted":
        x = np.sort(rng.standard_normal((b, v)), axis=1) * scale
    elif kind == "sparse":
        x = np.full((b, v), -np.inf)
        for row in range(b):
            alive = rng.choice(v, size=int(rng.integers(1, 60)), replace=False)
            x[row, alive] = rng.standard_normal(alive.size) * scale
    else:
        x = np.zeros((b, v))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return x.astype(dtype)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=structured_logits(),
    top_k=st.one_of(st.none(), st.integers(1, 600)),
    top_p=st.one_of(st.none(), st.floats(0.01, 1.0)),
    min_p=st.one_of(st.none(), st.floats(0.0, 1.0)),
    temperature=st.sampled_from([1.0, 0.5, 2.0]),
)
def test_fast_path_equals_the_reference_on_structured_rows(
    x: np.ndarray, top_k: int | None, top_p: float | None, min_p: float | None, temperature: float
) -> None:
    kwargs: dict[str, Any] = {"top_k": top_k, "top_p": top_p, "min_p": min_p, "temperature": temperature}
    fast, slow = make_sampler(**kwargs), make_sampler(fast=False, **kwargs)
    a = fast(x, rng=1, step=4, return_q=True)
    b = slow(x, rng=1, step=4, return_q=True)
    assert a.q is not None and b.q is not None
    np.testing.assert_array_equal(a.q > 0, b.q > 0)
    np.testing.assert_allclose(a.q, b.q, rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert (a.q[np.arange(x.shape[0]), a.tokens] > 0).all()


def sorted_mass_threshold(keys: np.ndarray, w: np.ndarray, need: np.ndarray) -> np.ndarray:
    order = np.argsort(keys, axis=1, kind="stable")
    sk = np.take_along_axis(keys, order, axis=1)
    cum = np.cumsum(np.take_along_axis(w, order, axis=1), axis=1)
    last = np.minimum((cum < need[:, None]).sum(axis=1), keys.shape[1] - 1)
    return np.where((cum >= need[:, None]).any(axis=1), sk[np.arange(keys.shape[0]), last], np.inf)


@pytest.mark.parametrize("kind", ["normal", "rounded", "with_inf", "scaled"])
def test_mass_threshold_equals_a_full_sort(kind: str) -> None:
    from faithful.selection import mass_threshold_ascending

    rng = np.random.default_rng(["normal", "rounded", "with_inf", "scaled"].index(kind))
    keys = np.abs(rng.standard_normal((8, 20000)))
    if kind == "rounded":
        keys = np.round(keys, 1)  # many ties
    if kind == "with_inf":
        keys[:, ::3] = np.inf
    if kind == "scaled":
        keys *= 300.0
    w = rng.exponential(size=keys.shape)
    w[np.isinf(keys)] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    for mass in (0.01, 0.5, 0.9, 0.999):
        need = np.full(8, mass)
        np.testing.assert_array_equal(
            mass_threshold_ascending(keys, w, need), sorted_mass_threshold(keys, w, need)
        )


def test_typical_matches_hugging_face_on_a_large_vocabulary() -> None:
    torch = pytest.importorskip("torch")
    lp = pytest.importorskip("transformers.generation.logits_process")
    from faithful.processors import Typical

    z = lm_like(13, b=8).astype(np.float64)
    for mass in (0.2, 0.9):
        theirs = lp.TypicalLogitsWarper(mass)(
            torch.zeros((8, 1), dtype=torch.long), torch.from_numpy(z.copy())
        ).numpy()
        np.testing.assert_array_equal(np.isfinite(Typical(mass)(z)), np.isfinite(theirs))
