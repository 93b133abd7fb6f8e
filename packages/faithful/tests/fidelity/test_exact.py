"""Exact enumeration of sequence distributions, against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from faithful.errors import FaithfulError
from faithful.fidelity import NotEnumerableError, enumerate_sequences, normalize_output
from faithful.models import CallableModel, HMMModel, NGramModel


def brute_force(model: CallableModel | NGramModel, max_length: int) -> dict[tuple[int, ...], float]:
    """Every output by explicit products of next-token probabilities, one prefix at a time."""
    eos = model.eos_token_id
    out: dict[tuple[int, ...], float] = {}
    for length in range(1, max_length + 1):
        for seq in itertools.product(range(model.vocab_size), repeat=length):
            if eos is not None and eos in seq[:-1]:
                continue
            if length < max_length and (eos is None or seq[-1] != eos):
                continue
            logp = 0.0
            state = model.start([[]])
            for t in seq:
                logp += float(model.next_logprobs(state)[0, t])
                state = model.advance(state, np.array([t]))
            if logp > -math.inf:
                out[seq] = math.exp(logp)
    return out


def test_coin_sequences_are_products(coin: CallableModel) -> None:
    d = enumerate_sequences(coin, max_length=3, threshold=0.0)
    assert len(d.probs) == 8 and d.covered_mass == pytest.approx(1.0)
    assert d.probs[(0, 1, 0)] == pytest.approx(0.55 * 0.45 * 0.55)
    assert d.keys[0] == (0, 0, 0)
    assert d.length_distribution() == {3: pytest.approx(1.0)}
    assert d.truncated_mass() == pytest.approx(1.0)


def test_matches_brute_force_with_eos(stopping: CallableModel, ngram: NGramModel) -> None:
    for model, bound in ((stopping, 5), (ngram, 4)):
        d = enumerate_sequences(model, max_length=bound, threshold=0.0)
        ref = brute_force(model, bound)
        ref = {k: v for k, v in ref.items() if v > 0}
        assert set(d.probs) == set(ref)
        for k, v in ref.items():
            assert d.probs[k] == pytest.approx(v, rel=1e-9)
        assert d.covered_mass == pytest.approx(1.0)


def test_pruning_reports_the_mass_it_dropped(ngram: NGramModel) -> None:
    full = enumerate_sequences(ngram, max_length=6, threshold=0.0)
    pruned = enumerate_sequences(ngram, max_length=6, threshold=1e-3)
    assert len(pruned.probs) < len(full.probs)
    assert pruned.covered_mass == pytest.approx(sum(pruned.probs.values()))
    assert 0.5 < pruned.covered_mass < 1.0
    assert pruned.pruned_mass == pytest.approx(1.0 - pruned.covered_mass)
    for k, v in pruned.probs.items():
        assert v == pytest.approx(full.probs[k])


def test_length_distribution_and_ngrams(stopping: CallableModel) -> None:
    d = enumerate_sequences(stopping, max_length=4, threshold=0.0)
    lengths = d.length_distribution()
    # P(content length 0) = P(EOS first) = 0.2 ; P(1) = 0.8 * 0.35
    assert lengths[0] == pytest.approx(0.2)
    assert lengths[1] == pytest.approx(0.8 * 0.35)
    assert sum(lengths.values()) == pytest.approx(1.0)
    assert d.mean_length() == pytest.approx(sum(k * v for k, v in lengths.items()))
    assert sum(d.ngram_frequencies(1).values()) == pytest.approx(1.0)
    assert all(0 not in g for g in d.ngram_frequencies(2))


def test_hmm_enumerates(ngram: NGramModel) -> None:
    hmm = HMMModel([0.6, 0.4], [[0.7, 0.3], [0.2, 0.8]], [[0.1, 0.6, 0.3], [0.3, 0.2, 0.5]], eos_token_id=0)
    d = enumerate_sequences(hmm, max_length=6, threshold=0.0)
    assert d.covered_mass == pytest.approx(1.0)
    assert d.probs[(0,)] == pytest.approx(0.6 * 0.1 + 0.4 * 0.3)


def test_prompt_conditions_the_outputs(ngram: NGramModel) -> None:
    a = ngram.vocab.index["a"]
    d = enumerate_sequences(ngram, max_length=3, prompt=[a], threshold=0.0)
    assert d.prompt == (a,)
    p_first = np.exp(ngram.next_logprobs(ngram.start([[a]])))[0]
    firsts: dict[int, float] = {}
    for k, v in d.probs.items():
        firsts[k[0]] = firsts.get(k[0], 0.0) + v
    for t, v in firsts.items():
        assert v == pytest.approx(p_first[t])


def test_too_large_raises_with_advice(ngram: NGramModel) -> None:
    with pytest.raises(NotEnumerableError, match="surprisal check"):
        enumerate_sequences(ngram, max_length=12, threshold=0.0, max_prefixes=1000)
    with pytest.raises(FaithfulError, match="max_length"):
        enumerate_sequences(ngram, max_length=0)
    with pytest.raises(FaithfulError, match="threshold"):
        enumerate_sequences(ngram, max_length=3, threshold=1.5)


def test_normalize_output() -> None:
    assert normalize_output([4, 0, 3], 0) == (4, 0)
    assert normalize_output(np.array([4, 5]), 0) == (4, 5)
    assert normalize_output([4, 0], None) == (4, 0)
