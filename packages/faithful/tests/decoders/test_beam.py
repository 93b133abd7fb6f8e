"""Beam search and diverse beam search on enumerable models (the Hugging Face oracle is in test_hf.py)."""

from __future__ import annotations

import numpy as np
import pytest
from faithful.decode import (
    BeamWidthError,
    DecodeError,
    InvalidLengthError,
    beam_search,
    diverse_beam_search,
    greedy_argmax,
    score_sequences,
)

from .conftest import exact_distribution, random_table_model


def test_full_width_beam_enumerates_the_distribution_in_order() -> None:
    m = random_table_model(vocab_size=3, eos=0, seed=4)
    exact = exact_distribution(m, [2], 3)
    r = beam_search(m, [[2]], 3, num_beams=len(exact), length_penalty=0.0, early_stopping="never")
    got = {tuple(s): float(lp) for s, lp in zip(r.sequences()[0], r.logprobs[0], strict=True)}
    assert set(got) == set(exact)
    for s, lp in got.items():
        assert lp == pytest.approx(np.log(exact[s]), abs=1e-12)
    assert np.all(np.diff(r.scores[0]) <= 0)
    np.testing.assert_allclose(r.scores, r.logprobs)


def test_beam_one_without_length_penalty_is_greedy() -> None:
    for seed in range(5):
        m = random_table_model(vocab_size=4, eos=0, seed=seed)
        g = greedy_argmax(m, [[1], [3]], 6)
        b = beam_search(m, [[1], [3]], 6, num_beams=1, length_penalty=0.0)
        assert b.sequences() == g.sequences()


def test_beam_finds_the_mode_greedy_misses() -> None:
    # first token: 1 (0.6) or 2 (0.4); after 1 the model is uncertain, after 2 it is sure
    def fn(prefixes: list[tuple[int, ...]]) -> np.ndarray:
        rows = []
        for p in prefixes:
            if len(p) == 0:
                rows.append([0.0, 0.6, 0.4])
            elif p[-1] == 1 and len(p) == 1:
                rows.append([0.34, 0.33, 0.33])
            elif p[-1] == 2 and len(p) == 1:
                rows.append([0.9, 0.05, 0.05])
            else:
                rows.append([1.0, 1e-9, 1e-9])
        return np.log(np.array(rows) + 1e-300)

    from faithful.models import CallableModel

    m = CallableModel(fn, vocab_size=3, eos_token_id=0)
    assert greedy_argmax(m, [[]], 3).best() == [[1, 0]]
    assert beam_search(m, [[]], 3, num_beams=2, length_penalty=0.0).best() == [[2, 0]]


def test_nbest_scores_are_length_normalised_logprobs() -> None:
    m = random_table_model(vocab_size=5, eos=0, seed=9)
    r = beam_search(m, [[1], [2]], 5, num_beams=3, length_penalty=1.3)
    np.testing.assert_allclose(r.scores, r.logprobs / r.lengths**1.3)
    np.testing.assert_allclose(r.logprobs, score_sequences(m, [[1], [2]], r.sequences()))
    assert np.all(np.diff(r.scores, axis=1) <= 0)
    for row in r.sequences():
        assert len({tuple(s) for s in row}) == len(row)


def test_early_stopping_true_stops_no_later_than_never() -> None:
    m = random_table_model(vocab_size=4, eos=0, seed=2, sharp=0.3)
    never = beam_search(m, [[1]], 6, num_beams=3, early_stopping="never", length_penalty=0.0)
    eager = beam_search(m, [[1]], 6, num_beams=3, early_stopping=True, length_penalty=0.0)
    # with length_penalty=0, "never" is exact beam search: its best is at least as good
    assert never.scores[0, 0] >= eager.scores[0, 0] - 1e-12


def test_num_return_sequences_and_distributions() -> None:
    m = random_table_model(vocab_size=4, eos=0, seed=1)
    r = beam_search(m, [[1]], 4, num_beams=4, num_return_sequences=2, return_distributions=True)
    assert r.tokens.shape[:2] == (1, 2)
    assert r.distributions is not None and r.distributions.shape[:3] == r.tokens.shape
    with pytest.raises(DecodeError, match="num_return_sequences"):
        beam_search(m, [[1]], 4, num_beams=2, num_return_sequences=3)


def test_beam_errors() -> None:
    m = random_table_model(vocab_size=3, eos=0)
    # continuations of at most 2 tokens: EOS, x EOS (2), x y (4) -> 7
    assert beam_search(m, [[]], 2, num_beams=7).tokens.shape[1] == 7
    with pytest.raises(BeamWidthError, match="distinct sequences"):
        beam_search(m, [[]], 2, num_beams=8)
    with pytest.raises(BeamWidthError):
        beam_search(m, [[]], 2, num_beams=0)
    with pytest.raises(InvalidLengthError):
        beam_search(m, [[]], 0)
    with pytest.raises(DecodeError, match="early_stopping"):
        beam_search(m, [[]], 2, num_beams=2, early_stopping="sometimes")  # type: ignore[arg-type]


def test_diverse_beam_groups_differ_and_one_group_is_beam_search() -> None:
    m = random_table_model(vocab_size=6, eos=0, seed=3, sharp=2.0)
    plain = beam_search(m, [[1]], 5, num_beams=4)
    one = diverse_beam_search(m, [[1]], 5, num_beams=4, num_groups=1)
    assert one.sequences() == plain.sequences()
    div = diverse_beam_search(m, [[1]], 5, num_beams=4, num_groups=4, diversity_penalty=100.0)
    firsts = [s[0] for s in div.sequences()[0]]
    assert len(set(firsts)) == 4  # a huge Hamming penalty forces different first tokens
    np.testing.assert_allclose(div.logprobs, score_sequences(m, [[1]], div.sequences()))
    with pytest.raises(DecodeError, match="multiple"):
        diverse_beam_search(m, [[1]], 5, num_beams=4, num_groups=3)


def test_large_row_top_k_matches_the_stable_numpy_order() -> None:
    pytest.importorskip("torch")
    from faithful.decode import beam as beam_mod

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(4, 70_000)), 1)  # many exact ties
    x[1, :10] = -np.inf
    x[3] = rng.normal(size=70_000)  # no ties: the fast branch
    got = beam_mod._top_sorted_threshold(x, 16)
    expected = np.argsort(-x, axis=1, kind="stable")[:, :16]
    np.testing.assert_array_equal(got, expected)


def test_diverse_beam_distributions_follow_the_hypotheses() -> None:
    from faithful.decode import step_distributions

    m = random_table_model(vocab_size=5, eos=0, seed=7)
    r = diverse_beam_search(m, [[2]], 4, num_beams=4, num_groups=2, return_distributions=True)
    assert r.distributions is not None
    np.testing.assert_allclose(r.distributions, step_distributions(m, [[2]], r.tokens, r.lengths))
