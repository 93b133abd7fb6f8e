"""Hostile review of df's early start (tamer.early, started by tamer.cli.lean before the parse; issue 11,
review s7). The rule: the early start may change when things happen, never what tamer says or does, and a
usage error costs nothing.

Against scripted engines on a unix socket (no Docker needed): one that accepts and never answers, one that
closes every connection at once, one that answers /_ping and then closes. Each command line runs with the
early start and without it (TAMER_FULL_CLI=1): exit code, stdout and stderr must be identical, and the
engine must have been asked the same (a usage error: not at all; a failing engine: as often)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tamer.cli.app import parse_command_line
from tamer.cli.lean import _plain_df
from tamer.errors import UsageError

PING = b"HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK"


class _Engine:
    """A unix-socket 'engine': `mode` says what it does with each connection. hang: reads and never
    answers; close: closes it at once; ping: answers /_ping, closes on anything else. Counts the
    connections and the request lines it read."""

    def __init__(self, path: str, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.requests: list[str] = []
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                try:
                    part = conn.recv(65536)
                except OSError:
                    return
                if not part:
                    conn.close()
                    return
                pending += part
            head, _, pending = pending.partition(b"\r\n\r\n")
            line = head.split(b"\r\n")[0].decode("latin-1")
            with self._lock:
                self.requests.append(line)
            if self.mode == "ping" and " /_ping " in line:
                conn.sendall(PING)
                continue
            if self.mode == "hang":
                self._held.append(conn)  # read, never answered (and never closed) until the test ends
                return
            conn.close()
            return

    def stop(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()

    def asked(self) -> tuple[int, list[str]]:
        with self._lock:
            return self.connections, sorted(self.requests)


@contextlib.contextmanager
def _engine(tmp_path: Path, mode: str) -> Iterator[_Engine]:
    eng = _Engine(str(tmp_path / f"{mode}.sock"), mode)
    try:
        yield eng
    finally:
        eng.stop()


def _run(sock: str, argv: list[str], *, early: bool, timeout: float = 60) -> tuple[int, str, str]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    env.pop("TAMER_FULL_CLI", None)
    if not early:
        env["TAMER_FULL_CLI"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "tamer", *argv], capture_output=True, text=True, env=env, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


# df's own options (--top, --sizing, -v) given before `df`: argparse refuses them there
DF_OPTIONS_BEFORE_DF = [
    ["-v", "df"],
    ["--verbose", "df"],
    ["--top", "3", "df"],
    ["--top=3", "df", "--json"],
    ["--sizing", "local", "df"],
    ["--json", "--sizing=auto", "df"],
]


@pytest.mark.parametrize("argv", DF_OPTIONS_BEFORE_DF, ids=[" ".join(a) for a in DF_OPTIONS_BEFORE_DF])
def test_dfs_own_options_before_df_are_not_a_plain_df(argv: list[str]) -> None:
    assert _plain_df(argv) == (False, None)
    with pytest.raises(UsageError):
        parse_command_line(argv)


@pytest.mark.parametrize(
    "argv", DF_OPTIONS_BEFORE_DF[:3], ids=[" ".join(a) for a in DF_OPTIONS_BEFORE_DF[:3]]
)
def test_a_usage_error_never_asks_the_engine(tmp_path: Path, argv: list[str]) -> None:
    """Was: connected (and waited up to 15 s on an engine that never answers) before argparse refused."""
    with _engine(tmp_path, "hang") as eng:
        full = _run(str(tmp_path / "hang.sock"), argv, early=False, timeout=10)
        early = _run(str(tmp_path / "hang.sock"), argv, early=True, timeout=10)
        assert early == full
        assert full[0] == 2
        assert eng.asked() == (0, [])


@pytest.mark.parametrize("mode", ["close", "ping"])
@pytest.mark.parametrize("argv", [["df"], ["df", "--json", "-v"]], ids=["df", "df --json -v"])
def test_a_failing_engine_is_asked_as_often_and_said_alike(
    tmp_path: Path, mode: str, argv: list[str]
) -> None:
    """Was (close): the early connect failed, and the command connected again: every failed connect (a
    hung engine's 15 s wait among them) made twice."""
    sock = str(tmp_path / f"{mode}.sock")
    with _engine(tmp_path, mode) as eng:
        full = _run(sock, argv, early=False)
        asked_full = eng.asked()
        eng.connections, eng.requests = 0, []
        early = _run(sock, argv, early=True)
        assert early == full
        assert full[0] == 1 and "no Docker engine answered" in (full[2] + full[1])
        asked_early = eng.asked()
        if mode == "close":  # nothing answered: the one connect (and its one request) and no more
            assert asked_early == asked_full == (1, ["GET /_ping HTTP/1.1"])
        else:  # connected once; /info and /volumes fail side by side (which is re-sent varies run to run)
            assert [r for r in asked_early[1] if "/_ping" in r] == ["GET /_ping HTTP/1.1"]
            assert [r for r in asked_full[1] if "/_ping" in r] == ["GET /_ping HTTP/1.1"]


# every token argparse or _plain_df could read differently: options in and out of place, values that
# look like options, empty ones, unicode digits, `df` as a value, `--`, glued and abbreviated options
TOKENS = [
    "df", "ls", "plan", "-H", "--host", "--host=unix:///a.sock", "--host=", "-Hunix:///a.sock", "unix:///a.sock",
    "unix:///b.sock", "tcp://h:2375", "", " ", "--top", "--top=", "--top=2", "3", "0", "-1", "\u0663", "x",
    "--sizing", "--sizing=local", "--sizing=engine", "local", "engine", "auto", "-v", "--verbose", "--verb",
    "--json", "-q", "--quiet", "--traceback", "--", "-h", "--help", "-qv", "--ho", "-", "--version",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=7))
