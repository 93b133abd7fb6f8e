"""FlashInfer's sampling kernels (``flashinfer.sampling``), when importable on a CUDA device.

q is what FlashInfer's renorm kernels give (``top_k_renorm_probs`` then ``top_p_renorm_probs``:
the ``top_k_first`` order); draws come from ``top_k_top_p_sampling_from_probs`` with an explicit
generator. Without flashinfer or without a GPU the matrix says "not available".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from faithful.referee.engines import counts_from_tokens, normalised, unsupported_keywords

SUPPORTED = ("temperature", "top_k", "top_p")


class FlashInferEngine:
    name = "flashinfer"
    order: tuple[str, ...] = SUPPORTED

    def unavailable(self) -> str | None:
        try:
            import flashinfer.sampling  # noqa: F401
            import torch
        except Exception as exc:
            return f"flashinfer is not importable here ({type(exc).__name__}: {exc})"
        if not torch.cuda.is_available():
            return "flashinfer needs a CUDA device; none is visible"
        return None

    def unsupported(self, keywords: Mapping[str, Any]) -> str | None:
        return unsupported_keywords(keywords, SUPPORTED, self.name)

    def _tempered(self, logits: np.ndarray, keywords: Mapping[str, Any]) -> Any:
        import torch

        z = torch.from_numpy(np.ascontiguousarray(logits)).float().cuda()
        t = keywords.get("temperature", 1.0)
        return torch.softmax(z / t if t != 1.0 else z, dim=-1)

    def distribution(
        self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None = None
    ) -> np.ndarray:
        import flashinfer.sampling as fs

        probs = self._tempered(logits, keywords)
        if keywords.get("top_k") is not None:
            probs = fs.top_k_renorm_probs(probs, int(keywords["top_k"]))
        if keywords.get("top_p") is not None:
            probs = fs.top_p_renorm_probs(probs, float(keywords["top_p"]))
        return normalised(probs.double().cpu().numpy())

    def sample(
        self,
        logits: np.ndarray,
        keywords: Mapping[str, Any],
        n: int,
        seed: int,
        history: np.ndarray | None = None,
    ) -> np.ndarray:
        import flashinfer.sampling as fs
        import torch

        probs = self._tempered(logits, keywords).repeat_interleave(n, dim=0).contiguous()
        g = torch.Generator(device="cuda").manual_seed(seed)
        k = int(keywords.get("top_k") or logits.shape[1])
        p = float(keywords.get("top_p") or 1.0)
        tokens = fs.top_k_top_p_sampling_from_probs(
            probs, k, p, filter_apply_order="top_k_first", generator=g
        )
        return counts_from_tokens(tokens.view(logits.shape[0], n).long().cpu().numpy(), logits.shape[1])
