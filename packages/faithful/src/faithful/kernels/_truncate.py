"""numba kernels: temperature + truncation (top-k, top-p, min-p, typical, epsilon, eta) + inverse-CDF draw, fused.

One row at a time (rows in parallel with ``prange``), in float64:

1. one pass for the row maximum ``m`` (and NaN / +inf / all ``-inf`` detection);
2. one pass for ``s = (x - m) / T`` (subtract first, then divide: right at any scale) and
   ``w = exp(s)``, both stored, with (for top-k and top-p) a histogram of the weights over
   buckets of ``s`` (64 per factor of 2 of ``w``; the bucket is monotone in ``s``) and (typical
   or eta first) the entropy's ``sum w * s``;
3. each truncation narrows the kept set, always an interval ``lo <= s <= hi`` of ``s``
   (every truncation here keeps an up- or down-closed set of ``s``, typical a band):
   a mass or count threshold is found in the histogram, then only the boundary bucket's
   members are gathered and sorted (no full sort); a kept mass is recomputed only when a
   later truncation needs it;
4. the keyed uniform ``u`` picks the token whose band ``(c_{i-1}, c_i]`` of the running
   sum of kept weights in token order holds ``u * Z``, exactly as :func:`faithful.draw.band_search`
   computes it (blocks of 512 summed as numpy's pairwise sum, a running sum over the blocks):
   that pass gives the normaliser ``Z`` of q and of the token's log-probability.

Exact decisions mirror the numpy reference (:mod:`faithful.processors`): ties at a
threshold are all kept, the top token survives epsilon/eta, a running sum that rounds
a hair below its target keeps everything. The masses the cuts compare are summed in a
different order than the reference's, so a kept set can differ only when a mass lands within
float64 rounding of ``top_p`` (or a cut). Given the kept set, ``Z`` is the reference's sum of
the same weights in the same order; the weights come from libm's ``exp`` instead of numpy's
(they differ by an ulp in a few percent of tokens), so q agrees to a few ulps and a token can
differ only when ``u * Z`` lands within that of a band edge.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

NB = 4096  # buckets of s; the last one takes everything below s = -(NB - 1) / SCALE (about -44)
SCALE = 64.0 / math.log(2.0)
D_SCALE = 100.0  # typical: linear buckets of |surprise - entropy|, 0.01 nats wide

OP_TOP_K, OP_TOP_P, OP_MIN_P, OP_TYPICAL, OP_EPSILON, OP_ETA = 1, 2, 3, 4, 5, 6
OK, BAD_VALUE, EMPTY_ROW = 0, 1, 2


@njit(cache=True, inline="always")
def _key(s: float) -> int:
    return int(min(-s * SCALE, NB - 1.0))


@njit(cache=True)
def _kept_stats(s: np.ndarray, w: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Mass and sum of ``w * s`` over the kept set (four accumulators: the adds are latency-bound)."""
    v = s.shape[0]
    z0 = z1 = z2 = z3 = 0.0
    a0 = a1 = a2 = a3 = 0.0
    n4 = v - v % 4
    for i in range(0, n4, 4):
        k0 = (lo <= s[i]) & (s[i] <= hi) & (w[i] > 0)
        k1 = (lo <= s[i + 1]) & (s[i + 1] <= hi) & (w[i + 1] > 0)
        k2 = (lo <= s[i + 2]) & (s[i + 2] <= hi) & (w[i + 2] > 0)
        k3 = (lo <= s[i + 3]) & (s[i + 3] <= hi) & (w[i + 3] > 0)
        z0 += w[i] if k0 else 0.0
        z1 += w[i + 1] if k1 else 0.0
        z2 += w[i + 2] if k2 else 0.0
        z3 += w[i + 3] if k3 else 0.0
        a0 += w[i] * s[i] if k0 else 0.0
        a1 += w[i + 1] * s[i + 1] if k1 else 0.0
        a2 += w[i + 2] * s[i + 2] if k2 else 0.0
        a3 += w[i + 3] * s[i + 3] if k3 else 0.0
    for i in range(n4, v):
        k0 = (lo <= s[i]) & (s[i] <= hi) & (w[i] > 0)
        z0 += w[i] if k0 else 0.0
        a0 += w[i] * s[i] if k0 else 0.0
    return (z0 + z1) + (z2 + z3), (a0 + a1) + (a2 + a3)


