"""The statistics of the fidelity harness, in plain numpy and the standard library.

Everything here is pure: counts and probabilities in, numbers out. scipy is
not a runtime dependency, so the chi-square tail is computed from the
regularized incomplete gamma function (Numerical Recipes' series and continued
fraction); the tests check it against scipy.

Conventions: logarithms are natural (nats) unless a name says bits; a
"distribution" is a 1-D array of non-negative numbers that sums to 1 over the
same categories as its partner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from faithful.errors import FaithfulError

__all__ = [
    "GoodnessOfFit",
    "GoodnessOfFitNull",
    "binomial_pmf",
    "binomial_test",
    "chi2_sf",
    "goodness_of_fit",
    "jensen_shannon",
    "kl_divergence",
    "multinomial_pmf",
    "multinomial_test",
    "normal_sf",
    "total_variation",
]

_EPS = 1e-300


def _as_distribution(x: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise FaithfulError(f"`{name}` must be a 1-D array of probabilities, got shape {arr.shape}")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise FaithfulError(f"`{name}` must be finite and non-negative; pass probabilities, not logits")
    # the module's convention, now enforced: KL([1, 1] || [1, 3]) came out negative, TV([0, 0], ...)
    # was 0.5 and the multinomial test of [2, 1] against [1, 1] gave p = 0, all without a word
    total = float(arr.sum())
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-6):
        raise FaithfulError(
            f"`{name}` must sum to 1, got {total:.6g}; normalise it (or add an 'everything else' category)"
        )
    return arr


def _as_counts(counts: Sequence[int] | ArrayLike, size: int) -> NDArray[np.int64]:
    """Observed counts: ``size`` non-negative integers (a float like 2.0 is taken, 2.5 refused)."""
    arr = np.asarray(counts)
    if arr.ndim != 1 or arr.shape[0] != size:
        raise FaithfulError(f"need one count per category: {arr.shape} counts, {size} probabilities")
    if arr.size and (
        arr.dtype.kind not in "iuf"
        or not np.all(np.isfinite(arr))
        or np.any(arr < 0)
        or np.any(arr != np.round(arr))
    ):
        raise FaithfulError(f"counts must be non-negative integers, got {arr.tolist()[:10]}")
    return arr.astype(np.int64)


def _check_binomial(k: int, n: int, p: float, *, k_in_range: bool) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise FaithfulError(f"`n` must be an int >= 0, got {n!r}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or (k_in_range and not 0 <= k <= n):
        raise FaithfulError(f"`k` must be an int in 0..n={n}, got {k!r}")
    if not (isinstance(p, int | float | np.floating | np.integer) and 0.0 <= float(p) <= 1.0):
        raise FaithfulError(f"`p` must be a probability in [0, 1], got {p!r}")


def _check_same_shape(p: NDArray[np.float64], q: NDArray[np.float64]) -> None:
    if p.shape != q.shape:
        raise FaithfulError(
            f"the two distributions must cover the same categories, got shapes {p.shape} and {q.shape}"
        )


def total_variation(p: ArrayLike, q: ArrayLike) -> float:
    """Total variation distance ``0.5 * sum |p - q|``, in [0, 1].

    Parameters: ``p``, ``q``: 1-D probability arrays over the same categories.
    Returns the distance as a float. Raises FaithfulError on shape mismatch.

    >>> round(total_variation([0.55, 0.45], [1.0, 0.0]), 12)
    0.45
    """
    pa, qa = _as_distribution(p, "p"), _as_distribution(q, "q")
    _check_same_shape(pa, qa)
    return float(0.5 * np.abs(pa - qa).sum())


def kl_divergence(p: ArrayLike, q: ArrayLike) -> float:
    """Kullback-Leibler divergence ``KL(p || q) = sum p log(p / q)`` in nats.

    Terms with ``p == 0`` contribute 0; a category with ``p > 0`` and
    ``q == 0`` makes the divergence ``inf`` (smooth ``q`` first if that is not
    what you want; :func:`faithful.fidelity.compare` states its smoothing).

    >>> round(kl_divergence([0.5, 0.5], [0.9, 0.1]), 4)
    0.5108
    """
    pa, qa = _as_distribution(p, "p"), _as_distribution(q, "q")
    _check_same_shape(pa, qa)
    mask = pa > 0
    if np.any(qa[mask] <= 0):
        return math.inf
    return float(np.sum(pa[mask] * (np.log(pa[mask]) - np.log(qa[mask]))))


def jensen_shannon(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen-Shannon divergence in bits, in [0, 1]; finite for any supports.

    >>> jensen_shannon([1.0, 0.0], [0.0, 1.0])
    1.0
    """
    pa, qa = _as_distribution(p, "p"), _as_distribution(q, "q")
    _check_same_shape(pa, qa)
    m = 0.5 * (pa + qa)
    return float(0.5 * (kl_divergence(pa, m) + kl_divergence(qa, m)) / math.log(2.0))


