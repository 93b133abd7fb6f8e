"""XTC against llama.cpp's definition; its keyed coin; the exact q of every draw and of the mixture.

Oracle: llama.cpp at commit c392e5094deaf2d1a7c18683214f007fad3fe42b (ggerganov/llama.cpp),
``src/llama-sampling.cpp`` (``llama_sample_xtc_apply``: act when ``u <= probability``;
no-op when ``threshold > 0.5`` or fewer than two tokens; remove the tokens with
``p >= threshold`` except the last of them, unless fewer than ``min_keep`` remain) and
``tests/test-sampling.cpp`` lines 336-342 (``test_xtc``), ported below: there the
probability is 0.99 with a fixed seed, so the coin acted; here probability 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faithful.errors import SamplingParameterError
from faithful.processors import XTC, apply_processors, softmax
from faithful.rng import KeyedRNG
from faithful.samplers import Sampler, make_sampler, parse_sampler_spec
from scipy import stats

P4 = np.array([[0.4, 0.3, 0.2, 0.1]])


@pytest.mark.parametrize(
    ("threshold", "kept"),
    [(0.09, [3]), (0.19, [2, 3]), (0.29, [1, 2, 3]), (0.39, [0, 1, 2, 3])],  # test-sampling.cpp 337-342
)
def test_llama_cpp_test_sampling_cases(threshold: float, kept: list[int]) -> None:
    out = XTC(1.0, threshold, 0)(np.log(P4), rng=0)
    assert np.flatnonzero(np.isfinite(out[0])).tolist() == kept
    np.testing.assert_allclose(softmax(out)[0, kept], P4[0, kept] / P4[0, kept].sum(), rtol=1e-15)


def test_hand_computed_edges() -> None:
    z = np.log(P4)
    assert np.isfinite(XTC(1.0, 0.51)(z, rng=0)).all()  # threshold > 0.5: never acts
    assert np.isfinite(XTC(0.0, 0.1)(z, rng=0)).all()  # probability 0: never acts
    assert np.isfinite(XTC(1.0, 0.1, min_keep=2).exclude(z)).all()  # only 1 would remain < min_keep 2
    assert np.isfinite(XTC(1.0, 0.1, min_keep=1).exclude(z)).sum() == 1
    # ties at the least probable top choice are all kept (llama.cpp keeps one, by sort order)
    tied = np.log(np.array([[0.4, 0.25, 0.25, 0.1]]))
    assert np.flatnonzero(np.isfinite(XTC(1.0, 0.2).exclude(tied)[0])).tolist() == [1, 2, 3]
    # a row with one token, and a row whose tokens are all below the threshold: unchanged
    assert np.array_equal(XTC(1.0, 0.1).exclude(np.array([[0.0, -np.inf]])), [[0.0, -np.inf]])
    flat = np.zeros((1, 20))
    assert np.array_equal(XTC(1.0, 0.1).exclude(flat), flat)
    # probabilities are those of the logits XTC receives: removed (-inf) tokens do not count
    z2 = np.log(np.array([[0.5, 0.2, 0.2, 0.1]]))
    z2[0, 0] = -np.inf  # now p = 0.4, 0.4, 0.2 over tokens 1..3
    assert np.flatnonzero(np.isfinite(XTC(1.0, 0.3).exclude(z2)[0])).tolist() == [1, 2, 3]  # tie at 0.4
    assert np.flatnonzero(np.isfinite(XTC(1.0, 0.15).exclude(z2)[0])).tolist() == [3]


def test_randomness_is_explicit() -> None:
    z = np.log(P4)
    with pytest.raises(SamplingParameterError, match="xtc is stochastic: pass `rng`"):
        apply_processors(z, [XTC(0.5, 0.1)])
    s = make_sampler(xtc_probability=0.5)
    assert s.stochastic
    with pytest.raises(SamplingParameterError, match="stochastic"):
        s.distribution(z)


def test_the_coin_acts_with_the_given_probability() -> None:
    x = XTC(0.3, 0.1)
    acts = x.acts(np.arange(200_000), rng=KeyedRNG(4), step=9, lane=1)
    assert stats.binomtest(int(acts.sum()), acts.size, 0.3).pvalue > 1e-5
    # keyed: a row's coin does not depend on the batch around it
    assert x.acts([123], rng=KeyedRNG(4), step=9, lane=1)[0] == acts[123]


def test_returned_q_is_the_distribution_drawn_from() -> None:
    z = np.broadcast_to(np.log(P4), (4000, 4))
    s = make_sampler(xtc_probability=0.5, xtc_threshold=0.15)
    r = s(z, rng=3, step=1, return_q=True)
    assert r.q is not None
    acted = r.q[:, 0] == 0  # XTC acted on a row exactly when token 0 is gone
    assert 0.45 < acted.mean() < 0.55
    np.testing.assert_allclose(
        r.q[acted], np.broadcast_to([0, 0, 2 / 3, 1 / 3], (acted.sum(), 4)), rtol=1e-15
    )
    np.testing.assert_allclose(r.q[~acted], np.broadcast_to(P4, ((~acted).sum(), 4)), rtol=1e-15)
    assert (r.q[np.arange(4000), r.tokens] > 0).all()
    np.testing.assert_allclose(r.logprobs, np.log(r.q[np.arange(4000), r.tokens]), rtol=1e-15)
    # distribution() with the call's rng and step is that same q, row by row
    np.testing.assert_array_equal(s.distribution(z, rng=3, step=1), r.q)


@pytest.mark.parametrize("draw", ["inverse_cdf", "gumbel"])
def test_goodness_of_fit_of_the_mixture(draw: str, fits: Callable[..., None]) -> None:
    # Over many keys the draws follow 0.6 * q_xtc + 0.4 * q: the coin and the draw are independent
    z = np.log(np.array([0.35, 0.25, 0.2, 0.1, 0.06, 0.04]))
    s = make_sampler(xtc_probability=0.6, xtc_threshold=0.15, draw=draw)
    q_full = softmax(z[None, :])[0]
    q_xtc = np.array([0, 0, 0.2, 0.1, 0.06, 0.04]) / 0.4
    mixture = 0.6 * q_xtc + 0.4 * q_full
    n = 1_000_000 if draw == "inverse_cdf" else 200_000
    r = s(np.broadcast_to(z, (n, z.size)), rng=KeyedRNG(21), step=5)
    fits(r.tokens, mixture)


def test_validation_and_spec() -> None:
    with pytest.raises(SamplingParameterError, match=r"`xtc_probability` must be in \[0, 1\], got 1.5"):
        make_sampler(xtc_probability=1.5)
    with pytest.raises(SamplingParameterError, match=r"`xtc_threshold` must be in \[0, 1\], got -0.1"):
        make_sampler(xtc_probability=0.5, xtc_threshold=-0.1)
    with pytest.raises(SamplingParameterError, match="`xtc_min_keep` must be an int >= 0"):
        make_sampler(xtc_probability=0.5, xtc_min_keep=1.5)  # type: ignore[arg-type]
    with pytest.raises(SamplingParameterError, match="give `xtc_probability` too"):
        make_sampler(xtc_threshold=0.2)
    s = parse_sampler_spec("top-k:40+xtc:0.5+xtc-threshold:0.2+xtc-min-keep:2")
    assert s.processors[-1] == XTC(0.5, 0.2, 2)
    assert parse_sampler_spec(s.name).processors == s.processors


SAMPLERS = [
    make_sampler(xtc_probability=0.5, xtc_threshold=0.02),
    make_sampler(xtc_probability=1.0, xtc_threshold=0.01, temperature=0.8, top_k=30),
    make_sampler(xtc_probability=0.5, xtc_threshold=0.02, draw="gumbel"),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_no_mutation_and_batch_invariance(sampler: Sampler) -> None:
    z = (np.random.default_rng(1).standard_normal((48, 300)) * 2.5).astype(np.float32)
    before = z.copy()
    rows = np.arange(7000, 7048)
    batch = sampler(z, rng=8, step=4, rows=rows, return_q=True)
    np.testing.assert_array_equal(z, before)
    assert batch.q is not None and (batch.q[np.arange(48), batch.tokens] > 0).all()
    changed = ((batch.q > 0) != (make_sampler().distribution(z) > 0)).any(axis=1)
    assert changed.any()  # XTC acted on some rows
    for i in (0, 13, 47):
        alone = sampler(z[i : i + 1], rng=8, step=4, rows=[rows[i]], return_q=True)
        assert alone.tokens[0] == batch.tokens[i] and alone.logprobs[0] == batch.logprobs[i]
        assert alone.q is not None
        np.testing.assert_array_equal(alone.q[0], batch.q[i])
    perm = np.random.default_rng(2).permutation(48)
    shuffled = sampler(z[perm], rng=8, step=4, rows=rows[perm])
    np.testing.assert_array_equal(shuffled.tokens, batch.tokens[perm])


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_numpy_and_torch_agree(sampler: Sampler) -> None:
    torch = pytest.importorskip("torch")
    z = np.random.default_rng(6).standard_normal((16, 300)) * 2
    ours = sampler(z, rng=1, step=3, return_q=True)
    twin = Sampler(sampler.name, sampler.processors, draw=sampler.draw, backend="torch")
    theirs = twin(torch.from_numpy(z), rng=1, step=3, return_q=True)
    np.testing.assert_array_equal(ours.tokens, theirs.tokens)
    assert ours.q is not None and theirs.q is not None
    # torch ops on the tensor's device: the same kept set, q to the torch backend's 1e-12 (relative)
    np.testing.assert_array_equal(ours.q > 0, theirs.q.numpy() > 0)
    np.testing.assert_allclose(ours.q, theirs.q, rtol=1e-12, atol=0)


# outputs of llama.cpp itself, built from source (provenance in the file's "source")
XTC_LLAMA = json.loads((Path(__file__).parent / "llama_cpp_cases.json").read_text())["xtc"]


@pytest.mark.parametrize("case", XTC_LLAMA, ids=lambda c: f"{len(c['logits'])}tok-t{c['threshold']}")
def test_equals_llama_cpp_built_from_source(case: dict[str, Any]) -> None:
    z = np.array([case["logits"]], dtype=np.float32).astype(np.float64)  # llama.cpp read them as float32
    out = XTC(1.0, case["threshold"], case["min_keep"])(z, rng=0)
    assert np.flatnonzero(np.isfinite(out[0])).tolist() == case["kept"]
    assert sum(len(c["kept"]) < len(c["logits"]) for c in XTC_LLAMA) >= 8  # the sample includes rows XTC cut
