"""growth.py (what grew, the forecast) with exact numbers; scipy as the outside oracle for the fit."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from scipy import stats
from tamer.accounting import disk_report
from tamer.growth import (
    DAY,
    MIN_SNAPSHOTS,
    fit_line,
    forecast,
    growth,
    t_quantile_975,
    top_growers,
)
from tamer.inventory import RawSnapshot, build_inventory
from tamer.snapshots import FsUsage, KindSize, LogSize, OwnerSize, Snapshot, VolumeSize, snapshot_from_df

T0 = 1_700_000_000.0
GB = 10**9
DATA = Path(__file__).parent / "data" / "snapshot.json"


def snap(
    t: float,
    free: int | None = None,
    *,
    size: int | None = 1000 * GB,
    kinds: dict[str, int] | None = None,
    volumes: dict[str, int | None] | None = None,
    logs: dict[str, int] | None = None,
    owners: dict[str, int] | None = None,
    seq: int | None = None,
) -> Snapshot:
    return Snapshot(
        taken_at=t,
        engine="E@/var/lib/docker",
        host="unix:///x",
        sizing="local",
        kinds=tuple(KindSize(k, 1, b, 0, 0) for k, b in (kinds or {}).items()),
        reclaimable_safe=0,
        reclaimable_decision=0,
        owners=tuple(OwnerSize(o, 0, b, 0) for o, b in (owners or {}).items()),
        volumes=tuple(VolumeSize(n, "default", "named", "unowned", b) for n, b in (volumes or {}).items()),
        logs=tuple(LogSize(n, n * 8, f"container:{n}", b) for n, b in (logs or {}).items()),
        fs_size_bytes=size if free is not None else None,
        fs_free_bytes=free,
        seq=seq,
    )


# -- forecast ---------------------------------------------------------------------
def test_a_straight_line_gives_its_rate_and_date_exactly() -> None:
    # 500 GB free, 2 GB a day less, one snapshot a day for 5 days
    snaps = [snap(T0 + d * DAY, 500 * GB - 2 * GB * d) for d in range(5)]
    f = forecast(snaps)
    assert f.status == "filling"
    assert f.rate == 2 * GB and f.rate_low == f.rate_high == 2 * GB  # no scatter: no uncertainty
    assert f.free_now == 492 * GB and f.now_at == T0 + 4 * DAY
    assert f.full_at == T0 + 4 * DAY + 246 * DAY  # 492 GB at 2 GB/day
    assert f.full_earliest == f.full_latest == f.full_at
    assert f.n == 5 and f.span_s == 4 * DAY


def test_noisy_rate_and_range_match_scipy() -> None:
    rng = random.Random(7)
    times = [T0 + i * 3600 * 6 + rng.uniform(-600, 600) for i in range(40)]
    frees = [int(800 * GB - 3 * GB * (t - T0) / DAY + rng.gauss(0, 0.5 * GB)) for t in times]
    f = forecast([snap(t, y) for t, y in zip(times, frees, strict=True)])
    ref = stats.linregress(times, frees)
    q = stats.t.ppf(0.975, len(times) - 2)
    assert f.status == "filling"
    assert f.rate == pytest.approx(-ref.slope * DAY, rel=1e-9)
    assert f.rate_high == pytest.approx((-ref.slope + q * ref.stderr) * DAY, rel=1e-6)
    assert f.rate_low == pytest.approx((-ref.slope - q * ref.stderr) * DAY, rel=1e-6)
    now, free = max(zip(times, frees, strict=True))
    assert f.full_at == pytest.approx(now + free / (-ref.slope), rel=1e-9)
    assert f.full_earliest is not None and f.full_latest is not None
    assert f.full_earliest < f.full_at < f.full_latest


def test_a_range_that_includes_not_filling_has_no_latest_date() -> None:
    frees = [100 * GB, 95 * GB, 99 * GB, 93 * GB]
    f = forecast([snap(T0 + d * DAY, y) for d, y in enumerate(frees)])
    assert f.status == "filling" and f.rate is not None and f.rate > 0
    assert f.rate_low is not None and f.rate_low < 0
    assert f.full_earliest is not None and f.full_latest is None


@pytest.mark.parametrize(
    ("times", "status"),
    [
        ([0.0, DAY], "not-enough-history"),  # two snapshots
        ([0.0, 600.0, 1200.0], "not-enough-history"),  # three, but 20 minutes
        ([0.0, 0.0, 0.0, 0.0], "not-enough-history"),  # all at one instant (a clock stuck or set back)
        ([0.0, 3600.0, 7200.0], "filling"),
    ],
)
def test_not_enough_history(times: list[float], status: str) -> None:
    f = forecast([snap(T0 + t, 100 * GB - int(t)) for t in times])
    assert f.status == status
    if status != "filling":
        assert "not enough history" in f.reason and f"at least {MIN_SNAPSHOTS}" in f.reason
        assert f.full_at is None


def test_min_span_is_a_parameter() -> None:
    snaps = [snap(T0 + t, 100 * GB - 1000 * int(t)) for t in (0, 10, 20)]
    assert forecast(snaps).status == "not-enough-history"
    f = forecast(snaps, min_span=5)
    assert f.status == "filling" and f.rate == 1000 * DAY


def test_not_filling_full_and_unknown() -> None:
    growing = [snap(T0 + d * DAY, 100 * GB + d) for d in range(4)]
    assert forecast(growing).status == "not-filling"
    flat = [snap(T0 + d * DAY, 100 * GB) for d in range(4)]
    f = forecast(flat)
    assert f.status == "not-filling" and f.rate == 0 and f.full_at is None
    full = [snap(T0 + d * DAY, 10 * GB - 5 * GB * d) for d in range(3)]
    assert forecast(full).status == "full" and forecast(full).free_now == 0
    remote = [snap(T0 + d * DAY, None) for d in range(5)]
    f = forecast(remote)
    assert f.status == "unknown" and "not on this machine" in f.reason
    assert forecast([]).status == "not-enough-history"


def test_a_clean_restarts_the_rate() -> None:
    # 1 GB/day for 5 days, a clean frees 50 GB (5% of 1000 GB), then 4 GB/day for 4 days
    before = [snap(T0 + d * DAY, 500 * GB - 1 * GB * d) for d in range(5)]
    after = [snap(T0 + (5 + d) * DAY, 546 * GB - 4 * GB * d) for d in range(4)]
    f = forecast(before + after)
    assert f.status == "filling" and f.rate == 4 * GB
    assert f.reset_at == T0 + 5 * DAY and f.n == 4
    assert "since the last clean" in f.reason
    # a rise under 1% of the filesystem is noise, not a clean
    wobble = [snap(T0 + d * DAY, 500 * GB - GB * d + (9 * GB if d == 2 else 0)) for d in range(5)]
    assert forecast(wobble).reset_at is None and forecast(wobble).n == 5


def test_order_of_input_and_a_clock_set_back_change_nothing_but_that_point() -> None:
    snaps = [snap(T0 + d * DAY, 300 * GB - 2 * GB * d, seq=d + 1) for d in range(6)]
    shuffled = snaps[:]
    random.Random(1).shuffle(shuffled)
    assert forecast(shuffled) == forecast(snaps)
    # the host's clock went back a day before the last snapshot: it is stamped at day 3, recorded last
    back = [*snaps[:5], replace(snaps[5], taken_at=T0 + 3 * DAY)]
    f = forecast(back)
    assert f.status == "filling" and f.now_at == T0 + 4 * DAY  # the newest by time, not by recording
    assert f.rate is not None and f.rate > 0


def test_huge_numbers_stay_exact() -> None:
    # 2**70 bytes free (a zettabyte), 4096 bytes a day less: floats alone would lose the 4096
    snaps = [snap(T0 + d * DAY, 2**70 - 4096 * d, size=2**71) for d in range(5)]
    f = forecast(snaps)
    assert f.status == "filling" and f.rate == 4096
    assert f.rate_low == f.rate_high == 4096
    fit = fit_line([(s.taken_at, int(s.fs_free_bytes or 0)) for s in snaps])
    assert fit is not None and fit.slope == Fraction(-4096) / Fraction(DAY)


def test_t_quantiles_match_scipy() -> None:
    for dof in range(1, 400):
        assert t_quantile_975(dof) == pytest.approx(stats.t.ppf(0.975, dof), abs=2e-6)
    with pytest.raises(ValueError):
        t_quantile_975(0)


# -- growth -------------------------------------------------------------------------
def test_growth_by_kind_is_first_to_last() -> None:
    snaps = [
        snap(T0, kinds={"image": 10 * GB, "volume": 5 * GB, "log": 100}),
        snap(T0 + DAY, kinds={"image": 12 * GB, "volume": 4 * GB, "log": 100}),
        snap(T0 + 2 * DAY, kinds={"image": 11 * GB, "volume": 9 * GB, "log": 300}),
    ]
    rows = {g.key: g for g in growth(snaps, "kind")}
    assert rows["image"].change == 1 * GB and rows["image"].per_day == GB / 2
    assert (
        rows["volume"].first == 5 * GB and rows["volume"].last == 9 * GB and rows["volume"].change == 4 * GB
    )
    assert rows["log"].change == 200
    assert [g.key for g in growth(snaps, "kind")] == ["volume", "image", "log"]  # largest growth first


def test_volumes_that_come_go_and_come_back() -> None:
    snaps = [
        snap(T0, volumes={"db": 100, "gone": 50, "flaky": 10}),
        snap(T0 + DAY, volumes={"db": 150, "flaky": 0}),
        snap(T0 + 2 * DAY, volumes={"db": 170, "new": 30}),  # flaky disappeared
        snap(T0 + 3 * DAY, volumes={"db": 200, "new": 60, "flaky": 25}),  # and came back
    ]
    rows = {g.key: g for g in growth(snaps, "volume")}
    assert (rows["db"].first, rows["db"].last, rows["db"].change, rows["db"].status) == (100, 200, 100, "")
    assert (rows["gone"].last, rows["gone"].change, rows["gone"].status) == (0, -50, "gone")
    assert (rows["new"].first, rows["new"].change, rows["new"].status) == (0, 60, "new")
    assert (rows["flaky"].change, rows["flaky"].status) == (15, "")
    assert set(rows) == {"db", "gone", "new", "flaky"}


def test_unmeasured_means_unknown_not_zero() -> None:
    snaps = [snap(T0, volumes={"a": None, "b": 5}), snap(T0 + DAY, volumes={"a": 7, "b": 9})]
    rows = growth(snaps, "volume")
    assert rows[-1].key == "a" and rows[-1].change is None and rows[-1].per_day is None
    assert rows[0].key == "b" and rows[0].change == 4


def test_top_growers_are_volumes_and_logs_that_grew() -> None:
    snaps = [
        snap(T0, volumes={"a": 10, "b": 100, "c": 5}, logs={"web": 1000}),
        snap(T0 + DAY, volumes={"a": 60, "b": 90, "c": 6}, logs={"web": 1500}),
    ]
    found = [(w.kind, w.name, w.growth.change) for w in top_growers(snaps, 10)]
    assert found == [("log", "web", 500), ("volume", "a", 50), ("volume", "c", 1)]
    assert len(top_growers(snaps, 2)) == 2
    assert top_growers([], 5) == [] and growth([], "owner") == []


def test_growth_rejects_an_unknown_axis() -> None:
    with pytest.raises(ValueError, match="kind, owner, volume, log"):
        growth([snap(T0)], "colour")


# -- snapshot_from_df on captured inspect JSON ------------------------------------------
def test_snapshot_from_df_carries_what_df_shows() -> None:
    inv = build_inventory(RawSnapshot.from_json(json.loads(DATA.read_text())))
    report = disk_report(inv)
    s = snapshot_from_df(inv, report, FsUsage(size=10**12, free=4 * 10**11))
    assert s.taken_at == inv.taken_at.timestamp() and s.engine == (inv.engine_id or inv.host)
    assert [(k.kind, k.bytes, k.safe, k.needs_decision) for k in s.kinds] == [
        (t.kind, t.size, t.safe, t.needs_decision) for t in report.totals
    ]
    assert s.reclaimable_safe == report.safe_bytes and s.reclaimable_decision == report.decision_bytes
    assert {o.owner: o.bytes for o in s.owners} == {o.owner: o.total for o in report.owners}
    assert {v.name: v.bytes for v in s.volumes} == {
        v.name: (v.size.apparent if v.size else None) for v in inv.volumes
    }
    assert {v.name: v.kind for v in s.volumes} == {v.name: v.kind for v in inv.volumes}
    assert s.fs_free_bytes == 4 * 10**11 and s.fs_size_bytes == 10**12
    assert s.total_bytes == sum(t.size for t in report.totals)
    assert Snapshot.from_json(json.loads(json.dumps(s.to_json()))) == s
    assert snapshot_from_df(inv, report, None).fs_free_bytes is None


def test_the_cli_offers_the_axes_growth_knows() -> None:
    from tamer.cli import history_cmds
    from tamer.growth import BY_CHOICES

    assert history_cmds.BY_CHOICES == BY_CHOICES
