"""A textbook torch sampler: temperature, ``torch.topk`` top-k, sort/cumsum top-p, min-p, ``torch.multinomial``.

This is the code found in tutorials and many repositories (nanoGPT's top-k, the sort/cumsum
nucleus filter of the original ``top_k_top_p_filtering``): it keeps the token that crosses
``top_p``, but ties at either cutoff are split by the sort's order, not by their value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from faithful.referee.engines import counts_from_tokens, normalised, unsupported_keywords

SUPPORTED = ("temperature", "top_k", "top_p", "min_p")


class TorchNaiveEngine:
    name = "torch-naive"
    order: tuple[str, ...] = SUPPORTED

    def __init__(self, dtype: str = "float32") -> None:
        self.dtype = dtype

    def unavailable(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"torch is not installed: {exc}"
        return None

    def unsupported(self, keywords: Mapping[str, Any]) -> str | None:
        return unsupported_keywords(keywords, SUPPORTED, self.name)

    def top_p_remove(self, sorted_probs: Any, top_p: float) -> Any:
        """Which sorted (descending) tokens to remove: those after the one that crosses ``top_p``."""
        import torch

        remove = torch.cumsum(sorted_probs, dim=-1) > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the crossing token
        remove[..., 0] = False
        return remove

    def _probs(self, logits: np.ndarray, keywords: Mapping[str, Any]) -> Any:
        import torch

        z = torch.from_numpy(np.ascontiguousarray(logits)).to(getattr(torch, self.dtype)).clone()
        t = keywords.get("temperature", 1.0)
        if t != 1.0:
            z = z / t
        k = keywords.get("top_k")
        if k is not None:
            kth = torch.topk(z, min(int(k), z.shape[-1])).values[..., -1:]
            z[z < kth] = -float("inf")
        p = keywords.get("top_p")
        if p is not None and p < 1.0:
            sorted_z, idx = torch.sort(z, descending=True)
            remove = self.top_p_remove(torch.softmax(sorted_z, dim=-1), float(p))
            z[remove.scatter(1, idx, remove)] = -float("inf")
        m = keywords.get("min_p")
        if m is not None and m > 0:
            probs = torch.softmax(z, dim=-1)
            z[probs < m * probs.max(dim=-1, keepdim=True).values] = -float("inf")
        return torch.softmax(z, dim=-1)

    def distribution(
        self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None = None
    ) -> np.ndarray:
        return normalised(self._probs(logits, keywords).double().numpy())

    def sample(
        self,
        logits: np.ndarray,
        keywords: Mapping[str, Any],
        n: int,
        seed: int,
        history: np.ndarray | None = None,
    ) -> np.ndarray:
        import torch

        g = torch.Generator().manual_seed(seed)
        tokens = torch.multinomial(self._probs(logits, keywords), n, replacement=True, generator=g)
        return counts_from_tokens(tokens.numpy(), logits.shape[1])