_CHUNK = 256


@njit(cache=True)
def _members(s: np.ndarray, key: int, lo: float, hi: float) -> np.ndarray:
    """The kept s values in histogram bucket ``key``, sorted descending.

    A vectorised count per chunk; only chunks holding members are scanned.
    """
    v = s.shape[0]
    out = np.empty(16, dtype=np.float64)
    n = 0
    kf, kf1, last = float(key), float(key + 1), key == NB - 1
    for c0 in range(0, v, _CHUNK):
        c1 = min(v, c0 + _CHUNK)
        hits = 0
        for i in range(c0, c1):
            # _key(s) == key, without a float -> int conversion per token (int(y) == key <=> key <= y < key + 1)
            y = -s[i] * SCALE
            hits += (y >= kf) & ((y < kf1) | last) & (lo <= s[i]) & (s[i] <= hi)
        if hits == 0:
            continue
        if n + hits > out.shape[0]:
            bigger = np.empty(2 * (n + hits), dtype=np.float64)
            bigger[:n] = out[:n]
            out = bigger
        for i in range(c0, c1):
            if (_key(s[i]) == key) & (lo <= s[i]) & (s[i] <= hi):
                out[n] = s[i]
                n += 1
    res = np.sort(out[:n])
    return res[::-1]


@njit(cache=True)
def _top_k(s: np.ndarray, mass: np.ndarray, count: np.ndarray, k: int) -> tuple[float, float]:
    """The k-th largest s (ties kept by ``s >= it``) and the mass kept; ``(-inf, -1)`` when ``k >= V``.

    Only called first in the chain (the kept set is then the whole row), so bucket counts are exact.
    """
    before = 0
    above = 0.0
    for j in range(NB):
        if before + count[j] >= k:
            vals = _members(s, j, -np.inf, np.inf)
            tau = vals[k - before - 1]
            for i in range(vals.shape[0]):
                if vals[i] < tau:
                    break
                above += math.exp(vals[i])
            return tau, above
        before += count[j]
        above += mass[j]
    return -np.inf, -1.0


@njit(cache=True)
def _kept_mass(s: np.ndarray, w: np.ndarray, lo: float, hi: float) -> float:
    """Mass of the kept set (eight accumulators: the adds are latency-bound)."""
    v = s.shape[0]
    acc = np.zeros(8)
    n8 = v - v % 8
    for i in range(0, n8, 8):
        for j in range(8):
            acc[j] += w[i + j] if (lo <= s[i + j]) & (s[i + j] <= hi) else 0.0
    for i in range(n8, v):
        acc[0] += w[i] if (lo <= s[i]) & (s[i] <= hi) else 0.0
    total: float = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    return total


@njit(cache=True)
def _mass_cut(s: np.ndarray, mass: np.ndarray, lo: float, hi: float, need: float) -> tuple[float, float]:
    """Smallest tau with mass{tau <= s, lo <= s <= hi} >= need, and that mass; ``(lo, -1)`` if never reached."""
    jh = 0 if hi >= 0.0 else _key(hi)
    jl = NB - 1 if lo == -np.inf else _key(lo)
    before = 0.0
    for j in range(jh, jl + 1):
        partial = (j == jh and hi < 0.0) or (j == jl and lo != -np.inf)
        if not partial and before + mass[j] < need:
            before += mass[j]
            continue
        vals = _members(s, j, lo, hi)
        for i in range(vals.shape[0]):
            before += math.exp(vals[i])
            if before >= need:
                tau = vals[i]
                for r in range(i + 1, vals.shape[0]):  # ties with tau come along
                    if vals[r] < tau:
                        break
                    before += math.exp(vals[r])
                return tau, before
    return lo, -1.0


