from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from faithful.errors import (
    EmptySupportError,
    FaithfulError,
    InvalidLogitsError,
    SamplingParameterError,
    ShapeMismatchError,
)
from faithful.processors import MinP, Temperature, TopK, TopP, softmax
from faithful.rng import KeyedRNG
from faithful.samplers import Mirostat, Sampler, greedy, make_sampler, parse_sampler_spec

N = 1_000_000
# the torch backend's stated tolerance against numpy (faithful.torch_backend's docstring)
LOGQ_ATOL = 1e-12
Q_RTOL = 1e-12
# One row of 10 logits; hand-checkable probabilities.
P = np.array([0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05, 0.03, 0.02, 0.01])
Z = np.log(P)


def exact_q(keep: list[int], temperature: float = 1.0) -> np.ndarray:
    w = np.zeros_like(P)
    w[keep] = P[keep] ** (1.0 / temperature)
    return w / w.sum()


GOF_CASES: list[tuple[str, dict[str, Any], np.ndarray]] = [
    ("plain", {}, P),
    ("temperature", {"temperature": 0.5}, exact_q(list(range(10)), 0.5)),
    ("top_k", {"top_k": 3}, exact_q([0, 1, 2])),
    ("top_p", {"top_p": 0.7}, exact_q([0, 1, 2, 3])),  # 0.3+0.2+0.15 = 0.65 < 0.7
    ("min_p", {"min_p": 0.2}, exact_q([0, 1, 2, 3, 4, 5])),  # p >= 0.06
    ("epsilon", {"epsilon": 0.04}, exact_q([0, 1, 2, 3, 4, 5, 6])),
    ("top_n_sigma", {"top_n_sigma": 0.5}, None),  # computed below
    ("typical", {"typical_p": 0.5}, None),
    ("eta", {"eta": 0.04}, None),
    ("chain", {"temperature": 0.8, "top_k": 6, "top_p": 0.9, "min_p": 0.1}, None),
    ("allowed", {"allowed_tokens": [1, 4, 9]}, exact_q([1, 4, 9])),
    ("forbidden", {"forbidden_tokens": [0, 1]}, exact_q(list(range(2, 10)))),
    ("bias", {"logit_bias": {9: np.log(30.0), 0: -np.inf}}, None),
    ("temperature_zero", {"temperature": 0.0}, exact_q([0])),
    ("gumbel", {"draw": "gumbel", "top_k": 5}, exact_q([0, 1, 2, 3, 4])),
]


def expected_q(kwargs: dict[str, Any], q: np.ndarray | None) -> np.ndarray:
    if q is not None:
        return q
    if "top_n_sigma" in kwargs:
        keep = Z.max() - kwargs["top_n_sigma"] * Z.std() <= Z
        return exact_q(list(np.flatnonzero(keep)))
    if "logit_bias" in kwargs:
        w = P.copy()
        w[9] *= 30.0
        w[0] = 0.0
        return w / w.sum()
    if "typical_p" in kwargs or "eta" in kwargs:
        # oracle: Hugging Face
        torch = pytest.importorskip("torch")
        lp = pytest.importorskip("transformers.generation.logits_process")
        proc = lp.TypicalLogitsWarper(0.5) if "typical_p" in kwargs else lp.EtaLogitsWarper(0.04)
        out = proc(torch.zeros((1, 1), dtype=torch.long), torch.from_numpy(Z[None, :].copy())).numpy()
        return softmax(out)[0]
    # chain: temperature 0.8, then top-k 6, top-p 0.9, min-p 0.1, by hand
    z = Z / 0.8
    p = softmax(z[None, :])[0]
    keep = np.argsort(-z)[:6]
    order = keep[np.argsort(-p[keep])]
    cum = np.cumsum(p[order] / p[keep].sum())
    order = order[: int(np.searchsorted(cum, 0.9)) + 1]
    pk = p[order] / p[order].sum()
    order = order[pk >= 0.1 * pk.max()]
    return exact_q(sorted(order.tolist()), 0.8)


@pytest.mark.parametrize(("label", "kwargs", "q"), GOF_CASES, ids=[c[0] for c in GOF_CASES])
def test_sampler_goodness_of_fit(
    label: str, kwargs: dict[str, Any], q: np.ndarray | None, fits: Callable[..., None]
) -> None:
    q = expected_q(kwargs, q)
    sampler = make_sampler(**kwargs)
    np.testing.assert_allclose(sampler.distribution(Z[None, :])[0], q, rtol=1e-12, atol=1e-15)
    n = N
    result = sampler(np.broadcast_to(Z, (n, Z.size)), rng=KeyedRNG(hash(label) % 2**32), step=3)
    fits(result.tokens, q)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(result.logprobs, np.log(q)[result.tokens], rtol=1e-12)


