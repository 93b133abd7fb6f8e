"""`tamer record`, `tamer df` and `tamer history` on the private engine, with du and statvfs as oracles
and faketime for snapshots taken days apart (and a clock set back)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")


def _tamer(eng: Any, state: Path, *args: str, fake: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*(("faketime", "-f", fake) if fake else ()), sys.executable, "-m", "tamer", *args]
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _json(eng: Any, state: Path, *args: str, fake: str | None = None) -> tuple[int, dict[str, Any]]:
    proc = _tamer(eng, state, *args, "--json", fake=fake)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}") from None


def _volume_folder(eng: Any, name: str) -> Path:
    return Path(json.loads(eng.docker("volume", "inspect", name))[0]["Mountpoint"])


def _grow(eng: Any, name: str, file: str, size: int) -> None:
    with open(_volume_folder(eng, name) / file, "wb") as fh:
        fh.write(os.urandom(size))


def _du(path: Path) -> int:
    return int(
        subprocess.run(["du", "-sB1", str(path)], capture_output=True, text=True, check=True).stdout.split()[
            0
        ]
    )


def _apparent(path: Path) -> int:
    out = subprocess.run(["find", str(path), "-type", "f", "-printf", "%s\n"], capture_output=True, text=True)
    return sum(int(x) for x in out.stdout.split())


def test_record_counts_a_volume_as_du_does_and_df_records_too(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "hist_db")
    _grow(eng, "hist_db", "a.bin", 3_000_000)
    _grow(eng, "hist_db", "b.bin", 12_345)
    with open(_volume_folder(eng, "hist_db") / "sparse.img", "wb") as fh:
        fh.truncate(2**31)  # 2 GiB apparent, nothing allocated
    rc, doc = _json(eng, tmp_path, "record")
    assert rc == 0, doc
    snap = doc["data"]["snapshot"]
    (vol,) = [v for v in snap["volumes"] if v["name"] == "hist_db"]
    folder = _volume_folder(eng, "hist_db")
    assert vol["bytes"] == _apparent(folder) == 3_012_345 + 2**31
    assert vol["allocated"] == _du(folder)
    assert (vol["kind"], vol["placement"]) == ("named", "default")
    st = os.statvfs(snap["data_root"])
    assert snap["fs_size_bytes"] == st.f_blocks * st.f_frsize
    # the free space moves with every other writer on this machine: same figure within 256 MB
    assert abs(snap["fs_free_bytes"] - st.f_bavail * st.f_frsize) < 256 * 2**20
    assert snap["engine"].endswith("@" + snap["data_root"])
    assert doc["data"]["total_bytes"] == sum(k["bytes"] for k in snap["kinds"])

    text = _tamer(eng, tmp_path, "record")
    assert text.returncode == 0 and text.stdout.count("\n") == 1 and "recorded a snapshot of" in text.stdout

    # every `tamer df` joins the history
    assert _tamer(eng, tmp_path, "df").returncode == 0
    rc, hist = _json(eng, tmp_path, "history", "--by", "volume")
    assert rc == 0 and hist["data"]["snapshots"] == 3
    row = next(g for g in hist["data"]["growth"] if g["key"] == "hist_db")
    assert row["first"] == row["last"] == 3_012_345 + 2**31 and row["change"] == 0


def test_engine_sizing_records_what_the_engine_knows_and_says_free_space_is_unknown(
    eng: Any, tmp_path: Path
) -> None:
    eng.docker("volume", "create", "hist_remote")
    _grow(eng, "hist_remote", "a.bin", 40_000)
    rc, doc = _json(eng, tmp_path, "record", "--sizing", "engine")
    assert rc == 0, doc
    snap = doc["data"]["snapshot"]
    assert snap["sizing"] == "engine" and snap["fs_free_bytes"] is None and snap["data_root_bytes"] is None
    (vol,) = [v for v in snap["volumes"] if v["name"] == "hist_remote"]
    docker_df = json.loads(eng.docker("system", "df", "-v", "--format", "{{json .Volumes}}"))
    (theirs,) = [v for v in docker_df if v["Name"] == "hist_remote"]
    assert vol["allocated"] is None and vol["bytes"] == 40_000 and theirs["Size"] == "40kB"
    assert "free space not measured" in _tamer(eng, tmp_path, "record", "--sizing", "engine").stdout


@needs_faketime
def test_history_over_days_with_a_clock_set_back_and_a_volume_that_comes_and_goes(
    eng: Any, tmp_path: Path
) -> None:
    eng.docker("volume", "create", "hist_grow")
    eng.docker("volume", "create", "hist_flaky")
    _grow(eng, "hist_flaky", "x", 1000)
    days = ["2031-03-01", "2031-03-02", "2031-03-03", "2031-03-04"]
    for i, day in enumerate(days):
        _grow(eng, "hist_grow", f"part{i}", 1_000_000)
        if i == 1:
            eng.docker("volume", "rm", "hist_flaky")
        if i == 3:
            eng.docker("volume", "create", "hist_flaky")
            _grow(eng, "hist_flaky", "y", 5000)
        assert _tamer(eng, tmp_path, "record", fake=f"@{day} 12:00:00").returncode == 0
    # the clock goes back two days for one more snapshot: it lands in the middle, nothing breaks
    assert _tamer(eng, tmp_path, "record", fake="@2031-03-02 18:00:00").returncode == 0

    now = "@2031-03-04 13:00:00"
    rc, doc = _json(eng, tmp_path, "history", "--by", "volume", "--since", "30d", fake=now)
    assert rc == 0, doc
    data = doc["data"]
    assert data["snapshots"] == 5
    assert data["first_at"].startswith("2031-03-01T12:00") and data["last_at"].startswith("2031-03-04T12:00")
    rows = {g["key"]: g for g in data["growth"]}
    assert rows["hist_grow"]["first"] == 1_000_000 and rows["hist_grow"]["last"] == 4_000_000
    # the rate is the change over the time the snapshots' own stamps span; faketime's "@" clocks run on
    # from each start, so that span is three days give or take each run's start-up (1e-4: 26 s)
    span_days = (
        datetime.fromisoformat(data["last_at"]) - datetime.fromisoformat(data["first_at"])
    ).total_seconds() / 86400
    assert rows["hist_grow"]["change"] == 3_000_000
    assert rows["hist_grow"]["per_day"] == pytest.approx(3_000_000 / span_days, rel=1e-9)
    assert rows["hist_grow"]["per_day"] == pytest.approx(1_000_000, rel=1e-4)
    assert rows["hist_flaky"]["first"] == 1000 and rows["hist_flaky"]["last"] == 5000
    grower = data["top_growers"][0]
    assert (grower["kind"], grower["name"], grower["change"]) == ("volume", "hist_grow", 3_000_000)
    assert data["forecast"]["status"] in ("filling", "not-filling", "full")  # 5 snapshots over 3 days
    assert data["forecast"]["snapshots"] >= 3

    # --since is a window ending now (the clock tamer runs under): the last 36 hours hold two snapshots
    rc, doc = _json(eng, tmp_path, "history", "--since", "36h", fake=now)
    assert rc == 0 and doc["data"]["snapshots"] == 2
    assert doc["data"]["forecast"]["status"] == "not-enough-history"

    text = _tamer(eng, tmp_path, "history", "--by", "volume", "--report", str(tmp_path / "rep"), fake=now)
    assert text.returncode == 0, text.stderr
    assert "hist_grow" in text.stdout and "+3MB" in text.stdout and "Top growers" in text.stdout
    page = (tmp_path / "rep" / "tamer-history.html").read_text()
    assert str(tmp_path / "rep" / "tamer-history.html") in text.stdout
    assert page.count("<svg") >= 2 and "<polygon" in page and "<script" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched

    # a snapshot stamped a century ahead (a clock set wrong): used as stamped, and said so
    assert _tamer(eng, tmp_path, "record", fake="@2131-03-04 12:00:00").returncode == 0
    rc, doc = _json(eng, tmp_path, "history", fake=now)
    # 6 recorded, 6 kept: a record stamped a century ahead thins as if it came an hour after the newest
    # real one (it thinned the real ones to one a day before: the two of March 2nd became one)
    assert rc == 0 and doc["data"]["snapshots"] == 6, doc["errors"]
    assert any("stamped after this machine's clock" in e and "2131-03-04" in e for e in doc["errors"])


def test_two_records_at_once_and_a_damaged_store(eng: Any, tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "tamer", "record", "-q"], env=env, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    assert [p.wait(300) for p in procs] == [0, 0]
    with sqlite3.connect(tmp_path / "snapshots.sqlite") as db:
        assert db.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 2

    (tmp_path / "snapshots.sqlite").write_bytes(b"this is no database\n" * 100)
    df = _tamer(eng, tmp_path, "df")
    assert df.returncode == 0 and "was not added to tamer's history" in df.stderr and "mv " in df.stderr
    rc, doc = _json(eng, tmp_path, "df")
    assert rc == 0 and any("history" in e for e in doc["errors"])
    for args in (("history",), ("record",)):
        proc = _tamer(eng, tmp_path, *args)
        assert proc.returncode == 1, proc
        assert (
            "snapshots.sqlite" in proc.stderr and "mv " in proc.stderr and "internal error" not in proc.stderr
        )
    assert (tmp_path / "snapshots.sqlite").read_bytes() == b"this is no database\n" * 100


def test_no_history_and_bad_input(eng: Any, tmp_path: Path) -> None:
    proc = _tamer(eng, tmp_path, "history")
    assert proc.returncode == 0 and "No history for engine" in proc.stdout and "tamer record" in proc.stdout
    rc, doc = _json(eng, tmp_path, "history")
    assert rc == 0 and doc["data"]["snapshots"] == 0 and "tamer record" in doc["data"]["hint"]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for args in (
        ("history", "--since", "a fortnight"),
        ("history", "--by", "colour"),
        ("history", "--report", str(a_file)),
        ("history", "--min-span", "-1h"),
        ("history", "--top", "0"),
    ):
        rc, doc = _json(eng, tmp_path, *args)
        assert rc == 2 and doc["status"] == "usage" and doc["errors"], (args, doc)
    assert not (tmp_path / "snapshots.sqlite").exists()  # bad input wrote nothing
    assert a_file.read_text() == "x"
    # a history of an engine that is gone: --engine reads it without asking any engine
    assert _tamer(eng, tmp_path, "record", "-q").returncode == 0
    engine_id = _json(eng, tmp_path, "history")[1]["data"]["engine"]
    gone = {**os.environ, "TAMER_STATE_DIR": str(tmp_path), "DOCKER_HOST": "unix:///nonexistent.sock"}
    cmd = [sys.executable, "-m", "tamer", "history", "--engine", engine_id, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=gone, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["data"]["snapshots"] == 1
    out = subprocess.run([*cmd[:4], "--json"], capture_output=True, text=True, env=gone, timeout=120)
    assert out.returncode == 1 and "--engine" in json.loads(out.stdout)["errors"][-1]


def test_kill_9_anywhere_in_record_leaves_a_readable_history(
    eng: Any, tmp_path: Path, private_state_dir: Path
) -> None:
    import random
    import signal
    import time

    assert eng.tamer("record", "-q").returncode == 0
    # killed inside the write transaction (tests/faulty_tamer.py: os._exit, as abrupt as kill -9)
    for point in ("snapshots.record.inserted", "snapshots.record.thinned"):
        proc = eng.tamer("record", "-q", fault=point)
        assert proc.returncode == 137 and f"fault-kill: {point}" in proc.stderr, proc.stderr
    # and killed at random moments
    rng = random.Random(int(os.environ.get("TAMER_HISTORY_KILL_SEED", "20261201")))
    finished = 1
    killed = 0
    for _ in range(int(os.environ.get("TAMER_HISTORY_KILLS", "4"))):
        proc2 = subprocess.Popen(
            [sys.executable, "-m", "tamer", "record", "-q"],
            env={**os.environ, "DOCKER_HOST": eng.host},
            stdout=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.0, 0.5))
        proc2.send_signal(signal.SIGKILL)
        ok = proc2.wait(60) == 0
        finished += ok
        killed += not ok
    # A record killed after its commit but before it exited has its snapshot (whole); one killed
    # before the commit has none: never a part of one (integrity_check) and never more than one each.
    with sqlite3.connect(private_state_dir / "snapshots.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = db.execute("SELECT count(*) FROM snapshots").fetchone()[0]
    assert finished <= stored <= finished + killed
    rc, doc = _json(eng, private_state_dir, "history")
    assert rc == 0 and doc["data"]["snapshots"] == stored and not doc["errors"]