@njit(cache=True)
def _typical_band(
    s: np.ndarray,
    w: np.ndarray,
    lo: float,
    hi: float,
    z: float,
    s1: float,
    p: float,
    dmass: np.ndarray,
    dd: np.ndarray,
    pp: np.ndarray,
) -> tuple[float, float]:
    """Typical sampling's kept set as an interval of s: tokens by increasing |surprise - H| to mass p.

    ``dmass`` (NB,), ``dd`` and ``pp`` (V,) are the caller's scratch (fresh arrays per row cost page faults).
    """
    log_z = math.log(z)
    h = log_z - s1 / z
    nd = NB
    dmass[:] = 0.0
    v = s.shape[0]
    for i in range(v):
        if (lo <= s[i]) & (s[i] <= hi) & (w[i] > 0):
            f = abs(-(s[i] - log_z) - h) * D_SCALE
            dmass[int(min(f, nd - 1.0))] += w[i] / z
    before = 0.0
    jb = nd - 1
    for j in range(nd):
        if before + dmass[j] >= p:
            jb = j
            break
        before += dmass[j]
    n = 0
    for i in range(v):
        if (lo <= s[i]) & (s[i] <= hi) & (w[i] > 0):
            d = abs(-(s[i] - log_z) - h)
            if int(min(d * D_SCALE, nd - 1.0)) == jb:
                dd[n] = d
                pp[n] = w[i] / z
                n += 1
    order = np.argsort(dd[:n], kind="mergesort")
    cut = np.inf
    for r in range(n):
        before += pp[order[r]]
        if before >= p:
            cut = dd[order[r]]
            break
    if cut == np.inf and n > 0:
        cut = dd[order[n - 1]]
    # {d <= cut} is an interval of s (d is monotone on each side of log Z - H)
    a, b = np.inf, -np.inf
    for i in range(v):
        if (lo <= s[i]) & (s[i] <= hi) & (w[i] > 0) & (abs(-(s[i] - log_z) - h) <= cut):
            a = min(a, s[i])
            b = max(b, s[i])
    return a, b


@njit(cache=True)
def _floor_cut(s: np.ndarray, w: np.ndarray, lo: float, hi: float, z: float, cut: float) -> float:
    """Smallest kept s with ``w / z >= cut``; the top kept token always survives (epsilon, eta)."""
    best = np.inf
    top = -np.inf
    for i in range(s.shape[0]):
        if (lo <= s[i]) & (s[i] <= hi) & (w[i] > 0):
            top = max(top, s[i])
            if w[i] / z >= cut:
                best = min(best, s[i])
    return min(best, top)


@njit(cache=True, inline="always")
def _kw(s: np.ndarray, w: np.ndarray, lo: float, hi: float, i: int) -> float:
    """Token ``i``'s weight when kept (``lo <= s <= hi``), else 0."""
    return w[i] if (lo <= s[i]) & (s[i] <= hi) else 0.0


