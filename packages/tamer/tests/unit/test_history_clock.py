"""The snapshot store under clock shifts: one record stamped years ahead (faketime, a bad RTC, a VM
restored with a wrong clock) must not thin away the real history."""

from __future__ import annotations

from pathlib import Path

from tamer.snapshots import KindSize, Snapshot, record, series

T0 = 1_700_000_000.0
DAY = 86400.0


def snap(t: float, vol: int = 1) -> Snapshot:
    return Snapshot(
        taken_at=t,
        engine="E@/r",
        host="unix:///x",
        sizing="local",
        kinds=(KindSize("volume", 1, vol, 0, vol),),
        reclaimable_safe=0,
        reclaimable_decision=0,
    )


def test_one_record_from_the_far_future_thins_nothing_real(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    real = [T0 + i * 180 for i in range(20)]  # an hour of snapshots every 3 minutes
    for t in real:
        record(snap(t), path=path)
    record(snap(T0 + 50 * 365 * DAY), path=path)  # the clock 50 years ahead, once
    kept = [s.taken_at for s in series("E@/r", path=path, details="none")]
    assert kept[:-1] == real  # it thinned these to one (the newest of their day) before
    record(snap(real[-1] + 3600), path=path)  # the clock is right again
    assert len(series("E@/r", path=path, details="none")) == len(real) + 2


def test_after_a_real_gap_thinning_catches_up_on_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    real = [T0 + i * 180 for i in range(20)]
    for t in real:
        record(snap(t), path=path)
    back = real[-1] + 200 * DAY  # the host was off for 200 days, then an hourly timer records again
    for i in range(3):
        record(snap(back + i * 3600), path=path)
    kept = series("E@/r", path=path, details="none")
    old = [s for s in kept if s.taken_at <= real[-1]]
    assert [s.taken_at for s in old] == [real[-1]]  # one a day (the newest) past 35 days, as always