# -- tails --------------------------------------------------------------------------------------


def _gamma_p_series(a: float, x: float) -> float:
    term = 1.0 / a
    total = term
    ap = a
    for _ in range(10_000):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * 1e-16:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_continued_fraction(a: float, x: float) -> float:
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < tiny:
            d = tiny
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(x: float, df: float) -> float:
    """Upper tail ``P(X >= x)`` of a chi-square variable with ``df`` degrees of freedom.

    Agrees with ``scipy.stats.chi2.sf`` to about 1e-12 relative error.

    >>> round(chi2_sf(3.841458820694124, 1), 6)
    0.05
    """
    if df <= 0:
        raise FaithfulError(f"`df` must be positive, got {df}")
    if math.isnan(x):
        return math.nan
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    a, hx = df / 2.0, x / 2.0
    if hx < a + 1.0:
        return max(0.0, 1.0 - _gamma_p_series(a, hx))
    return _gamma_q_continued_fraction(a, hx)


def normal_sf(z: float) -> float:
    """Upper tail of the standard normal distribution, to full relative precision in the far tail.

    (``1 - cdf(z)`` cancelled: 7% off at z = 8, 0 from z = 8.3, where the tail is 5e-17.)

    >>> f"{normal_sf(9.0):.4g}"
    '1.129e-19'
    """
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# -- exact discrete tests ---------------------------------------------------------------------


def binomial_pmf(k: int, n: int, p: float) -> float:
    """Exact ``P(K = k)`` for ``K ~ Binomial(n, p)``, computed in log space.

    >>> binomial_pmf(20, 20, 0.55) == 0.55 ** 20
    True
    """
    _check_binomial(k, n, p, k_in_range=False)
    if not 0 <= k <= n:
        return 0.0
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    if k in (0, n):
        return float((1.0 - p) ** n if k == 0 else p**n)
    # Loader's saddle-point form (as R's and scipy's dbinom): lgamma(n + 1) is ~2e9 at n = 1e8, so a
    # difference of lgammas lost 1.3e-7 relative there; stirlerr and bd0 keep every term small
    q = 1.0 - p
    lc = _stirlerr(n) - _stirlerr(k) - _stirlerr(n - k) - _bd0(k, n * p) - _bd0(n - k, n * q)
    lf = math.log(2.0 * math.pi) + math.log(k) + math.log(n - k) - math.log(n)  # log(2 pi k (n - k) / n)
    return math.exp(lc - 0.5 * lf)


def _stirlerr(n: int) -> float:
    """``log(n!) - log(sqrt(2 pi n) (n / e)^n)`` (Loader 2000), ``n >= 1``."""
    if n <= 15:
        return math.lgamma(n + 1.0) - (n + 0.5) * math.log(n) + n - 0.5 * math.log(2.0 * math.pi)
    nn = float(n) * n
    s0, s1, s2, s3, s4 = 1.0 / 12, 1.0 / 360, 1.0 / 1260, 1.0 / 1680, 1.0 / 1188
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _bd0(x: float, m: float) -> float:
    """``x log(x / m) + m - x``, without the cancellation of its terms when ``x`` is near ``m``."""
    if abs(x - m) < 0.1 * (x + m):
        v = (x - m) / (x + m)
        total = (x - m) * v
        ej = 2.0 * x * v
        for j in range(1, 1000):
            ej *= v * v
            nxt = total + ej / (2 * j + 1)
            if nxt == total:
                return total
            total = nxt
        return total
    return x * math.log(x / m) + m - x


