"""Token samplers: faithful vs Hugging Face processors + torch.multinomial, vs one read pass.

Batch 64 x vocab 50,257 float32 logits on CPU, shaped like a language model's
(Zipf-like probabilities with noise, in random token order). Every number is
measured in this run; ratios are printed next to the anchors:

- ``read``: one read pass over the logits, the memory limit for anything that looks
  at every logit: numpy ``logits.max(axis=1)`` and ``logits.sum()``, both printed;
  targets are checked against the faster one;
- ``hf``: the Hugging Face warper(s) + softmax + ``torch.multinomial`` on a torch tensor.

Targets (issue 5): top-p <= 5x one read pass and >= 10x faster than Hugging
Face's top-p; top-k and min-p <= 3x one read pass. Tests never assert on time.

Run: ``.venv/bin/python bench/faithful_samplers.py [--batch 64] [--vocab 50257] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from faithful.samplers import greedy, make_sampler


def lm_like_logits(batch: int, vocab: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, vocab + 1, dtype=np.float64)
    base = -1.1 * np.log(ranks)
    out = np.empty((batch, vocab), dtype=np.float32)
    for b in range(batch):
        row = base + rng.normal(0.0, 0.5, vocab) + rng.normal(0.0, 1.0)
        out[b] = row[rng.permutation(vocab)] * rng.uniform(0.7, 1.5)
    return out


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3 if repeat < 5 else statistics.median(sorted(times)[: max(3, repeat // 2)]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    logits = lm_like_logits(args.batch, args.vocab)
    max_ms = best_ms(lambda: logits.max(axis=1), args.repeat)
    sum_ms = best_ms(lambda: logits.sum(), args.repeat)
    read_ms = min(max_ms, sum_ms)

    try:
        import torch
        from transformers.generation import logits_process as lp
    except ImportError:  # pragma: no cover
        torch = None
        lp = None

    def hf(*warpers: Any) -> Callable[[], Any] | None:
        if torch is None:
            return None
        t = torch.from_numpy(logits)
        ids = torch.zeros((t.shape[0], 1), dtype=torch.long)
        chain = lp.LogitsProcessorList(list(warpers))
        gen = torch.Generator().manual_seed(0)

        def run() -> Any:
            scores = chain(ids, t)
            return torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=gen)

        return run

    cases: list[tuple[str, Any, Callable[[], Any] | None, float | None]] = [
        ("greedy (argmax)", greedy(), None, None),
        ("sample (T=1)", make_sampler(), hf() if torch else None, None),
        ("temperature 0.7", make_sampler(temperature=0.7), hf(lp.TemperatureLogitsWarper(0.7)) if lp else None, None),
        ("top-k 50", make_sampler(top_k=50), hf(lp.TopKLogitsWarper(50)) if lp else None, 3.0),
        ("top-p 0.9", make_sampler(top_p=0.9), hf(lp.TopPLogitsWarper(0.9)) if lp else None, 5.0),
        ("min-p 0.05", make_sampler(min_p=0.05), hf(lp.MinPLogitsWarper(0.05)) if lp else None, 3.0),
        (
            "T 0.7 + top-p 0.9",
            make_sampler(temperature=0.7, top_p=0.9),
            hf(lp.TemperatureLogitsWarper(0.7), lp.TopPLogitsWarper(0.9)) if lp else None,
            None,
        ),
        ("typical 0.9", make_sampler(typical_p=0.9), hf(lp.TypicalLogitsWarper(0.9)) if lp else None, None),
        ("epsilon 3e-4", make_sampler(epsilon=3e-4), hf(lp.EpsilonLogitsWarper(3e-4)) if lp else None, None),
    ]

    print(f"faithful token samplers, batch {args.batch} x vocab {args.vocab}, float32 logits, CPU")
    print(f"one read pass: logits.max(axis=1) {max_ms:.3f} ms, logits.sum() {sum_ms:.3f} ms")
    print("targets are checked against the faster of the two ('x read'); 'x sum' is against logits.sum()")
    print(f"{'sampler':<20}{'faithful ms':>12}{'x read':>9}{'x sum':>8}{'HF+multinomial ms':>19}{'HF / ours':>11}  target")
    results: dict[str, tuple[float, float | None]] = {}
    for label, sampler, hf_fn, read_target in cases:
        step = iter(range(10**9))
        ours = best_ms(lambda s=sampler, it=step: s(logits, rng=0, step=next(it)), args.repeat)
        theirs = best_ms(hf_fn, args.repeat) if hf_fn is not None else None
        results[label] = (ours, theirs)
        target = ""
        if read_target is not None:
            target = f"<= {read_target:g}x read: {'ok' if ours <= read_target * read_ms else 'MISSED'}"
        if label == "top-p 0.9" and theirs is not None:
            target += f"; >= 10x HF: {'ok' if theirs >= 10 * ours else 'MISSED'}"
        hf_txt = f"{theirs:19.2f}{theirs / ours:10.1f}x" if theirs is not None else f"{'-':>19}{'-':>11}"
        print(f"{label:<20}{ours:12.2f}{ours / read_ms:8.1f}x{ours / sum_ms:7.1f}x{hf_txt}  {target}")
    if torch is not None:
        t = torch.from_numpy(logits)
        print("torch backend (tensor in, same tokens as numpy):")
        for label, kwargs in (("top-k 50", {"top_k": 50}), ("top-p 0.9", {"top_p": 0.9}), ("min-p 0.05", {"min_p": 0.05})):
            s = make_sampler(backend="torch", **kwargs)  # type: ignore[arg-type]
            ms = best_ms(lambda s=s: s(t, rng=0), args.repeat)
            print(f"  {label:<18}{ms:12.2f}{ms / read_ms:8.1f}x{ms / sum_ms:7.1f}x")


if __name__ == "__main__":
    main()
