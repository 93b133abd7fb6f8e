"""Hostile review (session 8, helper F): a usage history with damaged rows (text, a blob, times no
datetime can hold) never stops a plan or a clean; the rows are left out with a warning."""

from __future__ import annotations

import sqlite3
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tamer.errors import StateUnavailable
from tamer.history import History, Use

HOST = "unix:///var/run/docker.sock"
DAMAGED = ["'garbage'", "X'00ff'", "1e300", "-1e300", "9e999", "-5", "253402300800"]


@pytest.mark.parametrize("bad", DAMAGED)
def test_a_damaged_time_is_left_out_with_a_warning_never_crashed_on(bad: str, tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    History(HOST, path).record([Use("image", "good", 1_700_000_000.0)], cursor=1_700_000_000.0)
    with sqlite3.connect(path) as db:
        db.execute(f"INSERT INTO last_used VALUES (?, 'image', 'bad', {bad})", (HOST,))
        db.execute(f"UPDATE cursor SET at = {bad}")
    history = History(HOST, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        used = history.last_used()
        cursor = history.cursor()
    assert used == {("image", "good"): datetime.fromtimestamp(1_700_000_000, tz=UTC)}
    assert cursor is None
    assert [w for w in caught if issubclass(w.category, StateUnavailable)], [str(w.message) for w in caught]
    # the next real use overwrites the damaged time (text sorted after every number, so max() kept it)
    history.record([Use("image", "bad", 1_700_000_100.0)], cursor=1_700_000_100.0)
    assert History(HOST, path).last_used()[("image", "bad")].timestamp() == 1_700_000_100.0
    assert History(HOST, path).cursor() == 1_700_000_100.0


def test_a_row_whose_kind_or_id_is_not_text_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    History(HOST, path)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO last_used VALUES (?, X'00', 'x', 1.0)", (HOST,))
        db.execute("INSERT INTO last_used VALUES (?, 'image', X'07', 1.0)", (HOST,))
    with pytest.warns(StateUnavailable):
        assert History(HOST, path).last_used() == {}


def test_a_cursor_ahead_of_the_engine_is_put_back_once(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    now = 1_700_000_000.0
    History(HOST, path).record([], cursor=now + 10 * 365 * 86400)
    with pytest.warns(StateUnavailable, match="ahead"):
        assert History(HOST, path).resume_from(now) == now - 86400
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert History(HOST, path).resume_from(now + 60) == now - 86400  # put back: no second warning
    History(HOST, path).record([], cursor=now + 30)
    assert History(HOST, path).resume_from(now + 60) == now + 30


def _store_with(tmp_path: Path, data: str) -> Path:
    from tamer import snapshots

    path = tmp_path / "snapshots.sqlite"
    good = snapshots.Snapshot(
        taken_at=1.7e9,
        engine="e",
        host="h",
        sizing="engine",
        kinds=(),
        reclaimable_safe=0,
        reclaimable_decision=0,
    )
    snapshots.record(good, path=path)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO snapshots (engine, taken_at, recorded_at, data, summary) VALUES ('e', 1.8e9, 1.8e9, ?, ?)",
            (data, data),
        )
    return path


GOOD_FIELDS = (
    '"engine": "e", "host": "h", "sizing": "engine", "kinds": [], "reclaimable_safe": 0, '
    '"reclaimable_decision": 0, "format": 1'
)


@pytest.mark.parametrize(
    "data",
    [
        "[]",
        '"x"',
        "1",
        "{" + GOOD_FIELDS + ', "taken_at": 1e300}',
        "{" + GOOD_FIELDS + ', "taken_at": NaN}',
        "{" + GOOD_FIELDS + ', "taken_at": Infinity}',
    ],
)
def test_a_damaged_snapshot_is_skipped_with_a_warning_never_crashed_on(data: str, tmp_path: Path) -> None:
    # a row that is not a JSON object raised AttributeError (uncaught); a taken_at of NaN or 1e300 was
    # taken, and every view that dates the snapshot crashed on it
    from tamer import snapshots

    path = _store_with(tmp_path, data)
    with pytest.warns(StateUnavailable, match="could not be read"):
        newest = snapshots.latest(path=path)
    assert newest is not None and newest.taken_at == 1.7e9  # the damaged newest skipped, not hiding the good
    with pytest.warns(StateUnavailable):
        found = snapshots.series("e", path=path, details="ends")
    assert [s.taken_at for s in found] == [1.7e9]
    assert found[0].taken_at_datetime.year == 2023


def test_a_damaged_taken_at_column_does_not_stop_the_engine_listing(tmp_path: Path) -> None:
    from tamer import snapshots

    path = _store_with(tmp_path, "[]")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE snapshots SET taken_at = 'garbage' WHERE taken_at = 1.8e9")
    listed = snapshots.engines(path=path)
    assert [(e, n) for e, n, _ in listed] == [("e", 2)]
