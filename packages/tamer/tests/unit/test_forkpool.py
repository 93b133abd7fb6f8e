"""tamer.forkpool: the walk's workers, forked by hand. What a failure does (a clear error, never a figure
with a part missing, no process left behind), messages past the pipes' size both ways, and forking
beside threads that hold locks (as `tamer serve` forks from its refresh thread)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import tamer.sizes
import tamer.treewalk
from tamer.errors import TamerError
from tamer.forkpool import ForkPool, WalkFailed
from tamer.sizes import Walker


def children() -> set[int]:
    """This process's children that have not been reaped (zombies included)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def gather(pool: ForkPool, tasks: list[tuple[int, Any]]) -> list[tuple[bool, Any]]:
    answers: list[tuple[bool, Any] | None] = [None] * len(tasks)
    for i, (kind, payload) in enumerate(tasks):

        def done(ok: bool, answer: Any, i: int = i) -> None:
            answers[i] = (ok, answer)

        pool.submit(kind, payload, done)
    pool.wait_idle()
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def die(_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fail(payload: object) -> None:
    raise OSError(5, "Input/output error", str(payload))


def echo(payload: Any) -> Any:
    return payload


pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")


def test_answers_come_back_to_their_task_and_every_worker_is_reaped() -> None:
    before = children()
    pool = ForkPool(2, [echo, len])
    assert len(set(pool.pids)) == 2 and set(pool.pids) <= children()
    tasks = [(i % 2, "x" * i if i % 2 else [i, {"k": (i, frozenset({"a"}))}]) for i in range(200)]
    got = gather(pool, tasks)
    assert got == [(True, i if i % 2 else [i, {"k": (i, frozenset({"a"}))}]) for i in range(200)]
    pool.close()
    assert children() == before  # none left, not even a zombie


def test_messages_past_the_pipes_size_both_ways_do_not_block() -> None:
    """A task and an answer of some MB each, two queued per worker: a pool writing a big task while its
    worker writes a big answer would wait on each other for ever with blocking pipes."""
    pool = ForkPool(2, [echo], depth=2)
    big = ["y" * 100_000 for _ in range(30)]  # ~3 MB, past the 64 KB of a pipe
    got = gather(pool, [(0, big)] * 6)
    pool.close()
    assert got == [(True, big)] * 6


def test_a_task_that_raises_fails_with_its_message_and_the_pool_goes_on() -> None:
    pool = ForkPool(2, [echo, fail])
    got = gather(pool, [(1, "/dead/mount"), (0, 1)])
    pool.close()
    assert got[0][0] is False and "OSError" in got[0][1] and "/dead/mount" in got[0][1]
    assert got[1] == (True, 1)


def test_a_worker_that_dies_fails_every_unanswered_task_and_says_how() -> None:
    before = children()
    pool = ForkPool(2, [echo, die])
    got = gather(pool, [(0, 1), (1, None), *[(0, i) for i in range(20)]])
    failed = [why for ok, why in got if not ok]
    assert failed, got  # the dying one at least; those queued behind it too
    assert all("ended before answering" in why or "could not be sent" in why for why in failed)
    assert any("signal 9" in why for why in failed), failed
    late: list[tuple[bool, Any]] = []
    pool.submit(0, 1, lambda ok, a: late.append((ok, a)))  # a broken pool answers at once
    assert late and late[0][0] is False
    pool.close()
    assert children() == before


def test_a_walk_whose_worker_dies_is_a_clear_error_not_a_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: multiprocessing's BrokenProcessPool, which the CLI does not know (an internal error)."""
    roots = {}
    for i in range(80):
        (tmp_path / f"r{i}" / "a" / "b").mkdir(parents=True)
        roots[i] = str(tmp_path / f"r{i}")
    monkeypatch.setattr(tamer.treewalk, "batch_wire", die)  # the workers fork with it
    before = children()
    walker = Walker(workers=2)
    with pytest.raises(WalkFailed, match=r"ended before answering|could not be sent") as failed:
        walker.start(roots, last=True).result()
    assert isinstance(failed.value, TamerError) and failed.value.exit_code == 1
    assert "signal 9" in str(failed.value)
    assert children() == before


def test_kill_ends_workers_busy_with_a_task() -> None:
    before = children()
    pool = ForkPool(2, [time.sleep])
    answers: list[tuple[bool, Any]] = []
    for _ in range(4):
        pool.submit(0, 60, lambda ok, a: answers.append((ok, a)))
    start = time.monotonic()
    pool.kill()
    assert time.monotonic() - start < 10
    assert len(answers) == 4 and not any(ok for ok, _ in answers)
    assert children() == before


def hold_locks(stop: threading.Event) -> list[threading.Thread]:
    """Threads that keep taking the locks a forked child could inherit held: stderr's buffer, the import
    system's (importing and unloading a module), logging's handler lock."""
    import logging

    log = logging.getLogger("tamer-test-forkpool")
    log.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115
    log.propagate = False

    def write() -> None:
        while not stop.is_set():
            sys.stderr.write("")
            sys.stderr.flush()

    def imports() -> None:
        while not stop.is_set():
            sys.modules.pop("colorsys", None)
            __import__("colorsys")

    def logs() -> None:
        while not stop.is_set():
            log.warning("x" * 100)

    threads = [threading.Thread(target=f, daemon=True) for f in (write, imports, logs)]
    for t in threads:
        t.start()
    return threads


def test_forked_from_a_thread_beside_threads_holding_locks(tmp_path: Path) -> None:
    """As `tamer serve` walks: the workers forked by its refresh thread while other threads run."""
    roots = {}
    for i in range(70):
        for j in range(3):
            (tmp_path / f"r{i}" / f"c{j}" / "d").mkdir(parents=True)
            (tmp_path / f"r{i}" / f"c{j}" / "d" / "f").write_bytes(b"z" * (i * j))
        roots[f"r{i}"] = str(tmp_path / f"r{i}")
    expected = Walker(workers=1).start(roots, last=True).result()
    before = children()
    stop = threading.Event()
    threads = hold_locks(stop)
    results: list[Any] = []

    def refresh() -> None:
        for _ in range(15):
            walker = Walker(workers=2, fork_now=True)
            results.append(walker.start(roots, last=True).result())

    try:
        refresher = threading.Thread(target=refresh)
        refresher.start()
        refresher.join(timeout=120)
        assert not refresher.is_alive(), "a walk forked beside busy threads hung"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert results == [expected] * 15
    assert children() == before
