"""Bench: speculative decoding next to ancestral sampling of the target, in the same run.

Every setup is timed against the target's own ancestral sampling with the same sampler, the
same number of outputs and the same length bound, measured in the same run (CPU torch, one
thread). For each it prints:

- the acceptance rate (accepted / tested proposals) and the target passes per token: one block
  call per round of a row (``score_block``: the last committed token and gamma proposals in ONE
  forward pass with the KV cache) against ancestral sampling's one call per token;
- the target's forward calls, speculative and ancestral: a call serves the rows at one
  position, so at batch > 1, where rows accept different numbers of proposals and drift apart,
  speculative calls serve fewer rows each;
- the wall-time speed-up, ancestral / speculative (> 1 = speculative is faster).

Setups:

1. n-gram: a character bigram drafting for a 4-gram (pydoc words). Both models are table
   lookups; the round's bookkeeping is what costs.
2. GPT-2 12 x 768 (GPT-2 small's shape, vocabulary 512, random at GPT-2's own init) with a
   1-layer draft that shares its embeddings, first layer and head (self-speculative, "layer
   skipping"): a draft 1/12 of the target that agrees often. Batch 1 and batch 8.
3. The same target with a bigram distilled from its samples as the draft (nearly free, agrees
   less). Batch 1 and batch 8.

It also prints what a block forward costs against a one-token forward on this machine: that
ratio, next to the tokens a round commits, decides the speed-up (see the summary lines).

    .venv/bin/python bench/faithful_speculative.py [--gamma 4] [--tokens 32] [--seqs 3] [--layers 12] [--width 768]
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# one thread for numba too, before faithful's kernels load: numba's parallel rows leave worker
# threads that compete with torch's one thread, and on a busy 2-core machine that made a GPT-2
# forward after a sampler call up to ~50x slower (4 x 256 GPT-2, 8 rows x 32 tokens: ancestral
# 7-9 s with numba's default threads, 0.14 s with one), for ancestral and speculative alike
os.environ.setdefault("NUMBA_NUM_THREADS", "1")


class Counting:
    """A model wrapper counting the target's calls and the tokens they feed; forwards the optional methods."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.vocab_size, self.eos_token_id = model.vocab_size, model.eos_token_id
        self.calls = 0
        for name in ("next_logits", "concat_states"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        if hasattr(model, "score_block"):
            self.score_block = self._score_block

    def start(self, prompts: Sequence[Sequence[int]]) -> Any:
        return self.model.start(prompts)

    def next_logprobs(self, state: Any) -> Any:
        return self.model.next_logprobs(state)

    def advance(self, state: Any, tokens: np.ndarray) -> Any:
        self.calls += 1
        return self.model.advance(state, tokens)

    def _score_block(self, state: Any, tokens: np.ndarray) -> Any:
        self.calls += 1
        return self.model.score_block(state, tokens)

    def select(self, state: Any, indices: np.ndarray) -> Any:
        return self.model.select(state, indices)


def interleaved_best(fns: list[Callable[[], Any]], repeats: int) -> list[tuple[float, Any]]:
    """Best wall time of each function over ``repeats`` rounds, run round-robin (the same load for each)."""
    best = [float("inf")] * len(fns)
    outs: list[Any] = [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(best, outs, strict=True))


def run_setup(
    name: str, target: Any, draft: Any, *, rows: int, batch: int, length: int, gamma: int, repeats: int
) -> dict[str, float]:
    """``rows`` outputs, ``batch`` per call; speculative against ancestral. Returns the figures."""
    from faithful.decode import ancestral_sample
    from faithful.decode.speculative import speculative_sample

    t = Counting(target)
    calls = rows // batch
    prompt = [[5]]

    def anc() -> list[Any]:
        return [ancestral_sample(t, prompt, length, num_samples=batch, rng=i) for i in range(calls)]

    def spec() -> list[Any]:
        return [
            speculative_sample(t, draft, prompt, length, gamma=gamma, num_samples=batch, rng=i)
            for i in range(calls)
        ]

    (t_anc, a_out), (t_spec, s_out) = interleaved_best([anc, spec], repeats)
    t.calls = 0
    anc()
    anc_calls, anc_tokens = t.calls, sum(int(r.lengths.sum()) for r in a_out)
    t.calls = 0
    spec()
    spec_calls = t.calls
    tokens = sum(r.tokens for r in s_out)
    tested = sum(r.tested for r in s_out)
    accepted = sum(r.accepted for r in s_out)
    passes = sum(r.target_passes for r in s_out)
    acc = accepted / tested if tested else float("nan")
    speedup = t_anc / t_spec
    print(f"== {name}, batch {batch}: {rows} outputs of at most {length} tokens, gamma {gamma}")
    print(
        f"  acceptance {acc:.3f}; tokens per row-round {tokens / passes:.2f} (target passes per token "
        f"{passes / tokens:.3f}, ancestral 1.000)"
    )
    print(
        f"  target forward calls: speculative {spec_calls}, ancestral {anc_calls} for {tokens} and {anc_tokens} "
        f"tokens (a call serves the rows at one position: at batch > 1 rows drift apart and calls shrink)"
    )
    print(
        f"  wall: ancestral {t_anc:.3f} s, speculative {t_spec:.3f} s -> speed-up {speedup:.2f}x "
        f"({'faster' if speedup > 1 else 'slower'})"
    )
    return {"acceptance": acc, "speedup": speedup, "tokens_per_round": tokens / passes}


def block_costs(model: Any, gammas: Sequence[int], repeats: int = 7) -> dict[int, float]:
    """Wall time of one forward over gamma + 1 new tokens / one over 1 token (batch 1, 20 tokens cached)."""
    state = model.start([[5] * 20])

    def one() -> Any:
        return model.advance(state, np.array([4]))

    def block(g: int) -> Callable[[], Any]:
        return lambda: model.score_block(state, np.full((1, g + 1), 4, dtype=np.int64))

    timed = interleaved_best([one, *(block(g) for g in gammas)], repeats)
    return {g: timed[i + 1][0] / timed[0][0] for i, g in enumerate(gammas)}


def gpt2_pair(layers: int, width: int, vocab: int) -> tuple[Any, Any]:
    """A random GPT-2 target (GPT-2's init) and a 1-layer draft sharing its embeddings, first layer and head."""
    import torch
    import transformers
    from faithful.models.hf import HFCausalLM

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=layers, n_embd=width, n_head=max(1, width // 64), vocab_size=vocab, n_positions=128,
        bos_token_id=2, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    big = transformers.GPT2LMHeadModel(cfg).eval()
    small_cfg = copy.deepcopy(cfg)
    small_cfg.n_layer = 1
    small = transformers.GPT2LMHeadModel(small_cfg).eval()
    keep = {
        k: v
        for k, v in big.state_dict().items()
        if not k.startswith("transformer.h.") or k.startswith("transformer.h.0.")
    }
    small.load_state_dict(keep)
    return HFCausalLM(big, bos_token_id=2), HFCausalLM(small, bos_token_id=2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens per output (GPT-2 setups)")
    ap.add_argument("--seqs", type=int, default=3, help="outputs at batch 1 (GPT-2 setups)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--ngram-n", type=int, default=2000, help="outputs of the n-gram setup")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from faithful.fidelity.specs import load_model

    summary: list[str] = []
    r = run_setup(
        "n-gram: pydoc-words bigram -> 4-gram",
        load_model("pydoc-words:4"),
        load_model("pydoc-words:2"),
        rows=args.ngram_n,
        batch=args.ngram_n,
        length=5,
        gamma=args.gamma,
        repeats=args.repeats + 1,
    )
    summary.append(f"n-gram -> n-gram, batch {args.ngram_n}: {r['speedup']:.2f}x")
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError:
        print("== gpt2: skipped (torch and transformers are not installed)")
        return
    from faithful.decode import ancestral_sample
    from faithful.models import NGramModel
    from faithful.models.ngram import Vocab

    torch.set_num_threads(1)
    target, layer_draft = gpt2_pair(args.layers, args.width, args.vocab)
    shape = f"GPT-2 {args.layers} x {args.width} (V={args.vocab})"
    costs = block_costs(target, [1, 2, args.gamma, 7])
    print(
        f"== {shape}, one thread: a forward over g + 1 tokens costs "
        + ", ".join(f"{c:.2f}x (g={g})" for g, c in costs.items())
        + " a one-token forward"
    )
    for batch in (1, 8):
        rows = args.seqs if batch == 1 else 8
        r = run_setup(
            f"{shape} <- its own first layer (1 x {args.width}, shared embeddings and head)",
            target, layer_draft, rows=rows, batch=batch, length=args.tokens, gamma=args.gamma, repeats=args.repeats,
        )  # fmt: skip
        summary.append(
            f"{shape} <- 1-layer draft, batch {batch}: acceptance {r['acceptance']:.2f}, "
            f"{r['tokens_per_round']:.2f} tokens/round, speed-up {r['speedup']:.2f}x"
        )
    vocab = Vocab([str(i) for i in range(3, args.vocab)], level="word")
    seqs = ancestral_sample(target, [[5]], 24, num_samples=400, rng=9).sequences()[0]
    bigram = NGramModel(vocab, 2, [[t for t in s if t != 0] for s in seqs])
    for batch in (1, 8):
        rows = args.seqs if batch == 1 else 8
        r = run_setup(
            f"{shape} <- a bigram distilled from 400 of its samples",
            target, bigram, rows=rows, batch=batch, length=args.tokens, gamma=args.gamma, repeats=args.repeats,
        )  # fmt: skip
        summary.append(
            f"{shape} <- distilled bigram, batch {batch}: acceptance {r['acceptance']:.2f}, "
            f"{r['tokens_per_round']:.2f} tokens/round, speed-up {r['speedup']:.2f}x"
        )
    print("\nsummary (speed-up = ancestral wall time / speculative wall time; > 1 = faster):")
    for line in summary:
        print("  " + line)
    print(
        f"  a round commits 'tokens/round' tokens for one block forward ({costs[args.gamma]:.2f}x a one-token "
        f"forward at gamma {args.gamma} here) plus gamma draft steps: it pays off when tokens/round exceeds that sum"
    )


if __name__ == "__main__":
    main()
