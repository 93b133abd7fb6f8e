"""numpy kernels: candidate selection without a full sort, and the truncated-sampling fast path.

The common chain ``temperature -> top_k -> top_p -> min_p`` followed by an
inverse-CDF draw needs only the few tokens that can survive truncation. This
module finds a *superset* of them with one comparison pass (the threshold is
read off a strided sample of each row, which can only under-estimate the k-th
largest value), then does every exact decision in float64 on that small set:

- top-k: exact k-th largest among the candidates (ties kept), by partition;
- top-p: the candidates sorted by logit, a running sum against ``top_p`` times the
  normaliser (over the top-k set when top-k ran first, else over the whole row);
- min-p: ``z >= max z + log(min_p)``;
- the draw: bands of ``exp(z - max z)`` in token order, as the dense reference.

Tokens, log-probabilities and q are the reference's (:mod:`faithful.samplers`)
up to float64 rounding of a normaliser: a kept set can only differ when a
top-p boundary falls within an ulp of a running sum.
"""

from __future__ import annotations

import math

import numpy as np

from faithful.draw import band_search, search_cdf
from faithful.errors import EmptySupportError, InvalidLogitsError

__all__ = ["argmax_checked", "candidate_superset", "check_row_max", "pad_candidates", "sample_truncated"]

_SAMPLE_STRIDE = 32
# Rows shorter than this, or k this large relative to the row, are taken whole.
_SMALL_ROW = 4096


def check_row_max(top: np.ndarray) -> None:
    """Validate logits from their row maxima (NaN and +inf propagate into a max).

    Raises:
        InvalidLogitsError: a row holds NaN or +inf.
        EmptySupportError: a row is entirely -inf.
    """
    if (bad := np.isnan(top) | (top == np.inf)).any():
        rows = np.flatnonzero(bad)[:10].tolist()
        raise InvalidLogitsError(
            f"logits contain NaN or +inf in rows {rows}; fix the model output "
            "(use -inf, not NaN or +inf, to remove a token)"
        )
    if (empty := top == -np.inf).any():
        rows = np.flatnonzero(empty)[:10].tolist()
        raise EmptySupportError(
            f"rows {rows} have no token left after the input logits; relax the mask or constraint for those rows"
        )


def argmax_checked(x: np.ndarray) -> np.ndarray:
    """First maximal token per row, after validating the logits from their row maxima (two passes).

    Example:
        >>> argmax_checked(np.array([[0.0, 2.0, 2.0]])).tolist()
        [1]
    """
    check_row_max(x.max(axis=1))
    return np.argmax(x, axis=1).astype(np.int64)


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


def _sample_dense(
    x: np.ndarray,
    u: np.ndarray,
    zmax: np.ndarray,
    t: float,
    top_p: float | None,
    min_cut: np.ndarray | None,
    return_q: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """No top-k: the kept set may be most of the row, so stay dense (the reference's arithmetic)."""
    from faithful.processors import top_p_threshold

    z = x.astype(np.float64) / t if t != 1.0 or x.dtype != np.float64 else x
    w = np.exp(z - zmax[:, None])
    cut = top_p_threshold(z, top_p, weights=w) if top_p is not None else None
    if min_cut is not None:
        cut = min_cut if cut is None else np.maximum(cut, min_cut)
    if cut is not None:
        w = np.where(z >= cut[:, None], w, 0.0)
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
    """Sample from ``temperature -> top_k -> top_p -> min_p`` truncation, touching every logit once or twice.

    Parameters:
        x: ``(B, V)`` float logits (float32 or float64), not modified.
        u: ``(B,)`` uniforms in (0, 1) (keyed, from :mod:`faithful.rng`).
        temperature: ``> 0``. top_k: ``>= 1`` or None. top_p: in (0, 1] or None. min_p: in [0, 1] or None.
        return_q: also return the dense final distribution.

    Returns:
        ``(tokens int64 (B,), logprobs float64 (B,), q float64 (B, V) or None)``, or None when
        ``x / temperature`` would overflow (use the reference path, which shifts by the max first).

    Raises:
        InvalidLogitsError: NaN or +inf logits. EmptySupportError: a row entirely -inf.
    """
    b, v = x.shape
    top = x.max(axis=1)
    check_row_max(top)
    t = float(temperature)
    if t < 1.0 and not float(np.abs(top).max(initial=0.0)) < 1e300 * t:
        return None  # z / T would overflow: the reference shifts first (see processors.Temperature)
    zmax = top.astype(np.float64) / t
    r = np.arange(b)
    top_k = None if top_k is None or top_k >= v else int(top_k)
    top_p = None if top_p is None or top_p >= 1.0 else float(top_p)
    min_p = None if not min_p else float(min_p)
    min_cut = zmax + math.log(min_p) if min_p is not None else None

    if top_k is None and (min_cut is None or top_p is not None):
        return _sample_dense(x, u, zmax, t, top_p, min_cut, return_q)
    if top_k is not None:
        idx = candidate_superset(x, top_k)
    else:
        assert min_cut is not None
        bound = min_cut * t
        bound = bound - (np.abs(bound) + 1.0) * 1e-6  # generous: the exact test below decides
        idx = pad_candidates(np.flatnonzero(x >= bound[:, None]), b, v)

    valid = idx >= 0
    zc = np.where(valid, x[r[:, None], np.where(valid, idx, 0)].astype(np.float64) / t, -np.inf)
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
