"""The sampling decoders hand token samplers the model's raw logits, as the documentation promises.

Penalties are defined on raw logits: Hugging Face's repetition penalty divides positive logits and
multiplies negative ones, so on log-softmax values (all negative) it acts differently (up to TV 0.17
per step on a small GPT-2 before this was fixed). The oracle is Hugging Face's own processor, and the
OpenAI formula for presence/frequency, applied to the model's logits for the same prefix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from faithful.decode import ancestral_sample, mbr_decode, score_sequences, stochastic_beam_search
from faithful.models.base import log_normalize, model_logits
from faithful.samplers import make_sampler

from .conftest import random_table_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from faithful.models.hf import HFCausalLM  # noqa: E402

V = 48
PROMPTS = [[1, 2, 3, 4, 1], [9], [7, 8, 7]]
PENALTIES: list[dict[str, float]] = [
    {"repetition_penalty": 1.6},
    {"presence_penalty": 0.8, "frequency_penalty": 0.5},
    {"repetition_penalty": 1.3, "presence_penalty": 0.4, "frequency_penalty": 0.3},
]


@pytest.fixture(scope="module")
def lm() -> HFCausalLM:
    torch.manual_seed(1)
    cfg = transformers.GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        vocab_size=V,
        n_positions=64,
        initializer_range=0.3,
        bos_token_id=5,
        eos_token_id=5,
        pad_token_id=5,
    )
    # float64 weights: cached and uncached forwards then agree to ~1e-15, so the oracle's logits for a
    # prefix are the decoder's, and the comparison measures the processors alone
    return HFCausalLM(transformers.GPT2LMHeadModel(cfg).double().eval(), eos_token_id=-1)


def hf_q(raw: Any, prefix: list[int], penalties: dict[str, float]) -> np.ndarray:
    """HF's RepetitionPenaltyLogitsProcessor (then presence/frequency, OpenAI's formula) on raw logits, softmaxed."""
    scores = torch.as_tensor(np.asarray(raw, dtype=np.float64)).reshape(1, -1)
    ids = torch.tensor([prefix], dtype=torch.long)
    if "repetition_penalty" in penalties:
        scores = transformers.RepetitionPenaltyLogitsProcessor(penalties["repetition_penalty"])(ids, scores)
    counts = torch.bincount(ids[0], minlength=scores.shape[1]).to(torch.float64)
    scores = (
        scores
        - penalties.get("presence_penalty", 0.0) * (counts > 0)
        - penalties.get("frequency_penalty", 0.0) * counts
    )
    q: np.ndarray = torch.softmax(scores, dim=-1)[0].numpy()
    return q


def raw_logits_after(model: Any, prefix: list[int]) -> np.ndarray:
    raw = model_logits(model, model.start([prefix]))
    if hasattr(raw, "detach"):
        raw = raw.detach().numpy()
    return np.asarray(raw, dtype=np.float64)[0]


def check_every_step(model: Any, result: Any, prompts: list[list[int]], penalties: dict[str, float]) -> float:
    """Per-step q of every sequence equals the oracle's for its prefix; returns the largest gap."""
    assert result.distributions is not None
    worst = 0.0
    for b, prompt in enumerate(prompts):
        for k in range(result.tokens.shape[1]):
            seq = result.tokens[b, k, : result.lengths[b, k]].tolist()
            for t in range(len(seq)):
                prefix = list(prompt) + seq[:t]
                want = hf_q(raw_logits_after(model, prefix), prefix, penalties)
                got = result.distributions[b, k, t]
                gap = float(np.abs(got - want).max())
                worst = max(worst, gap)
                assert gap < 1e-6, (b, k, t, gap)
    return worst