def test_history_processors_goodness_of_fit(fits: Callable[..., None]) -> None:
    n = N
    history = [[0, 1, 3, 1]] * n
    sampler = make_sampler(
        repetition_penalty=2.0, presence_penalty=0.5, frequency_penalty=0.25, no_repeat_ngram_size=2
    )
    z = Z.copy()
    z[[0, 1, 3]] = np.where(z[[0, 1, 3]] < 0, z[[0, 1, 3]] * 2.0, z[[0, 1, 3]] / 2.0)
    z[[0, 1, 3]] -= 0.5
    z[[0, 1, 3]] -= 0.25 * np.array([1, 2, 1])
    z[3] = -np.inf  # the bigram (1, 3) already occurred: 3 may not follow 1 again
    q = softmax(z[None, :])[0]
    np.testing.assert_allclose(sampler.distribution(Z[None, :], history=history[:1])[0], q, rtol=1e-12)
    fits(sampler(np.broadcast_to(Z, (n, Z.size)), rng=5, history=history).tokens, q)


def random_logits(seed: int, b: int = 64, v: int = 2000, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, v)) * scale


SAMPLERS = [
    make_sampler(),
    make_sampler(temperature=0.7, top_p=0.9),
    make_sampler(top_k=20),
    make_sampler(min_p=0.05, temperature=1.3),
    make_sampler(typical_p=0.8),
    make_sampler(epsilon=1e-3),
    make_sampler(eta=1e-3),
    make_sampler(top_n_sigma=1.0),
    make_sampler(repetition_penalty=1.3, no_repeat_ngram_size=2, presence_penalty=0.3),
    make_sampler(draw="gumbel", top_k=50),
    make_sampler(dry_multiplier=0.8, dry_allowed_length=1, xtc_probability=0.5, xtc_threshold=0.01),
    make_sampler(temperature=0.0),
    greedy(),
]
HISTORY = [[int(t) for t in np.random.default_rng(100 + r).integers(0, 2000, 20)] for r in range(64)]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_batch_invariance_and_no_mutation(sampler: Sampler) -> None:
    z = random_logits(1).astype(np.float32)
    before = z.copy()
    rows = np.arange(1000, 1064)
    batch = sampler(z, rng=42, step=7, rows=rows, history=HISTORY, return_q=True)
    np.testing.assert_array_equal(z, before)
    assert batch.q is not None
    np.testing.assert_allclose(batch.q.sum(axis=1), 1.0, rtol=1e-12)
    assert (batch.q[np.arange(64), batch.tokens] > 0).all()
    np.testing.assert_allclose(
        np.log(batch.q[np.arange(64), batch.tokens]), batch.logprobs, rtol=1e-12, atol=1e-300
    )
    for i in (0, 17, 63):
        alone = sampler(z[i : i + 1], rng=42, step=7, rows=[rows[i]], history=HISTORY[i : i + 1])
        assert alone.tokens[0] == batch.tokens[i]
        assert alone.logprobs[0] == batch.logprobs[i]
    # the same rows in another order give the same tokens
    perm = np.random.default_rng(0).permutation(64)
    shuffled = sampler(z[perm], rng=42, step=7, rows=rows[perm], history=[HISTORY[i] for i in perm])
    np.testing.assert_array_equal(shuffled.tokens, batch.tokens[perm])


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_numpy_and_torch_give_the_same_tokens(sampler: Sampler) -> None:
    torch = pytest.importorskip("torch")
    z = random_logits(2).astype(np.float32).astype(np.float64)
    ours = sampler(z, rng=9, step=1, history=HISTORY, return_q=True)
    twin = Sampler(
        sampler.name, sampler.processors, draw=sampler.draw, backend="torch", mirostat=sampler.mirostat
    )
    tensor = torch.from_numpy(z.astype(np.float32)).double()
    before = tensor.clone()
    theirs = twin(tensor, rng=9, step=1, history=HISTORY, return_q=True)
    assert torch.equal(tensor, before)  # tensors are read, never written
    # the torch backend runs torch ops on the tensor's device (faithful.torch_backend): same tokens and
    # kept sets; log q and q to the stated tolerance (torch's exp/log and summation order, ~1e-16)
    np.testing.assert_array_equal(ours.tokens, theirs.tokens)
    np.testing.assert_allclose(ours.logprobs, theirs.logprobs, rtol=0, atol=LOGQ_ATOL)
    assert ours.q is not None and theirs.q is not None
    np.testing.assert_array_equal(ours.q > 0, theirs.q.numpy() > 0)
    np.testing.assert_allclose(ours.q, theirs.q, rtol=Q_RTOL, atol=0)


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 5}, {"typical_p": 0.9}])
def test_rng_none_reports_its_seed(kwargs: dict[str, Any]) -> None:
    s = make_sampler(**kwargs)
    z = random_logits(9)
    first = s(z)
    assert isinstance(first.seed, int)
    np.testing.assert_array_equal(s(z, rng=first.seed).tokens, first.tokens)
    assert s(z, rng=7).seed == 7
    assert greedy()(z).seed is None


