"""Session 8 attacks on clean --apply: what the user names now is never overridden by an older input.

A killed clean is finished by the next `clean --apply` (by hand, or the next timer run: `tamer schedule`
runs `clean --apply --yes --policy FILE`), and `clean --plan FILE` executes a saved plan. Both carry their
own policy. When the command also names a policy (--policy), that policy is what the user (or the timer's
file, edited since) asks for now: it may narrow the older run or plan, never be ignored. Before, a policy
edited to keep something (a keep_names, a protect label) was ignored while the killed run was finished,
and the objects it now keeps were removed.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"
FAULTY = Path(__file__).parent.parent / "faulty_tamer.py"

WIDE = """\
version = 1
[containers]
states = ["exited", "dead", "created"]
older_than = "0s"
"""
NARROW = WIDE + 'keep_names = ["s8in-keep-*"]\n'


def _run(
    eng: Any, state: Path, *args: str, fault: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *((str(FAULTY), fault) if fault else ("-m", "tamer")), *args]
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def _names(eng: Any) -> set[str]:
    return set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())


def _made(eng: Any, n: int) -> tuple[list[str], list[str]]:
    keep = [f"s8in-keep-{i}" for i in range(n)]
    junk = [f"s8in-junk-{i}" for i in range(n)]
    for name in keep + junk:
        eng.docker("create", "--name", name, BUSYBOX)
    return keep, junk


def test_a_killed_run_finished_under_a_policy_that_now_keeps_more_removes_only_what_both_allow(
    eng: Any, tmp_path: Path
) -> None:
    keep, junk = _made(eng, 3)
    policy = tmp_path / "policy.toml"
    policy.write_text(WIDE)
    state = tmp_path / "state"
    killed = _run(eng, state, "clean", "--policy", str(policy), "--apply", "--yes", "--json", fault="@1")
    assert killed.returncode == 137, killed.stderr
    assert set(keep + junk) <= _names(eng)  # killed before the first removal: all there, a run pending
    policy.write_text(NARROW)  # the user (or whoever owns the timer's policy) keeps these from now on
    done = _run(eng, state, "clean", "--policy", str(policy), "--apply", "--yes", "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    result = json.loads(done.stdout)["data"]
    assert result["resumed"] is True
    assert set(keep) <= _names(eng), "the policy named now keeps them; the killed run's removed them"
    assert not set(junk) & _names(eng), "what both policies allow still goes"
    steps = {s["name"]: s for s in result["steps"]}
    assert all(steps[k]["status"] == "skipped" and steps[k]["code"] == "not-eligible-now" for k in keep)
    # the run is finished: nothing blocks the next one
    again = _run(eng, state, "clean", "--policy", str(policy), "--apply", "--yes", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["data"].get("resumed") in (None, False)


def test_a_saved_plan_applied_with_a_policy_is_narrowed_by_it(eng: Any, tmp_path: Path) -> None:
    keep, junk = _made(eng, 2)
    wide, narrow = tmp_path / "wide.toml", tmp_path / "narrow.toml"
    wide.write_text(WIDE)
    narrow.write_text(NARROW)
    state = tmp_path / "state"
    saved = tmp_path / "plan.json"
    assert _run(eng, state, "plan", "--policy", str(wide), "-o", str(saved)).returncode == 0
    done = _run(
        eng, state, "clean", "--plan", str(saved), "--policy", str(narrow), "--apply", "--yes", "--json"
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert set(keep) <= _names(eng) and not set(junk) & _names(eng)
    # without --policy the saved plan stands on its own policy, as before
    for name in keep:
        eng.docker("create", "--name", f"{name}-b", BUSYBOX)
    assert _run(eng, state, "plan", "--policy", str(wide), "-o", str(saved)).returncode == 0
    done = _run(eng, state, "clean", "--plan", str(saved), "--apply", "--yes", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not ({*keep, *(f"{k}-b" for k in keep)} & _names(eng))


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
@pytest.mark.parametrize(
    "command",
    [
        ("policy", "check", "{}"),
        ("plan", "--policy", "{}"),
        ("clean", "--policy", "{}", "--apply", "--yes"),
        ("clean", "--plan", "{}", "--apply", "--yes"),
    ],
)
def test_a_policy_or_plan_path_that_is_no_regular_file_is_a_clear_error(
    eng: Any, tmp_path: Path, kind: str, command: tuple[str, ...]
) -> None:
    """A FIFO put in place of the timer's policy hung every timed clean forever (one more process each
    period); /dev/zero was read until memory ran out ("internal error: MemoryError")."""
    if kind == "fifo":
        path = tmp_path / "policy.toml"
        os.mkfifo(path)
    elif kind == "dev-zero":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "huge"
        with open(path, "wb") as fh:  # sparse: no disk, past any policy's or plan's size
            fh.truncate(1 << 40)
    state = tmp_path / "state"
    before = _names(eng)
    try:
        proc = _run(eng, state, *(a.format(path) for a in command), timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`tamer {' '.join(command)}` on a {kind} hung") from None
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert str(path) in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert ("regular file" in proc.stderr) if kind != "huge" else ("bytes" in proc.stderr), proc.stderr
    assert not state.exists() and _names(eng) == before  # nothing changed, not even a state folder


def _answer_in_a_terminal(
    eng: Any, state: Path, args: list[str], meanwhile: Callable[[], None], answer: bytes = b"y\n"
) -> tuple[int, str]:
    """Run `tamer ARGS` on a pseudo-terminal; once it asks, call `meanwhile()`, then answer."""
    master, slave = pty.openpty()
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tamer", *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    asked = False
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no end: {seen.decode(errors='replace')}")
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        seen += chunk
        if not asked and b"[y/N]" in seen:
            asked = True
            meanwhile()
            os.write(master, answer)
    os.close(master)
    return proc.wait(timeout=60), seen.decode(errors="replace")


def test_the_host_as_it_is_when_the_user_answers_is_what_counts(eng: Any, tmp_path: Path) -> None:
    """`clean --apply` in a terminal asks first, and the user may take minutes to answer: what the policy
    keeps by then is kept. Here the user protects a container while the question waits (a rename into a
    keep_names pattern); before, the re-check used the host as read before the question and removed it."""
    eng.docker("create", "--name", "s8tty-victim", BUSYBOX)
    eng.docker("create", "--name", "s8tty-junk", BUSYBOX)
    policy = tmp_path / "policy.toml"
    policy.write_text(WIDE + 'keep_names = ["s8in-keep-*"]\nnames = ["s8tty-*", "s8in-keep-*"]\n')
    rc, out = _answer_in_a_terminal(
        eng,
        tmp_path / "state",
        ["clean", "--policy", str(policy), "--apply"],
        lambda: eng.docker("rename", "s8tty-victim", "s8in-keep-victim"),
    )
    assert rc == 3, out
    left = _names(eng)
    assert "s8in-keep-victim" in left, "protected while the question waited, removed after the answer"
    assert "s8tty-junk" not in left, out


@pytest.mark.parametrize("plan_id", ["", " ", "zz", "0123456789abcdef0", "../../etc"])
def test_a_plan_id_that_is_no_plan_id_is_refused_and_nothing_goes(
    eng: Any, tmp_path: Path, plan_id: str
) -> None:
    """`--plan-id ""` (a script's empty variable, a fleet host whose id was lost) read as no check at all:
    the clean went ahead whatever its plan was."""
    eng.docker("create", "--name", "s8in-pid-victim", BUSYBOX)
    state = tmp_path / "state"
    proc = _run(eng, state, "clean", "--apply", "--yes", "--plan-id", plan_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--plan-id" in proc.stderr and "16 hex digits" in proc.stderr, proc.stderr
    assert "s8in-pid-victim" in _names(eng) and not state.exists()
