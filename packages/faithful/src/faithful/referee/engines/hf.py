"""Hugging Face transformers: its logits processors (in ``generate``'s order) and ``torch.multinomial`` on CPU.

The chain is built from the processor table's ``hf`` column (the class and its arguments), in the
order ``GenerationMixin._get_logits_processor`` uses: sequence bias, repetition penalty,
no-repeat-ngram, suppressed tokens, then temperature, top-k, top-p, min-p, typical, epsilon, eta
(the same as faithful's default order for these; tested against that method). Scores are float32, as ``generate``
sees them from a float32 model; ``generate`` draws with ``torch.multinomial(softmax(scores), 1)``,
and so does :meth:`HFEngine.sample` (``n`` draws with replacement: the same law, one call).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from faithful.processors.table import TABLE
from faithful.referee.engines import counts_from_tokens, normalised


class HFEngine:
    name = "hf"
    order = tuple(e.name for e in TABLE if e.hf)

    def __init__(self, dtype: str = "float32") -> None:
        self.dtype = dtype

    def unavailable(self) -> str | None:
        try:
            import torch  # noqa: F401
            import transformers.generation.logits_process  # noqa: F401
        except ImportError as exc:
            return f"transformers (with torch) is not installed: {exc}"
        return None

    def unsupported(self, keywords: Mapping[str, Any]) -> str | None:
        for entry in TABLE:
            mine = [p.keyword for p in entry.params if p.keyword in keywords]
            if not mine:
                continue
            if entry.hf is None:
                return f"not supported by this engine: Hugging Face has no {entry.name} processor"
        return None

    def _chain(self, keywords: Mapping[str, Any]) -> Any:
        from transformers.generation import logits_process as lp

        procs = []
        for entry in TABLE:  # the table's order is generate's order for every processor HF has
            mine = {p.keyword: keywords[p.keyword] for p in entry.params if p.keyword in keywords}
            if not mine or entry.hf is None or entry.hf_args is None:
                continue
            procs.append(getattr(lp, entry.hf)(**entry.hf_args(mine)))
        return lp.LogitsProcessorList(procs)

    def _probs(self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None) -> Any:
        import torch

        scores = torch.from_numpy(np.ascontiguousarray(logits)).to(getattr(torch, self.dtype))
        if history is None:  # no processor of the setting reads input_ids
            ids = torch.zeros((scores.shape[0], 1), dtype=torch.long)
        else:
            ids = torch.from_numpy(np.ascontiguousarray(history, dtype=np.int64))
        out = self._chain(keywords)(ids, scores)
        return torch.nn.functional.softmax(out, dim=-1)  # generate's own step before multinomial

    def distribution(
        self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None = None
    ) -> np.ndarray:
        return normalised(self._probs(logits, keywords, history).double().numpy())

    def sample(
        self,
        logits: np.ndarray,
        keywords: Mapping[str, Any],
        n: int,
        seed: int,
        history: np.ndarray | None = None,
    ) -> np.ndarray:
        import torch

        probs = self._probs(logits, keywords, history)
        g = torch.Generator().manual_seed(seed)
        tokens = torch.multinomial(probs, n, replacement=True, generator=g)
        return counts_from_tokens(tokens.numpy(), logits.shape[1])
