"""tamer metrics, pure and local parts: the text format (checked by promtool, Prometheus's own linter and
parser), escaping, bounded cardinality, the journal facts, the atomic textfile, the HTTP server and its
bad input. The real engine and a real Prometheus server are in tests/integration/test_metrics.py."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest
from tamer.errors import UsageError
from tamer.journal import Journal, StepStatus
from tamer.metrics import OTHER, CleanFacts, Freshness, build_families, escape_label_value, fold, render
from tamer.metrics_io import check_textfile_dir, read_clean_facts, write_textfile
from tamer.plan_model import Action, Plan
from tamer.reasons import Reason
from tamer.serve import Keeper, ServeBindFailed, bind, parse_listen, serve_on, served_address
from tamer.snapshots import KindSize, LogSize, OwnerSize, Snapshot, VolumeSize

PROMTOOL = shutil.which("promtool")
HOSTILE = (
    'a"quote\\back\nline \u00e9\u4e2d \udcff'  # a quote, a backslash, a line feed, non-ASCII, an odd byte
)


def snapshot(volumes: int = 3, logs: int = 2, owners: tuple[OwnerSize, ...] | None = None) -> Snapshot:
    return Snapshot(
        taken_at=1_700_000_000.25,
        engine="ENGINEID@/var/lib/docker",
        host="unix:///run/docker.sock",
        sizing="local",
        kinds=(
            KindSize("image", 4, 10_000, 100, 2_000),
            KindSize("container", 2, 300, 0, 50),
            KindSize("volume", volumes, 7_000, 10, 6_000),
        ),
        reclaimable_safe=110,
        reclaimable_decision=8_050,
        owners=owners
        if owners is not None
        else (OwnerSize("project:shop", 10, 20, 30), OwnerSize(HOSTILE, 1, 2, 3)),
        volumes=tuple(
            VolumeSize(
                f"vol{i:04d}",
                ("default", "bind", "symlink")[i % 3],
                ("named", "anonymous")[i % 2],
                "o",
                1000 + i,
                4096 * (i + 1),
            )
            for i in range(volumes)
        ),
        logs=tuple(LogSize(f"c{i}", f"id{i}", "o", 10 * i) for i in range(logs)),
        data_root="/var/lib/docker",
        data_root_bytes=123_456_789,
        fs_size_bytes=2**45 + 7,  # past 2**53 would lose digits as a float; ints keep every one
        fs_free_bytes=2**44 + 3,
    )


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample line (an independent, strict reading of the format)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"# (HELP|TYPE) [a-z_]+ .*", line), line
            continue
        series, value = line.rsplit(" ", 1)
        assert series not in out, f"duplicate series {series}"
        out[series] = float(value)
    return out


def promtool_check(text: str) -> None:
    assert PROMTOOL, "promtool is not installed (Debian: prometheus package); make venv installs it"
    proc = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the text format --------------------------------------------------------------------------------
def test_promtool_accepts_the_output_with_hostile_names_and_every_figure_is_exact() -> None:
    clean = CleanFacts(
        last_clean_at=1_699_999_000.5, last_clean_freed=4242, unfinished={"clean": 1, "move": 0}
    )
    text = render(build_families(snapshot(), clean, now=1_700_000_010.0, version="9.9"))
    promtool_check(text)
    got = samples(text)
    assert got['tamer_volume_bytes{volume="vol0001",placement="bind",kind="anonymous"}'] == 1001
    assert got['tamer_volume_allocated_bytes{volume="vol0002",placement="symlink",kind="named"}'] == 3 * 4096
    assert got['tamer_container_log_bytes{container="c1"}'] == 10
    assert got['tamer_reclaimable_bytes{kind="volume",class="needs_decision"}'] == 6000
    assert got['tamer_reclaimable_bytes{kind="image",class="safe"}'] == 100
    assert got['tamer_kind_bytes{kind="image"}'] == 10_000
    assert got["tamer_last_clean_timestamp_seconds"] == 1_699_999_000.5
    assert got["tamer_last_clean_freed_bytes"] == 4242
    assert got['tamer_journal_unfinished{operation="clean"}'] == 1
    assert got["tamer_snapshot_age_seconds"] == 9.75
    assert "tamer_data_root_filesystem_size_bytes 35184372088839\n" in text  # every digit of 2**45 + 7
    escaped = 'a\\"quote\\\\back\\nline \u00e9\u4e2d \ufffd'
    assert got[f'tamer_owner_bytes{{owner="{escaped}",kind="logs"}}'] == 3
    text.encode("utf-8")  # the odd byte became U+FFFD: the output is valid UTF-8


def test_escaping_follows_the_spec() -> None:
    assert escape_label_value("plain") == "plain"
    assert escape_label_value('"') == '\\"'
    assert escape_label_value("\\") == "\\\\"
    assert escape_label_value("\n") == "\\n"
    assert escape_label_value("\\n") == "\\\\n"  # a backslash then n, not a line feed
    assert escape_label_value("tab\there") == "tab\there"  # only the three characters are escaped


def test_unknown_figures_are_absent_never_zero() -> None:
    remote = Snapshot(
        taken_at=1.0,
        engine="tcp://far:2376",
        host="tcp://far:2376",
        sizing="engine",
        kinds=(KindSize("volume", 1, 0, 0, 0),),
        reclaimable_safe=0,
        reclaimable_decision=0,
        volumes=(VolumeSize("v", "default", "named", "o", None),),
        logs=(LogSize("c", "id", "o", None),),
    )
    text = render(build_families(remote, CleanFacts(readable=False), now=2.0))
    promtool_check(text)
    got = samples(text)
    assert not any(
        k.startswith(("tamer_volume_bytes", "tamer_container_log_bytes", "tamer_data_root")) for k in got
    )
    assert not any(k.startswith(("tamer_last_clean", "tamer_journal_unfinished")) for k in got)
    assert "# TYPE tamer_data_root_free_bytes gauge" in text  # documented even when absent


# -- bounded cardinality --------------------------------------------------------------------------
def test_past_the_limit_the_rest_is_summed_per_label_combination_and_counted() -> None:
    snap = snapshot(volumes=1200, logs=700)
    text = render(build_families(snap, CleanFacts(), now=0.0, limit=500))
    promtool_check(text)
    got = samples(text)
    vols = {k: v for k, v in got.items() if k.startswith("tamer_volume_bytes{")}
    real = {k: v for k, v in vols.items() if f'volume="{OTHER}"' not in k}
    assert len(real) == 500
    # the largest 500 are kept: vol0700..vol1199 (bytes 1000 + i)
    assert min(int(re.search(r"vol(\d+)", k).group(1)) for k in real) == 700  # type: ignore[union-attr]
    others = {k: v for k, v in vols.items() if f'volume="{OTHER}"' in k}
    assert len(others) == 6  # one per (placement, kind) seen among the folded
    assert sum(vols.values()) == sum(v.bytes or 0 for v in snap.volumes)  # nothing lost
    for placement in ("default", "bind", "symlink"):  # and sum by (placement) stays exact
        want = sum(v.bytes or 0 for v in snap.volumes if v.placement == placement)
        assert sum(v for k, v in vols.items() if f'placement="{placement}"' in k) == want
    assert got['tamer_series_folded{metric="tamer_volume_bytes"}'] == 700
    assert got['tamer_series_folded{metric="tamer_container_log_bytes"}'] == 200
    alloc = {k: v for k, v in got.items() if k.startswith("tamer_volume_allocated_bytes{")}
    assert {k.split("{")[1] for k in alloc} == {k.split("{")[1] for k in vols}  # the same volumes kept
    assert len([k for k in got if k.startswith("tamer_volume_bytes{")]) <= 500 + 6


def test_fold_is_stable_and_never_duplicates_a_series() -> None:
    rows = [
        ((("owner", "b"), ("kind", "x")), 5),
        ((("owner", "a"), ("kind", "x")), 5),
        ((("owner", OTHER), ("kind", "x")), 9),
    ]
    kept, folded = fold(rows, "owner", 1)
    # ties by name: "a" is kept; "b" and the owner literally called __other__ are summed, once
    assert [(dict(s.labels)["owner"], s.value) for s in kept] == [("a", 5), (OTHER, 14)]
    assert folded == 2
    kept0, folded0 = fold(rows, "owner", 0)
    assert [(dict(s.labels)["owner"], s.value) for s in kept0] == [(OTHER, 19)] and folded0 == 3
    shuffled = rows[::-1]
    assert fold(shuffled, "owner", 1) == (kept, folded)


def test_owner_limit_keeps_whole_owners() -> None:
    owners = tuple(OwnerSize(f"project:p{i}", i, i, i) for i in range(10))
    text = render(build_families(snapshot(owners=owners), CleanFacts(), now=0.0, limit=3))
    got = samples(text)
    kept = {re.search(r'owner="([^"]+)"', k).group(1) for k in got if k.startswith("tamer_owner_bytes")}  # type: ignore[union-attr]
    assert kept == {"project:p9", "project:p8", "project:p7", OTHER}
    assert got[f'tamer_owner_bytes{{owner="{OTHER}",kind="logs"}}'] == sum(range(7))


# -- the journals -------------------------------------------------------------------------------------
def _plan(host: str, sizes: list[int]) -> Plan:
    actions = tuple(
        Action("container", f"id{i}", f"c{i}", b, Reason.CONTAINER_STOPPED, {}, {})
        for i, b in enumerate(sizes)
    )
    return Plan(host, "EID", "default", {}, "2026-01-01T00:00:00+00:00", actions, ())


def test_clean_facts_come_from_the_journal_of_this_host_only(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    ops = tmp_path / "operations"
    assert read_clean_facts("unix:///a.sock", path, ops) == CleanFacts(
        unfinished={"clean": 0, "move": 0, "adopt": 0}
    )
    assert not path.exists()  # reading never creates the journal
    j = Journal(path)
    done = j.start(_plan("unix:///a.sock", [100, 20, 3]))
    j.mark(done, 0, StepStatus.DONE, Reason.CONTAINER_STOPPED, {})
    j.mark(done, 1, StepStatus.SKIPPED, Reason.CONTAINER_STOPPED, {})
    j.mark(done, 2, StepStatus.DONE, Reason.CONTAINER_STOPPED, {})
    j.finish(done, "partial")
    other = j.start(_plan("unix:///b.sock", [999]))
    j.mark(other, 0, StepStatus.DONE, Reason.CONTAINER_STOPPED, {})
    j.finish(other, "done")
    j.start(_plan("unix:///a.sock", [5]))  # still running: not the last clean, one unfinished
    (ops / "move").mkdir(parents=True)
    (ops / "move" / "v1-abc.json").write_text("{}")
    (ops / "move" / "v2-abc.json").write_text("damaged")  # unreadable: still an unfinished move
    facts = read_clean_facts("unix:///a.sock", path, ops)
    assert facts.readable and facts.last_clean_freed == 103
    assert facts.last_clean_at == j.get(done).finished
    assert dict(facts.unfinished) == {"clean": 1, "move": 2, "adopt": 0}
    # one going on right now (its process alive) is not stuck: neither a clean nor a move
    alive = subprocess.Popen(["sleep", "60"])
    try:
        going = j.start(_plan("unix:///a.sock", [7]))
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE runs SET pid = ? WHERE id = ?", (alive.pid, going))
        (ops / "adopt").mkdir()
        (ops / "adopt" / "c1-abc.json").write_text(json.dumps({"pid": alive.pid}))
        assert dict(read_clean_facts("unix:///a.sock", path, ops).unfinished) == {
            "clean": 1,
            "move": 2,
            "adopt": 0,
        }
    finally:
        alive.kill()
        alive.wait()
    # and once that process is gone, both are
    assert dict(read_clean_facts("unix:///a.sock", path, ops).unfinished) == {
        "clean": 2,
        "move": 2,
        "adopt": 1,
    }


def test_a_damaged_journal_gives_no_clean_samples(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    facts = read_clean_facts("unix:///a.sock", path, tmp_path / "operations")
    assert not facts.readable
    text = render(build_families(snapshot(), facts, now=0.0))
    assert "\ntamer_last_clean" not in text and "\ntamer_journal_unfinished" not in text
    assert path.read_bytes() == b"this is not sqlite" * 100  # left as it was


# -- the textfile ---------------------------------------------------------------------------------------
def test_textfile_is_replaced_atomically_while_a_reader_watches(tmp_path: Path) -> None:
    versions = [f"# HELP x x\n# TYPE x gauge\nx {i}\n" + "#" * (i * 5000) + "\n" for i in range(1, 40)]
    seen: list[str] = []
    names: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            names.update(n for n in os.listdir(tmp_path) if n.endswith(".prom"))
            with contextlib.suppress(FileNotFoundError):
                seen.append((tmp_path / "tamer.prom").read_text())

    t = threading.Thread(target=reader)
    t.start()
    try:
        for text in versions:
            write_textfile(tmp_path, text)
    finally:
        stop.set()
        t.join()
    assert seen and all(s in versions for s in seen)  # never a part of one
    assert names == {"tamer.prom"}  # the temp file never has a name the collector reads
    assert os.listdir(tmp_path) == ["tamer.prom"]
    assert (os.stat(tmp_path / "tamer.prom").st_mode & 0o777) == 0o644  # node_exporter runs as another user


WRITER = """
import sys
from pathlib import Path
from tamer.metrics_io import write_textfile
i = 0
while True:
    i += 1
    write_textfile(Path(sys.argv[1]), f"x {i}\\n" + "#" * 200000 + "\\nend\\n")
