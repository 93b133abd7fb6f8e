"""Mirostat v1 and v2 (Basu et al. 2021): truncation that steers the surprise of each draw.

Stateful, unlike the processors: the sampler holds one `mu` per global row id
and updates it after every draw (see `Sampler`); `reset()` forgets it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faithful._numeric import log_softmax
from faithful.errors import SamplingParameterError
from faithful.selection import candidate_superset

_LN2 = math.log(2.0)


@dataclass
class Mirostat:
    """Mirostat v1 / v2 truncation (Basu et al. 2021), with per-row state.

    State: ``mu[row]`` (target surprise bound, in bits), keyed by *global row
    id* (the ``rows`` argument of :meth:`Sampler.__call__`), starting at
    ``2 * tau``. Each call that draws updates ``mu -= eta * (s - tau)`` where
    ``s = -log2 q[token]`` under the truncated, renormalised distribution (as
    llama.cpp). :meth:`Sampler.distribution` reads the state without changing
    it. Call :meth:`reset` (or ``Sampler.reset()``) between sequences.

    - v2: keep tokens with surprise ``-log2 p <= mu`` (the top token always).
    - v1: estimate the Zipf exponent ``s_hat`` from the top ``m`` probabilities,
      then top-k with ``k = ((e * 2**mu) / (1 - V**-e)) ** (1 / s_hat)``, ``e = s_hat - 1``.

    Example:
        >>> m = Mirostat(version=2, tau=3.0)
        >>> m.mu_for([0]).tolist()
        [6.0]
    """

    version: int = 2
    tau: float = 5.0
    eta: float = 0.1
    m: int = 100
    mu: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # version, tau and eta are checked by the one processor table (faithful.processors.table)
        from faithful.processors.table import validate_fields

        validate_fields(self)
        if not (isinstance(self.m, int) and self.m >= 2):
            raise SamplingParameterError(f"`mirostat_m` must be an int >= 2, got {self.m!r}")

    def reset(self) -> None:
        """Forget every row's state."""
        self.mu.clear()

    def mu_for(self, rows: np.ndarray | Sequence[int]) -> np.ndarray:
        """Current ``mu`` for each row, float64 ``(R,)``."""
        return np.array([self.mu.get(int(r), 2.0 * self.tau) for r in rows], dtype=np.float64)

    def truncate(self, z: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The truncated logits for the current state (pure: state is not changed)."""
        mu = self.mu_for(rows)
        b, v = z.shape
        logp = log_softmax(z)
        top = z == z.max(axis=1, keepdims=True)
        if self.version == 2:
            keep = (-logp / _LN2 <= mu[:, None]) | top
            return np.where(keep, z, -np.inf)
        kk = min(self.m, v)
        top_logp = _top_sorted(logp, kk)
        ks = np.empty(b, dtype=np.int64)
        for i in range(b):
            lp = top_logp[i][np.isfinite(top_logp[i])]
            if lp.size < 2:
                ks[i] = 1
                continue
            idx = np.arange(lp.size - 1)
            t = np.log((idx + 2.0) / (idx + 1.0))
            s_hat = float((t * (lp[:-1] - lp[1:])).sum() / (t * t).sum())
            e = s_hat - 1.0
            with np.errstate(all="ignore"):
                k = ((e * 2.0 ** mu[i]) / (1.0 - v ** (-e))) ** (1.0 / s_hat) if s_hat > 0 and e != 0 else v
            ks[i] = int(min(max(k, 1.0), v)) if math.isfinite(k) else v
        kth = np.take_along_axis(_top_sorted(z, int(ks.max())), (ks - 1)[:, None], axis=1)
        return np.where(z >= kth, z, -np.inf)

    def update(self, rows: np.ndarray, logprobs: np.ndarray) -> None:
        """Feed back the surprise of the drawn tokens (natural-log ``logprobs``)."""
        mu = self.mu_for(rows)
        surprise = -logprobs / _LN2
        for r, new in zip(rows.tolist(), (mu - self.eta * (surprise - self.tau)).tolist(), strict=True):
            self.mu[int(r)] = new


def _top_sorted(z: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest values of each row, in descending order, without sorting whole rows."""
    idx = candidate_superset(z, k)
    cand = np.where(idx >= 0, z[np.arange(z.shape[0])[:, None], np.maximum(idx, 0)], -np.inf)
    return -np.sort(-cand, axis=1)[:, :k]
