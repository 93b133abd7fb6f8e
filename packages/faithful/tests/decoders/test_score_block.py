"""The optional block method of the model protocol: g tokens scored in one call, the same numbers as g steps.

And speculative decoding's verification uses it: one target call per round, no one-token steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from faithful.decode import ancestral_sample, greedy_argmax
from faithful.decode.speculative import speculative_sample
from faithful.models import CallableModel, NGramModel
from faithful.models.base import BlockScoring, ModelError, VocabMismatchError, model_logits, score_block
from faithful.models.ngram import Vocab

TEXT = "ab\nabc\nb\nba\ncab\naa\nbca\nabcab\n"


def _stepwise(model: Any, state: Any, tokens: np.ndarray) -> tuple[list[np.ndarray], list[Any]]:
    """Logits and states along ``tokens`` through advance, one token at a time (the reference)."""
    logits, states = [], []
    for i in range(tokens.shape[1]):
        state = model.advance(state, tokens[:, i])
        states.append(state)
        logits.append(np.asarray(model_logits(model, state)))
    return logits, states


class Counting:
    """A model wrapper counting calls; it offers ``score_block`` only when ``block`` is True."""

    def __init__(self, model: Any, *, block: bool) -> None:
        self.model = model
        self.vocab_size, self.eos_token_id = model.vocab_size, model.eos_token_id
        self.calls = {"advance": 0, "score_block": 0, "block_tokens": 0}
        if block:
            self.score_block = self._score_block

    def start(self, prompts: Sequence[Sequence[int]]) -> Any:
        return self.model.start(prompts)

    def next_logprobs(self, state: Any) -> Any:
        return self.model.next_logprobs(state)

    def advance(self, state: Any, tokens: np.ndarray) -> Any:
        self.calls["advance"] += 1
        return self.model.advance(state, tokens)

    def select(self, state: Any, indices: np.ndarray) -> Any:
        return self.model.select(state, indices)

    def _score_block(self, state: Any, tokens: np.ndarray) -> Any:
        self.calls["score_block"] += 1
        self.calls["block_tokens"] += tokens.shape[1]
        return self.model.score_block(state, tokens)


def test_ngram_block_is_bit_for_bit_the_stepwise_path() -> None:
    m = NGramModel.from_text(TEXT, n=3)
    assert isinstance(m, BlockScoring)
    state = m.start([[], [3], [4, 5, 3]])
    toks = np.array([[3, 4, 5, 0], [4, 4, 3, 5], [5, 3, 0, 4]])
    block = m.score_block(state, toks)
    logits, states = _stepwise(m, state, toks)
    for i in range(4):
        np.testing.assert_array_equal(block.logits_at(i), logits[i])
        assert block.state(i + 1) == states[i]
    with pytest.raises(ModelError, match=r"states 1\.\.4, got 0"):
        block.state(0)
    with pytest.raises(ModelError, match=r"must be \(3, g\) token ids with g >= 1"):
        m.score_block(state, toks[:2])
    with pytest.raises(VocabMismatchError):
        m.score_block(state, toks + 10)


def test_callable_block_calls_the_function_once() -> None:
    seen: list[int] = []

    def fn(prefixes: list[tuple[int, ...]]) -> np.ndarray:
        seen.append(len(prefixes))
        return np.array([[len(p), sum(p) % 3, -float(p[-1] if p else 0)] for p in prefixes])

    m = CallableModel(fn, vocab_size=3)
    state = m.start([[1], [2, 2]])
    toks = np.array([[0, 1, 2], [2, 1, 0]])
    seen.clear()
    block = score_block(m, state, toks)
    assert seen == [6]  # B * g prefixes in one call
    logits, states = _stepwise(m, state, toks)
    for i in range(3):
        np.testing.assert_array_equal(block.logits_at(i), logits[i])
        assert block.state(i + 1) == states[i]
    bad = CallableModel(lambda p: np.zeros((1, 3)), vocab_size=3)
    with pytest.raises(ModelError, match="for 2 prefixes, expected"):
        bad.score_block(bad.start([[0]]), np.array([[1, 2]]))


def test_a_model_without_the_method_is_stepped() -> None:
    m = NGramModel.from_text(TEXT, n=3)
    plain = Counting(m, block=False)
    assert not isinstance(plain, BlockScoring)
    state = plain.start([[3], [4]])
    toks = np.array([[4, 5], [3, 3]])
    block = score_block(plain, state, toks)
    assert plain.calls["advance"] == 2
    own = m.score_block(m.start([[3], [4]]), toks)
    for i in range(2):
        np.testing.assert_array_equal(block.logits_at(i), own.logits_at(i))
    assert block.state(2) == own.state(2)


def test_speculative_verification_is_one_block_call_per_round() -> None:
    draft, target = NGramModel.from_text(TEXT, n=2), NGramModel.from_text(TEXT, n=4)
    blocky, stepped = Counting(target, block=True), Counting(target, block=False)
    a = speculative_sample(blocky, draft, [[], [3]], 8, gamma=3, num_samples=100, rng=5)
    b = speculative_sample(stepped, draft, [[], [3]], 8, gamma=3, num_samples=100, rng=5)
    # the same samples and counts either way (n-gram numbers are bit for bit the same)
    assert a.result.sequences() == b.result.sequences() and a.stats() == b.stats()
    assert blocky.calls["advance"] == 0  # never a one-token step of the target
    assert stepped.calls["score_block"] == 0
    # one block call per round of a group of rows: far fewer than one call per position
    assert 0 < blocky.calls["score_block"] < stepped.calls["advance"] / 2
    assert blocky.calls["block_tokens"] == stepped.calls["advance"]  # the same tokens, fed in blocks


torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from faithful.models.hf import HFCausalLM  # noqa: E402


@pytest.fixture(scope="module")
def gpt2() -> HFCausalLM:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=50, n_positions=24, bos_token_id=2, eos_token_id=0
    )
    return HFCausalLM(transformers.GPT2LMHeadModel(cfg).eval(), bos_token_id=2)


def test_hf_block_logits_match_the_one_token_passes(gpt2: HFCausalLM) -> None:
    state = gpt2.start([[5, 6, 7], [8], [9, 10]])  # left padding in the batch
    toks = np.array([[11, 12, 13, 14], [15, 16, 17, 18], [3, 3, 4, 49]])
    block = score_block(gpt2, state, toks)
    logits, states = _stepwise(gpt2, state, toks)
    for i in range(4):
        got = block.logits_at(i)
        assert got.dtype == torch.float32
        assert float((got - torch.as_tensor(logits[i])).abs().max()) < 1e-5
    # a prefix of the block: the cache cropped, then advanced: the same as stepping there
    for j in (1, 2, 3, 4):
        cropped, ref = block.state(j), states[j - 1]
        assert cropped.attention_mask.shape == ref.attention_mask.shape
        assert torch.equal(cropped.next_position, ref.next_position)
        nxt = np.array([20, 21, 22])
        diff = gpt2.next_logits(gpt2.advance(cropped, nxt)) - gpt2.next_logits(gpt2.advance(ref, nxt))
        assert float(diff.abs().max()) < 1e-5
    # the block's states leave the state they came from intact (forked caches)
    again = gpt2.next_logits(gpt2.advance(state, toks[:, 0]))
    assert float((again - torch.as_tensor(logits[0])).abs().max()) < 1e-5


def test_hf_block_refuses_what_does_not_fit(gpt2: HFCausalLM) -> None:
    state = gpt2.start([[5] * 20])
    with pytest.raises(ModelError, match="context of 24 positions cannot take 5 more tokens"):
        gpt2.score_block(state, np.array([[1, 2, 3, 4, 5]]))
    with pytest.raises(ModelError, match=r"must be \(1, g\)"):
        gpt2.score_block(state, np.array([1, 2]))
    with pytest.raises(VocabMismatchError):
        gpt2.score_block(state, np.array([[50]]))


def test_hf_concat_states_left_pads_and_keeps_each_row(gpt2: HFCausalLM) -> None:
    x = gpt2.advance(gpt2.start([[3]]), np.array([4]))  # 2 positions
    y = gpt2.select(gpt2.start([[5, 6, 7, 8], [9]]), np.array([1, 0]))  # 4 positions, rows swapped
    joined = gpt2.concat_states([x, y])
    assert joined is not None and joined.attention_mask.shape == (3, 4)
    nxt = np.array([10, 11, 12])
    out = gpt2.next_logits(gpt2.advance(joined, nxt))
    alone = [
        gpt2.next_logits(gpt2.advance(x, nxt[:1]))[0],
        gpt2.next_logits(gpt2.advance(y, nxt[1:]))[0],
        gpt2.next_logits(gpt2.advance(y, nxt[1:]))[1],
    ]
    for row, ref in enumerate(alone):
        assert float((out[row] - ref).abs().max()) < 1e-5


def test_hf_speculative_uses_only_blocks_and_stays_greedy(gpt2: HFCausalLM) -> None:
    target = Counting(gpt2, block=True)
    target.next_logits = gpt2.next_logits  # type: ignore[attr-defined]
    target.concat_states = gpt2.concat_states  # type: ignore[attr-defined]
    samples = ancestral_sample(gpt2, [[3]], 6, num_samples=200, rng=1).sequences()[0]
    draft = NGramModel(
        Vocab([str(i) for i in range(3, 50)], "word"), 2, [[t for t in s if t] for s in samples]
    )
    prompts = [[3], [4, 5], [6, 7, 8]]
    r = speculative_sample(target, draft, prompts, 10, gamma=3, mode="greedy", num_samples=2)
    want = greedy_argmax(gpt2, prompts, 10)
    assert [rows[:1] for rows in r.result.sequences()] == want.sequences()
    assert all(rows[0] == rows[1] for rows in r.result.sequences())
    assert target.calls["advance"] == 0 and target.calls["score_block"] > 0
    s = speculative_sample(target, draft, prompts, 10, gamma=3, num_samples=20, rng=3)
    assert s.tokens == s.accepted + s.residual + s.bonus and target.calls["advance"] == 0


def test_hf_paths_without_crop_or_concat_give_the_same_decode(
    gpt2: HFCausalLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caches that cannot be cropped or joined: the block re-advances, groups restart (same tokens)."""
    import faithful.decode._speculative_run as spec_run
    import faithful.models.hf as hf

    samples = ancestral_sample(gpt2, [[3]], 6, num_samples=100, rng=2).sequences()[0]
    draft = NGramModel(
        Vocab([str(i) for i in range(3, 50)], "word"), 2, [[t for t in s if t] for s in samples]
    )
    prompts = [[3], [4, 5], [6, 7, 8]]
    want = greedy_argmax(gpt2, prompts, 9).sequences()
    greedy = speculative_sample(gpt2, draft, prompts, 9, gamma=3, mode="greedy", rng=1)
    fast = speculative_sample(gpt2, draft, prompts, 9, gamma=3, num_samples=8, rng=1)
    state = gpt2.start([[5, 6]])
    toks = np.array([[7, 8, 9]])
    cropped = gpt2.score_block(state, toks).state(1)
    monkeypatch.setattr(hf, "_plain_layers", lambda cache: False)
    assert gpt2.concat_states([state, state]) is None
    stepped = gpt2.score_block(state, toks).state(1)
    assert torch.equal(stepped.attention_mask, cropped.attention_mask)
    assert float((gpt2.next_logits(stepped) - gpt2.next_logits(cropped)).abs().max()) < 1e-5
    joins: list[int] = []
    real_join = spec_run._join_states
    monkeypatch.setattr(spec_run, "_join_states", lambda m, *a: joins.append(1) or real_join(m, *a))
    # rows that meet at one position are restarted on their prompts and advanced to the target's
    # state before the pending token: the same samples as left-padded caches (fixed seed)
    slow = speculative_sample(gpt2, draft, prompts, 9, gamma=3, num_samples=8, rng=1)
    assert len(joins) > 0
    assert slow.result.sequences() == fast.result.sequences() and slow.stats() == fast.stats()
    assert (
        speculative_sample(gpt2, draft, prompts, 9, gamma=3, mode="greedy", rng=1).result.sequences() == want
    )
    assert greedy.result.sequences() == want
