"""Exact draws from categorical distributions given keyed uniforms.

Three ways to turn uniforms into tokens, none of which can return a token of
probability zero (``torch.multinomial`` can: pytorch#48841):

- :func:`inverse_cdf`: the essay's bands. Cumulative weights in float64, one
  uniform per row, a batched binary search for the band the uniform falls in.
  The band of a zero-weight token is empty, so it is never chosen.
- :func:`gumbel_max`: ``argmax(z + Gumbel)`` with one uniform per token; a
  token with logit ``-inf`` stays at ``-inf``.
- :class:`AliasTable`: Vose's alias method for many draws from one
  distribution, built on the support only, so a zero-probability token never
  appears in the table.

All take uniforms in the open interval (0, 1), as :mod:`faithful.rng` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faithful._numeric import check_row_max
from faithful.errors import EmptySupportError, InvalidLogitsError, ShapeMismatchError
from faithful.rng import RngLike, resolve_rng

__all__ = [
    "DRAWS",
    "AliasTable",
    "band_search",
    "gumbel_max",
    "inverse_cdf",
    "inverse_cdf_from_logits",
    "search_cdf",
]

DRAWS = ("inverse_cdf", "gumbel")


def _check_uniforms(u: np.ndarray, rows: int) -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    if u.shape != (rows,):
        raise ShapeMismatchError(f"uniforms must have shape ({rows},) (one per row), got {u.shape}")
    if not np.all((u > 0) & (u < 1)):
        raise ShapeMismatchError("uniforms must lie in the open interval (0, 1); use faithful.rng.KeyedRNG")
    return u


def search_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Batched band search: per row, the first index whose cumulative weight exceeds ``u * total``.

    Parameters:
        cdf: float64 ``(B, V)``, non-decreasing along each row (a running sum of
            non-negative weights), last column positive.
        u: float64 ``(B,)`` in (0, 1).

    Returns:
        int64 ``(B,)``; always an index whose weight (``cdf[i] - cdf[i-1]``) is positive.

    Example:
        >>> search_cdf(np.array([[0.8, 1.0]]), np.array([0.7])).tolist()
        [0]
    """
    b, v = cdf.shape
    total = cdf[:, -1]
    target = u * total
    # u * total can round up to total; the band of the last positive weight then takes it.
    target = np.minimum(target, np.nextafter(total, 0.0))
    lo = np.zeros(b, dtype=np.int64)
    hi = np.full(b, v - 1, dtype=np.int64)
    r = np.arange(b)
    # Invariant: cdf[hi] > target; find the smallest such index.
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        above = cdf[r, mid] > target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid + 1)
    return lo


_BLOCK = 512