def test_a_plain_df_is_one_argparse_takes_as_that_df(argv: list[str]) -> None:
    """Whatever _plain_df calls plain, argparse parses, as a df, on the engine _plain_df names, with sizes
    walked here: anything else would start work for a command line that then errs or reads otherwise."""
    plain, host = _plain_df(argv)
    if not plain:
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            _, args = parse_command_line(argv)
        except (UsageError, SystemExit, argparse.ArgumentError) as exc:
            pytest.fail(f"{argv!r} called a plain df, but argparse refuses it: {exc}")
    assert (args.command, args.host) == ("df", host)
    assert args.sizing in ("auto", "local")


def _children() -> set[str]:
    """This thread's child processes (a session's private dockerd among them, when one runs)."""
    pid = os.getpid()
    return set(open(f"/proc/{pid}/task/{pid}/children").read().split())


def test_another_thread_never_takes_a_dfs_early_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An embedding caller's other thread (a `record` or `ls --size` of its own) reading the same engine meanwhile
    gets no early reads meant for this thread's df, and does not drop them either."""
    import tamer.early as early

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    host = f"unix://{tmp_path / 'ping.sock'}"
    before = _children()
    with _engine(tmp_path, "ping"):
        early.start(host)
        assert len(_children() - before) >= 1  # the workers, forked on this thread
        elsewhere: list[object] = []

        def elsewhere_take() -> None:
            elsewhere.append(early.take(host))
            early.drop_unused()

        other = threading.Thread(target=elsewhere_take)
        other.start()
        other.join()
        assert elsewhere == [None]
        taken = early.take(host)
        assert taken is not None and taken.engine.where == host
        taken.drop()
        assert early.take(host) is None  # once
    assert _children() == before


def test_ctrl_c_just_after_the_early_start_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after the start, before the parse: exit 130, and in a process that goes on no worker waits and
    nothing is left for a later command of the same thread to take (was: both)."""
    import tamer.early as early
    from tamer.cli import main

    real_start = early.start

    def start_then_interrupted(host: str | None, *, walk_volumes: bool = False) -> None:
        real_start(host, walk_volumes=walk_volumes)
        raise KeyboardInterrupt

    monkeypatch.delenv("TAMER_FULL_CLI", raising=False)
    host = f"unix://{tmp_path / 'ping.sock'}"
    monkeypatch.setenv("DOCKER_HOST", host)
    before = _children()
    with _engine(tmp_path, "ping"):
        monkeypatch.setattr(early, "start", start_then_interrupted)
        with contextlib.redirect_stderr(io.StringIO()) as err:
            assert main(["df"]) == 130
        assert err.getvalue().strip() == "tamer: error: interrupted"
        assert _children() == before
        assert early.take(host) is None


@pytest.mark.parametrize("full_cli", ["", "1"])
def test_a_later_command_never_takes_what_an_interrupted_df_left(tmp_path: Path, full_cli: str) -> None:
    """A df interrupted after its early start but before main() could drop it (Ctrl-C while the full CLI's
    modules import, outside main's try) leaves its reads; the next command of an embedding caller on the
    same thread (`record` reads the inventory with no engine given) must not take them as its own, with
    the early start on or off, and no worker may stay. (In a process of its own: its workers must not
    inherit the scripted engine's end of the connections.)"""
    code = (
        "import os, sys, io, contextlib\n"
        "import tamer.early as early\n"
        "taken = []\n"
        "take = early.take\n"
        "early.take = lambda host: taken.append(take(host)) or taken[-1]\n"
        "early.start(None)  # what the interrupted df started\n"
        "from tamer.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    rc = main(['record', '--json'])\n"
        "kids = open(f'/proc/{os.getpid()}/task/{os.getpid()}/children').read().split()\n"
        "print(rc, [t is not None for t in taken], len(kids))\n"
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path / 'ping.sock'}", "TAMER_FULL_CLI": full_cli}
    with _engine(tmp_path, "ping"):
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1 [False] 0"  # the engine closes on /info: record fails, as it would
