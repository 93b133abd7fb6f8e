"""Session 8 attack on the decoders and the exact enumerator: a model's broken rows, bad continuations, wide counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from faithful.decode import greedy_argmax, score_sequences, step_distributions, stochastic_beam_search
from faithful.decode._common import count_sequences
from faithful.errors import EmptySupportError, InvalidLogitsError
from faithful.fidelity import enumerate_sequences
from faithful.models import CallableModel, ModelError, log_normalize

GOOD = [0.0, 0.5, 1.0]


def model_breaking_at(depth: int, row: list[float]) -> CallableModel:
    """A model whose next-token scores are fine until ``depth`` tokens are generated, then ``row``."""

    def fn(prefixes: list[tuple[int, ...]]) -> np.ndarray:
        return np.array([row if len(p) >= depth else GOOD for p in prefixes])

    return CallableModel(fn, 3, eos_token_id=None)


BROKEN = {
    "nan": ([0.0, np.nan, 1.0], InvalidLogitsError),
    "+inf": ([0.0, np.inf, 1.0], InvalidLogitsError),
    "all -inf": ([-np.inf, -np.inf, -np.inf], EmptySupportError),
}

RUNS: dict[str, Callable[[CallableModel], Any]] = {
    # before: greedy took the NaN (or token 0 of a dead row) and went on
    "greedy": lambda m: greedy_argmax(m, [[]], 3),
    "greedy with distributions": lambda m: greedy_argmax(m, [[]], 3, return_distributions=True),
    # before: "cannot reshape array of size 0"
    "stochastic beam": lambda m: stochastic_beam_search(m, [[]], 3, k=2, rng=0),
    # before: a NaN score
    "score": lambda m: score_sequences(m, [[]], [[[2, 2, 2]]]),
    "step distributions": lambda m: step_distributions(m, [[]], [[[2, 2, 2]]], [[3]]),
    # before: an empty distribution with covered_mass 0.0, silently
    "enumerate": lambda m: enumerate_sequences(m, max_length=3),
}


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("depth", [0, 2])
@pytest.mark.parametrize("run", list(RUNS))
def test_a_broken_model_row_is_a_clear_error_in_every_decoder(kind: str, depth: int, run: str) -> None:
    row, error = BROKEN[kind]
    with pytest.raises(error, match=r"NaN or \+inf|no token left"):
        RUNS[run](model_breaking_at(depth, row))
    RUNS[run](model_breaking_at(99, row))  # the same code on a sound model runs


def test_a_row_past_its_end_is_not_checked() -> None:
    # a scored continuation shorter than the others: its row after the end may be anything
    def fn(prefixes: list[tuple[int, ...]]) -> np.ndarray:
        return np.array([[np.nan] * 3 if p[:1] == (0,) and len(p) > 1 else GOOD for p in prefixes])

    m = CallableModel(fn, 3)
    lp = score_sequences(m, [[]], [[[0, 1], [2, 2, 2]]])
    expected = log_normalize(np.array(GOOD))
    np.testing.assert_allclose(lp[0], [expected[0] + expected[1], 3 * expected[2]], rtol=1e-14)


def test_score_refuses_tokens_outside_the_vocabulary() -> None:
    m = model_breaking_at(99, GOOD)
    with pytest.raises(ModelError, match=r"outside the model's vocabulary 0\.\.2"):
        score_sequences(m, [[]], [[[1, 7]]])  # before: IndexError
    with pytest.raises(ModelError, match="outside"):
        score_sequences(m, [[]], [[[-1]]])  # before: scored token 2 (numpy's negative index)


def test_log_normalize_keeps_an_all_minus_inf_row_minus_inf() -> None:
    # its docstring says so; before, -inf - -inf gave NaN
    out = log_normalize(np.array([[-np.inf, -np.inf], [0.0, -np.inf]]))
    assert out.tolist() == [[-np.inf, -np.inf], [0.0, -np.inf]]


@pytest.mark.parametrize("eos", [None, 0])
def test_a_capped_count_decides_a_width_as_the_exact_count(eos: int | None) -> None:
    # before: the exact count for a GPT-2 vocabulary and 16k tokens took 24 s before a beam of 4 started
    for v in range(1, 6):
        for t in range(1, 10):
            exact = count_sequences(v, eos, t)
            for width in range(1, 200):
                capped = count_sequences(v, eos, t, cap=width)
                assert (width > exact) == (width > capped)
                if width > exact:
                    assert capped == exact  # the error message names the exact count
    assert count_sequences(50257, 50256, 10**6, cap=4) > 4