def band_search(w: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse CDF over non-negative weights without a full running sum: blocks, then one block.

    The bands are those of the running sum in token order; it is computed in two
    levels (block totals of 512 tokens, a running sum over blocks, then a running
    sum inside the one block the uniform falls in), so a draw costs one pass over
    the weights instead of a full ``cumsum``. As with any floating-point CDF,
    a band edge can move by an ulp; a zero-weight token is never returned.

    Parameters:
        w: float64 ``(B, V)`` non-negative finite weights; every row has a positive weight.
        u: float64 ``(B,)`` in (0, 1).

    Returns:
        ``(tokens int64 (B,), totals float64 (B,))``: the tokens, and the row totals the
        bands were scaled to (use them to normalise: ``q = w / totals``).

    Example:
        >>> band_search(np.array([[0.8, 0.2]]), np.array([0.85]))[0].tolist()
        [1]
    """
    b, v = w.shape
    r = np.arange(b)
    if v <= 2 * _BLOCK:
        cdf = np.cumsum(w, axis=1)
        return search_cdf(cdf, u), cdf[:, -1]
    nb = v // _BLOCK
    blocks = w[:, : nb * _BLOCK].reshape(b, nb, _BLOCK).sum(axis=2)
    if nb * _BLOCK < v:
        blocks = np.concatenate([blocks, w[:, nb * _BLOCK :].sum(axis=1, keepdims=True)], axis=1)
    prefix = np.cumsum(blocks, axis=1)
    total = prefix[:, -1]
    target = np.minimum(u * total, np.nextafter(total, 0.0))
    blk = search_cdf(prefix, u)  # first block whose running total exceeds the target
    before = np.where(blk > 0, prefix[r, np.maximum(blk - 1, 0)], 0.0)
    cols = blk[:, None] * _BLOCK + np.arange(_BLOCK)[None, :]
    inside = cols < v
    seg = np.where(inside, w[r[:, None], np.minimum(cols, v - 1)], 0.0)
    cum = before[:, None] + np.cumsum(seg, axis=1)
    above = cum > target[:, None]
    # the block's own running sum can round a hair below the block prefix: then its last positive weight
    last_pos = _BLOCK - 1 - np.argmax((seg > 0)[:, ::-1], axis=1)
    pos = np.where(above.any(axis=1), above.argmax(axis=1), last_pos)
    return (blk * _BLOCK + pos).astype(np.int64), total


def inverse_cdf(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw one token per row by inverse CDF ("bands") over non-negative weights.

    Parameters:
        weights: ``(B, V)`` non-negative, finite; need not be normalised.
        u: ``(B,)`` uniforms in (0, 1), e.g. ``KeyedRNG(0).uniforms(rows, step)[:, 0]``.

    Returns:
        int64 ``(B,)`` tokens; ``weights[b, token] > 0`` always.

    Raises:
        ShapeMismatchError: shapes disagree or ``u`` is outside (0, 1).
        InvalidLogitsError: a weight is negative, NaN or infinite.
        EmptySupportError: a row has no positive weight.

    Example:
        >>> inverse_cdf(np.array([[0.8, 0.2], [0.8, 0.2]]), np.array([0.2, 0.9])).tolist()
        [0, 1]
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ShapeMismatchError(f"`weights` must be 2-D (batch, vocab), got shape {w.shape}")
    u = _check_uniforms(u, w.shape[0])
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InvalidLogitsError("`weights` must be finite and non-negative; pass probabilities, not logits")
    if np.any(w.max(axis=1) <= 0):
        bad = np.flatnonzero(w.max(axis=1) <= 0).tolist()
        raise EmptySupportError(f"rows {bad} have no positive weight; nothing can be drawn from them")
    return band_search(w, u)[0]


def inverse_cdf_from_logits(z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse CDF over ``softmax(z)`` without normalising: bands of ``exp(z - max z)``.

    This is the canonical draw of :mod:`faithful.samplers`: tokens with
    ``z = -inf`` have empty bands.

    Parameters:
        z: float64 ``(B, V)`` logits; ``-inf`` marks removed tokens; no NaN or ``+inf``.
        u: ``(B,)`` uniforms in (0, 1).

    Returns:
        int64 ``(B,)`` tokens.

    Raises:
        InvalidLogitsError: NaN or ``+inf`` logits.
        EmptySupportError: a row is entirely ``-inf``.

    Example:
        >>> inverse_cdf_from_logits(np.log(np.array([[0.8, 0.2]])), np.array([0.79])).tolist()
        [0]
    """
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    check_row_max(m[:, 0])  # NaN / +inf: InvalidLogitsError; a row of -inf: EmptySupportError
    return inverse_cdf(np.exp(z - m), u)


def gumbel_max(z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Gumbel-max trick: ``argmax(z - log(-log u))`` per row.

    Parameters:
        z: float64 ``(B, V)`` logits, ``-inf`` for removed tokens.
        u: ``(B, V)`` uniforms in (0, 1), one per token
            (``KeyedRNG(s).uniforms(rows, step, n=V)``).

    Returns:
        int64 ``(B,)`` tokens, distributed as ``softmax(z)``; never a ``-inf`` token.

    Raises:
        ShapeMismatchError: shapes disagree.
        InvalidLogitsError: NaN or ``+inf`` logits.
        EmptySupportError: a row is entirely ``-inf``.

    Example:
        >>> gumbel_max(np.array([[0.0, -np.inf]]), np.array([[0.5, 0.5]])).tolist()
        [0]
    """
    z = np.asarray(z, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    if z.ndim != 2 or u.shape != z.shape:
        raise ShapeMismatchError(f"`u` must have the shape of `z` (B, V), got {u.shape} and {z.shape}")
    check_row_max(z.max(axis=1))  # NaN / +inf: InvalidLogitsError; a row of -inf: EmptySupportError
    tokens: np.ndarray = np.argmax(z - np.log(-np.log(u)), axis=1).astype(np.int64)
    return tokens


@dataclass(frozen=True)
class AliasTable:
    """Vose's alias table for many O(1) draws from one distribution.

    Built on the support only: ``support`` lists the tokens of positive
    probability, ``accept[i]`` is the probability of keeping column ``i`` and
    ``alias[i]`` the column taken otherwise.

    Example:
        >>> table = AliasTable.build(np.array([0.5, 0.0, 0.5]))
        >>> sorted(set(table.sample(1000, rng=0).tolist()))
        [0, 2]
    """

    support: np.ndarray
    accept: np.ndarray
    alias: np.ndarray

    @classmethod
    def build(cls, probs: np.ndarray) -> AliasTable:
        """Build the table.

        Parameters:
            probs: ``(V,)`` non-negative finite weights (need not sum to 1).

        Returns:
            An :class:`AliasTable`.

        Raises:
            ShapeMismatchError: ``probs`` is not 1-D.
            InvalidLogitsError: negative, NaN or infinite weight.
            EmptySupportError: no positive weight.
        """
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 1:
            raise ShapeMismatchError(f"`probs` must be 1-D (V,), got shape {p.shape}")
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise InvalidLogitsError("`probs` must be finite and non-negative")
        support = np.flatnonzero(p > 0)
        if support.size == 0:
            raise EmptySupportError("`probs` has no positive entry; nothing can be drawn")
        k = support.size
        scaled = p[support] / p[support].sum() * k
        accept = np.ones(k, dtype=np.float64)
        alias = np.arange(k, dtype=np.int64)
        small = [i for i in range(k) if scaled[i] < 1.0]
        large = [i for i in range(k) if scaled[i] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            accept[s] = scaled[s]
            alias[s] = g
            scaled[g] = (scaled[g] + scaled[s]) - 1.0
            (small if scaled[g] < 1.0 else large).append(g)
        # Leftovers (from rounding) are full columns of their own token: accept = 1.
        return cls(support=support.astype(np.int64), accept=accept, alias=alias)

    def draw(self, u_column: np.ndarray, u_accept: np.ndarray) -> np.ndarray:
        """Tokens from two arrays of uniforms in (0, 1) of equal shape.

        Example:
            >>> AliasTable.build(np.array([0.0, 1.0])).draw(np.array([0.3]), np.array([0.9])).tolist()
            [1]
        """
        k = self.support.size
        col = np.minimum((np.asarray(u_column) * k).astype(np.int64), k - 1)
        keep = np.asarray(u_accept) < self.accept[col]
        return self.support[np.where(keep, col, self.alias[col])]

    def sample(self, n: int, *, rng: RngLike = None, row: int = 0, step: int = 0) -> np.ndarray:
        """``n`` independent tokens, keyed by ``(seed, row, step)`` (lanes ``0..2n-1``).

        Returns:
            int64 ``(n,)``.
        """
        u = resolve_rng(rng).uniforms([row], step, 2 * int(n))[0]
        return self.draw(u[0::2], u[1::2])
