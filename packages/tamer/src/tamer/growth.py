"""What grew, by how much, and when the disk fills: pure functions of a series of Snapshots.

- `growth(snapshots, by)`: per kind, owner, volume or container log, the bytes in the first
  and the last snapshot of the window and the change. An object absent from a snapshot holds
  0 bytes there (a volume made during the window grew from 0; one removed shrank to 0); an
  object present but not measured (None) makes its change unknown, never a made-up number.
- `top_growers(snapshots, n)`: the volumes and container logs that grew most.
- `fit_line(points)`: least squares, computed exactly (Fractions: byte counts past 2**53
  stay exact), with the slope's standard error.
- `forecast(snapshots)`: when the data-root's filesystem fills "at the current rate": a line
  fitted to its free bytes over time since the last clean (a rise in free space of at least
  RESET_FRACTION of the filesystem), extended from the newest free figure. The range is the
  95% confidence interval of the fitted rate (Student's t, n-2 degrees of freedom): the
  fastest rate in it gives the earliest date, the slowest the latest (none when the slowest
  is not filling at all). Fewer than MIN_SNAPSHOTS snapshots or a span under `min_span`
  seconds: not enough history; a rate >= 0: not filling.

Times are the snapshots' taken_at (unix seconds); the order of the input does not matter, so
a clock set back (a snapshot stamped earlier than one recorded before it) changes no figure
but its own point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from tamer.snapshots import Snapshot

BY_CHOICES = ("kind", "owner", "volume", "log")
MIN_SNAPSHOTS = 3  # a line through two points has no error estimate
MIN_SPAN_S = 3600.0  # default: an hour of history before any forecast
RESET_FRACTION = Fraction(1, 100)  # a rise in free space of 1% of the filesystem: a clean; the rate restarts
CONFIDENCE = 0.95
DAY = 86400.0

# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (scipy.stats.t.ppf(0.975, dof))
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
_Z975 = 1.959963984540054


def t_quantile_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with `dof` >= 1 degrees of freedom (table to 30, then the
    Cornish-Fisher expansion, within 1e-6 of scipy past 30)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {dof}")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4


# -- growth per key ---------------------------------------------------------------
@dataclass(frozen=True)
class Growth:
    """One key's change over the window. first/last: bytes in the first/last snapshot (0: absent
    there; None: present but not measured). change: last - first, None when either is unknown.
    status: "new" (absent at first), "gone" (absent at last), "" otherwise."""

    key: str
    first: int | None
    last: int | None
    change: int | None
    per_day: float | None  # change / span in days; None when unknown or the span is 0
    status: str = ""


def values_by(snapshot: Snapshot, by: str) -> dict[str, int | None]:
    """key -> bytes in one snapshot, for `by` in BY_CHOICES (None: present, not measured)."""
    if by == "kind":
        return {k.kind: k.bytes for k in snapshot.kinds}
    if by == "owner":
        return {o.owner: o.bytes for o in snapshot.owners}
    if by == "volume":
        return {v.name: v.bytes for v in snapshot.volumes}
    if by == "log":
        return {lg.container: lg.bytes for lg in snapshot.logs}
    raise ValueError(f"by must be one of {', '.join(BY_CHOICES)}, got {by!r}")


def span_seconds(snapshots: Sequence[Snapshot]) -> float:
    times = [s.taken_at for s in snapshots]
    return max(times) - min(times) if times else 0.0


def growth(snapshots: Sequence[Snapshot], by: str = "kind") -> list[Growth]:
    """Each key's bytes in the earliest and the latest snapshot (by taken_at) and the change,
    largest growth first (unknown changes last, then by key). Empty for no snapshots."""
    if not snapshots:
        return []
    ordered = sorted(snapshots, key=lambda s: (s.taken_at, s.seq or 0))
    if by != "kind" and not (ordered[0].details and ordered[-1].details):
        raise ValueError(f"growth by {by} needs the first and last snapshots whole (series(details='ends'))")
    first, last = values_by(ordered[0], by), values_by(ordered[-1], by)
    days = span_seconds(ordered) / DAY
    keys: dict[str, None] = {}
    for snap in ordered:
        keys.update(dict.fromkeys(values_by(snap, by)))
    rows = []
    for key in keys:
        a = first.get(key, 0)
        b = last.get(key, 0)
        change = None if a is None or b is None else b - a
        status = "new" if key not in first else "gone" if key not in last else ""
        per_day = change / days if change is not None and days > 0 else None
        rows.append(Growth(key, a, b, change, per_day, status))
    rows.sort(key=lambda g: (g.change is None, -(g.change or 0), g.key))
    return rows


@dataclass(frozen=True)
class Grower:
    """An object that grew: kind "volume" or "log", its name, and its Growth."""

    kind: str
    name: str
    growth: Growth


def top_growers(snapshots: Sequence[Snapshot], n: int = 10) -> list[Grower]:
    """The `n` volumes and container logs that grew most over the window (only those that grew)."""
    found = [
        Grower(kind, g.key, g)
        for kind in ("volume", "log")
        for g in growth(snapshots, kind)
        if g.change is not None and g.change > 0
    ]
    found.sort(key=lambda w: (-(w.growth.change or 0), w.kind, w.name))
    return found[:n]


# -- the fit ------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """y = intercept + slope * (t - t_mean), least squares. slope in bytes per second; se_slope its
    standard error (None with fewer than 3 points); n points; t_mean and y_mean the centroid."""

    slope: Fraction
    se_slope: float | None
    n: int
    t_mean: Fraction
    y_mean: Fraction

    def at(self, t: float) -> Fraction:
        return self.y_mean + self.slope * (Fraction(t) - self.t_mean)


def fit_line(points: Sequence[tuple[float, int]]) -> Fit | None:
    """Least-squares line through (t, y) points, exactly. None when fewer than 2 points or all at one t."""
    n = len(points)
    if n < 2:
        return None
    ts = [Fraction(t) for t, _ in points]
    ys = [Fraction(y) for _, y in points]
    t_mean = sum(ts, Fraction(0)) / n
    y_mean = sum(ys, Fraction(0)) / n
    sxx = sum(((t - t_mean) ** 2 for t in ts), Fraction(0))
    if sxx == 0:
        return None
    sxy = sum(((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True)), Fraction(0))
    slope = sxy / sxx
    se: float | None = None
    if n >= 3:
        ssr = sum(
            ((y - y_mean - slope * (t - t_mean)) ** 2 for t, y in zip(ts, ys, strict=True)), Fraction(0)
        )
        se = math.sqrt(ssr / (n - 2) / sxx) if ssr else 0.0
    return Fit(slope, se, n, t_mean, y_mean)


# -- the forecast -------------------------------------------------------------------
@dataclass(frozen=True)
class Forecast:
    """When the data-root's filesystem fills at the current rate.

    status: "filling", "not-filling", "full" (no free bytes now), "not-enough-history",
    "unknown" (free space not measured: the data-root is not on this machine).
    reason: a sentence for people. used: the snapshots fitted (n) and their span (seconds).
    rate: bytes per day the free space shrinks (positive: filling); rate_low/rate_high the 95%
    range of it. free_now: free bytes in the newest snapshot, at `now_at`. full_at: unix seconds
    at the fitted rate; full_earliest/full_latest: at rate_high/rate_low (full_latest None: the
    range includes "not filling"). reset_at: taken_at of the first snapshot after the last clean
    (a rise in free space), when one cut the window.
    """

    status: str
    reason: str
    n: int = 0
    span_s: float = 0.0
    rate: float | None = None
    rate_low: float | None = None
    rate_high: float | None = None
    free_now: int | None = None
    fs_size: int | None = None
    now_at: float | None = None
    full_at: float | None = None
    full_earliest: float | None = None
    full_latest: float | None = None
    reset_at: float | None = None


def forecast(snapshots: Sequence[Snapshot], *, min_span: float = MIN_SPAN_S) -> Forecast:
    """Fit free bytes over time and say when they reach 0 (see the module docstring)."""
    measured = sorted(
        (s for s in snapshots if s.fs_free_bytes is not None), key=lambda s: (s.taken_at, s.seq or 0)
    )
    if not measured:
        why = (
            "no snapshots in this window"
            if not snapshots
            else "free space was not measured (the engine's data-root is not on this machine, so its "
            "filesystem cannot be read here; run tamer on the engine's host)"
        )
        return Forecast("not-enough-history" if not snapshots else "unknown", why)
    newest = measured[-1]
    free_now = newest.fs_free_bytes
    assert free_now is not None
    fs_size = newest.fs_size_bytes
    base = Forecast("", "", n=len(measured), free_now=free_now, fs_size=fs_size, now_at=newest.taken_at)
    if free_now <= 0:
        return replace(base, status="full", reason="the data-root's filesystem has no free space left now")
    start, reset_at = _since_last_clean(measured)
    used = measured[start:]
    span = span_seconds(used)
    base = replace(base, n=len(used), span_s=span, reset_at=reset_at)
    since = " since the last clean" if reset_at is not None else ""
    if len(used) < MIN_SNAPSHOTS or span < min_span:
        return replace(
            base,
            status="not-enough-history",
            reason=f"not enough history{since}: {len(used)} snapshot(s) over {_duration(span)}; a forecast "
            f"needs at least {MIN_SNAPSHOTS} over {_duration(min_span)}",
        )
    fit = fit_line([(s.taken_at, int(s.fs_free_bytes or 0)) for s in used])
    assert fit is not None and fit.se_slope is not None  # span > 0 and n >= 3
    shrink = -fit.slope  # bytes per second, exact
    rate = float(shrink * int(DAY))  # bytes per day the free space shrinks
    half = t_quantile_975(fit.n - 2) * fit.se_slope * DAY
    rate_low, rate_high = (rate - half, rate + half) if half else (rate, rate)
    base = replace(base, rate=rate, rate_low=rate_low, rate_high=rate_high)
    if rate <= 0:
        return replace(
            base,
            status="not-filling",
            reason=f"free space is not shrinking{since} (it grows or holds steady)",
        )
    now = newest.taken_at
    return replace(
        base,
        status="filling",
        reason=f"free space shrinks{since} at the fitted rate",
        full_at=now + float(free_now / shrink),
        full_earliest=now + free_now / rate_high * DAY,
        full_latest=now + free_now / rate_low * DAY if rate_low > 0 else None,
    )


def _since_last_clean(measured: Sequence[Snapshot]) -> tuple[int, float | None]:
    """Index of the first snapshot after the last rise in free space of RESET_FRACTION of the filesystem."""
    start = 0
    for i in range(1, len(measured)):
        before, after = measured[i - 1], measured[i]
        size = after.fs_size_bytes or before.fs_size_bytes
        rise = int(after.fs_free_bytes or 0) - int(before.fs_free_bytes or 0)
        if size and rise > 0 and rise >= RESET_FRACTION * size:
            start = i
    return start, (measured[start].taken_at if start else None)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for limit, div, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if seconds < limit:
            return f"{seconds / div:.0f}{unit}"
    return f"{seconds / DAY:.1f}d"


# -- everything `tamer history` shows ----------------------------------------------
@dataclass(frozen=True)
class GrowthSummary:
    """The history of one engine over a window: what `tamer history` prints, charts and sends as JSON.

    snapshots: the window's snapshots, oldest first. rows: growth(snapshots, by). growers:
    top_growers. total: the growth of everything Docker holds (the sum of the kinds).
    """

    engine: str
    by: str
    snapshots: tuple[Snapshot, ...]
    rows: tuple[Growth, ...]
    growers: tuple[Grower, ...]
    total: Growth | None
    forecast: Forecast


def summarize(
    engine: str,
    snapshots: Sequence[Snapshot],
    *,
    by: str = "kind",
    top: int = 10,
    min_span: float = MIN_SPAN_S,
) -> GrowthSummary:
    """growth, top growers, the total's growth and the forecast of one engine's snapshots. Pure."""
    ordered = tuple(sorted(snapshots, key=lambda s: (s.taken_at, s.seq or 0)))
    total = None
    if ordered:
        a, b = ordered[0].total_bytes, ordered[-1].total_bytes
        days = span_seconds(ordered) / DAY
        total = Growth("total", a, b, b - a, (b - a) / days if days > 0 else None)
    return GrowthSummary(
        engine=engine,
        by=by,
        snapshots=ordered,
        rows=tuple(growth(ordered, by)),
        growers=tuple(top_growers(ordered, top)),
        total=total,
        forecast=forecast(ordered, min_span=min_span),
    )
