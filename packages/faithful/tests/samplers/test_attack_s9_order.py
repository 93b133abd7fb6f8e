"""Session 9 attack: the processor table's order against the chain Hugging Face's ``generate`` builds.

The oracle is ``GenerationMixin._get_logits_processor`` itself (a one-layer GPT-2 made here, never
run): the classes it lists, in its order, and the exact float64 distribution of that whole chain.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from faithful.processors import TABLE, softmax  # noqa: E402
from faithful.samplers import make_sampler  # noqa: E402

V = 40


@pytest.fixture(scope="module")
def hf_model() -> Any:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=1, n_embd=16, n_head=2, vocab_size=V, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def generate_chain(model: Any, **config: Any) -> Any:
    gc = transformers.GenerationConfig(do_sample=True, **config)
    return model._get_logits_processor(gc, input_ids_seq_length=1, device="cpu", model_kwargs={})


EVERY_HF_SETTING: dict[str, Any] = {
    "sequence_bias": [[[3], -2.0], [[7], 1.5], [[9], 2.5]],
    "repetition_penalty": 1.7,
    "no_repeat_ngram_size": 2,
    "suppress_tokens": [11],
    "temperature": 0.8,
    "top_k": 30,
    "top_p": 0.97,
    "min_p": 0.005,
    "typical_p": 0.99,
    "epsilon_cutoff": 1e-5,
    "eta_cutoff": 1e-5,
}


def test_the_table_lists_hugging_face_processors_in_generates_order(hf_model: Any) -> None:
    theirs = [type(p).__name__ for p in generate_chain(hf_model, **EVERY_HF_SETTING)]
    ours = [e.hf for e in TABLE if e.hf is not None]
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_bias_and_penalties_compose_as_in_generate(hf_model: Any, scale: float) -> None:
    # A token both biased and in the history: the bias must come first, as in generate (and llama.cpp).
    rng = np.random.default_rng(int(scale))
    z = rng.standard_normal((6, V)) * scale
    ids = rng.integers(0, V, (6, 8))
    ids[:, :3] = [3, 7, 9]
    chain = generate_chain(hf_model, **EVERY_HF_SETTING)
    theirs = softmax(chain(torch.from_numpy(ids), torch.from_numpy(z.copy())).numpy())
    ours = make_sampler(
        logit_bias={3: -2.0, 7: 1.5, 9: 2.5},
        repetition_penalty=1.7,
        no_repeat_ngram_size=2,
        forbidden_tokens=[11],
        temperature=0.8,
        top_k=30,
        top_p=0.97,
        min_p=0.005,
        typical_p=0.99,
        epsilon=1e-5,
        eta=1e-5,
    ).distribution(z, history=ids.tolist())
    np.testing.assert_array_equal(ours > 0, theirs > 0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
