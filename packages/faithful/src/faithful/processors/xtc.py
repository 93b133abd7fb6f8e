"""XTC ("exclude top choices"): with some probability, drop every likely token but the least likely of them.

As llama.cpp defines it (``src/llama-sampling.cpp``, ``llama_sample_xtc_apply``):
with probability ``probability`` (one uniform per row and step), when at least two
tokens have ``p >= threshold``, every token with ``p >= threshold`` except the
least probable of them is removed, unless fewer than ``min_keep`` tokens would be
left. ``p`` is the softmax of the logits XTC receives.

XTC is the one stochastic processor: it takes the keyed ``rng`` explicitly, and
the sampler hands it the same keyed source it draws with (on a lane the draw does
not use), so the returned ``q`` is exactly the distribution the token was drawn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from faithful._numeric import softmax
from faithful.processors._base import History, Processor, _keep
from faithful.rng import resolve_rng


@dataclass(frozen=True)
class XTC(Processor):
    """Exclude top choices (llama.cpp's ``xtc``).

    Parameters (validated by the processor table):
        probability: in [0, 1]: how often XTC acts on a row (0 never, 1 always).
        threshold: in [0, 1]: tokens with ``p >= threshold`` are the "top choices";
            above 0.5 at most one token can qualify, so XTC never acts (as llama.cpp).
        min_keep: int ``>= 0``: XTC does not act when fewer tokens would remain.

    One deliberate difference: when several tokens tie as the least probable top
    choice, all of them are kept (llama.cpp keeps one, chosen by its sort order),
    the same rule as :class:`~faithful.processors.TopP` at its boundary.

    Example:
        >>> z = np.log(np.array([[0.4, 0.3, 0.2, 0.1]]))
        >>> np.isfinite(XTC(1.0, 0.15).exclude(z)).tolist()
        [[False, False, True, True]]
        >>> np.isfinite(XTC(1.0, 0.15)(z, rng=0)).tolist()
        [[False, False, True, True]]
    """

    probability: float
    threshold: float = 0.1
    min_keep: int = 1
    name: ClassVar[str] = "xtc"
    stochastic: ClassVar[bool] = True

    def exclude(self, logits: np.ndarray) -> np.ndarray:
        """The logits after XTC acts on every row (the deterministic half)."""
        if self.threshold > 0.5:
            return logits.copy()
        p = softmax(logits)
        top = p >= float(self.threshold)
        n_top = top.sum(axis=1, keepdims=True)
        # the least probable top choice (and every token tied with it) stays
        floor = np.where(top, p, np.inf).min(axis=1, keepdims=True)
        drop = top & (p > floor)
        remaining = np.isfinite(logits).sum(axis=1, keepdims=True) - drop.sum(axis=1, keepdims=True)
        acts = (n_top >= 2) & (remaining >= int(self.min_keep))
        return _keep(logits, ~(drop & acts))

    def acts(self, rows: np.ndarray | Sequence[int], *, rng: Any, step: int = 0, lane: int = 0) -> np.ndarray:
        """Whether XTC acts on each row: ``u <= probability`` for the keyed uniform of ``(row, step, lane)``."""
        u = resolve_rng(rng).uniforms(rows, step, lane + 1)[:, lane]
        return np.asarray(u <= float(self.probability))

    def __call__(
        self,
        logits: np.ndarray,
        history: History | None = None,
        *,
        rng: Any = None,
        rows: Sequence[int] | np.ndarray | None = None,
        step: int = 0,
        lane: int = 0,
    ) -> np.ndarray:
        """Apply XTC with the keyed coin of each row.

        Parameters:
            logits: float64 ``(B, V)``.
            history: unused.
            rng: int seed, :class:`~faithful.rng.KeyedRNG`, a uniform source, or None (fresh seed).
            rows: global row ids ``(B,)`` (default ``arange(B)``). step: the decoding step.
            lane: the lane of the keyed uniforms used for the coin (the sampler passes one
                its draw does not use).

        Returns:
            New float64 ``(B, V)`` logits.
        """
        row_ids = np.arange(logits.shape[0]) if rows is None else np.asarray(rows)
        if self.probability <= 0 or self.threshold > 0.5:
            return logits.copy()
        acts = self.acts(row_ids, rng=rng, step=step, lane=lane)
        return np.where(acts[:, None], self.exclude(logits), logits)
