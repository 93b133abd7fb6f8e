"""The walk's workers hold only what they use: their own two pipe ends (and stdin, stdout, stderr), never
a descriptor the forking process had open then (its engine connection, its files, other workers' pipes).

Before, each worker inherited all of them: one holding the engine's socket kept that connection open
after the parent closed it, and its files (the state database, a lock) open after the parent let them go.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from tamer.engine import connect
from tamer.forkpool import ForkPool


def _fds(pid: int) -> dict[int, str]:
    """What /proc says each descriptor of `pid` is."""
    out = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:  # closed meanwhile
            continue
    return out


def _pid(_: object) -> int:
    return os.getpid()


def _settled_fds(pid: int) -> dict[int, str]:
    """A worker's descriptors once it has closed what it closes (first thing after the fork: at once)."""
    deadline = time.monotonic() + 5
    fds = _fds(pid)
    while len(fds) > 5 and time.monotonic() < deadline:
        time.sleep(0.01)
        fds = _fds(pid)
    return fds


def _peer_closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_workers_keep_only_their_own_pipes(test_engine: Any, tmp_path: Path) -> None:
    engine = connect(test_engine.host)
    engine.info()  # the engine's connection is open now
    held = open(tmp_path / "held-open", "w")  # noqa: SIM115 - a file the parent has open at the fork
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "s"))
    listener.listen(1)
    ours = socket.socket(socket.AF_UNIX)
    ours.connect(str(tmp_path / "s"))
    theirs, _ = listener.accept()  # `theirs` must see the connection end when the parent closes `ours`
    pool = ForkPool(3, [_pid])
    try:
        answers: list[Any] = []
        for _ in range(6):  # they work
            pool.submit(0, None, lambda ok, got: answers.append((ok, got)))
        pool.wait_idle()
        assert len(answers) == 6 and all(ok for ok, _ in answers)
        assert {got for _, got in answers} <= set(pool.pids)
        parent = _fds(os.getpid())
        assert held.fileno() in parent and ours.fileno() in parent
        pipes: set[str] = set()
        for pid in pool.pids:
            fds = _settled_fds(pid)
            extra = {fd: what for fd, what in fds.items() if fd > 2}
            # its task pipe's read end and its answer pipe's write end: two pipes, nothing else
            assert len(extra) == 2, f"worker {pid} holds {extra} (the parent: {parent})"
            assert all(what.startswith("pipe:") for what in extra.values()), extra
            assert not pipes & set(extra.values()), "a worker holds another worker's pipe"
            pipes |= set(extra.values())
            for fd in (0, 1, 2):
                assert fds.get(fd) == parent.get(fd)
        ours.close()
        assert _peer_closed(theirs), "a worker kept the parent's connection open"
    finally:
        pool.close()
        held.close()
        theirs.close()
        listener.close()
