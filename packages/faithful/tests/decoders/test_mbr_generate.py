"""MBR selection and the text-level entry point used by the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from faithful.decode import (
    DecodeError,
    exact_match,
    generate_text,
    mbr_decode,
    mbr_select,
    negative_edit_distance,
    parse_decoder_spec,
    unigram_f1,
)
from faithful.models import CallableModel, EmptyPromptError, NGramModel, Vocab, VocabMismatchError

from .conftest import random_table_model

TEXT = "the cat sat on the mat\nthe dog sat on the log\nthe cat ran\n"


def test_utilities() -> None:
    assert unigram_f1([1, 2], [2, 1]) == 1.0
    assert unigram_f1([], []) == 1.0
    assert unigram_f1([1], [2]) == 0.0
    assert exact_match([1, 2], (1, 2)) == 1.0
    assert negative_edit_distance([1, 2, 3], [1, 3]) == -1.0
    assert negative_edit_distance([], [4, 5]) == -2.0


def test_mbr_select_weights() -> None:
    hyp = [[1], [2]]
    ev = [[1], [2]]
    np.testing.assert_allclose(mbr_select(hyp, ev, exact_match, weights=[3, 1]), [0.75, 0.25])
    with pytest.raises(DecodeError, match="evidence"):
        mbr_select(hyp, [], exact_match)
    with pytest.raises(DecodeError, match="weights"):
        mbr_select(hyp, ev, exact_match, weights=[1, -1])


def test_mbr_with_exact_match_picks_the_sample_mode() -> None:
    m = random_table_model(vocab_size=3, eos=0, seed=0, sharp=2.0)
    r = mbr_decode(m, [[1]], 2, num_samples=64, utility=exact_match, rng=3)
    seqs = [tuple(s) for s in r.sequences()[0]]
    mode = max(set(seqs), key=seqs.count)
    assert tuple(r.best()[0]) == mode
    assert r.scores[0, 0] == pytest.approx(seqs.count(mode) / 64)
    assert np.all(np.diff(r.scores[0]) <= 1e-12)


@pytest.mark.parametrize(
    "spec",
    [
        "greedy",
        "sample",
        "sample:3",
        "beam:3",
        "beam:2,length_penalty=0.5,early_stopping=never",
        "diverse-beam:4,groups=2,penalty=1.0",
        "stochastic-beam:3",
        "mbr:8,utility=edit",
    ],
)
def test_generate_text_with_every_decoder(spec: str) -> None:
    m = NGramModel.from_text(TEXT, n=3, level="word")
    g = generate_text(m, "the cat", decoder=spec, max_new_tokens=8, rng=0)
    assert g.texts and all(isinstance(t, str) for t in g.texts)
    assert len(g.texts) == g.result.num_candidates


def test_generate_text_greedy_char_level() -> None:
    m = NGramModel.from_text("hello world\nhello there\n", n=5)
    assert generate_text(m, "hello w", decoder="greedy", max_new_tokens=20).texts == ["hello world"[7:]]


def test_spec_errors() -> None:
    for bad in [
        "nucleus",
        "beam:x",
        "beam:2,foo",
        "beam:2,early_stopping=maybe",
        "beam:2,bar=1",
        "mbr:4,utility=bleu",
    ]:
        with pytest.raises(DecodeError):
            parse_decoder_spec(bad)


def test_tokenizer_model_mismatch_and_missing_tokenizer() -> None:
    m = NGramModel.from_text("ab\n", n=2)
    big = Vocab(list("abcdefgh"))
    with pytest.raises(VocabMismatchError, match="tokenizer has"):
        generate_text(m, "a", tokenizer=big, max_new_tokens=3)
    bare = CallableModel(lambda p: np.zeros((len(p), 3)), vocab_size=3)
    with pytest.raises(VocabMismatchError, match="no tokenizer"):
        generate_text(bare, "a", max_new_tokens=3)


def test_empty_prompt_where_one_is_needed() -> None:
    needy = CallableModel(lambda p: np.zeros((len(p), 5)), vocab_size=5, allow_empty_prompt=False)
    with pytest.raises(EmptyPromptError):
        generate_text(needy, "", tokenizer=Vocab(["a", "b"]), max_new_tokens=3)


def test_generate_text_with_a_sampler_spec_is_reproducible() -> None:
    m = NGramModel.from_text(TEXT, n=3, level="word")
    a = generate_text(m, "the", decoder="sample:4", sampler="top-p:0.9", max_new_tokens=8, rng=5)
    b = generate_text(m, "the", decoder="sample:4", sampler="top-p:0.9", max_new_tokens=8, rng=5)
    assert a.texts == b.texts and len(a.texts) == 4


def test_mbr_keeps_distributions_aligned_with_the_reordered_samples() -> None:
    from faithful.decode import score_sequences, step_distributions

    m = random_table_model(vocab_size=4, eos=0, seed=2)
    r = mbr_decode(m, [[1]], 3, num_samples=6, rng=1, return_distributions=True)
    assert r.distributions is not None
    np.testing.assert_allclose(r.distributions, step_distributions(m, [[1]], r.tokens, r.lengths))
    np.testing.assert_allclose(r.logprobs, score_sequences(m, [[1]], r.sequences()))
