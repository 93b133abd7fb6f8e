"""Temperature and the truncation processors (top-k, top-p, min-p, typical, epsilon, eta, top-n-sigma)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from faithful.processors._base import (
    History,
    Processor,
    _entropy,
    _keep,
    log_softmax,
    softmax,
)
from faithful.selection import (
    candidate_superset,
    mass_threshold_ascending,
    top_p_threshold,
)


@dataclass(frozen=True)
class Temperature(Processor):
    """``(z - max z) / temperature`` (> 0); ``0`` gives uniform over the maximal logits.

    The row maximum is subtracted *before* dividing: ``z - max z`` is computed
    without rounding error for the tokens that carry the mass (Sterbenz), while
    ``z / T`` rounds each logit relative to its own size, so logits near ``1e12``
    would move ``q`` by ``1e-5``. The shift does not change the distribution and
    keeps ``z / T`` from overflowing for small ``T``.

    Example:
        >>> Temperature(0.5)(np.array([[1.0, 2.0]])).tolist()
        [[-2.0, 0.0]]
    """

    temperature: float
    name: ClassVar[str] = "temperature"

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        top = logits.max(axis=1, keepdims=True)
        if self.temperature == 0:
            return np.where(logits == top, 0.0, -np.inf)
        # a -inf logit stays -inf; a finite one far below the max may overflow to -inf (probability 0)
        with np.errstate(over="ignore"):
            out: np.ndarray = (logits - top) / float(self.temperature)
        return out


@dataclass(frozen=True)
class TopK(Processor):
    """Keep the ``top_k`` largest logits per row (and every token tied with the k-th), via partition.

    Example:
        >>> np.isfinite(TopK(2)(np.array([[1.0, 3.0, 2.0]]))).tolist()
        [[False, True, True]]
    """

    top_k: int
    name: ClassVar[str] = "top_k"

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        k = int(self.top_k)
        if k >= logits.shape[1]:
            return logits.copy()
        idx = candidate_superset(logits, k)
        rows = np.arange(logits.shape[0])[:, None]
        cand = np.where(idx >= 0, logits[rows, np.maximum(idx, 0)], -np.inf)
        c = cand.shape[1]
        kth = np.partition(cand, c - k, axis=1)[:, c - k : c - k + 1] if k <= c else -np.inf
        return _keep(logits, logits >= kth)


@dataclass(frozen=True)
class TopP(Processor):
    """Nucleus truncation: keep the smallest set ``{p >= tau}`` with mass ``>= top_p``.

    ``top_p`` in (0, 1]; 1 keeps everything. Ties at the boundary are all kept
    (Hugging Face keeps an arbitrary subset of them).

    Example:
        >>> z = np.log(np.array([[0.4, 0.3, 0.3]]))
        >>> np.isfinite(TopP(0.5)(z)).tolist()
        [[True, True, True]]
    """

    top_p: float
    name: ClassVar[str] = "top_p"

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        if self.top_p >= 1.0:
            return logits.copy()
        return _keep(logits, logits >= top_p_threshold(logits, float(self.top_p))[:, None])


@dataclass(frozen=True)
class MinP(Processor):
    """Keep tokens with ``p >= min_p * max p``, i.e. ``z >= max z + log(min_p)``; ``min_p`` in [0, 1].

    Example:
        >>> z = np.log(np.array([[0.6, 0.3, 0.1]]))
        >>> np.isfinite(MinP(0.4)(z)).tolist()
        [[True, True, False]]
    """

    min_p: float
    name: ClassVar[str] = "min_p"

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        if self.min_p == 0:
            return logits.copy()
        cut = logits.max(axis=1, keepdims=True) + math.log(float(self.min_p))
        return _keep(logits, logits >= cut)


@dataclass(frozen=True)
class Typical(Processor):
    """Locally typical sampling (Meister et al. 2022), as Hugging Face's ``TypicalLogitsWarper``.

    Keeps the tokens whose surprise is closest to the entropy, in that order,
    until their mass reaches ``typical_p`` (in (0, 1]; 1 keeps everything).

    Example:
        >>> z = np.log(np.array([[0.7, 0.2, 0.1]]))
        >>> int(np.isfinite(Typical(0.75)(z)).sum())
        2
    """

    typical_p: float
    name: ClassVar[str] = "typical_p"

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        if self.typical_p >= 1.0:
            return logits.copy()
        logp = log_softmax(logits)
        p = np.exp(logp)
        entropy = _entropy(logp, p)
        shifted = np.abs(-logp - entropy)
        # take tokens by increasing |surprise - entropy| until their mass reaches typical_p (no full sort)
        cut = mass_threshold_ascending(shifted, p, np.full(logits.shape[0], float(self.typical_p)))
        return _keep(logits, shifted <= cut[:, None])


@dataclass(frozen=True)
class Epsilon(Processor):
    """Epsilon sampling (Hewitt et al. 2022): drop ``p < epsilon``, always keep the top token.

    Example:
        >>> np.isfinite(Epsilon(0.2)(np.log(np.array([[0.7, 0.25, 0.05]])))).tolist()
        [[True, True, False]]
    """

    epsilon: float
    name: ClassVar[str] = "epsilon"

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        top = logits == logits.max(axis=1, keepdims=True)
        return _keep(logits, (softmax(logits) >= self.epsilon) | top)


@dataclass(frozen=True)
class Eta(Processor):
    """Eta sampling (Hewitt et al. 2022): drop ``p < min(eta, sqrt(eta) * exp(-H))``; keep the top token.

    Example:
        >>> int(np.isfinite(Eta(0.05)(np.log(np.array([[0.9, 0.09, 0.01]])))).sum())
        2
    """

    epsilon: float
    name: ClassVar[str] = "eta"

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        logp = log_softmax(logits)
        p = np.exp(logp)
        entropy = _entropy(logp, p)
        eps = float(self.epsilon)
        cut = np.minimum(eps, math.sqrt(eps) * np.exp(-entropy))
        top = logits == logits.max(axis=1, keepdims=True)
        return _keep(logits, (p >= cut) | top)


@dataclass(frozen=True)
class TopNSigma(Processor):
    """Top-n-sigma (Tang et al. 2024): keep ``z >= max z - n * std(z)``.

    The standard deviation is over the row's finite logits (ddof 0), so the
    kept set does not change with temperature. ``n >= 0``. Hugging Face has no
    counterpart in the installed version.

    Example:
        >>> np.isfinite(TopNSigma(1.0)(np.array([[0.0, 0.0, 0.0, 4.0]]))).tolist()
        [[False, False, False, True]]
    """

    n: float
    name: ClassVar[str] = "top_n_sigma"

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        finite = np.isfinite(logits)
        count = finite.sum(axis=1, keepdims=True)
        zf = np.where(finite, logits, 0.0)
        mean = zf.sum(axis=1, keepdims=True) / count
        var = np.where(finite, (zf - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / count
        cut = logits.max(axis=1, keepdims=True) - float(self.n) * np.sqrt(var)
        return _keep(logits, logits >= cut)
