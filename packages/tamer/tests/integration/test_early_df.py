"""A plain `tamer df` starts its first engine reads and its walk's workers before its command line is
parsed (tamer.early, started by tamer.cli.lean); that may change when things happen, never what is said.

Each command line runs with the early start and without it (TAMER_FULL_CLI=1), under one frozen clock:
stdout, stderr and the exit code must be identical, for plain df's (whose early reads are taken up) and
for command lines the early start guesses wrong about (a usage error, --help, another engine)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from tamer.cli.argtypes import positive_int
from tamer.cli.lean import _plain_df, _positive

BUSYBOX = "tamer-test/busybox:1"
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

ARGVS = [
    ["df"],
    ["df", "--json"],
    ["df", "-v"],
    ["df", "--top", "2", "--json"],
    ["df", "--top=3", "-q"],
    ["--json", "df", "--sizing", "local"],
    ["df", "--sizing=auto", "--verbose"],
    # the early start is made, then the parse says otherwise
    ["df", "--top", "0"],
    ["df", "--top"],
    ["df", "--sizing", "moon"],
    ["df", "--bogus"],
    ["df", "extra"],
    ["df", "--help"],
    ["df", "-H", "unix:///nonexistent/early.sock"],
    # no early start
    ["df", "--sizing", "engine", "--json"],
    ["df", "-Hunix:///nonexistent/early.sock"],
    ["df", "--", "x"],
]


def _run(eng: Any, argv: list[str], *, early: bool) -> tuple[int, str, str]:
    env = {**os.environ, "DOCKER_HOST": eng.host}
    env.pop("TAMER_FULL_CLI", None)
    if not early:
        env["TAMER_FULL_CLI"] = "1"
    if os.path.exists(LIBFAKETIME):  # one frozen clock for both runs: ages print alike
        # the monotonic clock faked too: with FAKETIME_DONT_FAKE_MONOTONIC, Python's time.sleep fails (EINVAL)
        env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME="2031-06-01 12:00:00")
    proc = subprocess.run(
        [sys.executable, "-m", "tamer", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def host_with_things(test_engine: Any) -> Any:
    """One host for every command line (made once: each case only reads it)."""
    eng = test_engine
    eng.docker("volume", "create", "early-named")
    eng.docker("create", "--name", "early-user", "-v", "early-named:/d", BUSYBOX, "true")
    eng.docker(
        "run", "--name", "early-exited", "-v", "/anon", BUSYBOX, "sh", "-c", "echo hi; echo x > /anon/f"
    )
    try:
        yield eng
    finally:
        eng.docker("rm", "-f", "-v", "early-user", "early-exited", check=False)
        eng.docker("volume", "rm", "-f", "early-named", check=False)


@pytest.mark.parametrize("argv", ARGVS, ids=[" ".join(a) for a in ARGVS])
def test_an_early_df_says_what_the_full_cli_says(host_with_things: Any, argv: list[str]) -> None:
    full = _run(host_with_things, argv, early=False)
    early = _run(host_with_things, argv, early=True)
    assert early == full


def test_a_plain_df_takes_its_early_reads_up(host_with_things: Any) -> None:
    """The early reads are used (not started and dropped), and a df that was not plain, or whose parse
    failed, leaves no worker behind in a process that goes on (a test, `tamer serve`)."""
    code = (
        "import os, sys, io, contextlib\n"
        "import tamer.early as early\n"
        "taken = []\n"
        "take = early.take\n"
        "early.take = lambda host: taken.append(take(host)) or taken[-1]\n"
        "from tamer.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):\n"
        "    rc = main(sys.argv[1:])\n"
        "kids = open(f'/proc/{os.getpid()}/task/{os.getpid()}/children').read().split()\n"
        "print(rc, [t is not None for t in taken], len(kids))\n"
    )
    env = {**os.environ, "DOCKER_HOST": host_with_things.host}
    env.pop("TAMER_FULL_CLI", None)

    def run(*argv: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert run("df", "--json") == "0 [True] 0"
    assert run("df", "--top", "0") == "2 [] 0"  # refused before anything is started
    assert run("df", "--bogus") == "2 [] 0"  # not plain: nothing started
    # no engine: the early connect's error is the command's (take raises it: no second connect), no worker left
    assert run("df", "-H", "unix:///nonexistent/early.sock") == "1 [] 0"
    assert run("-H", host_with_things.host, "df", "-q") == "0 [True] 0"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["df"], (True, None)),
        (["df", "--json", "-q", "--traceback", "-v", "--verbose"], (True, None)),
        (["-H", "unix:///x.sock", "df"], (True, "unix:///x.sock")),
        (["df", "--host=unix:///y.sock", "--top", "3", "--sizing=local"], (True, "unix:///y.sock")),
        (["df", "--sizing", "engine"], (False, None)),
        (["df", "--sizing=engine"], (False, None)),
        (["df", "--top"], (False, None)),
        (["df", "--top", "0"], (False, None)),
        (["df", "--top", "-1"], (False, None)),
        (["df", "--top", "x"], (False, None)),
        (["df", "--top", " 7 "], (True, None)),
        (["df", "--sizing", "moon"], (False, None)),
        (["df", "-H", ""], (False, None)),
        (["df", "-H", " "], (False, None)),
        (["df", "-H", "-q"], (False, None)),
        (["df", "--bogus"], (False, None)),
        (["df", "-Hunix:///x.sock"], (False, None)),
        (["df", "-h"], (False, None)),
        (["ls", "df"], (False, None)),
        (["df", "df"], (False, None)),
        (["plan", "--top", "df"], (False, None)),
    ],
)
def test_what_counts_as_a_plain_df(argv: list[str], expected: tuple[bool, str | None]) -> None:
    assert _plain_df(argv) == expected


@pytest.mark.parametrize("text", ["1", "7", " 7 ", "+3", "3_000", "\u0663", "0", "-1", "x", "", "1.5", "1e3"])
def test_the_plain_df_check_takes_the_tops_that_argparse_takes(text: str) -> None:
    try:
        positive_int(text)
        taken = True
    except argparse.ArgumentTypeError:
        taken = False
    assert _positive(text) == taken


def test_ctrl_c_while_the_early_reads_start_is_said_as_the_full_cli_says_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import tamer.early
    from tamer.cli import main

    def interrupted(host: str | None, *, walk_volumes: bool = False) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tamer.early, "start", interrupted)
    monkeypatch.delenv("TAMER_FULL_CLI", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/early.sock")
    assert main(["df"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "tamer: error: interrupted"
    assert main(["df", "--json"]) == 130
    out, err = capsys.readouterr()
    envelope = json.loads(out)
    assert (envelope["command"], envelope["status"], envelope["exit_code"]) == ("df", "interrupted", 130)
    assert envelope["errors"] == ["interrupted"] and err == ""


def test_the_plain_dfs_compared_above_are_real_dfs(host_with_things: Any) -> None:
    """The comparison above means something only if the plain df's run: under _run's frozen clock they did
    not (libfaketime with FAKETIME_DONT_FAKE_MONOTONIC made Python's time.sleep fail with EINVAL, so each
    df ended in the same 'internal error' both ways, and the test compared two errors)."""
    import json

    for early in (True, False):
        code, out, err = _run(host_with_things, ["df", "--json"], early=early)
        assert (code, err) == (0, ""), err
        envelope = json.loads(out)
        assert (envelope["command"], envelope["status"], envelope["exit_code"]) == ("df", "ok", 0)
        code, out, err = _run(host_with_things, ["df", "-v"], early=early)
        assert (code, err) == (0, ""), err
        assert "early-exited" in out and "early-named" in out


def test_a_quiet_df_walks_its_volumes_early_and_says_the_same(host_with_things: Any) -> None:
    """With --json or -q (no progress shown) the volumes' walk starts on the early answers, on a thread,
    and read_raw_snapshot uses it; a df that shows progress starts it itself. Same figures either way."""
    code = (
        "import sys, io, contextlib, json\n"
        "import tamer.early as early, tamer.collect as collect\n"
        "seen = []\n"
        "take = early.take\n"
        "def spy(host):\n"
        "    reads = take(host)\n"
        "    seen.append(reads is not None and reads.volume_walk is not None)\n"
        "    return reads\n"
        "early.take = spy\n"
        "own = []\n"
        "svw = collect.start_volume_walk\n"
        "collect.start_volume_walk = lambda *a, **k: own.append(1) or svw(*a, **k)\n"
        "from tamer.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):\n"
        "    rc = main(sys.argv[1:])\n"
        "print(json.dumps([rc, seen, len(own)]))\n"
    )
    env = {**os.environ, "DOCKER_HOST": host_with_things.host}
    env.pop("TAMER_FULL_CLI", None)

    def run(*argv: str) -> list[Any]:
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        result: list[Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    assert run("df", "--json") == [0, [True], 0]  # walked early: read_raw_snapshot started none itself
    assert run("-q", "df") == [0, [True], 0]
    assert run("df") == [0, [False], 1]  # progress may be shown: walked by read_raw_snapshot
    early_json = _run(host_with_things, ["df", "--json"], early=True)
    full_json = _run(host_with_things, ["df", "--json"], early=False)
    assert early_json == full_json and early_json[0] == 0
