"""Selection without a full sort, in numpy: the reference path's truncation helpers and its sparse draw.

This module is part of the numpy reference: it never imports :mod:`faithful.kernels` (the
compiled kernels are tested against it).

The common chain ``temperature -> top_k -> top_p -> min_p`` followed by an
inverse-CDF draw needs only the tokens that can survive truncation. When top-k
or min-p bounds the support, this module finds a *superset* of the survivors
with one comparison pass (for top-k the bound is read off a strided sample of
each row, which can only under-estimate the k-th largest value), then makes
every exact decision in float64 on that small set:

- top-k: exact k-th largest among the candidates (ties kept), by partition;
- top-p after top-k: the candidates sorted by logit, a running sum against
  ``top_p`` times the normaliser over the top-k set;
- min-p: ``z >= max z + log(min_p)``;
- the draw: bands of ``exp(z - max z)`` in token order.

Without top-k or min-p the support can be most of the row, so the path stays
dense: ``exp`` over the row in float64, the top-p threshold by
:func:`top_p_threshold` (a sorted window of the top 256, else buckets on the
bits of the weights: no full sort), and the blocked band search of
:func:`faithful.draw.band_search`. :func:`mass_threshold_ascending` is the same
idea for typical sampling.

Tokens, log-probabilities and q are the dense reference's
(:mod:`faithful.samplers`) up to float64 rounding: a kept set can only differ
when a top-p boundary falls within an ulp of a running sum, a token only when a
uniform falls within an ulp of a band edge.
"""

from __future__ import annotations

import math

import numpy as np

from faithful._numeric import check_row_max
from faithful.draw import band_search, search_cdf

__all__ = [
    "argmax_checked",
    "candidate_superset",
    "mass_threshold_ascending",
    "pad_candidates",
    "sample_truncated",
    "top_p_threshold",
]

_SAMPLE_STRIDE = 32
# Rows shorter than this, or k this large relative to the row, are taken whole.
_SMALL_ROW = 4096


def argmax_checked(x: np.ndarray) -> np.ndarray:
    """First maximal token per row, after validating the logits from their row maxima (two passes).

    Example:
        >>> argmax_checked(np.array([[0.0, 2.0, 2.0]])).tolist()
        [1]
    """
    check_row_max(x.max(axis=1))
    tokens: np.ndarray = np.argmax(x, axis=1).astype(np.int64)
    return tokens


def pad_candidates(flat: np.ndarray, b: int, v: int) -> np.ndarray:
    """Turn sorted flat indices into per-row token ids, shape ``(B, C)``, padded with -1 at the end."""
    rows = flat // v
    counts = np.bincount(rows, minlength=b)
    width = max(int(counts.max(initial=0)), 1)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(flat.size) - starts[rows]
    idx = np.full((b, width), -1, dtype=np.int64)
    idx[rows, pos] = flat - rows * v
    return idx


