"""numba kernel for beam search: each beam's exact log-normaliser and its top candidates in one pass.

Beam search needs, per beam row of logits ``x``, the float64 log-probabilities
``x - m - log sum exp(x - m)`` of only the tokens that can enter the next ``2K`` beams:
any of those is among its own row's ``2K`` largest logits (a row's candidates rank by
``x`` alone). So one pass after the row maximum both sums ``exp(x - m)`` and keeps the
``c`` largest logits seen so far (ties: the lower token id), instead of a float64 copy
of every beam's full row, a ``(B, K, V)`` score array and a top-k over ``K * V``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

OK, BAD_VALUE, EMPTY_ROW = 0, 1, 2


@njit(cache=True)
def _row(x: np.ndarray, c: int, tok: np.ndarray, val: np.ndarray) -> tuple[float, float, int]:
    """Row max, float64 sum of ``exp(x - max)`` and the ``c`` best tokens (unsorted) in ``tok``/``val``."""
    v = x.shape[0]
    m = -np.inf
    bad = False
    for i in range(v):
        xi = np.float64(x[i])
        bad |= xi != xi
        m = max(m, xi)
    if bad or m == np.inf:
        return 0.0, 0.0, BAD_VALUE
    if m == -np.inf:
        return 0.0, 0.0, EMPTY_ROW
    for j in range(c):
        tok[j] = j
        val[j] = np.float64(x[j])
    low = 0  # the slot holding the worst kept (smallest value, then highest token id)
    for j in range(1, c):
        if (val[j] < val[low]) | ((val[j] == val[low]) & (tok[j] > tok[low])):
            low = j
    z0 = z1 = 0.0
    for i in range(c):
        e = math.exp(np.float64(x[i]) - m)
        if i & 1:
            z1 += e
        else:
            z0 += e
    for i in range(c, v):
        xi = np.float64(x[i])
        e = math.exp(xi - m)
        if i & 1:
            z1 += e
        else:
            z0 += e
        if xi > val[low]:  # strictly: an equal later token has the higher id and stays out
            tok[low] = i
            val[low] = xi
            low = 0
            for j in range(1, c):
                if (val[j] < val[low]) | ((val[j] == val[low]) & (tok[j] > tok[low])):
                    low = j
    return m, z0 + z1, OK


@njit(cache=True, parallel=True)
def beam_candidates(x: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the ``c`` best tokens sorted (logit descending, token id ascending), their float64
    log-probabilities ``(x - m) - log(sum exp(x - m))``, and a status (OK / BAD_VALUE / EMPTY_ROW).
    """
    r_len = x.shape[0]
    toks = np.empty((r_len, c), dtype=np.int64)
    lps = np.empty((r_len, c), dtype=np.float64)
    status = np.empty(r_len, dtype=np.int64)
    for r in prange(r_len):
        tok = np.empty(c, dtype=np.int64)
        val = np.empty(c, dtype=np.float64)
        m, z, st = _row(x[r], c, tok, val)
        status[r] = st
        if st != OK:
            for j in range(c):
                toks[r, j] = -1
                lps[r, j] = -np.inf
            continue
        log_z = math.log(z)
        # insertion sort of c (= 2K) entries: value descending, then token ascending
        for j in range(1, c):
            tj, vj = tok[j], val[j]
            i = j - 1
            while i >= 0 and ((val[i] < vj) | ((val[i] == vj) & (tok[i] > tj))):
                tok[i + 1] = tok[i]
                val[i + 1] = val[i]
                i -= 1
            tok[i + 1] = tj
            val[i + 1] = vj
        for j in range(c):
            toks[r, j] = tok[j]
            lps[r, j] = (val[j] - m) - log_z
    return toks, lps, status
