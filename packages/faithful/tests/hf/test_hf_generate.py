"""faithful inside Hugging Face ``generate``: the same tokens and log q as faithful's own ancestral sampling."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faithful.decode import ancestral_sample
from faithful.errors import SamplingParameterError, ShapeMismatchError
from faithful.samplers import parse_sampler_spec

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from faithful.hf import FaithfulLogitsProcessor, GenerateMismatchError, generate  # noqa: E402
from faithful.models.hf import HFCausalLM  # noqa: E402

# the tiny GPT-2 of the decoder tests (tests/decoders/test_hf.py), loaded by path
_spec = importlib.util.spec_from_file_location(
    "_faithful_decoders_test_hf", Path(__file__).parents[1] / "decoders" / "test_hf.py"
)
assert _spec is not None and _spec.loader is not None
_tiny = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _tiny
_spec.loader.exec_module(_tiny)
tiny_gpt2, pick_eos, left_padded, PROMPTS = _tiny.tiny_gpt2, _tiny.pick_eos, _tiny.left_padded, _tiny.PROMPTS

# the two paths compute the same float32 logits through different attention code: ~1e-7 apart
CROSS_PATH_ATOL = 1e-5

SPECS = [
    "sample",
    "temperature:0.8+top-p:0.9",
    "top-k:5+min-p:0.05",
    "repetition-penalty:1.3+top-k:10",
    "presence:0.7+typical:0.9",
    "no-repeat-ngram:2",
    "gumbel",
    "temperature:1.5+top-n-sigma:1.0",
    "xtc:0.5+xtc-threshold:0.05",
    "mirostat:3.0",
    "dry:0.8+dry-allowed-length:1",
]


@pytest.fixture(scope="module")
def setup() -> tuple[Any, int]:
    model = tiny_gpt2(0)
    eos = pick_eos(model, PROMPTS, 3)
    return model, eos


def reference(model: Any, eos: int, spec: str, seed: int, k: int, steps: int) -> Any:
    lm = HFCausalLM(model, eos_token_id=eos, pad_token_id=eos)
    sampler = parse_sampler_spec(spec)
    return ancestral_sample(
        lm, PROMPTS, steps, sampler=sampler, num_samples=k, rng=seed, return_distributions=True
    )


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("seed", [0, 11, 2**64 - 1])
def test_tokens_and_log_q_equal_faithfuls_ancestral_sample(
    setup: tuple[Any, int], spec: str, seed: int
) -> None:
    model, eos = setup
    k, steps = 2, 10
    out = generate(
        model,
        PROMPTS,
        spec=spec,
        seed=seed,
        max_new_tokens=steps,
        num_return_sequences=k,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    ref = reference(model, eos, spec, seed, k, steps)
    n = len(PROMPTS) * k
    assert out.sequences_list() == [s for row in ref.sequences() for s in row]
    assert out.lengths.tolist() == ref.lengths.reshape(n).tolist()
    assert out.finished.tolist() == ref.finished.reshape(n).tolist()
    width = int(out.lengths.max())
    assert out.tokens.shape == (n, width)
    # raw: the model's own log-probability of each token
    tlp = ref.token_logprobs.reshape(n, width)
    np.testing.assert_allclose(out.raw_logq, tlp, rtol=0, atol=CROSS_PATH_ATOL)
    # processed: log q(token) under the distribution faithful drew from
    q = ref.distributions.reshape(n, width, -1)
    idx = np.where(out.tokens >= 0, out.tokens, 0)
    with np.errstate(divide="ignore"):
        want = np.where(out.tokens >= 0, np.log(np.take_along_axis(q, idx[..., None], axis=2)[..., 0]), 0.0)
    np.testing.assert_allclose(out.processed_logq, want, rtol=0, atol=CROSS_PATH_ATOL)
    assert np.isfinite(out.processed_logq).all() and (out.processed_logq <= 0).all()
    np.testing.assert_allclose(
        out.proposal_logprobs,
        ref.proposal_logprobs.reshape(n),
        rtol=0,
        atol=1e-4,
    )
    # padding after a row's end: PAD in tokens, 0 in both log q's, HF's pad id in its sequences
    pad = out.tokens < 0
    assert (out.raw_logq[pad] == 0).all() and (out.processed_logq[pad] == 0).all()


def test_processed_and_raw_logq_differ_when_the_spec_processes(setup: tuple[Any, int]) -> None:
    model, eos = setup
    out = generate(model, PROMPTS, spec="temperature:0.5+top-k:3", seed=3, max_new_tokens=6, eos_token_id=eos)
    drawn = out.tokens >= 0
    assert (out.processed_logq[drawn] > out.raw_logq[drawn]).all()  # truncation and T < 1 sharpen q
    plain = generate(model, PROMPTS, spec="sample", seed=3, max_new_tokens=6, eos_token_id=eos)
    np.testing.assert_array_equal(plain.processed_logq, plain.raw_logq)


@pytest.mark.parametrize("spec", ["temperature:0.7+top-p:0.8", "repetition-penalty:1.5+min-p:0.02", "gumbel"])
def test_inside_plain_model_generate_log_q_is_faithfuls_exactly(setup: tuple[Any, int], spec: str) -> None:
    """With the bare processor, recompute faithful's sampler on generate's own raw logits: equal bit for bit."""
    model, eos = setup
    ids, mask = left_padded(PROMPTS, eos)
    proc = FaithfulLogitsProcessor(spec, seed=5, eos_token_id=eos, attention_mask=mask)
    out = model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=8,
        eos_token_id=eos,
        pad_token_id=eos,
        logits_processor=[proc],
        return_dict_in_generate=True,
        output_logits=True,
        output_scores=True,
    )
    t = out.sequences.shape[1] - ids.shape[1]
    tokens, processed, raw = proc.tokens(t), proc.processed_logq(t), proc.raw_logq(t)
    sampler = parse_sampler_spec(spec)
    seqs = out.sequences.numpy()
    starts = (mask == 0).sum(dim=1).numpy()
    for step in range(t):
        live = np.flatnonzero(tokens[:, step] >= 0)
        assert live.size  # every step draws for some row
        x = out.logits[step].numpy()[live]
        history = [seqs[i, starts[i] : ids.shape[1] + step] for i in live]
        res = sampler(x, rng=5, step=step, rows=live, history=history)
        assert res.tokens.tolist() == tokens[live, step].tolist()
        assert res.tokens.tolist() == seqs[live, ids.shape[1] + step].tolist()
        np.testing.assert_array_equal(processed[live, step], res.logprobs)
        lp = torch.log_softmax(out.logits[step][live].double(), dim=-1).numpy()
        np.testing.assert_allclose(raw[live, step], lp[np.arange(live.size), res.tokens], rtol=0, atol=1e-12)
        # generate's own processed scores are faithful's one-hot
        scores = out.scores[step][live]
        assert (scores.argmax(dim=-1).numpy() == res.tokens).all()
        assert torch.isinf(scores).sum().item() == live.size * (scores.shape[1] - 1)


def test_hf_sampling_state_is_never_consulted(setup: tuple[Any, int]) -> None:
    model, eos = setup
    runs = []
    for global_seed in (0, 12345):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        runs.append(generate(model, PROMPTS, spec="top-p:0.95", seed=9, max_new_tokens=8, eos_token_id=eos))
        assert torch.equal(torch.get_rng_state(), state)  # the global generator was not touched
    assert runs[0].sequences_list() == runs[1].sequences_list()
    np.testing.assert_array_equal(runs[0].processed_logq, runs[1].processed_logq)
    # even generate's own multinomial (do_sample=True) can only take faithful's token
    ids, mask = left_padded(PROMPTS, eos)
    proc = FaithfulLogitsProcessor("top-p:0.95", seed=9, eos_token_id=eos, attention_mask=mask)
    torch.manual_seed(777)
    out = model.generate(
        ids,
        attention_mask=mask,
        do_sample=True,
        max_new_tokens=8,
        eos_token_id=eos,
        pad_token_id=eos,
        logits_processor=[proc],
        top_k=0,
        top_p=1.0,
        temperature=1.0,
    )
    t = out.shape[1] - ids.shape[1]
    assert proc.tokens(t).tolist() == runs[0].tokens[:, :t].tolist()


def test_a_row_draws_the_same_alone_or_in_a_batch(setup: tuple[Any, int]) -> None:
    model, eos = setup
    batch = generate(
        model, PROMPTS, spec="min-p:0.1", seed=4, max_new_tokens=8, num_return_sequences=2, eos_token_id=eos
    )
    alone = generate(
        model,
        [PROMPTS[1]],
        spec="min-p:0.1",
        seed=4,
        max_new_tokens=8,
        num_return_sequences=2,
        eos_token_id=eos,
        first_row=2,
    )
    assert alone.sequences_list() == batch.sequences_list()[2:4]
    np.testing.assert_allclose(
        alone.processed_logq[:, : alone.tokens.shape[1]],
        batch.processed_logq[2:4, : alone.tokens.shape[1]],
        atol=CROSS_PATH_ATOL,
    )


def test_a_tensor_prompt_with_its_mask_equals_the_list_prompt(setup: tuple[Any, int]) -> None:
    model, eos = setup
    ids, mask = left_padded(PROMPTS, eos)
    a = generate(
        model,
        ids,
        attention_mask=mask,
        spec="top-k:8",
        seed=1,
        max_new_tokens=6,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    b = generate(model, PROMPTS, spec="top-k:8", seed=1, max_new_tokens=6, eos_token_id=eos, pad_token_id=eos)
    assert a.sequences_list() == b.sequences_list()
    assert torch.equal(a.sequences, b.sequences)


def test_a_processor_of_generate_before_faithfuls_is_refused() -> None:
    model = tiny_gpt2(1)
    model.generation_config.repetition_penalty = 1.3
    with pytest.raises(GenerateMismatchError, match="raw logits"):
        generate(model, PROMPTS, seed=0, max_new_tokens=4)
    model.generation_config.repetition_penalty = 1.0
    assert generate(model, PROMPTS, seed=0, max_new_tokens=4).tokens.shape[0] == len(PROMPTS)


def test_a_processor_after_faithfuls_that_changes_the_token_is_caught(setup: tuple[Any, int]) -> None:
    model, eos = setup

    def shift(input_ids: object, scores: object) -> Any:
        return torch.roll(scores, 1, dims=1)

    ids, mask = left_padded(PROMPTS, eos)
    proc = FaithfulLogitsProcessor("sample", seed=0, attention_mask=mask)
    with pytest.raises(GenerateMismatchError, match="faithful drew"):
        model.generate(
            ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=4,
            pad_token_id=eos,
            logits_processor=[proc, shift],
        )


def test_a_processor_serves_one_generate_call(setup: tuple[Any, int]) -> None:
    model, eos = setup
    ids, mask = left_padded(PROMPTS, eos)
    proc = FaithfulLogitsProcessor("sample", seed=0, attention_mask=mask)
    model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=3,
        pad_token_id=eos,
        logits_processor=[proc],
    )
    with pytest.raises(GenerateMismatchError, match="new processor"):
        model.generate(
            ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=3,
            pad_token_id=eos,
            logits_processor=[proc],
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"do_sample": True}, SamplingParameterError, "do_sample"),
        ({"num_beams": 4}, SamplingParameterError, "beam"),
        ({"logits_processor": []}, SamplingParameterError, "logits_processor"),
        ({"spec": "top-p:1.5"}, SamplingParameterError, "top_p"),
        ({"spec": 3}, SamplingParameterError, "spec"),
        ({"seed": 1.5}, SamplingParameterError, "rng"),
        ({"max_new_tokens": 0}, SamplingParameterError, "max_new_tokens"),
        ({"num_return_sequences": 0}, SamplingParameterError, "num_return_sequences"),
        ({"prompts": [[1], []]}, ShapeMismatchError, "at least one token"),
        ({"prompts": "hello"}, ShapeMismatchError, "token-id"),
        ({"attention_mask": torch.ones(3, 4, dtype=torch.long)}, ShapeMismatchError, "tensor of prompts"),
    ],
)
def test_bad_input_is_a_clear_error(
    setup: tuple[Any, int], kwargs: dict[str, object], error: type, match: str
) -> None:
    model, _ = setup
    args: dict[str, Any] = {"prompts": PROMPTS, "seed": 0, "max_new_tokens": 3} | kwargs
    prompts = args.pop("prompts")
    with pytest.raises(error, match=match):
        generate(model, prompts, **args)


def test_a_right_padded_mask_is_refused(setup: tuple[Any, int]) -> None:
    model, eos = setup
    ids = torch.tensor([[1, 2, eos], [3, 4, 6]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    with pytest.raises(ShapeMismatchError, match="left padding"):
        generate(model, ids, attention_mask=mask, seed=0, max_new_tokens=2)


def test_a_bfloat16_model_and_a_sampler_object() -> None:
    """generate hands processors float32 copies of bf16 logits; faithful's own path widens them the same way."""
    model = tiny_gpt2(2).to(torch.bfloat16)
    eos = pick_eos(model, PROMPTS, 3)
    sampler = parse_sampler_spec("temperature:0.9+top-k:12")
    out = generate(
        model, PROMPTS, spec=sampler, seed=21, max_new_tokens=8, eos_token_id=eos, pad_token_id=eos
    )
    lm = HFCausalLM(model, eos_token_id=eos, pad_token_id=eos)
    ref = ancestral_sample(lm, PROMPTS, 8, sampler=sampler, rng=21)
    assert out.sequences_list() == [r[0] for r in ref.sequences()]
    np.testing.assert_allclose(out.raw_logq, ref.token_logprobs[:, 0], rtol=0, atol=CROSS_PATH_ATOL)


def test_an_ended_row_needs_the_eos_id_the_processor_was_told(setup: tuple[Any, int]) -> None:
    model, eos = setup
    ids, mask = left_padded(PROMPTS, eos)
    # a seed where a row ends (draws eos) before the last step, so generate pads it afterwards
    seed = next(
        s
        for s in range(50)
        if generate(model, PROMPTS, seed=s, max_new_tokens=10, eos_token_id=eos).lengths.min() < 9
    )
    proc = FaithfulLogitsProcessor("sample", seed=seed, attention_mask=mask)  # not told the eos id
    with pytest.raises(GenerateMismatchError, match="eos_token_id"):
        model.generate(
            ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=10,
            eos_token_id=eos,
            pad_token_id=(eos + 1) % model.config.vocab_size,
            logits_processor=[proc],
        )