"""


def test_kill_9_mid_write_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    rng = random.Random(1234)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        time.sleep(0.3 + rng.random() * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        text = (tmp_path / "tamer.prom").read_text()
        assert text.startswith("x ") and text.endswith("\nend\n")
    # a temp file a kill left behind never ends in .prom (node_exporter reads only *.prom)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".prom")] == ["tamer.prom"]


def test_textfile_folder_must_exist_be_a_folder_and_be_writable(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        check_textfile_dir(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        check_textfile_dir(str(tmp_path / "file"))
    with pytest.raises(UsageError, match="needs a folder"):
        check_textfile_dir("")
    assert check_textfile_dir(str(tmp_path)) == tmp_path


def _tamer(*args: str, env: dict[str, str], powerless: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tamer", *args]
    if powerless:  # root without capabilities: file permissions apply as to an ordinary user
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=60)


def test_bad_textfile_folder_is_a_usage_error_before_the_engine_is_asked(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "TAMER_STATE_DIR": str(tmp_path / "state")}
    proc = _tamer("metrics", "--textfile", str(tmp_path / "missing"), env=env)
    assert proc.returncode == 2 and "no such folder" in proc.stderr and "no-engine" not in proc.stderr
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    proc = _tamer("metrics", "--textfile", str(locked), env=env, powerless=os.geteuid() == 0)
    assert proc.returncode == 2 and "may not create files" in proc.stderr, proc.stderr
    assert os.listdir(locked) == []
    doc = json.loads(_tamer("metrics", "--json", "--textfile", str(tmp_path / "missing"), env=env).stdout)
    assert doc["status"] == "usage" and doc["exit_code"] == 2 and "no such folder" in doc["errors"][0]


# -- serve: the listening address -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:9470", ("127.0.0.1", 9470)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_listen_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize(
    "text",
    ["9470", ":9470", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "::1:9470", "[::1:9470", "h:\uff19"],
)
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(UsageError, match="--listen"):
        parse_listen(text)


def test_a_port_in_use_is_refused_and_nothing_starts(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ServeBindFailed, match="already in use") as info:
            bind("127.0.0.1", port)
        assert info.value.exit_code == 1
        env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "TAMER_STATE_DIR": str(tmp_path / "state")}
        proc = _tamer("serve", "--listen", f"127.0.0.1:{port}", env=env)
        assert (
            proc.returncode == 1 and "already in use" in proc.stderr and "nothing was started" in proc.stderr
        )
        assert "no-engine" not in proc.stderr  # refused before the engine was asked
        doc = json.loads(_tamer("--json", "serve", "--listen", f"127.0.0.1:{port}", env=env).stdout)
        assert doc["command"] == "serve" and doc["exit_code"] == 1 and "already in use" in doc["errors"][0]
        proc = _tamer("serve", "--listen", "192.0.2.1:9470", env=env)  # TEST-NET: not this machine's
        assert proc.returncode == 1 and "not an address of this machine" in proc.stderr
        proc = _tamer("serve", "--listen", "nohost.invalid:9470", env=env)
        assert proc.returncode == 2 and "does not resolve" in proc.stderr
        proc = _tamer("serve", "--refresh", "soon", env=env)
        assert proc.returncode == 2 and "--refresh" in proc.stderr
        assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())
    finally:
        holder.close()


# -- serve: the HTTP side, from a Keeper fed by hand --------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_server_serves_the_latest_snapshot_and_survives_failed_refreshes() -> None:
    clock = FakeClock()
    answers: list[object] = [RuntimeError("engine went away")]

    def refresher() -> tuple[Snapshot, CleanFacts]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    owners = (OwnerSize("<script>alert(1)</script>", 1, 2, 3),)
    keeper = Keeper(refresher, 60, limit=500, version="t", clock=clock)
    server = bind("127.0.0.1", 0)
    serve_on(server, keeper)
    base = served_address(server)
    try:
        code, headers, body = _get(base + "/metrics")
        assert code == 503 and "still being taken" in body  # before any snapshot
        keeper.seed(snapshot(owners=owners), CleanFacts(), clock.now - 5)
        clock.now += 10
        code, headers, body = _get(base + "/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        promtool_check(body)
        got = samples(body)
        assert got["tamer_snapshot_age_seconds"] == 15  # the monotonic clock, not taken_at
        assert "tamer_snapshot_refresh_ok" not in body  # no refresh has run yet
        assert not keeper.refresh_once()  # the engine went away: the old snapshot stays
        got = samples(_get(base + "/metrics")[2])
        assert got["tamer_snapshot_refresh_ok"] == 0 and got["tamer_snapshot_refresh_failures_total"] == 1
        assert got['tamer_volume_bytes{volume="vol0000",placement="default",kind="named"}'] == 1000
        newer = snapshot(volumes=1)
        answers.append((newer, CleanFacts(unfinished={"clean": 2})))
        assert keeper.refresh_once()
        got = samples(_get(base + "/metrics")[2])
        assert got["tamer_snapshot_refresh_ok"] == 1 and got["tamer_snapshot_age_seconds"] == 0
        assert got['tamer_journal_unfinished{operation="clean"}'] == 2
        assert not any("vol0001" in k for k in got)
        code, headers, page = _get(base + "/")
        assert code == 200 and headers["Content-Type"].startswith("text/html") and "vol0000" in page
        assert "Unfinished: 2 clean" in page
        keeper.seed(snapshot(owners=owners), CleanFacts(), 0)  # seed never replaces a refreshed snapshot
        assert "&lt;script&gt;" not in _get(base + "/")[2]
        req = urllib.request.Request(base + "/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert (
                gzip.decompress(resp.read()).decode() == _get(base + "/metrics")[2]
            )  # the fake clock stands still
        code, _, body = _get(base + "/metrics", "HEAD")
        assert code == 200 and body == ""
        assert _get(base + "/nope")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_status_page_escapes_names() -> None:
    keeper = Keeper(lambda: (snapshot(), CleanFacts()), 60, limit=5)
    keeper.seed(snapshot(owners=(OwnerSize("<b>x</b>", 1, 1, 1),)), CleanFacts(), time.monotonic())
    page = keeper.status_html()
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page


def test_freshness_is_rendered_as_given() -> None:
    text = render(build_families(snapshot(), CleanFacts(), now=0.0, freshness=Freshness(2.5, True, 3)))
    got = samples(text)
    assert got["tamer_snapshot_age_seconds"] == 2.5 and got["tamer_snapshot_refresh_failures_total"] == 3
    promtool_check(text)


def test_bind_error_codes_are_translated() -> None:
    # the message names the address and what to do, whatever errno the system gave
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServeBindFailed) as info:
            bind("127.0.0.1", port)
    assert f"127.0.0.1:{port}" in str(info.value) and "--listen HOST:PORT" in str(info.value)


# -- global options, wherever they stand -------------------------------------------------------------
@pytest.mark.parametrize("command", ["metrics", "serve"])
def test_host_and_json_work_before_and_after_the_command(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tamer.cli.app import main

    given = f"unix://{tmp_path}/given-with-H.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/from-env.sock")
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "state"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [command, *(["--listen", f"127.0.0.1:{port}"] if command == "serve" else [])]
    for full in (
        [*argv, "-H", given, "--json"],
        ["-H", given, "--json", *argv],
        [command, "--json", "-H", given, *argv[1:]],
    ):
        assert main(full) == 1, full
        doc = json.loads(capsys.readouterr().out)
        assert doc["command"] == command and given in doc["errors"][0] and "from-env" not in doc["errors"][0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # serve let the port go when the engine could not be reached
