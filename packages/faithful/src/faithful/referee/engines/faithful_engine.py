"""faithful itself as an engine: its sampler's exact q and its keyed inverse-CDF draws."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from faithful.processors.table import DEFAULT_ORDER
from faithful.referee.engines import counts_from_tokens
from faithful.samplers import make_sampler

_CHUNK = 1 << 22  # logits entries per sampler call: bounds memory at large vocabularies


def _rows(history: np.ndarray | None) -> list[list[int]] | None:
    return None if history is None else np.asarray(history, dtype=np.int64).tolist()


class FaithfulEngine:
    name = "faithful"
    order = DEFAULT_ORDER

    def unavailable(self) -> str | None:
        return None

    def unsupported(self, keywords: Mapping[str, Any]) -> str | None:
        return None

    def distribution(
        self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None = None
    ) -> np.ndarray:
        return make_sampler(**keywords).distribution(logits, history=_rows(history))

    def sample(
        self,
        logits: np.ndarray,
        keywords: Mapping[str, Any],
        n: int,
        seed: int,
        history: np.ndarray | None = None,
    ) -> np.ndarray:
        sampler = make_sampler(**keywords)
        hist = _rows(history)
        b, v = logits.shape
        per = max(1, min(n, _CHUNK // max(v, 1)))
        tokens = np.empty((b, n), dtype=np.int64)
        for r in range(b):
            for start in range(0, n, per):
                m = min(per, n - start)
                rows = np.arange(r * n + start, r * n + start + m)  # distinct keys: independent uniforms
                block = np.broadcast_to(logits[r], (m, v))
                h = None if hist is None else [hist[r]] * m
                tokens[r, start : start + m] = sampler(block, rng=seed, rows=rows, history=h).tokens
        return counts_from_tokens(tokens, v)