@njit(cache=True)
def _pairwise(s: np.ndarray, w: np.ndarray, lo: float, hi: float, a: int, n: int) -> float:
    """The kept weights ``a .. a+n-1`` summed exactly as numpy's pairwise ``add.reduce`` sums them.

    Same tree (halves rounded to multiples of 8 above 128 terms), same eight accumulators below,
    so the result is numpy's bit for bit on the same weights: q then matches the reference's
    normaliser to the rounding of the weights themselves.
    """
    if n < 8:
        res = 0.0
        for i in range(a, a + n):
            res += _kw(s, w, lo, hi, i)
        return res
    if n <= 128:
        r0 = _kw(s, w, lo, hi, a)
        r1 = _kw(s, w, lo, hi, a + 1)
        r2 = _kw(s, w, lo, hi, a + 2)
        r3 = _kw(s, w, lo, hi, a + 3)
        r4 = _kw(s, w, lo, hi, a + 4)
        r5 = _kw(s, w, lo, hi, a + 5)
        r6 = _kw(s, w, lo, hi, a + 6)
        r7 = _kw(s, w, lo, hi, a + 7)
        i = 8
        end8 = n - n % 8
        while i < end8:
            r0 += _kw(s, w, lo, hi, a + i)
            r1 += _kw(s, w, lo, hi, a + i + 1)
            r2 += _kw(s, w, lo, hi, a + i + 2)
            r3 += _kw(s, w, lo, hi, a + i + 3)
            r4 += _kw(s, w, lo, hi, a + i + 4)
            r5 += _kw(s, w, lo, hi, a + i + 5)
            r6 += _kw(s, w, lo, hi, a + i + 6)
            r7 += _kw(s, w, lo, hi, a + i + 7)
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += _kw(s, w, lo, hi, a + i)
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise(s, w, lo, hi, a, n2) + _pairwise(s, w, lo, hi, a + n2, n - n2)


_BLOCK = 512  # faithful.draw.band_search's block


@njit(cache=True)
def _band_draw(
    s: np.ndarray, w: np.ndarray, lo: float, hi: float, u: float, prefix: np.ndarray
) -> tuple[int, float]:
    """The token whose band of the running kept sum (token order) holds ``u * total``, and ``total``.

    :func:`faithful.draw.band_search` step for step: rows up to 1024 tokens take a running sum;
    longer rows sum blocks of 512 (numpy's pairwise sum), take a running sum over the blocks, then
    one inside the block the target falls in. Given the same weights the token and the total are the
    reference's bit for bit. ``prefix`` is scratch of at least ``V // 512 + 1``.
    """
    v = s.shape[0]
    if v <= 2 * _BLOCK:
        total = 0.0
        for i in range(v):
            total += _kw(s, w, lo, hi, i)
        target = min(u * total, np.nextafter(total, 0.0))
        c = 0.0
        for i in range(v):
            c += _kw(s, w, lo, hi, i)
            if c > target:
                return i, total
        return v - 1, total  # unreachable: the running sum ends at total > target
    nb = v // _BLOCK
    n = nb + (1 if nb * _BLOCK < v else 0)
    run = 0.0
    for j in range(n):
        run += _pairwise(s, w, lo, hi, j * _BLOCK, min(_BLOCK, v - j * _BLOCK))
        prefix[j] = run
    total = prefix[n - 1]
    target = min(u * total, np.nextafter(total, 0.0))
    blk = 0
    while prefix[blk] <= target:
        blk += 1
    before = prefix[blk - 1] if blk > 0 else 0.0
    c = 0.0
    last = -1
    for i in range(blk * _BLOCK, min(v, (blk + 1) * _BLOCK)):
        wi = _kw(s, w, lo, hi, i)
        c += wi
        if before + c > target:
            return i, total
        if wi > 0:
            last = i
    return last, total  # the block's own running sum rounded a hair below its prefix


