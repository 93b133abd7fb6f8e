"""The argmax baseline and ancestral sampling, against exact sequence distributions."""

from __future__ import annotations

import numpy as np
import pytest
from faithful.decode import (
    BeamWidthError,
    InvalidLengthError,
    ancestral_sample,
    greedy_argmax,
    score_sequences,
)
from faithful.models import CallableModel, NGramModel
from scipy.stats import chisquare

from .conftest import InverseCDFTestSampler, exact_distribution, random_table_model


def test_greedy_takes_the_argmax_at_every_step() -> None:
    m = random_table_model(vocab_size=5, eos=0, seed=3)
    r = greedy_argmax(m, [[1], [2, 3]], 6, return_distributions=True)
    for b, prompt in enumerate([[1], [2, 3]]):
        state, seq = m.start([prompt]), []
        for _ in range(6):
            lp = m.next_logprobs(state)[0]
            seq.append(int(lp.argmax()))
            if seq[-1] == 0:
                break
            state = m.advance(state, np.array([seq[-1]]))
        assert r.sequences()[b][0] == seq
        assert r.finished[b, 0] == (seq[-1] == 0)
    assert r.distributions is not None and r.distributions.shape[:3] == r.tokens.shape
    np.testing.assert_allclose(r.logprobs, score_sequences(m, [[1], [2, 3]], r.sequences()))
    assert r.proposal_logprobs is None


def test_ancestral_matches_the_exact_sequence_distribution() -> None:
    m = random_table_model(vocab_size=3, eos=0, seed=1)
    exact = exact_distribution(m, [], 3)
    assert abs(sum(exact.values()) - 1) < 1e-12
    n = 20_000
    r = ancestral_sample(m, [[]], 3, sampler=InverseCDFTestSampler(), num_samples=n, rng=1234)
    seqs = [tuple(s) for s in r.sequences()[0]]
    keys = sorted(exact)
    counts = np.array([sum(1 for s in seqs if s == k) for k in keys])
    assert counts.sum() == n  # every sample is a valid continuation
    expected = np.array([exact[k] for k in keys]) * n
    assert chisquare(counts, expected).pvalue > 1e-3
    # log-probabilities are exact
    lp = {tuple(s): float(v) for s, v in zip(r.sequences()[0][:50], r.logprobs[0][:50], strict=True)}
    for s, v in lp.items():
        assert v == pytest.approx(np.log(exact[s]), abs=1e-12)


def test_default_sampler_is_exact_sampling() -> None:
    m = random_table_model(vocab_size=3, eos=0, seed=2)
    exact = exact_distribution(m, [1], 2)
    n = 8000
    r = ancestral_sample(m, [[1]], 2, num_samples=n, rng=7)
    keys = sorted(exact)
    seqs = [tuple(s) for s in r.sequences()[0]]
    counts = np.array([seqs.count(k) for k in keys])
    assert chisquare(counts, np.array([exact[k] for k in keys]) * n).pvalue > 1e-3


def test_tempered_sampler_reports_both_logprobs_and_q() -> None:
    m = random_table_model(vocab_size=4, eos=0, seed=5)
    sampler = InverseCDFTestSampler(temperature=2.0)
    r = ancestral_sample(m, [[1, 2]], 4, sampler=sampler, num_samples=5, rng=0, return_distributions=True)
    np.testing.assert_allclose(r.logprobs, score_sequences(m, [[1, 2]], r.sequences()))
    tempered = CallableModel(lambda p: m.fn(p) / 2.0, vocab_size=4, eos_token_id=0)
    np.testing.assert_allclose(r.proposal_logprobs, score_sequences(tempered, [[1, 2]], r.sequences()))
    assert r.distributions is not None
    for k in range(5):
        for t in range(r.lengths[0, k]):
            np.testing.assert_allclose(r.distributions[0, k, t].sum(), 1.0)
        assert np.all(r.distributions[0, k, r.lengths[0, k] :] == 0)


def test_sampling_is_reproducible_and_keyed_by_row() -> None:
    m = NGramModel.from_text("abc\nabd\nbca\ncab\n", n=2)
    a = ancestral_sample(m, [[], []], 8, num_samples=3, rng=11)
    b = ancestral_sample(m, [[], []], 8, num_samples=3, rng=11)
    c = ancestral_sample(m, [[], []], 8, num_samples=3, rng=12)
    assert a.sequences() == b.sequences()
    assert a.sequences() != c.sequences()
    # row b*K+k is keyed the same whatever else is in the batch
    single = ancestral_sample(m, [[]], 8, num_samples=6, rng=11)
    assert [s for row in a.sequences() for s in row] == single.sequences()[0]


def test_eos_ends_rows_and_padding_follows() -> None:
    m = NGramModel.from_text("ab\n", n=3)
    r = ancestral_sample(m, [[]], 10, num_samples=20, rng=0)
    for k in range(20):
        L = r.lengths[0, k]
        if r.finished[0, k]:
            assert r.tokens[0, k, L - 1] == m.vocab.eos_id
        assert np.all(r.tokens[0, k, L:] == -1)
        assert np.all(r.token_logprobs[0, k, L:] == 0)


def test_bad_lengths_and_widths() -> None:
    m = random_table_model()
    with pytest.raises(InvalidLengthError, match="max_new_tokens"):
        greedy_argmax(m, [[]], 0)
    with pytest.raises(InvalidLengthError):
        ancestral_sample(m, [[]], -1)
    with pytest.raises(BeamWidthError, match="num_samples"):
        ancestral_sample(m, [[]], 3, num_samples=0)


@pytest.mark.parametrize("kwargs", [{"top_k": 2}, {"temperature": 0.7, "top_p": 0.8}])
def test_real_sampler_matches_its_exact_truncated_distribution(kwargs: dict) -> None:
    from faithful.samplers import make_sampler

    m = random_table_model(vocab_size=4, eos=0, seed=12)
    sampler = make_sampler(**kwargs)

    def q_fn(prefixes: list[tuple[int, ...]]) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(sampler.distribution(m.next_logprobs(m.start([list(p) for p in prefixes]))))

    proposal = CallableModel(q_fn, vocab_size=4, eos_token_id=0)
    exact = exact_distribution(proposal, [1], 3)
    n = 10_000
    r = ancestral_sample(m, [[1]], 3, sampler=sampler, num_samples=n, rng=99)
    seqs = [tuple(s) for s in r.sequences()[0]]
    assert set(seqs) <= set(exact)  # never outside the kept support
    keys = sorted(exact)
    counts = np.array([seqs.count(k) for k in keys])
    assert chisquare(counts, np.array([exact[k] for k in keys]) * n).pvalue > 1e-3
    np.testing.assert_allclose(r.logprobs, score_sequences(m, [[1]], r.sequences()))


def test_ancestral_on_an_hmm_with_eos_matches_enumeration() -> None:
    from faithful.models import HMMModel

    rng = np.random.default_rng(4)
    pi = rng.dirichlet(np.ones(3))
    a = rng.dirichlet(np.ones(3), size=3)
    b = rng.dirichlet(np.ones(3), size=3)
    m = HMMModel(pi, a, b, eos_token_id=0)
    exact = exact_distribution(m, [], 3)
    assert abs(sum(exact.values()) - 1) < 1e-12
    n = 10_000
    r = ancestral_sample(m, [[]], 3, num_samples=n, rng=3)
    seqs = [tuple(s) for s in r.sequences()[0]]
    keys = sorted(exact)
    counts = np.array([seqs.count(k) for k in keys])
    assert chisquare(counts, np.array([exact[k] for k in keys]) * n).pvalue > 1e-3