@pytest.mark.parametrize("penalties", PENALTIES)
def test_ancestral_and_mbr_q_equal_hf_processors_on_raw_logits(
    lm: HFCausalLM, penalties: dict[str, float]
) -> None:
    sampler = make_sampler(**penalties)
    a = ancestral_sample(lm, PROMPTS, 6, sampler=sampler, num_samples=3, rng=4, return_distributions=True)
    check_every_step(lm, a, PROMPTS, penalties)
    # the model's log-probabilities are the model's, not the penalised sampler's
    np.testing.assert_allclose(a.logprobs, score_sequences(lm, PROMPTS, a.sequences()), rtol=0, atol=1e-5)
    m = mbr_decode(lm, PROMPTS, 5, num_samples=4, sampler=sampler, rng=2, return_distributions=True)
    check_every_step(lm, m, PROMPTS, penalties)


@pytest.mark.parametrize("penalties", PENALTIES)
def test_stochastic_beam_q_equals_hf_processors_on_raw_logits(
    lm: HFCausalLM, penalties: dict[str, float]
) -> None:
    sampler = make_sampler(**penalties)
    s = stochastic_beam_search(lm, PROMPTS, 5, k=3, sampler=sampler, rng=1, return_distributions=True)
    check_every_step(lm, s, PROMPTS, penalties)
    # phi (log q of each sequence) is the sum of the per-step log q of its tokens
    assert s.proposal_logprobs is not None and s.distributions is not None
    for b in range(len(PROMPTS)):
        for k in range(3):
            n = int(s.lengths[b, k])
            steps = s.distributions[b, k, np.arange(n), s.tokens[b, k, :n]]
            assert abs(float(np.log(steps).sum()) - float(s.proposal_logprobs[b, k])) < 1e-9


def test_callable_model_hands_its_raw_scores_to_the_sampler() -> None:
    """Any model with ``next_logits``: the sampler sees those, with positive and negative values."""
    model = random_table_model(vocab_size=6, eos=None, seed=3, sharp=2.0)
    penalties = {"repetition_penalty": 2.0}
    sampler = make_sampler(**penalties)
    prompts = [[1, 2, 1], [4]]
    a = ancestral_sample(model, prompts, 4, sampler=sampler, num_samples=2, rng=0, return_distributions=True)
    check_every_step(model, a, prompts, penalties)
    s = stochastic_beam_search(model, prompts, 3, k=4, sampler=sampler, rng=0, return_distributions=True)
    check_every_step(model, s, prompts, penalties)


def test_plain_sampler_scores_tokens_by_the_model_in_float64(lm: HFCausalLM) -> None:
    """With the plain sampler the decoder reuses the sampler's float64 normaliser for the model's log-probs."""
    a = ancestral_sample(lm, PROMPTS, 6, num_samples=2, rng=9, return_distributions=True)
    assert a.proposal_logprobs is not None and a.distributions is not None
    np.testing.assert_allclose(a.proposal_logprobs, a.logprobs, rtol=0, atol=1e-12)
    for b, prompt in enumerate(PROMPTS):
        for k in range(2):
            seq = a.tokens[b, k].tolist()
            for t, tok in enumerate(seq):
                want = log_normalize(raw_logits_after(lm, prompt + seq[:t]))
                assert abs(a.token_logprobs[b, k, t] - want[tok]) < 1e-5  # cached vs uncached float32 forward
                np.testing.assert_allclose(a.distributions[b, k, t], np.exp(want), rtol=0, atol=1e-6)


def test_log_softmax_at_sums_in_float64_blockwise() -> None:
    from faithful.decode._common import log_softmax_at

    x = np.random.default_rng(0).normal(size=(40, 3000)).astype(np.float32) * 30  # more rows than one block
    tokens = np.arange(40) * 7
    want = log_normalize(x.astype(np.float64))[np.arange(40), tokens]
    np.testing.assert_allclose(log_softmax_at(x, tokens), want, rtol=0, atol=1e-12)
    dead = np.array([[-np.inf, -np.inf], [0.0, np.log(3.0)]])
    with np.errstate(all="raise"):
        got = log_softmax_at(dead, np.array([0, 1]))
    assert got[0] == -np.inf and abs(got[1] - np.log(0.75)) < 1e-15
