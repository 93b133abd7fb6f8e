"""Session 8 attack on faithful.chains: HMM parameters that are no HMM, non-integer lengths and symbols, B = 0."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from faithful.chains import (
    ChainError,
    LinearChain,
    forward_scores,
    hmm_chain,
    kbest_paths,
    log_partition,
    path_score,
    posterior_marginals,
    sample_paths,
    viterbi,
)

PI = [0.5, 0.5]
A = [[0.9, 0.1], [0.2, 0.8]]
B = [[0.3, 0.7], [0.9, 0.1]]


@pytest.mark.parametrize(
    ("pi", "a", "b", "what"),
    [
        ([0.5, 0.6], A, B, "startprob"),  # before: accepted, log_partition was not log P(x)
        ([1.5, -0.5], A, B, "startprob"),  # before: "initial must be finite ... found NaN"
        (PI, [[0.9, 0.2], [0.2, 0.8]], B, "transmat"),
        (PI, A, [[0.3, 0.7], [0.9, 0.2]], "emissionprob"),
        (PI, A, [[0.3, np.nan], [0.9, 0.1]], "emissionprob"),
        ([1.0], A, B, "startprob \\(S,\\)"),
        (PI, A, [[1.0], [1.0], [1.0]], "emissionprob \\(S, V\\)"),
    ],
)
def test_hmm_chain_refuses_parameters_that_are_no_hmm(pi: Any, a: Any, b: Any, what: str) -> None:
    with pytest.raises(ChainError, match=what):
        hmm_chain(pi, a, b, [[0, 1]])


def test_hmm_chain_refuses_non_integer_symbols_and_takes_whole_floats() -> None:
    with pytest.raises(ChainError, match="int ids"):
        hmm_chain(PI, A, B, [[0.5, 1]])  # before: read as symbol 0
    with pytest.raises(ChainError, match="int ids"):
        hmm_chain(PI, A, B, np.array([1.0, np.inf]))
    whole = hmm_chain(PI, A, B, np.array([1.0, 0.0]))
    ints = hmm_chain(PI, A, B, [[1, 0]])
    assert np.array_equal(whole.emissions, ints.emissions)


@pytest.mark.parametrize("lengths", [[2.5, 3], [np.nan, 3], ["2", 3], [3.000001, 3]])
def test_linear_chain_refuses_non_integer_lengths(lengths: list[Any]) -> None:
    with pytest.raises(ChainError, match="lengths must be"):
        LinearChain.create(np.zeros((2, 3, 2)), np.zeros((2, 2)), lengths=lengths)  # before: 2.5 -> 2
    assert LinearChain.create(np.zeros((2, 3, 2)), np.zeros((2, 2)), lengths=[2.0, 3]).lengths.tolist() == [
        2,
        3,
    ]


def test_an_empty_batch_gives_empty_results_from_every_algorithm() -> None:
    c = LinearChain.create(np.zeros((0, 3, 2)), np.zeros((2, 2)))  # before: ValueError from lens.min()
    assert viterbi(c).paths.shape == (0, 3)
    assert viterbi(c, kernels="numpy").scores.shape == (0,)
    assert log_partition(c).shape == (0,)
    assert forward_scores(c).shape == (0, 3, 2)
    assert posterior_marginals(c).shape == (0, 3, 2)
    assert sample_paths(c, 2, rng=0).paths.shape == (0, 2, 3)
    assert kbest_paths(c, 2).scores.shape == (0, 2)
    assert path_score(c, np.zeros((0, 3), dtype=np.int64)).shape == (0,)


def test_structural_zeros_match_hmmlearn() -> None:
    hmm = pytest.importorskip("hmmlearn.hmm")
    rng = np.random.default_rng(0)
    for _ in range(60):
        s, v, t = (int(x) for x in rng.integers(1, 5, 3))

        def stochastic(shape: tuple[int, ...]) -> np.ndarray:
            x = rng.random(shape)
            x[rng.random(shape) < 0.4] = 0.0
            x[..., 0] += x.sum(-1) == 0
            return x / x.sum(-1, keepdims=True)

        pi, a, b = stochastic((s,)), stochastic((s, s)), stochastic((s, v))
        obs = rng.integers(0, v, t)
        m = hmm.CategoricalHMM(s)
        m.startprob_, m.transmat_, m.emissionprob_, m.n_features = pi, a, b, v
        c = hmm_chain(pi, a, b, [obs.tolist()])
        ref = m.score(obs[:, None])
        logp, _ = m.decode(obs[:, None])
        got = log_partition(c)[0]
        best = viterbi(c).scores[0]
        if np.isfinite(ref):
            assert got == pytest.approx(ref, rel=1e-10)
            assert best == pytest.approx(logp, rel=1e-10)
            assert path_score(c, viterbi(c).paths)[0] == pytest.approx(logp, rel=1e-10)
            np.testing.assert_allclose(posterior_marginals(c)[0], m.predict_proba(obs[:, None]), atol=1e-10)
        else:
            assert got == -np.inf and best == -np.inf
