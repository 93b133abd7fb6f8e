"""The snapshot store on a temporary state dir: order, windows, two writers, damaged and newer files."""

from __future__ import annotations

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
