"""Bench: speculative decoding next to ancestral sampling of the target, in the same run.

Two pairs: a character bigram drafting for a 4-gram (pydoc words), and a distilled bigram drafting
for a random GPT-2 (2 layers, 128 wide). For each it prints, against ancestral sampling of the
target with the same sampler and length bound:

- the acceptance rate and the tokens per verification pass (one target pass per round per row:
  what a target with a block forward pays; ancestral sampling pays one pass per token);
- the target's one-token forward steps per token through faithful's model protocol, which has
  no block forward: a round's verification is gamma one-token steps there, plus the re-advance
  to the committed prefix, so this count is higher than ancestral sampling's, not lower;
- wall time, speculative / ancestral.

The saving that speculative decoding buys is the first number; the last two say honestly that
this implementation, over this protocol, does not turn it into wall time.

    .venv/bin/python bench/faithful_speculative.py [--n 2000] [--gamma 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


class Counting:
    """A model wrapper counting one-token forward steps (row-steps: rows x calls) through the protocol."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.vocab_size, self.eos_token_id = model.vocab_size, model.eos_token_id
        self.steps = 0

    def start(self, prompts: Sequence[Sequence[int]]) -> Any:
        return self.model.start(prompts)

    def next_logprobs(self, state: Any) -> Any:
        return self.model.next_logprobs(state)

    def next_logits(self, state: Any) -> Any:
        raw = getattr(self.model, "next_logits", None)
        return raw(state) if callable(raw) else self.model.next_logprobs(state)

    def advance(self, state: Any, tokens: np.ndarray) -> Any:
        self.steps += len(tokens)
        return self.model.advance(state, tokens)

    def select(self, state: Any, indices: np.ndarray) -> Any:
        return self.model.select(state, indices)


def best_time(fn: Any, repeats: int) -> tuple[float, Any]:
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_pair(name: str, target: Any, draft: Any, n: int, length: int, gamma: int, repeats: int) -> None:
    from faithful.decode import ancestral_sample
    from faithful.decode.speculative import speculative_sample

    t = Counting(target)
    t_anc, anc = best_time(lambda: ancestral_sample(t, [[]], length, num_samples=n, rng=0), repeats)
    t.steps = 0
    ancestral_sample(t, [[]], length, num_samples=n, rng=0)
    anc_tokens = int(anc.lengths.sum())
    anc_steps = t.steps / anc_tokens
    t_spec, spec = best_time(
        lambda: speculative_sample(t, draft, [[]], length, gamma=gamma, num_samples=n, rng=0), repeats
    )
    t.steps = 0
    speculative_sample(t, draft, [[]], length, gamma=gamma, num_samples=n, rng=0)
    spec_steps = t.steps / spec.tokens
    print(f"== {name}: {n} outputs of at most {length} tokens, gamma {gamma}")
    print(f"  acceptance rate {spec.acceptance_rate:.3f}")
    print(
        f"  verification passes per token {1 / spec.tokens_per_target_pass:.3f} (ancestral 1.000): "
        f"{spec.target_calls_saved:.0%} of target calls saved with a block-forward target"
    )
    print(
        f"  target one-token steps per token through the protocol: {spec_steps:.3f} "
        f"(ancestral {anc_steps:.3f}; ratio {spec_steps / anc_steps:.2f}x)"
    )
    print(f"  wall time: speculative {t_spec:.3f} s, ancestral {t_anc:.3f} s, ratio {t_spec / t_anc:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from faithful.fidelity.specs import load_model

    run_pair(
        "ngram: pydoc-words bigram -> 4-gram",
        load_model("pydoc-words:4"),
        load_model("pydoc-words:2"),
        args.n,
        5,
        args.gamma,
        args.repeats,
    )
    try:
        import torch
        import transformers
    except ImportError:
        print("== gpt2: skipped (torch and transformers are not installed)")
        return
    from faithful.decode import ancestral_sample
    from faithful.models import NGramModel
    from faithful.models.hf import HFCausalLM
    from faithful.models.ngram import Vocab

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=128, n_head=2, vocab_size=200, n_positions=64, bos_token_id=2, eos_token_id=0
    )
    target = HFCausalLM(transformers.GPT2LMHeadModel(cfg).eval(), bos_token_id=2)
    vocab = Vocab([str(i) for i in range(3, 200)], level="word")
    seqs = ancestral_sample(target, [[]], 16, num_samples=500, rng=9).sequences()[0]
    draft = NGramModel(vocab, 2, [[t for t in s if t != 0] for s in seqs])
    run_pair(
        "gpt2: distilled bigram -> GPT-2 (2 x 128, V=200)", target, draft, min(args.n, 256), 16, args.gamma, 1
    )


if __name__ == "__main__":
    main()
