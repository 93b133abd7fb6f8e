"""Speculative decoding with a Hugging Face target (a tiny random GPT-2) and an n-gram draft over its ids."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from faithful.decode import ancestral_sample, greedy_argmax
from faithful.decode.speculative import EXACT_RULE, AcceptRule, speculative_sample
from faithful.fidelity import compare_exact, compare_to_reference, enumerate_sequences
from faithful.models import NGramModel
from faithful.models.ngram import Vocab

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from faithful.models.hf import HFCausalLM  # noqa: E402


def _gpt2(vocab_size: int, seed: int) -> HFCausalLM:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=vocab_size, n_positions=32, initializer_range=0.5,
        bos_token_id=2, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    return HFCausalLM(transformers.GPT2LMHeadModel(cfg).eval(), bos_token_id=2)


def _distilled_draft(target: HFCausalLM, n: int, samples: int, length: int) -> NGramModel:
    """A bigram over the target's ids (0 = EOS, 1 = unk, 2 = bos as in the target), trained on its samples."""
    vocab = Vocab([str(i) for i in range(3, target.vocab_size)], level="word")
    assert vocab.vocab_size == target.vocab_size
    seqs = ancestral_sample(target, [[]], length, num_samples=samples, rng=99).sequences()[0]
    return NGramModel(vocab, n, [[t for t in s if t != 0] for s in seqs])


@pytest.fixture(scope="module")
def small() -> tuple[HFCausalLM, NGramModel]:
    target = _gpt2(6, 0)
    return target, _distilled_draft(target, 2, 400, 4)


def test_exact_against_the_enumerated_gpt2(small: tuple[HFCausalLM, NGramModel]) -> None:
    target, draft = small
    dist = enumerate_sequences(target, 3, threshold=0.0)
    r = speculative_sample(target, draft, [[]], 3, gamma=2, num_samples=6000, rng=1)
    fid = compare_exact([tuple(s) for s in r.result.sequences()[0]], dist, model=target)
    assert fid.consistent, fid.sequence
    assert 0.0 < r.acceptance_rate < 1.0 and r.target_calls_saved > 0.0


def test_greedy_verification_on_gpt2(small: tuple[HFCausalLM, NGramModel]) -> None:
    target, draft = small
    prompts = [[3], [4, 5], [5, 3, 4]]
    r = speculative_sample(target, draft, prompts, 10, gamma=3, mode="greedy")
    assert r.result.sequences() == greedy_argmax(target, prompts, 10).sequences()


@pytest.fixture(scope="module")
def larger() -> tuple[HFCausalLM, NGramModel, list[tuple[int, ...]]]:
    target = _gpt2(40, 1)
    draft = _distilled_draft(target, 2, 300, 8)
    reference = [tuple(s) for s in ancestral_sample(target, [[]], 8, num_samples=1200, rng=7).sequences()[0]]
    return target, draft, reference


def _surprisal(larger: Any, rule: AcceptRule) -> Any:
    target, draft, reference = larger
    r = speculative_sample(target, draft, [[]], 8, gamma=3, num_samples=1200, rng=2, rule=rule)
    outs = [tuple(s) for s in r.result.sequences()[0]]
    return r, compare_to_reference(outs, reference, model=target, max_length=8)


def test_surprisal_mode_on_a_gpt2_too_large_to_enumerate(larger: Any) -> None:
    r, fid = _surprisal(larger, EXACT_RULE)
    assert fid.consistent, fid.surprisal
    assert 0.0 < r.acceptance_rate < 1.0


def test_surprisal_mode_catches_a_wrong_rule(larger: Any) -> None:
    _, fid = _surprisal(
        larger, AcceptRule("no-coin", lambda u, qd, qt: np.asarray(qt >= qd), EXACT_RULE.residual)
    )
    assert not fid.consistent
    assert fid.surprisal is not None and fid.surprisal.p_value < 1e-6
