"""The Hugging Face adapter, with Hugging Face `generate` as the oracle for greedy and beam search."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from faithful.decode import beam_search, generate_text, greedy_argmax, score_sequences  # noqa: E402
from faithful.models import EmptyPromptError, VocabMismatchError  # noqa: E402
from faithful.models.hf import HFCausalLM  # noqa: E402

V = 48
PROMPTS = [[1, 2, 3, 4], [9], [7, 8]]


def tiny_gpt2(seed: int = 0, eos: int = 5) -> object:
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        vocab_size=V,
        n_positions=64,
        initializer_range=0.3,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.generation_config.pad_token_id = eos
    return model


def left_padded(prompts: list[list[int]], pad: int) -> tuple[object, object]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    return ids, mask


def hf_continuations(out: object, prompt_width: int, eos: int) -> list[list[int]]:
    seqs = []
    for row in out[:, prompt_width:].tolist():  # type: ignore[index]
        cut = row.index(eos) + 1 if eos in row else len(row)
        seqs.append(row[:cut])
    return seqs


@pytest.fixture(scope="module")
def model() -> object:
    return tiny_gpt2()


def pick_eos(model: object, prompts: list[list[int]], steps: int) -> int:
    """An id that greedy decoding emits a few steps in, so EOS really ends sequences in the tests."""
    lm = HFCausalLM(model, eos_token_id=-1)
    return int(greedy_argmax(lm, prompts, steps).tokens[0, 0, steps - 1])


def test_padding_and_cache_give_the_same_logprobs_as_one_prompt_at_a_time(model: object) -> None:
    lm = HFCausalLM(model)
    batch = lm.next_logprobs(lm.start(PROMPTS))
    for i, p in enumerate(PROMPTS):
        alone = lm.next_logprobs(lm.start([p]))
        np.testing.assert_allclose(batch[i], alone[0], atol=1e-5)
    # advancing with the cache equals a fresh forward over the longer prompt
    s = lm.advance(lm.start(PROMPTS), np.array([3, 4, 5]))
    fresh = lm.next_logprobs(lm.start([[*p, t] for p, t in zip(PROMPTS, [3, 4, 5], strict=True)]))
    np.testing.assert_allclose(lm.next_logprobs(s), fresh, atol=1e-5)
    np.testing.assert_allclose(np.exp(batch).sum(axis=1), 1.0, atol=1e-12)


def test_states_are_not_mutated_by_advance_or_select(model: object) -> None:
    lm = HFCausalLM(model)
    s0 = lm.start(PROMPTS)
    a = lm.next_logprobs(lm.advance(lm.select(s0, np.array([2, 0, 0])), np.array([1, 2, 3])))
    b = lm.next_logprobs(lm.advance(lm.select(s0, np.array([2, 0, 0])), np.array([1, 2, 3])))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(
        lm.next_logprobs(lm.advance(s0, np.array([1, 1, 1])))[0],
        lm.next_logprobs(lm.advance(s0, np.array([1, 1, 1])))[0],
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_equals_hf_generate(seed: int) -> None:
    model = tiny_gpt2(seed)
    eos = pick_eos(model, PROMPTS, 4)
    model.generation_config.pad_token_id = eos
    lm = HFCausalLM(model, eos_token_id=eos, pad_token_id=eos)
    ours = greedy_argmax(lm, PROMPTS, 12)
    ids, mask = left_padded(PROMPTS, eos)
    out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=12, eos_token_id=eos)
    assert [r[0] for r in ours.sequences()] == hf_continuations(out, ids.shape[1], eos)
    assert ours.finished[0, 0]  # EOS did end the first row


@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping"),
    [(4, 1.0, False), (4, 0.0, True), (3, 2.0, "never"), (4, -0.5, False), (2, 1.0, True)],
)
def test_beam_search_equals_hf_generate(
    num_beams: int, length_penalty: float, early_stopping: object
) -> None:
    model = tiny_gpt2(3)
    eos = pick_eos(model, PROMPTS, 3)
    model.generation_config.pad_token_id = eos
    lm = HFCausalLM(model, eos_token_id=eos, pad_token_id=eos)
    ids, mask = left_padded(PROMPTS, eos)
    out = model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=10,
        eos_token_id=eos,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        output_scores=True,
        return_dict_in_generate=True,
    )
    ours = beam_search(
        lm,
        PROMPTS,
        10,
        num_beams=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,  # type: ignore[arg-type]
    )
    theirs = hf_continuations(out.sequences, ids.shape[1], eos)
    assert [s for row in ours.sequences() for s in row] == theirs
    np.testing.assert_allclose(ours.scores.reshape(-1), out.sequences_scores.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.logprobs, score_sequences(lm, PROMPTS, ours.sequences()), atol=1e-4)
    assert ours.finished.any()  # the EOS path is exercised


def test_errors(model: object) -> None:
    lm = HFCausalLM(model)
    with pytest.raises(EmptyPromptError, match="empty"):
        lm.start([[1], []])
    assert HFCausalLM(model, bos_token_id=5).next_logprobs(
        HFCausalLM(model, bos_token_id=5).start([[]])
    ).shape == (1, V)
    with pytest.raises(VocabMismatchError):
        lm.start([[V]])

    class BigTokenizer:
        def __len__(self) -> int:
            return V + 10

    with pytest.raises(VocabMismatchError, match="tokenizer has"):
        HFCausalLM(model, BigTokenizer())


def test_generate_text_with_a_word_tokenizer(model: object) -> None:
    class WordTok:
        def __len__(self) -> int:
            return V

        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [int(w[1:]) for w in text.split()]

        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            return " ".join(f"w{i}" for i in ids)

    lm = HFCausalLM(model, WordTok())
    g = generate_text(lm, "w1 w2", decoder="beam:2", max_new_tokens=4)
    assert len(g.texts) == 2 and all(t.startswith("w") for t in g.texts)


def test_load_hf_model_round_trip(tmp_path: object, model: object) -> None:
    from faithful.models import ModelError
    from faithful.models.hf import load_hf_model

    model.save_pretrained(tmp_path)  # type: ignore[attr-defined]
    lm = load_hf_model(str(tmp_path))
    assert lm.vocab_size == V and lm.eos_token_id == 5 and lm.tokenizer is None
    np.testing.assert_allclose(
        lm.next_logprobs(lm.start(PROMPTS)),
        HFCausalLM(model).next_logprobs(HFCausalLM(model).start(PROMPTS)),
        atol=1e-6,
    )
    with pytest.raises(ModelError, match="cannot load"):
        load_hf_model(str(tmp_path / "missing"))  # type: ignore[operator]


def test_config_eos_outside_the_vocabulary_is_a_clear_error() -> None:
    from faithful.models import ModelError

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=20)  # GPT-2's EOS 50256 > 19
    bad = transformers.GPT2LMHeadModel(cfg).eval()
    with pytest.raises(ModelError, match=r"model.config.eos_token_id=50256"):
        HFCausalLM(bad)
    assert HFCausalLM(bad, eos_token_id=-1).eos_token_id is None


def test_context_overflow_is_a_clear_error(model: object) -> None:
    from faithful.models import ModelError

    lm = HFCausalLM(model)  # n_positions=64
    with pytest.raises(ModelError, match="context holds 64"):
        lm.start([[1] * 65])
    with pytest.raises(ModelError, match="context of 64 positions is full"):
        greedy_argmax(lm, [[1] * 60], 10)


def test_ancestral_sampling_on_hf_is_reproducible_and_exactly_scored(model: object) -> None:
    from faithful.decode import ancestral_sample, stochastic_beam_search
    from faithful.samplers import make_sampler

    lm = HFCausalLM(model)
    sampler = make_sampler(top_k=10)
    a = ancestral_sample(lm, PROMPTS, 6, sampler=sampler, num_samples=2, rng=3, return_distributions=True)
    b = ancestral_sample(lm, PROMPTS, 6, sampler=sampler, num_samples=2, rng=3)
    assert a.sequences() == b.sequences()
    np.testing.assert_allclose(a.logprobs, score_sequences(lm, PROMPTS, a.sequences()), atol=1e-4)
    assert a.distributions is not None
    assert np.all((a.distributions > 0).sum(axis=-1)[a.tokens >= 0] == 10)  # top-k support at every step
    s = stochastic_beam_search(lm, PROMPTS, 4, k=3, rng=0)
    for row in s.sequences():
        assert len({tuple(x) for x in row}) == 3