def candidate_superset(x: np.ndarray, k: int) -> np.ndarray:
    """Per row, token ids (ascending, -1 padded, ``(B, C)``) of a superset of the top ``k`` and their ties.

    The lower bound comes from a strided sample of the row: the j-th largest of
    a subset is at most the j-th largest of the row. A bound set a little
    above the sample's k-th largest usually keeps ~3k candidates; rows left
    with fewer than k are redone with a bound 4x deeper into the sample, which
    is guaranteed once it is the sample's k-th largest or lower.

    Parameters:
        x: ``(B, V)`` finite-or-``-inf`` logits (any float dtype).
        k: ``>= 1``.

    Returns:
        int64 ``(B, C)``.

    Example:
        >>> x = np.arange(10.0)[None, :]
        >>> sorted(t for t in candidate_superset(x, 3)[0].tolist() if t >= 0)[-3:]
        [7, 8, 9]
    """
    b, v = x.shape
    if v <= _SMALL_ROW or k * 8 >= v:
        return np.broadcast_to(np.arange(v, dtype=np.int64), (b, v))
    sample = x[:, ::_SAMPLE_STRIDE]
    n = sample.shape[1]
    guess = min(n, math.ceil(3 * k / _SAMPLE_STRIDE) + 1)
    bound = np.partition(sample, n - guess, axis=1)[:, n - guess]
    while True:
        flat = np.flatnonzero(x >= bound[:, None])
        short = np.bincount(flat // v, minlength=b) < k
        if not short.any():
            break
        # Lower the bound of the short rows: the sample's g-th largest for g >= k is <= the row's
        # k-th largest, so this ends (at the latest with -inf when the sample is smaller than k).
        guess = min(n, guess * 4)
        lower = np.partition(sample, n - guess, axis=1)[:, n - guess] if guess < n or n >= k else -np.inf
        bound = np.where(short, lower, bound)
    return pad_candidates(flat, b, v)


_W_SHIFT = 46
_W_ONE = int(np.array([1.0]).view(np.int64)[0] >> _W_SHIFT)
_W_BUCKETS = 64 * 64
_KEY_SHIFT = 50
_KEY_INF = int(np.array([np.inf]).view(np.int64)[0] >> _KEY_SHIFT)  # typical: keys in [0, inf]


def top_p_threshold(
    logits: np.ndarray,
    top_p: float,
    first_k: int = 256,
    weights: np.ndarray | None = None,
    order_by: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, the smallest logit kept by nucleus (top-p) truncation.

    The kept set is ``{z >= threshold}``: the smallest set of the form
    ``{p >= tau}`` whose mass reaches ``top_p``. No full sort: first a superset
    of the top ``first_k`` found by one comparison pass
    (:func:`candidate_superset`) is sorted; rows
    whose nucleus is larger are bucketed by the top bits of their weights
    (64 buckets per factor of 2, one ``bincount``), and only the boundary
    bucket is sorted. Masses are float64 sums of ``exp(z - max z)``; which
    method a row takes can move its boundary only when the mass lands within
    float64 rounding of ``top_p``.

    Parameters:
        logits: float64 ``(B, V)``, no empty rows.
        top_p: in (0, 1).
        first_k: size of the first window.
        weights: ``exp(logits - max)`` if the caller already has it.
        order_by: an array ordered like ``logits`` (e.g. the float32 logits they were
            computed from) to pick the first window from; cheaper to scan.

    Returns:
        float64 ``(B,)``.

    Example:
        >>> top_p_threshold(np.log(np.array([[0.5, 0.3, 0.2]])), 0.7).round(3).tolist()
        [-1.204]
    """
    b, v = logits.shape
    m = logits.max(axis=1)
    w = np.exp(logits - m[:, None]) if weights is None else weights
    total = w.sum(axis=1)
    need = top_p * total
    threshold = np.empty(b, dtype=np.float64)
    done = np.zeros(b, dtype=bool)
    k = min(v, max(1, first_k))
    # Every row tries the sorted window first: measured on language-model-like rows, skipping it
    # for rows whose nucleus looks large saved nothing (the buckets then see every row).
    tried = np.arange(b)
    if tried.size:
        sel = logits if order_by is None else order_by
        zt = logits if tried.size == b else logits[tried]
        idx = candidate_superset(sel if tried.size == b else sel[tried], k)
        # {z >= bound} is itself a top set: sorted, it is the exact prefix of the sorted row
        cand = np.where(idx >= 0, zt[np.arange(tried.size)[:, None], np.maximum(idx, 0)], -np.inf)
        cand = -np.sort(-cand, axis=1)
        cum = np.cumsum(np.exp(cand - m[tried, None]), axis=1)
        reached = cum >= need[tried, None]
        hit = reached.any(axis=1)
        # judged per row: idx is padded to the widest row of the batch (batch invariance)
        ok = hit | ((idx >= 0).sum(axis=1) >= v)
        # Rounding can leave the full sum a hair under top_p * total: keep all finite.
        last_finite = np.isfinite(cand).sum(axis=1) - 1
        j = np.where(hit, reached.argmax(axis=1), last_finite)
        threshold[tried[ok]] = cand[ok, j[ok]]
        done[tried[ok]] = True
    pending = np.flatnonzero(~done)
    if pending.size == 0:
        return threshold
    # Large nuclei: bucket by the float64 bits of the weight w in [0, 1] (exponent and 6 mantissa
    # bits: 64 buckets per factor of 2, monotone in w, hence in z), heaviest first; everything
    # below 2**-64 shares the last bucket.
    zp, wp = (logits, w) if pending.size == b else (logits[pending], w[pending])
    n_buckets = _W_BUCKETS
    p = pending.size
    key = wp.view(np.int64) >> _W_SHIFT
    np.subtract(_W_ONE, key, out=key)  # 0 for w = 1, growing as w shrinks
    np.minimum(key, n_buckets - 1, out=key)
    key += (np.arange(p) * n_buckets)[:, None]
    mass = np.bincount(key.ravel(), weights=wp.ravel(), minlength=p * n_buckets).reshape(p, n_buckets)
    cum_b = np.cumsum(mass, axis=1)
    crossed = cum_b >= need[pending, None]
    last_nonempty = n_buckets - 1 - np.argmax((mass > 0)[:, ::-1], axis=1)
    jb = np.where(crossed.any(axis=1), crossed.argmax(axis=1), last_nonempty)
    before = np.where(jb > 0, cum_b[np.arange(p), np.maximum(jb - 1, 0)], 0.0)
    boundary_key = jb + np.arange(p) * n_buckets
    in_bucket = pad_candidates(np.flatnonzero(key == boundary_key[:, None]), p, v)
    ok = in_bucket >= 0
    zb = np.where(ok, zp[np.arange(p)[:, None], np.maximum(in_bucket, 0)], -np.inf)
    zb = -np.sort(-zb, axis=1)
    cum_in = before[:, None] + np.cumsum(np.exp(zb - m[pending, None]), axis=1)
    reached_in = cum_in >= need[pending, None]
    last_in = np.isfinite(zb).sum(axis=1) - 1
    jj = np.where(reached_in.any(axis=1), reached_in.argmax(axis=1), last_in)
    threshold[pending] = zb[np.arange(p), jj]
    return threshold


def mass_threshold_ascending(
    keys: np.ndarray, weights: np.ndarray, need: np.ndarray, first_k: int = 256
) -> np.ndarray:
    """Per row, the smallest key ``tau`` with ``sum(weights[keys <= tau]) >= need``, without a full sort.

    Tokens are taken in ascending key order until their weight reaches ``need``
    (the crossing token included); ties with it come along through ``keys <= tau``.
    Same two stages as :func:`top_p_threshold`: a sorted window of the smallest
    ``first_k`` keys, then buckets on the top bits of the (non-negative) keys.

    Parameters:
        keys: float64 ``(B, V)``, ``>= 0`` (``+inf`` allowed, sorts last).
        weights: float64 ``(B, V)``, ``>= 0``.
        need: float64 ``(B,)``.

    Returns:
        float64 ``(B,)``; ``+inf`` where even all weights fall short (rounding).

    Example:
        >>> mass_threshold_ascending(np.array([[0.3, 0.1, 0.2]]), np.array([[0.2, 0.5, 0.3]]), np.array([0.7])).tolist()
        [0.2]
    """
    b, v = keys.shape
    rows = np.arange(b)
    threshold = np.full(b, np.inf)
    idx = candidate_superset(-keys, min(v, max(1, first_k)))
    safe = np.maximum(idx, 0)
    ck = np.where(idx >= 0, keys[rows[:, None], safe], np.inf)
    cw = np.where(idx >= 0, weights[rows[:, None], safe], 0.0)
    order = np.argsort(ck, axis=1, kind="stable")
    ck = np.take_along_axis(ck, order, axis=1)
    cum = np.cumsum(np.take_along_axis(cw, order, axis=1), axis=1)
    reached = cum >= need[:, None]
    hit = reached.any(axis=1)
    threshold[hit] = ck[hit, reached[hit].argmax(axis=1)]
    # a row whose window already held all its tokens is done (rounding kept all); the others go to the
    # buckets. Judged per row: idx is padded to the widest row of the batch (batch invariance).
    pending = np.flatnonzero(~hit & ((idx >= 0).sum(axis=1) < v))
    if pending.size == 0:
        return threshold
    kp, wp = (keys, weights) if pending.size == b else (keys[pending], weights[pending])
    p = pending.size
    n_buckets = _KEY_INF + 1
    bucket = kp.view(np.int64) >> _KEY_SHIFT  # monotone for non-negative floats; +inf is the largest
    bucket += (np.arange(p) * n_buckets)[:, None]
    mass = np.bincount(bucket.ravel(), weights=wp.ravel(), minlength=p * n_buckets).reshape(p, n_buckets)
    cum_b = np.cumsum(mass, axis=1)
    crossed = cum_b >= need[pending, None]
    found = crossed.any(axis=1)
    jb = np.where(found, crossed.argmax(axis=1), 0)
    before = np.where(jb > 0, cum_b[np.arange(p), np.maximum(jb - 1, 0)], 0.0)
    in_bucket = pad_candidates(np.flatnonzero(bucket == (jb + np.arange(p) * n_buckets)[:, None]), p, v)
    ok = in_bucket >= 0
    pr = np.arange(p)[:, None]
    bk = np.where(ok, kp[pr, np.maximum(in_bucket, 0)], np.inf)
    bw = np.where(ok, wp[pr, np.maximum(in_bucket, 0)], 0.0)
    order = np.argsort(bk, axis=1, kind="stable")
    bk = np.take_along_axis(bk, order, axis=1)
    cum_in = before[:, None] + np.cumsum(np.take_along_axis(bw, order, axis=1), axis=1)
    reached_in = cum_in >= need[pending, None]
    last_in = ok.sum(axis=1) - 1
    j = np.where(reached_in.any(axis=1), reached_in.argmax(axis=1), last_in)
    threshold[pending] = np.where(found, bk[np.arange(p), np.maximum(j, 0)], np.inf)
    return threshold


def _sample_dense(
    x: np.ndarray,
    u: np.ndarray,
    shift: np.ndarray,
    zmax: np.ndarray,
    t: float,
    top_p: float | None,
    min_cut: np.ndarray | None,
    return_q: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """No top-k: the kept set may be most of the row, so stay dense (the reference's arithmetic)."""
    z = x.astype(np.float64, copy=False)
    if t != 1.0:
        z = (z - shift[:, None]) / t  # shift first: see sample_truncated
    w = z - zmax[:, None]
    np.exp(w, out=w)  # in place: one temporary instead of two
    cut = top_p_threshold(z, top_p, weights=w, order_by=x) if top_p is not None else None
    if min_cut is not None:
        cut = min_cut if cut is None else np.maximum(cut, min_cut)
    if cut is not None:
        np.multiply(w, z >= cut[:, None], out=w)  # w is our own array: zero the removed tokens in place
    tokens, total = band_search(w, u)
    logprobs = z[np.arange(x.shape[0]), tokens] - zmax - np.log(total)
    return tokens, logprobs, (w / total[:, None] if return_q else None)


def _kth_largest(values: np.ndarray, k: int) -> np.ndarray:
    c = values.shape[1]
    if k > c:
        return np.full(values.shape[0], -np.inf)
    return np.partition(values, c - k, axis=1)[:, c - k]


def sample_truncated(
    x: np.ndarray,
    u: np.ndarray,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    return_q: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """Sample from ``temperature -> top_k -> top_p -> min_p`` truncation without sorting whole rows.

    Parameters:
        x: ``(B, V)`` float logits (float32 or float64), not modified.
        u: ``(B,)`` uniforms in (0, 1) (keyed, from :mod:`faithful.rng`).
        temperature: ``> 0``. top_k: ``>= 1`` or None. top_p: in (0, 1] or None. min_p: in [0, 1] or None.
        return_q: also return the dense final distribution.

    Returns:
        ``(tokens int64 (B,), logprobs float64 (B,), q float64 (B, V) or None)``.

    Raises:
        InvalidLogitsError: NaN or +inf logits. EmptySupportError: a row entirely -inf.
    """
    b, v = x.shape
    top = x.max(axis=1)
    check_row_max(top)
    t = float(temperature)
    # With T != 1 the logits are shifted by the row max *before* dividing, as
    # processors.Temperature does: z - max z is exact where the mass is, while z / T
    # rounds each logit relative to its own size (logits near 1e12 moved q by 1e-5).
    shift = top.astype(np.float64) if t != 1.0 else np.zeros(b)
    zmax = (top.astype(np.float64) - shift) / t
    r = np.arange(b)
    top_k = None if top_k is None or top_k >= v else int(top_k)
    top_p = None if top_p is None or top_p >= 1.0 else float(top_p)
    min_p = None if not min_p else float(min_p)
    min_cut = zmax + math.log(min_p) if min_p is not None else None

    if top_k is None and (min_cut is None or top_p is not None):
        return _sample_dense(x, u, shift, zmax, t, top_p, min_cut, return_q)
    if top_k is not None:
        idx = candidate_superset(x, top_k)
    else:
        assert min_cut is not None
        bound = min_cut * t + shift
        bound = bound - (np.abs(bound) + 1.0) * 1e-6  # generous: the exact test below decides
        idx = pad_candidates(np.flatnonzero(x >= bound[:, None]), b, v)

    valid = idx >= 0
    zc = np.where(
        valid, (x[r[:, None], np.where(valid, idx, 0)].astype(np.float64) - shift[:, None]) / t, -np.inf
    )
    keep = np.isfinite(zc)
    if top_k is not None:
        keep &= zc >= _kth_largest(zc, top_k)[:, None]
    if top_p is not None:
        zk = np.where(keep, zc, -np.inf)
        # a running sum, so trailing padding (exact zeros) cannot change it: batch-invariant
        total = np.cumsum(np.exp(zk - zmax[:, None]), axis=1)[:, -1]
        desc = -np.sort(-zk, axis=1)
        cum = np.cumsum(np.exp(desc - zmax[:, None]), axis=1)
        reached = cum >= (top_p * total)[:, None]
        last_finite = np.isfinite(desc).sum(axis=1) - 1
        j = np.where(reached.any(axis=1), reached.argmax(axis=1), last_finite)
        keep &= zc >= desc[r, j][:, None]
    if min_cut is not None:
        keep &= zc >= min_cut[:, None]

    w = np.where(keep, np.exp(zc - zmax[:, None]), 0.0)
    cdf = np.cumsum(w, axis=1)
    pos = search_cdf(cdf, u)
    total = cdf[:, -1]
    tokens = idx[r, pos].astype(np.int64)
    logprobs = zc[r, pos] - zmax - np.log(total)
    q = None
    if return_q:
        q = np.zeros((b, v), dtype=np.float64)
        rows = np.broadcast_to(r[:, None], idx.shape)
        q[rows[keep], idx[keep]] = (w / total[:, None])[keep]
    return tokens, logprobs, q
