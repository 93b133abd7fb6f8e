"""numba kernels for the chain dynamic programs: max-product (Viterbi) and sum-product (forward).

Both take the score tensors of :class:`faithful.chains.LinearChain` with the transitions as a
4-D array ``(Bt, Tt, S, S)`` (``Bt`` in ``{1, B}``: shared or per row; ``Tt`` in ``{1, T-1}``:
shared or per step), and fill ``out (B, T, S)`` exactly as :func:`faithful.chains.forward_scores`
does (past a row's length the last position repeats).

Max-product is exact: each candidate ``d[i] + tr[i, j]`` is one float64 addition and a max
does not round, so the scores are those of the numpy reference bit for bit, whatever the
order of the loop. Sum-product is the reference's shifted exp -> matmul -> log
(:class:`faithful.chains.dp._LogMatmul`) with the products summed in a different order, so
it agrees to float64 rounding; it is used only where the reference uses the matmul form
(column spread of the transition scores below the same bound).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _tr_index(bt: int, tt: int, b: int, t: int) -> tuple[np.int64, np.int64]:
    bi = np.int64(b) if bt > 1 else np.int64(0)  # one integer type on both branches
    ti = np.int64(t - 1) if tt > 1 else np.int64(0)
    return bi, ti


@njit(cache=True)
def _max_row(
    init: np.ndarray, em: np.ndarray, tr: np.ndarray, length: int, b: int, out: np.ndarray, new: np.ndarray
) -> None:
    t_len, s = em.shape
    for j in range(s):
        out[0, j] = init[j] + em[0, j]
    for t in range(1, length):
        bi, ti = _tr_index(tr.shape[0], tr.shape[1], b, t)
        m = tr[bi, ti]
        prev = out[t - 1]
        # i outer, j inner: the inner loop is elementwise over a contiguous row, so it vectorises
        for j in range(s):
            new[j] = prev[0] + m[0, j]
        for i in range(1, s):
            pi = prev[i]
            for j in range(s):
                c = pi + m[i, j]
                new[j] = c if c > new[j] else new[j]
        for j in range(s):
            out[t, j] = new[j] + em[t, j]
    for t in range(length, t_len):
        for j in range(s):
            out[t, j] = out[length - 1, j]


@njit(cache=True)
def forward_max(init: np.ndarray, em: np.ndarray, tr: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Max-product forward scores ``(B, T, S)``.

    Rows run one after another: ``parallel=True`` made the single-row case (the common one)
    twice as slow, its loop no longer vectorised.
    """
    b_len, t_len, s = em.shape
    out = np.empty((b_len, t_len, s))
    for b in range(b_len):
        new = np.empty(s)
        _max_row(init[b], em[b], tr, int(lengths[b]), b, out[b], new)
    return out


@njit(cache=True)
def backtrack(d: np.ndarray, tr: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Viterbi paths ``(B, T)`` (``-1`` past a row's length) from max-product scores ``d``.

    The first maximal state wins every argmax, as in the reference and hmmlearn.
    """
    b_len, t_len, s = d.shape
    z = np.full((b_len, t_len), -1, dtype=np.int64)
    for b in range(b_len):
        end = int(lengths[b]) - 1
        best = 0
        for j in range(1, s):
            if d[b, end, j] > d[b, end, best]:
                best = j
        z[b, end] = best
        for t in range(end, 0, -1):
            bi, ti = _tr_index(tr.shape[0], tr.shape[1], b, t)
            col = z[b, t]
            arg = 0
            top = d[b, t - 1, 0] + tr[bi, ti, 0, col]
            for i in range(1, s):
                c = d[b, t - 1, i] + tr[bi, ti, i, col]
                if c > top:
                    top = c
                    arg = i
            z[b, t - 1] = arg
    return z


@njit(cache=True)
def _sum_row(
    init: np.ndarray,
    em: np.ndarray,
    ex: np.ndarray,
    col: np.ndarray,
    length: int,
    b: int,
    out: np.ndarray,
    p: np.ndarray,
    acc: np.ndarray,
) -> None:
    t_len, s = em.shape
    for j in range(s):
        out[0, j] = init[j] + em[0, j]
    for t in range(1, length):
        bi, ti = _tr_index(ex.shape[0], ex.shape[1], b, t)
        e = ex[bi, ti]
        c = col[bi, ti]
        prev = out[t - 1]
        m = -np.inf
        for i in range(s):
            m = max(m, prev[i])
        if m == -np.inf or m != m:
            m = 0.0
        for i in range(s):
            p[i] = math.exp(prev[i] - m)
        for j in range(s):
            acc[j] = 0.0
        for i in range(s):
            pi = p[i]
            if pi == 0.0:
                continue
            for j in range(s):
                acc[j] += pi * e[i, j]
        for j in range(s):
            out[t, j] = (math.log(acc[j]) if acc[j] > 0.0 else -np.inf) + m + c[j] + em[t, j]
    for t in range(length, t_len):
        for j in range(s):
            out[t, j] = out[length - 1, j]


@njit(cache=True)
def forward_sum(
    init: np.ndarray, em: np.ndarray, ex: np.ndarray, col: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Sum-product forward scores ``(B, T, S)`` from the shifted transition weights.

    ``ex = exp(tr - col)`` ``(Bt, Tt, S, S)`` and ``col`` ``(Bt, Tt, S)``, the column maxima
    (0 where a column is all ``-inf``), as :class:`faithful.chains.dp._LogMatmul` builds them.
    """
    b_len, t_len, s = em.shape
    out = np.empty((b_len, t_len, s))
    for b in range(b_len):
        p = np.empty(s)
        acc = np.empty(s)
        _sum_row(init[b], em[b], ex, col, int(lengths[b]), b, out[b], p, acc)
    return out
