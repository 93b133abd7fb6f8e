"""One dynamic program over linear chains, in three semirings.

- log (sum-product): :func:`log_partition`, :func:`posterior_marginals`, :func:`sample_paths` (FFBS)
- max (max-product): :func:`viterbi`
- top-k (k-best max-product): :func:`kbest_paths`

Everything works in log space on a batch of chains (see :class:`~faithful.chains.chain.LinearChain`),
and rows of different lengths are handled by masking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from faithful.chains.chain import ChainError, FloatArray, IntArray, LinearChain, path_score
from faithful.rng import resolve_rng

__all__ = [
    "PathsResult",
    "forward_scores",
    "kbest_paths",
    "log_partition",
    "posterior_marginals",
    "sample_paths",
    "viterbi",
]

# Below this spread of transition scores per column, sum-product runs as exp/matmul/log, which is exact
# to float64 rounding (see _log_matmul); wider spreads fall back to an explicit log-sum-exp.
_MATMUL_SPREAD = 600.0


@dataclass(frozen=True)
class PathsResult:
    """State paths with their scores.

    Attributes:
        paths: int64 ``(B, T)`` (Viterbi) or ``(B, K, T)`` (k-best, samples); ``-1`` past each row's length.
        scores: float64 ``(B,)`` or ``(B, K)``: path scores (for an HMM chain, ``log P(z, x)``).
        logprobs: float64, same shape as ``scores``: ``log P(z | x)`` = score minus the log-partition
            (computed on first access: it costs one forward pass).
    """

    paths: IntArray
    scores: FloatArray
    chain: LinearChain = field(repr=False)
    log_z: FloatArray | None = field(default=None, repr=False)

    @cached_property
    def logprobs(self) -> FloatArray:
        """``scores - log_partition(chain)``, broadcast over samples/k-best."""
        log_z = log_partition(self.chain) if self.log_z is None else self.log_z
        out: FloatArray = self.scores - (log_z if self.scores.ndim == 1 else log_z[:, None])
        return out


def _lse(x: FloatArray, axis: int) -> FloatArray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out: FloatArray = np.squeeze(np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m, axis=axis)
    return out


class _LogMatmul:
    """``out[b, j] = logsumexp_i(a[b, i] + tr[(b,) i, j])`` as shifted exp -> matmul -> log.

    Shifting ``a`` by its row max and ``tr`` by its column max keeps every exp <= 1; a term can only
    underflow when it is more than ~45 nats below the largest one (the column spread is < 600), so the
    result is exact to float64 rounding.
    """

    def __init__(self, tr: FloatArray) -> None:
        col = np.max(tr, axis=-2, keepdims=True)
        self.col = np.where(np.isfinite(col), col, 0.0)
        with np.errstate(invalid="ignore"):
            self.exp = np.exp(tr - self.col)
        self.col = np.squeeze(self.col, axis=-2)
        finite = np.isfinite(tr)
        spread = np.max(np.where(finite, self.col[..., None, :] - np.where(finite, tr, 0.0), 0.0))
        self.ok = bool(spread < _MATMUL_SPREAD)

    def __call__(self, a: FloatArray) -> FloatArray:
        m = np.max(a, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        p = np.exp(a - m)
        s = (p[:, None, :] @ self.exp)[:, 0, :] if self.exp.ndim == 3 else p @ self.exp
        with np.errstate(divide="ignore"):
            out: FloatArray = np.log(s) + m + self.col
        return out


def _sum_step(a: FloatArray, tr: FloatArray, cache: dict[int, Any], key: int) -> FloatArray:
    op = cache.get(key)
    if op is None:
        op = _LogMatmul(tr)
        cache[key] = op
    if op.ok:
        out: FloatArray = op(a)
        return out
    x = a[:, :, None] + tr
    return _lse(x, axis=1)


def forward_scores(chain: LinearChain, semiring: str = "log", *, kernels: str = "auto") -> FloatArray:
    """Forward scores ``alpha`` ``(B, T, S)`` in the ``"log"`` (sum) or ``"max"`` semiring.

    ``alpha[b, t, s]`` is the log-sum (or max) of the scores of all prefixes ending in state ``s``
    at position ``t``; past a row's length it repeats the last position.

    Parameters:
        chain: the chain.
        semiring: ``"log"`` or ``"max"``.
        kernels: ``"auto"`` (the compiled kernels of :mod:`faithful.kernels` when numba is
            installed), ``"numba"`` (require them) or ``"numpy"`` (the reference). Max-product is
            the same bit for bit either way; sum-product agrees to float64 rounding.

    Raises:
        ChainError: on an unknown semiring or ``kernels`` value, or ``kernels="numba"`` without numba.
    """
    if semiring not in ("log", "max"):
        raise ChainError(f"semiring must be 'log' or 'max', got {semiring!r}")
    if _use_kernels(kernels) and chain.num_steps > 1:
        from faithful import kernels as fast

        if semiring == "max":
            return fast.chain_forward_max(chain.initial, chain.emissions, chain.transitions, chain.lengths)
        op = _LogMatmul(chain.transitions)
        if op.ok:  # else the reference's log-sum-exp fallback below
            return fast.chain_forward_sum(chain.initial, chain.emissions, op.exp, op.col, chain.lengths)
    b, t_len, s = chain.emissions.shape
    out = np.empty((b, t_len, s))
    a = chain.initial + chain.emissions[:, 0]
    out[:, 0] = a
    shared = chain.transitions.ndim == 2
    if semiring == "max" and b == 1 and shared:
        return _forward_max_single(chain, out)
    cache: dict[int, Any] = {}
    all_full = bool(np.all(chain.lengths == t_len))
    for t in range(1, t_len):
        tr = chain.transition(t)
        if semiring == "max":
            x = a[:, :, None] + tr
            new = np.max(x, axis=1) + chain.emissions[:, t]
        else:
            new = _sum_step(a, tr, cache, 0 if chain.transitions.ndim < 4 else t) + chain.emissions[:, t]
        a = new if all_full else np.where((chain.lengths > t)[:, None], new, a)
        out[:, t] = a
    return out


def _forward_max_single(chain: LinearChain, out: FloatArray) -> FloatArray:
    """Max-product for one chain with shared transitions: few numpy calls per step (the hot loop)."""
    tr = np.ascontiguousarray(chain.transitions)
    d = out[0]
    buf = np.empty_like(tr)
    length = int(chain.lengths[0])
    # views made once: per-step indexing would cost as much as the arithmetic at S = 64
    rows, cols, emit = list(d[:length]), list(d[:length, :, None]), list(chain.emissions[0, :length])
    add, reduce_max = np.add, np.maximum.reduce
    for t in range(1, length):
        add(tr, cols[t - 1], out=buf)
        reduce_max(buf, axis=0, out=rows[t])
        add(rows[t], emit[t], out=rows[t])
    d[length:] = d[length - 1]
    return out


KERNELS = ("auto", "numba", "numpy")


def _use_kernels(kernels: str) -> bool:
    """Whether to run the compiled chain kernels; found by ``find_spec``, so the numpy path never imports numba."""
    if kernels not in KERNELS:
        raise ChainError(f"`kernels` must be one of {list(KERNELS)}, got {kernels!r}")
    if kernels == "numpy":
        return False
    from faithful.kernels import available

    if not available():
        if kernels == "numba":
            raise ChainError("`kernels='numba'` needs numba; install it with `pip install faithful[fast]`")
        return False
    return True


def _ends(chain: LinearChain) -> IntArray:
    out: IntArray = chain.lengths - 1
    return out


def log_partition(chain: LinearChain, *, kernels: str = "auto") -> FloatArray:
    """``log Z`` per row ``(B,)``: the log-sum of all path scores (an HMM's ``log P(x)``).

    ``kernels`` as in :func:`forward_scores`.

    Example::

        >>> from faithful.chains import hmm_chain
        >>> c = hmm_chain([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0.5, 0.5]], [[0, 1]])
        >>> round(float(np.exp(log_partition(c))[0]), 6)
        0.25
    """
    alpha = forward_scores(chain, "log", kernels=kernels)
    last = alpha[np.arange(chain.batch_size), _ends(chain)]
    return _lse(last, axis=1)


def _backward_scores(chain: LinearChain) -> FloatArray:
    b, t_len, s = chain.emissions.shape
    beta = np.zeros((b, t_len, s))
    cache: dict[int, Any] = {}
    for t in range(t_len - 1, 0, -1):
        tr = chain.transition(t)
        tr_t = np.swapaxes(tr, -1, -2)
        nxt = chain.emissions[:, t] + beta[:, t]
        new = _sum_step(nxt, tr_t, cache, 0 if chain.transitions.ndim < 4 else t)
        beta[:, t - 1] = np.where((chain.lengths > t)[:, None], new, 0.0)
    return beta


def posterior_marginals(chain: LinearChain) -> FloatArray:
    """Posterior state marginals ``P(z_t = s | x)`` ``(B, T, S)`` by forward-backward; zeros past each length.

    Example::

        >>> from faithful.chains import hmm_chain
        >>> c = hmm_chain([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], [[0.9, 0.1], [0.1, 0.9]], [[0, 0, 1]])
        >>> posterior_marginals(c).sum(axis=2).round(6).tolist()
        [[1.0, 1.0, 1.0]]
    """
    alpha = forward_scores(chain, "log")
    beta = _backward_scores(chain)
    log_z = _lse(alpha[np.arange(chain.batch_size), _ends(chain)], axis=1)
    with np.errstate(invalid="ignore"):
        post = np.exp(alpha + beta - log_z[:, None, None])
    live = np.arange(chain.num_steps)[None, :] < chain.lengths[:, None]
    out: FloatArray = np.where(live[:, :, None], np.nan_to_num(post), 0.0)
    return out


def _column(tr: FloatArray, rows: IntArray, z: IntArray) -> FloatArray:
    """``tr[(rows,) :, z]`` as ``(len(z), S)``."""
    if tr.ndim == 2:
        col: FloatArray = tr[:, z].T
        return col
    out: FloatArray = tr[rows, :, z]
    return out


def viterbi(chain: LinearChain, *, kernels: str = "auto") -> PathsResult:
    """The highest-scoring path of each row (max-product), with its score and posterior log-probability.

    Ties go to the lowest state id (hmmlearn agrees except on exact ties). ``kernels`` as in
    :func:`forward_scores`: the compiled kernels return the reference's paths and scores bit for bit.

    Returns:
        :class:`PathsResult` with ``paths`` ``(B, T)`` and ``scores``/``logprobs`` ``(B,)``.

    Example::

        >>> from faithful.chains import hmm_chain
        >>> c = hmm_chain([0.6, 0.4], [[0.7, 0.3], [0.4, 0.6]], [[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]], [[0, 1, 2]])
        >>> viterbi(c).paths.tolist()
        [[0, 0, 1]]
    """
    if _use_kernels(kernels):
        from faithful import kernels as fast

        d = fast.chain_forward_max(chain.initial, chain.emissions, chain.transitions, chain.lengths)
        scores = d[np.arange(chain.batch_size), _ends(chain)].max(axis=1)
        paths = fast.chain_backtrack(d, chain.transitions, chain.lengths)
        return PathsResult(paths=paths, scores=scores, chain=chain)
    d = forward_scores(chain, "max", kernels="numpy")
    b, t_len, _ = d.shape
    rows = np.arange(b)
    ends = _ends(chain)
    z = np.full((b, t_len), -1, dtype=np.int64)
    final = d[rows, ends]
    z[rows, ends] = np.argmax(final, axis=1)
    scores = final.max(axis=1)
    if b == 1 and chain.transitions.ndim == 2:
        tr_t = list(np.ascontiguousarray(chain.transitions.T))  # row j = scores of moves into j
        d_rows = list(d[0])
        buf = np.empty(d.shape[2])
        add = np.add
        zt = int(z[0, ends[0]])
        zz = [0] * (int(ends[0]) + 1)
        zz[-1] = zt
        for t in range(int(ends[0]), 0, -1):
            add(d_rows[t - 1], tr_t[zt], out=buf)
            zt = int(buf.argmax())
            zz[t - 1] = zt
        z[0, : len(zz)] = zz
    else:
        for t in range(t_len - 1, 0, -1):
            live = ends >= t
            if not live.any():
                continue
            r = rows[live]
            cand = d[r, t - 1] + _column(chain.transition(t), r, z[r, t])
            z[r, t - 1] = np.argmax(cand, axis=1)
    return PathsResult(paths=z, scores=scores, chain=chain)


def sample_paths(chain: LinearChain, num_samples: int = 1, rng: Any = None) -> PathsResult:
    """Exact posterior samples of state paths by forward-filtering backward-sampling (FFBS).

    Sample ``n`` of row ``b`` draws its state at position ``t`` from the keyed uniform of
    row ``b * num_samples + n`` at step ``t`` (:mod:`faithful.rng`).

    Args:
        chain: the chain (for an HMM chain, samples come from ``P(z | x)``).
        num_samples: ``N`` samples per row.
        rng: int seed, :class:`~faithful.rng.KeyedRNG`, or None.

    Returns:
        :class:`PathsResult` with ``paths`` ``(B, N, T)``, ``scores`` and ``logprobs`` ``(B, N)``.

    Raises:
        ChainError: when ``num_samples < 1`` or a row has no path of finite score.

    Example::

        >>> from faithful.chains import hmm_chain
        >>> c = hmm_chain([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], [[0.9, 0.1], [0.1, 0.9]], [[0, 0, 1]])
        >>> sample_paths(c, num_samples=4, rng=0).paths.shape
        (1, 4, 3)
    """
    if num_samples < 1:
        raise ChainError(f"num_samples must be >= 1, got {num_samples}")
    keyed = resolve_rng(rng)
    alpha = forward_scores(chain, "log")
    b, t_len, _ = alpha.shape
    n = num_samples
    rows = np.repeat(np.arange(b), n)
    ids = np.arange(b * n)
    ends = np.repeat(_ends(chain), n)
    log_z = _lse(alpha[np.arange(b), _ends(chain)], axis=1)
    if not np.all(np.isfinite(log_z)):
        raise ChainError("a row has no path with finite score; there is nothing to sample")
    z = np.full((b * n, t_len), -1, dtype=np.int64)

    def draw(logits: FloatArray, r: IntArray, step: int) -> IntArray:
        m = logits.max(axis=1, keepdims=True)
        cdf = np.cumsum(np.exp(logits - m), axis=1)
        u = keyed.uniforms(r, step, 1)[:, 0] * cdf[:, -1]
        picked: IntArray = np.minimum((cdf < u[:, None]).sum(axis=1), logits.shape[1] - 1).astype(np.int64)
        return picked

    for t in range(t_len - 1, -1, -1):
        start = ends == t
        if start.any():
            z[start, t] = draw(alpha[rows[start], t], ids[start], t)
        if t == 0:
            break
        live = ends >= t
        if live.any():
            r = rows[live]
            logits = alpha[r, t - 1] + _column(chain.transition(t), r, z[live, t])
            z[live, t - 1] = draw(logits, ids[live], t - 1)
    paths = z.reshape(b, n, t_len)
    scores = path_score(chain, paths)
    return PathsResult(paths=paths, scores=scores, chain=chain, log_z=log_z)


def kbest_paths(chain: LinearChain, k: int) -> PathsResult:
    """The ``k`` highest-scoring distinct paths of each row, best first (top-k max-product).

    When a row has fewer than ``k`` paths of finite score, the missing ones have score ``-inf``
    and paths of ``-1``.

    Raises:
        ChainError: when ``k < 1``.

    Example::

        >>> from faithful.chains import hmm_chain
        >>> c = hmm_chain([0.6, 0.4], [[0.7, 0.3], [0.4, 0.6]], [[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]], [[0, 1, 2]])
        >>> kbest_paths(c, 2).paths[0, 0].tolist() == viterbi(c).paths[0].tolist()
        True
    """
    if k < 1:
        raise ChainError(f"k must be >= 1, got {k}")
    b, t_len, s = chain.emissions.shape
    rows = np.arange(b)
    d = np.full((b, s, k), -np.inf)
    d[:, :, 0] = chain.initial + chain.emissions[:, 0]
    bp_state = np.zeros((b, t_len, s, k), dtype=np.int64)
    bp_rank = np.zeros((b, t_len, s, k), dtype=np.int64)
    hist = [d]
    ident_state = np.broadcast_to(np.arange(s)[:, None], (s, k))
    ident_rank = np.broadcast_to(np.arange(k)[None, :], (s, k))
    for t in range(1, t_len):
        tr = chain.transition(t)
        tr4 = tr[None, :, None, :] if tr.ndim == 2 else tr[:, :, None, :]
        x = (d[:, :, :, None] + tr4).reshape(b, s * k, s)  # (b, from-state*rank, to-state)
        order = np.argsort(-x, axis=1, kind="stable")[:, :k, :]  # (b, k, s)
        vals = np.take_along_axis(x, order, axis=1)
        new = np.swapaxes(vals, 1, 2) + chain.emissions[:, t][:, :, None]
        src = np.swapaxes(order, 1, 2)  # (b, s, k)
        live = (chain.lengths > t)[:, None, None]
        d = np.where(live, new, d)
        bp_state[:, t] = np.where(live, src // k, ident_state)
        bp_rank[:, t] = np.where(live, src % k, ident_rank)
        hist.append(d)
    ends = _ends(chain)
    final = np.stack(hist, axis=1)[rows, ends].reshape(b, s * k)
    top = np.argsort(-final, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(final, top, axis=1)
    state, rank = top // k, top % k
    paths = np.full((b, k, t_len), -1, dtype=np.int64)
    for t in range(t_len - 1, -1, -1):
        live = (ends >= t)[:, None]
        paths[:, :, t] = np.where(live, state, -1)
        if t == 0:
            break
        ps = bp_state[rows[:, None], t, state, rank]
        pr = bp_rank[rows[:, None], t, state, rank]
        state = np.where(live, ps, state)
        rank = np.where(live, pr, rank)
    paths = np.where(np.isfinite(scores)[:, :, None], paths, -1)
    return PathsResult(paths=paths, scores=scores, chain=chain)
