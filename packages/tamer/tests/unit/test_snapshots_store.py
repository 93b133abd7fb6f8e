"""The snapshot store on a temporary state dir: order, windows, two writers, damaged and newer files."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import warnings
from pathlib import Path

import pytest
from tamer.snapshots import (
    SCHEMA_VERSION,
    KindSize,
    Snapshot,
    SnapshotsUnavailable,
    VolumeSize,
    engines,
    latest,
    record,
    series,
    store_path,
)
from tamer.state import StateUnavailable

T0 = 1_700_000_000.0


def snap(t: float, engine: str = "E@/r", vol: int = 1) -> Snapshot:
    return Snapshot(
        taken_at=t,
        engine=engine,
        host="unix:///x",
        sizing="local",
        kinds=(KindSize("volume", 1, vol, 0, vol),),
        reclaimable_safe=0,
        reclaimable_decision=vol,
        volumes=(VolumeSize("v", "default", "named", "unowned", vol, 4096),),
        fs_size_bytes=2**80,
        fs_free_bytes=2**79 + 1,  # past SQLite's 64-bit integers: kept exact
    )


def test_a_fresh_state_dir_has_no_history_and_reading_creates_nothing(private_state_dir: Path) -> None:
    assert latest() is None and series("E@/r") == [] and engines() == []
    assert not store_path().exists()


def test_record_then_read_back(private_state_dir: Path) -> None:
    record(snap(T0, vol=10))
    record(snap(T0 + 60, vol=20))
    record(snap(T0 + 30, engine="other@/r"))
    got = series("E@/r")
    assert [s.taken_at for s in got] == [T0, T0 + 60] and [s.total_bytes for s in got] == [10, 20]
    assert got[0] == snap(T0, vol=10) and got[0].fs_free_bytes == 2**79 + 1
    assert latest() is not None and latest().engine == "other@/r"  # type: ignore[union-attr]
    assert latest("E@/r") == snap(T0 + 60, vol=20)
    assert latest("nobody") is None
    assert [(e, n) for e, n, _ in engines()] == [("other@/r", 1), ("E@/r", 2)]
    assert oct(os.stat(store_path()).st_mode & 0o777) == "0o600"


def test_windows_and_a_clock_set_back(private_state_dir: Path) -> None:
    for d in range(5):
        record(snap(T0 + d * 86400, vol=d))
    record(snap(T0 + 2.5 * 86400, vol=99))  # recorded last, stamped earlier: the clock went back
    assert [s.total_bytes for s in series("E@/r", since=T0 + 2 * 86400)] == [2, 99, 3, 4]
    assert [s.total_bytes for s in series("E@/r", since=T0 + 86400, until=T0 + 3 * 86400)] == [1, 2, 99, 3]
    newest = latest("E@/r")
    assert newest is not None and newest.total_bytes == 99  # the last recorded, whatever its stamp


def _record_many(path: str, n: int, tag: int) -> None:
    for i in range(n):
        record(snap(T0 + tag * 1000 + i, vol=tag * 1000 + i), path=Path(path))


def test_two_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(str(path), 40, tag)) for tag in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = series("E@/r", path=path)
    assert sorted(s.total_bytes for s in got) == sorted(
        [1000 + i for i in range(40)] + [2000 + i for i in range(40)]
    )


@pytest.mark.parametrize("damage", ["garbage", "directory", "newer-schema"])
def test_a_damaged_store_is_a_clear_error_and_is_left_alone(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "s.sqlite"
    if damage == "garbage":
        path.write_bytes(b"not a database " * 500)
    elif damage == "directory":
        path.mkdir()
    else:
        record(snap(T0), path=path)
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes() if path.is_file() else None
    for call in (
        lambda: latest(path=path),
        lambda: series("E@/r", path=path),
        lambda: record(snap(T0), path=path),
    ):
        with pytest.raises(SnapshotsUnavailable) as err:
            call()
        text = str(err.value)
        assert str(path) in text and ("mv " in text or "upgrade tamer" in text)
    if before is not None:
        assert path.read_bytes() == before


def test_a_locked_store_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.sqlite"
    record(snap(T0), path=path)
    monkeypatch.setattr("tamer.snapshots.BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(SnapshotsUnavailable, match="another tamer held it"):
            record(snap(T0 + 1), path=path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(series("E@/r", path=path)) == 1


def test_an_empty_file_and_a_damaged_row(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"")  # a record killed before its first commit leaves this
    assert latest(path=path) is None and series("E@/r", path=path) == []
    record(snap(T0), path=path)
    record(snap(T0 + 1), path=path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE snapshots SET data = '{not json' WHERE seq = 1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = series("E@/r", path=path)
    assert [s.taken_at for s in got] == [T0 + 1]
    assert any(issubclass(w.category, StateUnavailable) and "1 snapshot(s)" in str(w.message) for w in caught)


def test_old_snapshots_are_thinned_to_one_an_hour_then_one_a_day(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    day = 86400.0
    start = T0 - T0 % day  # midnight UTC
    # 40 days with two snapshots in each of two hours a day (vol: 0, 1 in the first hour; 2, 3 in the
    # second), then the last day every 20 minutes (vol 9)
    times = [
        (start + d * day + h * 3600 + m * 60, 2 * (h == 5) + (m == 30))
        for d in range(40)
        for h in (0, 5)
        for m in (0, 30)
    ]
    times += [(start + 40 * day + i * 1200, 9) for i in range(72)]
    for t, vol in times:
        record(snap(t, vol=vol), path=path)
    got = series("E@/r", path=path, details="none")
    newest = times[-1][0]
    recent = [s for s in got if s.taken_at >= newest - 2 * day]
    hourly = [s for s in got if newest - 35 * day <= s.taken_at < newest - 2 * day]
    daily = [s for s in got if s.taken_at < newest - 35 * day]
    assert len(recent) == sum(1 for t, _ in times if t >= newest - 2 * day)  # all of the last two days
    # one an hour, the newest of it
    assert [int(s.taken_at // 3600) for s in hourly] == sorted(
        {int(t // 3600) for t, _ in times if newest - 35 * day <= t < newest - 2 * day}
    )
    assert {s.total_bytes for s in hourly} == {1, 3}
    # one a day, the newest of it
    assert [int(s.taken_at // day) for s in daily] == sorted(
        {int(t // day) for t, _ in times if t < newest - 35 * day}
    )
    assert {s.total_bytes for s in daily} == {3}


def test_details_only_where_asked(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    for d in range(4):
        record(snap(T0 + d, vol=d), path=path)
    ends = series("E@/r", path=path, details="ends")
    assert [s.details for s in ends] == [True, False, False, True]
    assert [len(s.volumes) for s in ends] == [1, 0, 0, 1]
    assert [s.total_bytes for s in ends] == [0, 1, 2, 3] and ends[1].fs_free_bytes == 2**79 + 1
    assert all(not s.details and not s.volumes for s in series("E@/r", path=path, details="none"))
    assert all(s.details for s in series("E@/r", path=path))
    with pytest.raises(ValueError, match="details"):
        series("E@/r", path=path, details="some")
    from tamer.growth import growth

    with pytest.raises(ValueError, match="whole"):
        growth(series("E@/r", path=path, details="none"), "volume")
    assert growth(series("E@/r", path=path, details="none"), "kind")[0].change == 3


def test_a_schema_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE snapshots (seq INTEGER PRIMARY KEY AUTOINCREMENT, engine TEXT NOT NULL, "
            "taken_at REAL NOT NULL, recorded_at REAL NOT NULL, data TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO snapshots (engine, taken_at, recorded_at, data) VALUES (?, ?, ?, ?)",
            ("E@/r", T0, T0, json.dumps(snap(T0, vol=5).to_json())),
        )
        db.execute("PRAGMA user_version = 1")
    assert [s.total_bytes for s in series("E@/r", path=path, details="ends")] == [5]  # read as it is
    record(snap(T0 + 1, vol=6), path=path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    got = series("E@/r", path=path, details="none")
    assert [s.total_bytes for s in got] == [5, 6]