def test_keyed_reproducibility_and_step_changes_draws() -> None:
    s = make_sampler(temperature=1.0)
    z = np.zeros((256, 50))
    a = s(z, rng=1, step=0).tokens
    np.testing.assert_array_equal(a, s(z, rng=KeyedRNG(1), step=0).tokens)
    assert not np.array_equal(a, s(z, rng=1, step=1).tokens)
    assert not np.array_equal(a, s(z, rng=2, step=0).tokens)


def test_explicit_processor_order_is_respected() -> None:
    z = np.log(P)[None, :]
    # min-p before temperature keeps fewer tokens than after it (temperature 3 flattens q)
    a = make_sampler(processors=[MinP(0.3), Temperature(3.0)]).distribution(z)
    b = make_sampler(processors=[Temperature(3.0), MinP(0.3)]).distribution(z)
    assert np.count_nonzero(a) == 4  # p >= 0.09
    assert np.count_nonzero(b) > 4  # flattened first, more survive
    default = make_sampler(temperature=3.0, min_p=0.3).distribution(z)
    np.testing.assert_array_equal(default, b)
    with pytest.raises(SamplingParameterError, match="not both"):
        make_sampler(top_k=3, processors=[TopP(0.5)])
    with pytest.raises(SamplingParameterError):
        make_sampler(processors=["top-k"])  # type: ignore[list-item]


def test_greedy_is_argmax_and_named_for_it() -> None:
    z = random_logits(3)
    g = greedy()
    assert g.name == "greedy"
    r = g(z, return_q=True)
    np.testing.assert_array_equal(r.tokens, z.argmax(axis=1))
    assert r.q is not None and (r.q.sum(axis=1) == 1).all() and (r.logprobs == 0).all()
    np.testing.assert_array_equal(g.distribution(z), r.q)


def test_temperature_zero_matches_greedy_without_ties() -> None:
    z = random_logits(4)
    np.testing.assert_array_equal(make_sampler(temperature=0)(z, rng=0).tokens, greedy()(z).tokens)


def test_mirostat_state_is_per_row_and_resettable() -> None:
    s = make_sampler(mirostat=2, mirostat_tau=3.0, mirostat_eta=0.5)
    assert s.mirostat is not None
    z = random_logits(5, b=4, v=500)
    q0 = s.distribution(z, rows=[10, 11, 12, 13])
    # fresh state: mu = 2 tau = 6 bits; keep surprise <= 6 bits (p >= 1/64) and the top token
    p = softmax(z)
    np.testing.assert_array_equal(q0 > 0, (p >= 2.0**-6) | (z == z.max(axis=1, keepdims=True)))
    r = s(z, rng=1, rows=[10, 11, 12, 13], return_q=True)
    np.testing.assert_array_equal(r.q, q0)
    expected = 6.0 - 0.5 * (-r.logprobs / np.log(2) - 3.0)
    np.testing.assert_allclose(s.mirostat.mu_for([10, 11, 12, 13]), expected)
    assert s.mirostat.mu_for([99]).tolist() == [6.0]
    s.reset()
    assert s.mirostat.mu == {}


def test_mirostat_v1_and_goodness_of_fit(fits: Callable[..., None]) -> None:
    s1 = make_sampler(mirostat=1, mirostat_tau=2.0)
    z = random_logits(6, b=2, v=3000)
    q = s1.distribution(z)
    assert ((q > 0).sum(axis=1) >= 1).all()
    s2 = make_sampler(mirostat=2, mirostat_tau=2.5)
    q2 = s2.distribution(Z[None, :])[0]  # mu = 5 bits: p >= 1/32 kept
    np.testing.assert_allclose(q2, exact_q([0, 1, 2, 3, 4, 5, 6]))
    fits(s2(np.broadcast_to(Z, (N, 10)), rng=3).tokens, q2)
    with pytest.raises(SamplingParameterError):
        Mirostat(version=3)