def binomial_test(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial test p-value (the "minimum likelihood" method).

    Sums the probabilities of every outcome no more likely than the observed
    one, as ``scipy.stats.binomtest(k, n, p).pvalue`` does.

    >>> f"{binomial_test(20, 20, 0.55):.4g}"
    '9.366e-06'
    """
    _check_binomial(k, n, p, k_in_range=True)
    observed = binomial_pmf(k, n, p)
    pmf = np.array([binomial_pmf(i, n, p) for i in range(n + 1)])
    return float(min(1.0, pmf[pmf <= observed * (1.0 + 1e-7)].sum()))


def multinomial_pmf(counts: Sequence[int] | ArrayLike, probs: ArrayLike) -> float:
    """Exact probability of observing ``counts`` in ``sum(counts)`` multinomial draws.

    >>> round(multinomial_pmf([11, 9], [0.55, 0.45]), 6)
    0.177055
    """
    pa = _as_distribution(probs, "probs")
    c_arr = _as_counts(counts, len(pa))
    n = int(c_arr.sum())
    cs, ps = c_arr.tolist(), [float(x) for x in pa]
    seen = [(c, pi) for c, pi in zip(cs, ps, strict=True) if c > 0]
    if any(pi <= 0 for _, pi in seen):
        return 0.0
    if len(seen) <= 1:
        return 1.0 if not seen else float(seen[0][1] ** n)
    # Loader's saddle-point form, as binomial_pmf: lgamma(n + 1) differences lost 6e-8 relative at
    # n = 1e8. With m_i = n p_i, sum c_i log(c_i / m_i) = sum bd0(c_i, m_i) - n (sum p - 1).
    log_p = 0.5 * math.log(2.0 * math.pi * n) + _stirlerr(n) + n * math.fsum([*ps, -1.0])
    for c, pi in zip(cs, ps, strict=True):
        if c > 0:
            log_p -= 0.5 * math.log(2.0 * math.pi * c) + _stirlerr(c) + _bd0(c, n * pi)
        else:
            log_p -= n * pi  # bd0(0, m) = m
    return math.exp(log_p)


def _compositions(n: int, k: int) -> NDArray[np.int64]:
    """All vectors of k non-negative integers that sum to n (stars and bars)."""
    if k == 1:
        return np.array([[n]], dtype=np.int64)
    rows = []
    for first in range(n + 1):
        rest = _compositions(n - first, k - 1)
        rows.append(np.column_stack([np.full(len(rest), first, dtype=np.int64), rest]))
    return np.vstack(rows)


def multinomial_test(
    counts: Sequence[int] | ArrayLike, probs: ArrayLike, *, max_outcomes: int = 2_000_000
) -> float:
    """Exact multinomial goodness-of-fit p-value (sum of no-more-likely outcomes).

    Falls back to the G-test's chi-square approximation when the number of
    possible outcomes exceeds ``max_outcomes``. For two categories this is
    :func:`binomial_test`.
    """
    pa = _as_distribution(probs, "probs")
    c_arr = _as_counts(counts, len(pa))
    n = int(c_arr.sum())
    if len(pa) == 2:
        return binomial_test(int(c_arr[0]), n, float(pa[0]))
    if math.comb(n + len(pa) - 1, len(pa) - 1) > max_outcomes:
        return goodness_of_fit(c_arr, pa, min_expected=0.0).g_pvalue
    outcomes = _compositions(n, len(pa))
    lgamma_table = np.array([math.lgamma(i + 1) for i in range(n + 1)])
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 * log 0 is masked by the where
        logp = np.log(pa)
        terms = np.where(outcomes > 0, outcomes * logp[None, :], 0.0)
    log_pmf = math.lgamma(n + 1) - lgamma_table[outcomes].sum(axis=1) + terms.sum(axis=1)
    observed = multinomial_pmf(c_arr, pa)
    pmf = np.exp(log_pmf)
    return float(min(1.0, pmf[pmf <= observed * (1.0 + 1e-7)].sum()))


# -- goodness of fit -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GoodnessOfFit:
    """Pearson chi-square and G-test of observed counts against expected probabilities.

    Attributes: ``chi2`` and ``g`` (the statistics), ``df`` (degrees of
    freedom after pooling), ``chi2_pvalue`` and ``g_pvalue``, ``bins`` (the
    number of bins after pooling), ``pooled`` (how many original categories
    were merged into the pooled bin because their expected counts were below
    ``min_expected``), ``impossible`` (observations in categories of
    probability zero: any makes both statistics infinite), ``reps`` (0: p-values
    from the chi-square approximation; else from that many simulated samples).
    """

    chi2: float
    g: float
    df: int
    chi2_pvalue: float
    g_pvalue: float
    bins: int
    pooled: int
    impossible: int
    reps: int = 0


def _pooling(expected: NDArray[np.float64], min_expected: float) -> tuple[NDArray[np.int64], int]:
    """The bin of each category after pooling, and how many categories were pooled.

    Bins ``0 .. R-1`` are the regular categories (expected count >= ``min_expected``) in their
    order; then come the pooled groups (see :func:`goodness_of_fit`).
    """
    k = len(expected)
    small = expected < min_expected
    if not small.any() or (small.all() and expected.sum() < min_expected):
        return np.arange(k, dtype=np.int64), 0
    regular = np.flatnonzero(~small)
    bins = np.empty(k, dtype=np.int64)
    bins[regular] = np.arange(len(regular))
    order = np.argsort(np.where(small, expected, np.inf), kind="stable")[: int(small.sum())]
    # cut the running sum of the sorted small expected counts wherever it reaches min_expected
    next_bin = len(regular)
    start = 0
    acc = 0.0
    for j, i in enumerate(order.tolist()):
        acc += float(expected[i])
        if acc >= min_expected:
            bins[order[start : j + 1]] = next_bin
            next_bin += 1
            start, acc = j + 1, 0.0
    if start < len(order):  # a remainder below min_expected joins the last group, or the smallest regular bin
        bins[order[start:]] = next_bin - 1 if next_bin > len(regular) else int(np.argmin(expected[regular]))
    return bins, int(small.sum())


def _statistics(
    obs: NDArray[np.float64], exp: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pearson's chi-square and the G statistic along the last axis."""
    chi2 = np.sum((obs - exp) ** 2 / exp, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(obs > 0, obs * np.log(obs / exp), 0.0)
    return chi2, 2.0 * np.sum(terms, axis=-1)


@dataclass(frozen=True)
class GoodnessOfFitNull:
    """The null distribution of the pooled chi-square and G statistics, simulated once, used many times.

    The chi-square approximation of the G statistic is anti-conservative with many sparse bins
    (exact samples, N = 2000 over 5,461 outcomes: 2.5% rejected at alpha 0.01, 10% at 0.05).
    Simulating the multinomial null instead gives p-values whose level is right at any size:
    ``p = (1 + #{simulated >= observed}) / (reps + 1)`` is a valid p-value (never below alpha
    more often than alpha), with resolution ``1 / (reps + 1)``. Pooling depends on the expected
    counts only, so the pooled counts are themselves multinomial and are simulated directly.

    Attributes:
        probs: ``(K,)`` the category probabilities tested against (zeros allowed).
        n: the number of observations every tested count vector must have.
        min_expected: the pooling threshold. reps: simulated samples. seed: their seed.
        bins: ``(K,)`` the bin of each category (-1 for probability zero).
        expected: ``(B,)`` expected counts per bin.
        pooled: how many categories were pooled.
        chi2_null, g_null: sorted simulated statistics, ``(reps,)`` each.

    Example:
        >>> null = GoodnessOfFitNull.simulate([0.5, 0.25, 0.25], 40, reps=999, seed=0)
        >>> r = null.test([20, 10, 10])
        >>> r.g, r.g_pvalue
        (0.0, 1.0)
    """

    probs: NDArray[np.float64]
    n: int
    min_expected: float
    reps: int
    seed: int
    bins: NDArray[np.int64]
    expected: NDArray[np.float64]
    pooled: int
    chi2_null: NDArray[np.float64]
    g_null: NDArray[np.float64]

    @classmethod
    def simulate(
        cls, probs: ArrayLike, n: int, *, reps: int = 5000, seed: int = 0, min_expected: float = 5.0
    ) -> GoodnessOfFitNull:
        """Pool the bins for ``n`` observations and simulate ``reps`` exact multinomial samples.

        Parameters:
            probs: ``(K,)`` probabilities summing to 1. n: observations per tested sample (>= 1).
            reps: simulated samples (>= 1; ~5000 resolves p-values down to 2e-4).
            seed: seed of the simulation. min_expected: pooling threshold, as in :func:`goodness_of_fit`.

        Returns: a :class:`GoodnessOfFitNull`.

        Raises: FaithfulError on bad probabilities, ``n < 1`` or ``reps < 1``.
        """
        p = _check_probs(probs)
        if int(n) != n or n < 1:
            raise FaithfulError(f"`n` (observations) must be an integer >= 1, got {n}")
        if int(reps) != reps or reps < 1:
            raise FaithfulError(f"`reps` (simulated samples) must be an integer >= 1, got {reps}")
        n, reps = int(n), int(reps)
        live = np.flatnonzero(p > 0)
        live_bins, pooled = _pooling(n * p[live], min_expected)
        bins = np.full(len(p), -1, dtype=np.int64)
        bins[live] = live_bins
        expected = np.asarray(np.bincount(live_bins, weights=n * p[live]), dtype=np.float64)
        if len(expected) < 2:
            zeros = np.zeros(reps)
            return cls(p, n, float(min_expected), reps, int(seed), bins, expected, pooled, zeros, zeros)
        sims = np.random.default_rng(seed).multinomial(n, expected / expected.sum(), size=reps)
        chi2, g = _statistics(sims.astype(np.float64), expected)
        return cls(
            p, n, float(min_expected), reps, int(seed), bins, expected, pooled, np.sort(chi2), np.sort(g)
        )

    def _pool(self, counts: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Pooled observed counts ``(..., B)`` and the observations in categories of probability zero."""
        live = np.flatnonzero(self.bins >= 0)
        order = live[np.argsort(self.bins[live], kind="stable")]
        starts = np.searchsorted(self.bins[order], np.arange(len(self.expected)))
        pooled = np.asarray(np.add.reduceat(counts[..., order], starts, axis=-1), dtype=np.float64)
        dead = np.ones(len(self.probs), dtype=bool)
        dead[live] = False
        return pooled, counts[..., dead].sum(axis=-1)

    def _checked_counts(self, counts: ArrayLike) -> NDArray[np.float64]:
        c = np.asarray(counts, dtype=np.float64)
        if c.ndim < 1 or c.shape[-1] != len(self.probs):
            raise FaithfulError(
                f"need {len(self.probs)} counts per sample (one per category), got shape {c.shape}"
            )
        if np.any(c < 0) or not np.all(np.isfinite(c)):
            raise FaithfulError("counts must be finite and non-negative")
        totals = c.sum(axis=-1)
        if np.any(totals != self.n):
            raise FaithfulError(
                f"every count vector must hold n = {self.n} observations (the null was simulated for it); "
                f"got totals {np.unique(totals)[:5].tolist()}; simulate a null for that n"
            )
        return c

    def _tail(self, null: NDArray[np.float64], stat: NDArray[np.float64]) -> NDArray[np.float64]:
        # a simulated value "at least as extreme" within rounding of the observed one counts as such
        at_least = self.reps - np.searchsorted(null, stat * (1.0 - 1e-12) - 1e-12, side="left")
        out: NDArray[np.float64] = np.asarray((1.0 + at_least) / (self.reps + 1.0), dtype=np.float64)
        return out

    def pvalues(self, counts: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Monte Carlo p-values of the G and chi-square statistics for many count vectors at once.

        Parameters: ``counts`` ``(..., K)`` count vectors, each summing to ``n``.

        Returns: ``(g_pvalues, chi2_pvalues)``, each of shape ``(...)``; 0 where an observation
        falls in a category of probability zero.
        """
        c = self._checked_counts(counts)
        obs, impossible = self._pool(c)
        if len(self.expected) < 2:
            ones = np.where(impossible > 0, 0.0, 1.0)
            return ones, ones.copy()
        chi2, g = _statistics(obs, self.expected)
        g_p = np.where(impossible > 0, 0.0, self._tail(self.g_null, g))
        chi2_p = np.where(impossible > 0, 0.0, self._tail(self.chi2_null, chi2))
        return g_p, chi2_p

    def test(self, counts: ArrayLike) -> GoodnessOfFit:
        """Test one count vector: the statistics and their Monte Carlo p-values."""
        c = self._checked_counts(counts)
        if c.ndim != 1:
            raise FaithfulError(
                f"`test` takes one count vector (K,), got shape {c.shape}; use `pvalues` for many"
            )
        obs, impossible = self._pool(c)
        live = int((self.probs > 0).sum())
        if impossible:
            return GoodnessOfFit(
                math.inf, math.inf, max(1, live - 1), 0.0, 0.0, 0, 0, int(impossible), self.reps
            )
        bins = len(self.expected)
        if bins < 2:
            return GoodnessOfFit(0.0, 0.0, 0, 1.0, 1.0, bins, self.pooled, 0, self.reps)
        chi2, g = _statistics(obs, self.expected)
        return GoodnessOfFit(
            float(chi2),
            float(g),
            bins - 1,
            float(self._tail(self.chi2_null, np.asarray(chi2))),
            float(self._tail(self.g_null, np.asarray(g))),
            bins,
            self.pooled,
            0,
            self.reps,
        )


def _check_probs(probs: ArrayLike) -> NDArray[np.float64]:
    p = _as_distribution(probs, "probs")
    total_p = p.sum()
    if not math.isclose(total_p, 1.0, rel_tol=0, abs_tol=1e-6):
        raise FaithfulError(
            f"`probs` must sum to 1 (got {total_p:.6g}); add an 'everything else' category for the rest"
        )
    return p


def goodness_of_fit(
    counts: ArrayLike, probs: ArrayLike, *, min_expected: float = 5.0, monte_carlo: int = 0, seed: int = 0
) -> GoodnessOfFit:
    """Test observed ``counts`` against category probabilities ``probs``.

    Categories whose expected count ``N * p`` is below ``min_expected`` (the
    usual validity condition of the chi-square approximation) are pooled:
    taken in increasing order of expected count, consecutive ones are grouped
    until each group reaches ``min_expected``; a last group that stays below it
    joins the previous group, or the smallest regular bin when there is none.
    The grouping depends on the expected counts only, never on what was
    observed, so the tests keep their level. Observations in a category of probability zero
    make the statistics infinite and the p-values zero.

    With many sparse bins the chi-square approximation of the G statistic is anti-conservative
    even after pooling; ``monte_carlo=R`` takes both p-values from ``R`` simulated multinomial
    samples instead (:class:`GoodnessOfFitNull`), whose level is right at every size.

    Parameters: ``counts`` (K,) non-negative integers; ``probs`` (K,)
    probabilities summing to 1 (a residual "everything else" category must
    be included by the caller); ``monte_carlo``: 0 for the chi-square
    approximation, else the number of simulated samples; ``seed``: their seed.
    Returns :class:`GoodnessOfFit`.

    >>> r = goodness_of_fit([20, 0], [0.55, 0.45])
    >>> round(r.chi2, 3), r.df
    (16.364, 1)
    """
    c = np.asarray(counts, dtype=np.float64)
    p = _as_distribution(probs, "probs")
    _check_same_shape(c, p)
    p = _check_probs(p)
    n = c.sum()
    if n <= 0:
        raise FaithfulError("need at least one observation for a goodness-of-fit test")
    if monte_carlo:
        if int(n) != n:
            raise FaithfulError(f"the Monte Carlo test needs integer counts, got a total of {n}")
        null = GoodnessOfFitNull.simulate(p, int(n), reps=monte_carlo, seed=seed, min_expected=min_expected)
        return null.test(c)
    impossible = int(c[p <= 0].sum())
    if impossible:
        return GoodnessOfFit(math.inf, math.inf, max(1, int((p > 0).sum()) - 1), 0.0, 0.0, 0, 0, impossible)
    c, p = c[p > 0], p[p > 0]
    expected = n * p
    bins_of, pooled = _pooling(expected, min_expected)
    exp_bins = np.asarray(np.bincount(bins_of, weights=expected), dtype=np.float64)
    obs_bins = np.asarray(np.bincount(bins_of, weights=c), dtype=np.float64)
    bins = len(exp_bins)
    if bins < 2:
        return GoodnessOfFit(0.0, 0.0, 0, 1.0, 1.0, bins, pooled, 0)
    chi2_arr, g_arr = _statistics(obs_bins, exp_bins)
    chi2, g = float(chi2_arr), float(g_arr)
    df = bins - 1
    return GoodnessOfFit(chi2, g, df, chi2_sf(chi2, df), chi2_sf(g, df), bins, pooled, 0)
