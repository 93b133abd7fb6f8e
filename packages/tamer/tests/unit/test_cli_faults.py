"""Faults around the CLI that need no engine: a hung engine, a reader that leaves, a damaged state database."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from tamer.cli import main
from tamer.engine import client
from tamer.history import History, HistoryUnavailable, Use
from tamer.state import StateUnavailable


@pytest.fixture
def hung_engine(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and then never says a word (a hung dockerd)."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)  # keep it open, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_hung_engine_is_said_to_be_not_responding(
    hung_engine: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(client, "ANSWER_TIMEOUT_S", 0.5)  # bounded; the real bound is a few seconds
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/elsewhere.sock")
    assert main(["-H", hung_engine, "df"]) == 1
    err = capsys.readouterr().err
    assert hung_engine in err and "did not answer in time" in err and "not answer" in err
    assert "hung" in err and "restart" in err
    assert "start one" not in err and "Traceback" not in err  # not "no engine: start one"
    assert main(["ls", "--json", "-H", hung_engine]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "error" and "did not answer in time" in doc["errors"][0]


def test_the_first_exchange_is_bounded(hung_engine: str) -> None:
    with pytest.raises(Exception, match="did not answer in time"):
        client.connect(hung_engine, answer_within=0.3)


# -- a reader that leaves early: `tamer ... | head` ------------------------------------------
def _closed_pipe_run(*argv: str, tmp_path: Path) -> tuple[int, str]:
    """Run tamer with stdout a pipe whose reader is gone before tamer writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/no.sock", "TAMER_STATE_DIR": str(tmp_path / "s")}
    proc = subprocess.run(
        [sys.executable, "-m", "tamer", *argv], stdout=write_end, stderr=subprocess.PIPE, env=env, timeout=120
    )
    os.close(write_end)
    return proc.returncode, proc.stderr.decode()


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["policy", "show"], 0),  # success output
        (["policy", "show", "--json"], 0),
        (["ls", "--json"], 1),  # the failure envelope goes to stdout too
        (["ls", "--sort", "bogus", "--json"], 2),
    ],
)
def test_a_closed_pipe_is_not_a_traceback(argv: list[str], code: int, tmp_path: Path) -> None:
    rc, err = _closed_pipe_run(*argv, tmp_path=tmp_path)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert rc == code


def test_head_reading_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/no.sock", "TAMER_STATE_DIR": str(tmp_path / "s")}
    proc = subprocess.run(
        f"{sys.executable} -m tamer policy show | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.stdout == "# tamer's built-in default policy: what `docker system prune` removes (stopped\n"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr


# -- a damaged or unreadable usage history never blocks reading or planning -------------------
def _damage(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "directory":
        path.mkdir()
    elif how == "truncated":
        History("h", path).record([Use("image", f"sha256:{i:064x}", 1.0) for i in range(2000)])
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("how", ["garbage", "directory", "truncated"])
def test_a_damaged_history_reads_as_none_with_a_warning(how: str, tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    _damage(path, how)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = History("h", path)
        assert history.last_used() == {} and history.cursor() is None and list(history) == []
    said = [str(w.message) for w in caught if w.category is StateUnavailable]
    assert len(said) == 1 and str(path) in said[0] and "going on without it" in said[0] and "mv " in said[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(HistoryUnavailable, match="nothing was recorded"):
            History("h", path).record([Use("volume", "v", time.time())])


def test_a_state_dir_that_is_a_file_reads_as_no_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TAMER_STATE_DIR", str(blocker))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert History("h").last_used() == {}
    assert any(w.category is StateUnavailable and str(blocker) in str(w.message) for w in caught)


def test_a_healthy_history_still_works(tmp_path: Path) -> None:
    history = History("h", tmp_path / "history.sqlite")
    assert history.record([Use("volume", "v", 100.0), Use("volume", "v", 50.0)], cursor=100.0) == 2
    assert history.cursor() == 100.0 and [k for k in history.last_used()] == [("volume", "v")]
    sqlite3.connect(tmp_path / "history.sqlite").close()


@pytest.mark.skipif(
    not shutil.which("setpriv"), reason="setpriv (util-linux) is needed to drop root's powers"
)
def test_an_unreadable_history_for_a_non_root_user(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    History("h", path).record([Use("volume", "v", 1.0)])
    path.chmod(0)
    code = (
        "import warnings, sys; from tamer.history import History\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    print(History('h', sys.argv[1]).last_used())\n"
        "print([str(x.message) for x in w])"
    )
    # root stripped of every capability: file permissions apply to it as to any user
    cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-c", code, str(path)]
    if os.geteuid() != 0:
        cmd = [sys.executable, "-c", code, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, said = proc.stdout.splitlines()
    assert first == "{}" and "cannot be read" in said and str(path) in said
