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


numba_only = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("numba") is None, reason="numba not installed"
)


def wide_model(vocab_size: int, seed: int, dtype: type = np.float64, eos: int | None = 0) -> object:
    """Random logits over a wide vocabulary, with exact ties and -inf tokens, as a function of the prefix."""
    from faithful.models import CallableModel

    def fn(prefixes: list[tuple[int, ...]]) -> np.ndarray:
        out = np.empty((len(prefixes), vocab_size), dtype=dtype)
        for i, p in enumerate(prefixes):
            rng = np.random.default_rng((seed * 1_000_003 + hash(p)) % (2**32))
            row = np.round(rng.normal(size=vocab_size) * 3, 1)  # many exact ties
            row[rng.integers(0, vocab_size, size=vocab_size // 10)] = -np.inf
            out[i] = row
        return out

    return CallableModel(fn, vocab_size=vocab_size, eos_token_id=eos)


@numba_only
@pytest.mark.parametrize("vocab", [3, 17, 3000])
@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping"), [(1, 0.0, False), (4, 1.0, "never"), (8, 1.3, True)]
)
def test_fused_beam_kernel_gives_the_reference_beams(
    vocab: int, num_beams: int, length_penalty: float, early_stopping: object
) -> None:
    for seed, dtype in ((0, np.float64), (1, np.float32)):
        m = wide_model(vocab, seed, dtype)
        args = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping)
        if vocab == 3 and num_beams == 8:
            args["num_beams"] = 3
        fast = beam_search(m, [[1], [2, 1]], 6, kernels="numba", **args)  # type: ignore[arg-type]
        ref = beam_search(m, [[1], [2, 1]], 6, kernels="numpy", **args)  # type: ignore[arg-type]
        assert fast.sequences() == ref.sequences()
        np.testing.assert_array_equal(fast.lengths, ref.lengths)
        np.testing.assert_allclose(fast.logprobs, ref.logprobs, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fast.scores, ref.scores, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fast.token_logprobs, ref.token_logprobs, rtol=1e-12, atol=1e-12)


@numba_only
def test_beam_candidates_are_each_rows_best_with_exact_log_probs() -> None:
    from faithful.errors import EmptySupportError, InvalidLogitsError
    from faithful.kernels import beam_candidates
    from faithful.models.base import log_normalize

    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(6, 5000)) * 2, 1)
    x[1, :4990] = -np.inf  # fewer finite tokens than candidates
    x[2] = 0.0  # all tied: the lowest ids win
    x[3, ::7] = x[3].max()  # ties at the top, spread out
    for dtype in (np.float64, np.float32):
        xd = x.astype(dtype)
        for c in (1, 2, 16, 40):
            tok, lp = beam_candidates(xd, c)
            ref_tok = np.lexsort(
                (np.broadcast_to(np.arange(5000), x.shape), -xd.astype(np.float64)), axis=-1
            )[:, :c]
            np.testing.assert_array_equal(tok, ref_tok)
            ref_lp = np.take_along_axis(log_normalize(xd), ref_tok, axis=1)
            np.testing.assert_array_equal(np.isfinite(lp), np.isfinite(ref_lp))
            fin = np.isfinite(ref_lp)
            np.testing.assert_allclose(lp[fin], ref_lp[fin], rtol=0, atol=1e-13)
    with pytest.raises(InvalidLogitsError, match=r"rows \[1\]"):
        beam_candidates(np.array([[0.0, 1.0], [np.nan, 0.0]]), 2)
    with pytest.raises(EmptySupportError, match=r"rows \[0\]"):
        beam_candidates(np.array([[-np.inf, -np.inf]]), 1)


def test_beam_kernels_argument_is_checked() -> None:
    m = random_table_model(vocab_size=3, eos=0)
    with pytest.raises(DecodeError, match="kernels"):
        beam_search(m, [[]], 2, num_beams=2, kernels="gpu")


def test_reference_top_k_takes_the_lowest_ids_among_boundary_ties() -> None:
    # regression: argpartition picked arbitrary members of a tie at the k-th value, so the numpy
    # reference and the fused kernel (lowest ids, as documented) chose different beams on tied logits
    from faithful.decode import beam as beam_mod

    x = np.zeros((3, 300))
    x[0, 150] = 1.0
    x[1, ::3] = -1.0
    x[2, 7] = -np.inf
    got = beam_mod._top_sorted(x, 8)
    np.testing.assert_array_equal(got, np.argsort(-x, axis=1, kind="stable")[:, :8])


@numba_only
@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping"), [(4, 1.0, False), (3, 2.0, "never")]
)
def test_fused_and_reference_beams_agree_on_a_tiny_gpt2(
    num_beams: int, length_penalty: float, early_stopping: object
) -> None:
    # the fused path is the default, so test_hf's comparison with HF generate runs it; this ties the
    # numpy reference to it on the same model (float32 logits read in place vs torch's float64 log_softmax)
    pytest.importorskip("transformers")
    from faithful.models.hf import HFCausalLM

    from .test_hf import PROMPTS, pick_eos, tiny_gpt2

    model = tiny_gpt2(3)
    eos = pick_eos(model, PROMPTS, 3)
    lm = HFCausalLM(model, eos_token_id=eos, pad_token_id=eos)
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping)
    fast = beam_search(lm, PROMPTS, 10, kernels="numba", **kw)  # type: ignore[arg-type]
    ref = beam_search(lm, PROMPTS, 10, kernels="numpy", **kw)  # type: ignore[arg-type]
    assert fast.sequences() == ref.sequences()
    np.testing.assert_allclose(fast.logprobs, ref.logprobs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast.scores, ref.scores, rtol=1e-12, atol=1e-12)


def test_without_numba_beam_search_runs_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    import faithful.kernels

    monkeypatch.setattr(faithful.kernels, "available", lambda: False)
    monkeypatch.setattr(faithful.kernels, "beam_candidates", _must_not_run)
    m = random_table_model(vocab_size=5, eos=0, seed=2)
    auto = beam_search(m, [[1]], 4, num_beams=3)
    assert auto.sequences() == beam_search(m, [[1]], 4, num_beams=3, kernels="numpy").sequences()
    with pytest.raises(DecodeError, match="needs numba"):
        beam_search(m, [[1]], 4, num_beams=3, kernels="numba")


def _must_not_run(*args: object) -> None:
    raise AssertionError("a compiled kernel ran although numba is reported missing")