@njit(cache=True)
def _row(
    x: np.ndarray,
    t: float,
    codes: np.ndarray,
    values: np.ndarray,
    u: float,
    q: np.ndarray,
    want_q: bool,
    s: np.ndarray,
    w: np.ndarray,
    mass: np.ndarray,
    count: np.ndarray,
    prefix: np.ndarray,
    dmass: np.ndarray,
    dd: np.ndarray,
    pp: np.ndarray,
) -> tuple[int, float, int]:
    """One row. Scratch owned by the caller: ``s``, ``w``, ``dd``, ``pp`` (V,), ``mass``, ``count``,
    ``dmass`` (NB,) and ``prefix`` (V // 512 + 1,)."""
    v = x.shape[0]
    m = -np.inf
    bad = False
    for i in range(v):
        xi = np.float64(x[i])
        bad |= xi != xi
        m = max(m, xi)
    if bad or m == np.inf:
        return -1, 0.0, BAD_VALUE
    if m == -np.inf:
        return -1, 0.0, EMPTY_ROW
    n_ops = codes.shape[0]
    hist = False
    for op in range(n_ops):
        hist |= (codes[op] == OP_TOP_K) | (codes[op] == OP_TOP_P)
    # an entropy needed before any cut (typical or eta first): its sum of w * s rides on the exp pass
    want_s1 = n_ops > 0 and ((codes[0] == OP_TYPICAL) | (codes[0] == OP_ETA))
    if t == 1.0:  # s = (x - m) / T, subtract first, then divide: right at any scale
        for i in range(v):
            s[i] = np.float64(x[i]) - m
    else:
        for i in range(v):
            s[i] = (np.float64(x[i]) - m) / t
    z0 = z1 = 0.0  # two accumulators: the exp dominates, the adds need not wait on each other
    a0 = 0.0
    # one exp pass, in the variant the chain needs (branches inside one loop measured slower)
    if hist:
        mass[:] = 0.0
        count[:] = 0
        for i in range(v):
            e = math.exp(s[i])
            w[i] = e
            k = _key(s[i])
            mass[k] += e
            count[k] += 1
            if i & 1:
                z1 += e
            else:
                z0 += e
    elif want_s1:
        a1 = 0.0  # two accumulators for w * s, as for w: the adds need not wait on each other
        for i in range(v):
            e = math.exp(s[i])
            w[i] = e
            ws = e * s[i] if e > 0.0 else 0.0
            if i & 1:
                z1 += e
                a1 += ws
            else:
                z0 += e
                a0 += ws
        a0 += a1
    else:
        for i in range(v):
            e = math.exp(s[i])
            w[i] = e
            if i & 1:
                z1 += e
            else:
                z0 += e
    lo, hi = -np.inf, np.inf
    z = z0 + z1
    # sum of w * s over the kept set, when an entropy needs it; the histogram pass does not sum it
    # (an eta or typical first with a top-p later read 0 here: the entropy of a one-hot row)
    s1 = a0 if want_s1 and not hist else np.nan
    fresh = True  # z (and s1 when not NaN) describe the current kept set
    for op in range(n_ops):
        code, val = codes[op], values[op]
        if code == OP_TOP_K:
            tau, kept = _top_k(s, mass, count, int(val))
            if kept >= 0.0:
                lo, z, s1 = tau, kept, np.nan
        elif code == OP_TOP_P:
            if not fresh:
                z, s1 = _kept_stats(s, w, lo, hi)
                fresh = True
            tau, kept = _mass_cut(s, mass, lo, hi, val * z)
            if kept >= 0.0:
                lo, z, s1 = max(lo, tau), kept, np.nan
        elif code == OP_MIN_P:
            # relative to the largest kept s, as the reference's max of the logits it sees: 0 unless a
            # typical cut dropped the top token (then log(min_p) alone emptied rows or cut too much)
            top = 0.0
            if hi < 0.0:
                top = -np.inf
                for i in range(v):
                    if (lo <= s[i]) & (s[i] <= hi):
                        top = max(top, s[i])
            lo = max(lo, top + math.log(val))
            fresh = False
        elif code == OP_TYPICAL:
            if not fresh or s1 != s1:
                z, s1 = _kept_stats(s, w, lo, hi)
            a, b = _typical_band(s, w, lo, hi, z, s1, val, dmass, dd, pp)
            lo, hi = max(lo, a), min(hi, b)
            fresh = False
        else:  # epsilon, eta
            if not fresh or (code == OP_ETA and s1 != s1):
                z, s1 = _kept_stats(s, w, lo, hi)
            cut = val
            if code == OP_ETA:
                entropy = math.log(z) - s1 / z
                cut = min(val, math.sqrt(val) * math.exp(-entropy))
            lo = max(lo, _floor_cut(s, w, lo, hi, z, cut))
            fresh = False
    zk = np.nan
    if hi < 0.0:
        # typical dropped the top token: the reference's weights are exp(z - max kept z), with z the
        # logits it saw (x, or s after a temperature); recompute the kept ones from the same numbers
        zk = -np.inf
        for i in range(v):
            if (lo <= s[i]) & (s[i] <= hi):
                zk = max(zk, np.float64(x[i]) if t == 1.0 else s[i])
        for i in range(v):
            if (lo <= s[i]) & (s[i] <= hi):
                w[i] = math.exp((np.float64(x[i]) if t == 1.0 else s[i]) - zk)
    # the draw computes the reference's normaliser itself: no pass for the last cut's mass
    token, total = _band_draw(s, w, lo, hi, u, prefix)
    if want_q:
        for i in range(v):  # w / total, as the reference divides (not w * (1 / total))
            q[i] = _kw(s, w, lo, hi, i) / total
    if zk == zk:
        lp = ((np.float64(x[token]) if t == 1.0 else s[token]) - zk) - math.log(total)
    else:
        lp = s[token] - math.log(total)
    return token, lp, OK


