"""vLLM's v1 sampler ops: ``apply_top_k_top_p`` and ``random_sample`` (the exponential race), when importable.

When vLLM is not importable here, the matrix says so ("not available"); nothing stands in for it.
The adapter calls vLLM's own functions of ``vllm.v1.sample.ops.topk_topp_sampler``: temperature is a
division (vLLM's ``Sampler.apply_temperature``), then ``apply_top_k_top_p(logits, k, p)``, then
``random_sample(softmax, generators)``; min-p and the other warpers are not part of that module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from faithful.referee.engines import counts_from_tokens, normalised, unsupported_keywords

SUPPORTED = ("temperature", "top_k", "top_p")


def _ops() -> Any:
    from vllm.v1.sample.ops import topk_topp_sampler

    return topk_topp_sampler


class VLLMEngine:
    name = "vllm"
    order: tuple[str, ...] = SUPPORTED

    def unavailable(self) -> str | None:
        try:
            ops = _ops()
        except Exception as exc:  # ImportError, or vLLM failing to initialise on this machine
            return f"vllm is not importable here ({type(exc).__name__}: {exc})"
        missing = [f for f in ("apply_top_k_top_p", "random_sample") if not hasattr(ops, f)]
        if missing:
            return f"this vllm has no {', '.join(missing)} in vllm.v1.sample.ops.topk_topp_sampler"
        return None

    def unsupported(self, keywords: Mapping[str, Any]) -> str | None:
        penalties = sorted({"repetition_penalty", "presence_penalty", "frequency_penalty"} & set(keywords))
        if penalties:  # vLLM has them (vllm.v1.sample.ops.penalties); this adapter does not call them
            return f"not supported by this adapter: vLLM's {', '.join(penalties)} are not wired in"
        return unsupported_keywords(keywords, SUPPORTED, self.name)

    def _probs(self, logits: np.ndarray, keywords: Mapping[str, Any], repeat: int = 1) -> Any:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        z = torch.from_numpy(np.ascontiguousarray(logits)).float().to(device)
        z = z.repeat_interleave(repeat, dim=0)
        t = keywords.get("temperature", 1.0)
        if t != 1.0:
            z = z / t
        b = z.shape[0]
        k = keywords.get("top_k")
        p = keywords.get("top_p")
        kt = None if k is None else torch.full((b,), int(k), dtype=torch.long, device=device)
        pt = None if p is None else torch.full((b,), float(p), dtype=torch.float32, device=device)
        z = _ops().apply_top_k_top_p(z, kt, pt)
        return torch.softmax(z, dim=-1, dtype=torch.float32)

    def distribution(
        self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None = None
    ) -> np.ndarray:
        return normalised(self._probs(logits, keywords).double().cpu().numpy())

    def sample(
        self,
        logits: np.ndarray,
        keywords: Mapping[str, Any],
        n: int,
        seed: int,
        history: np.ndarray | None = None,
    ) -> np.ndarray:
        import torch

        probs = self._probs(logits, keywords, repeat=n)
        gens = {i: torch.Generator(device=probs.device).manual_seed(seed + i) for i in range(probs.shape[0])}
        tokens = _ops().random_sample(probs, gens)
        return counts_from_tokens(tokens.view(logits.shape[0], n).cpu().numpy(), logits.shape[1])