def test_parse_sampler_spec() -> None:
    assert parse_sampler_spec("greedy").name == "greedy"
    assert parse_sampler_spec("sample").name == "sample"
    s = parse_sampler_spec("temperature:0.8+top-p:0.9")
    assert s.name == "temperature:0.8+top-p:0.9"
    assert [type(p) for p in s.processors] == [Temperature, TopP]
    assert [type(p) for p in parse_sampler_spec("top-k:40").processors] == [TopK]
    assert [type(p) for p in parse_sampler_spec("min-p:0.05").processors] == [MinP]
    assert parse_sampler_spec("typical:0.9").name == "typical:0.9"
    assert parse_sampler_spec("mirostat:3").mirostat is not None
    assert parse_sampler_spec("top-k:5+gumbel").draw == "gumbel"
    with pytest.raises(SamplingParameterError, match="valid parts: greedy, sample"):
        parse_sampler_spec("nucleus:0.9")
    with pytest.raises(SamplingParameterError, match="top_p"):
        parse_sampler_spec("top-p:1.5")
    with pytest.raises(SamplingParameterError, match="not a valid value for `top_k`"):
        parse_sampler_spec("top-k:4.5")
    with pytest.raises(SamplingParameterError, match="greedy cannot be combined"):
        parse_sampler_spec("greedy+top-k:3")


def test_sampler_errors() -> None:
    s = make_sampler(top_p=0.9)
    with pytest.raises(InvalidLogitsError, match="NaN"):
        s(np.array([[0.0, np.nan]]))
    with pytest.raises(InvalidLogitsError, match=r"logits\[None, :\]"):
        s(np.zeros(5))
    with pytest.raises(EmptySupportError):
        s(np.array([[0.0, 1.0], [-np.inf, -np.inf]]))
    with pytest.raises(EmptySupportError, match="allowed_tokens"):
        make_sampler(allowed_tokens=[0])(np.array([[-np.inf, 0.0]]))
    with pytest.raises(ShapeMismatchError, match="rows"):
        s(np.zeros((2, 3)), rows=[0])
    with pytest.raises(ShapeMismatchError, match="history"):
        s(np.zeros((2, 3)), history=[[0]])
    with pytest.raises(SamplingParameterError, match="history"):
        make_sampler(repetition_penalty=1.1)(np.zeros((1, 3)))
    with pytest.raises(SamplingParameterError, match="draw"):
        make_sampler(draw="multinomial")
    with pytest.raises(SamplingParameterError, match="backend"):
        make_sampler(backend="jax")
    with pytest.raises(SamplingParameterError, match="mirostat"):
        make_sampler(mirostat=True)
    assert issubclass(SamplingParameterError, FaithfulError)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_cuda_tensors_give_the_same_tokens(sampler: Sampler) -> None:  # pragma: no cover - needs a GPU
    import torch

    z = random_logits(8).astype(np.float32)
    ours = sampler(z, rng=4, step=2, history=HISTORY)
    twin = Sampler(
        sampler.name, sampler.processors, draw=sampler.draw, backend="torch", mirostat=sampler.mirostat
    )
    theirs = twin(torch.from_numpy(z).cuda(), rng=4, step=2, history=HISTORY)
    assert theirs.tokens.device.type == "cuda"  # sampled on the device, results left there
    np.testing.assert_array_equal(ours.tokens, theirs.tokens.cpu())


def test_mirostat_v1_truncation_is_a_top_k_of_the_estimated_size() -> None:
    # Zipf-like row: v1 estimates s ~ 1.1 and keeps the k most likely tokens (ties kept)
    v = 6000
    z = -1.1 * np.log(np.arange(1, v + 1, dtype=np.float64))[None, :]
    m = Mirostat(version=1, tau=3.0)
    kept = np.isfinite(m.truncate(z, np.array([0])))
    k = int(kept.sum())
    assert 1 <= k < v
    np.testing.assert_array_equal(np.flatnonzero(kept[0]), np.arange(k))
    # a higher mu (more surprise allowed) keeps more tokens
    m.mu[0] = 10.0
    assert int(np.isfinite(m.truncate(z, np.array([0]))).sum()) > k


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_float32_tensors_and_arrays_agree(sampler: Sampler) -> None:
    torch = pytest.importorskip("torch")
    z = random_logits(12).astype(np.float32)
    twin = Sampler(
        sampler.name, sampler.processors, draw=sampler.draw, backend="torch", mirostat=sampler.mirostat
    )
    a = sampler(z, rng=2, history=HISTORY)
    b = twin(torch.from_numpy(z.copy()), rng=2, history=HISTORY)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logprobs, b.logprobs, rtol=0, atol=LOGQ_ATOL)


def test_any_keyed_uniform_source_is_accepted() -> None:
    class Offset:
        """A user's keyed generator: same interface as KeyedRNG."""

        def uniforms(self, rows: Any, step: int, n: int = 1) -> np.ndarray:
            return KeyedRNG(5).uniforms(rows, step + 1, n)

    z = random_logits(14)
    for kwargs in ({}, {"top_k": 5}, {"typical_p": 0.9}):
        s = make_sampler(**kwargs)
        r = s(z, rng=Offset(), step=2)
        np.testing.assert_array_equal(r.tokens, s(z, rng=5, step=3).tokens)
        assert r.seed is None