@njit(cache=True, parallel=True)
def sample_rows(
    x: np.ndarray,
    t: float,
    codes: np.ndarray,
    values: np.ndarray,
    u: np.ndarray,
    want_q: bool,
    n_chunks: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokens, log q[token], status per row (OK / BAD_VALUE / EMPTY_ROW) and q (``(B, V)`` or ``(0, 0)``).

    Rows are split into ``n_chunks`` contiguous chunks run in parallel; each chunk allocates its
    scratch once (fresh 400 kB arrays per row cost more in page faults than the row's exps).
    """
    b, v = x.shape
    tokens = np.empty(b, dtype=np.int64)
    logprobs = np.empty(b, dtype=np.float64)
    status = np.empty(b, dtype=np.int64)
    q = np.empty((b, v) if want_q else (0, 0), dtype=np.float64)
    dummy = np.empty(0, dtype=np.float64)
    n_chunks = max(1, min(n_chunks, b))
    for c in prange(n_chunks):
        s = np.empty(v, dtype=np.float64)
        w = np.empty(v, dtype=np.float64)
        mass = np.empty(NB, dtype=np.float64)
        count = np.empty(NB, dtype=np.int64)
        prefix = np.empty(v // _BLOCK + 1, dtype=np.float64)
        typical = False
        for op in range(codes.shape[0]):
            typical |= codes[op] == OP_TYPICAL
        dmass = np.empty(NB if typical else 0, dtype=np.float64)
        dd = np.empty(v if typical else 0, dtype=np.float64)
        pp = np.empty(v if typical else 0, dtype=np.float64)
        for r in range(c * b // n_chunks, (c + 1) * b // n_chunks):
            qr = q[r] if want_q else dummy
            tok, lp, st = _row(
                x[r], t, codes, values, u[r], qr, want_q, s, w, mass, count, prefix, dmass, dd, pp
            )
            tokens[r] = tok
            logprobs[r] = lp
            status[r] = st
    return tokens, logprobs, status, q


@njit(cache=True, parallel=True)
def exp_sum_rows(x: np.ndarray) -> np.ndarray:
    """The floor of any exact sampler: per row, the max, then the float64 sum of ``exp(x - max)``."""
    b, v = x.shape
    out = np.empty(b, dtype=np.float64)
    for r in prange(b):
        m = -np.inf
        for i in range(v):
            m = max(m, np.float64(x[r, i]))
        acc = 0.0
        for i in range(v):
            acc += math.exp(np.float64(x[r, i]) - m)
        out[r] = acc
    return out
