"""A `tamer df`'s first engine reads and its walk's workers, started before its command line is parsed.

Parsing a df's command line (argparse, the command's module and what it imports) is some 25 ms of a
warm df; the walk cannot start before the workers are forked (4 ms) and the engine has said where its
data-root is and which volumes it has (its info's answer took 15-20 ms on a host of 1,003 containers).
So when the command line is plainly a df on a local socket (tamer.cli.lean says when), those are started
first, here, and read_raw_snapshot takes them up: the parse runs while the engine answers.

Nothing here decides anything. Whatever the parse then says (a usage error, --help, another host), the
started work is dropped and the command runs as it would have: the requests only read, and the workers
only walk what they are handed (nothing yet) and are reaped when dropped (or end with the process).
tamer.cli.lean starts only for a command line argparse takes as that df (a test checks), so a usage
error never meets the engine. When the connect fails, the failure is kept, and take() raises it for the
command, which says it as it says its own connect's: connecting a second time would double every failed
connect, a hung engine's 15 s wait among them. Each thread has its own start: another thread of an
embedding caller never takes or drops it.
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # not typing's: imported before the command line is parsed
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from tamer.engine import Engine
    from tamer.local_walk import VolumeWalk
    from tamer.sizes import Walker

    JSON = dict[str, Any]


class EarlyReads:
    """The engine, the workers and the two first reads of a df, started ahead of it (see the module)."""

    __slots__ = ("engine", "info", "volume_walk", "volumes", "walker")

    def __init__(
        self,
        engine: Engine,
        walker: Walker,
        info: Callable[[], JSON],
        volumes: Callable[[], list[JSON]],
    ) -> None:
        self.engine = engine
        self.walker = walker
        self.info = info
        self.volumes = volumes
        # the volumes' walk, started on a thread as soon as the engine answers (see start(walk_volumes=)):
        # its VolumeWalk, or None when the data-root is not readable here
        self.volume_walk: Callable[[], VolumeWalk | None] | None = None

    def drop(self) -> None:
        """Not taken up: let the workers go (the reads' threads end with their answers)."""
        self.walker.abandon()


class _Started:
    """What start() began for the engine at `where`: its reads and workers, or the error its connect met."""

    __slots__ = ("failed", "reads", "where")

    def __init__(self, where: str, reads: EarlyReads | None, failed: BaseException | None = None) -> None:
        self.where = where
        self.reads = reads
        self.failed = failed

    def drop(self) -> None:
        if self.reads is not None:
            self.reads.drop()


_started: dict[int, _Started] = {}  # by the thread that started it (the one that parses and runs the df)


def start(host: str | None, *, walk_volumes: bool = False) -> None:
    """Start a df's first reads of the engine at `host` (as -H gives it; None: DOCKER_HOST, else the
    default socket), when that is a unix socket. A failed connect is kept for take(); any other failure
    leaves nothing started. `walk_volumes` (a df that shows no progress, which the volumes' walk would
    report to): also start walking the volumes once the engine has answered, as read_raw_snapshot would
    (same call, same answers), on a thread while the command line is parsed."""
    drop_unused()  # what an earlier command on this thread left, if anything: never this command's
    me = _thread.get_ident()
    try:
        from tamer.engine import connect
        from tamer.engine.client import resolve_host

        where = resolve_host(host)
        if not where.startswith("unix://"):
            return
    except Exception:  # the command meets it again, and says it its way
        return
    try:
        engine = connect(host)
    except Exception as exc:  # the command's own connect would meet it: take() hands it over
        _started[me] = _Started(where, None, exc)
        return
    try:
        from tamer.sizes import Walker

        walker = Walker(fork_now=True)  # forked before the reads' threads start (see tamer.forkpool)
    except Exception:
        return
    try:
        reads = EarlyReads(engine, walker, engine.ahead(engine.info), engine.ahead(engine.volumes))
    except BaseException as exc:  # no thread to be had, or Ctrl-C: the workers go now
        walker.abandon()
        if isinstance(exc, Exception):
            return
        raise
    if walk_volumes:
        try:
            reads.volume_walk = engine.ahead(lambda: _walk_volumes(where, reads))
        except BaseException as exc:
            walker.abandon()
            if isinstance(exc, Exception):
                return
            raise
    _started[me] = _Started(where, reads)


def _walk_volumes(where: str, reads: EarlyReads) -> VolumeWalk | None:
    """read_raw_snapshot's start of the volumes' walk, on the early answers (None: not local here)."""
    from tamer.facts import why_not_local
    from tamer.local_walk import start_volume_walk

    info = reads.info()
    data_root = str(info.get("DockerRootDir", ""))
    if why_not_local(where, data_root, str(info.get("ID") or "")) is not None:
        return None
    return start_volume_walk(reads.walker, data_root, str(info.get("Driver", "")), reads.volumes(), None)


def take(host: str | None) -> EarlyReads | None:
    """What start() began on this thread for the engine at `host`, if anything (once); the error its
    connect met is raised here, as the command's own connect would raise it. Started for another engine,
    it is dropped."""
    started = _started.pop(_thread.get_ident(), None)
    if started is None:
        return None
    try:
        from tamer.engine.client import resolve_host

        same = started.where == resolve_host(host)
    except Exception:  # a host the command will refuse, its way
        same = False
    if not same:
        started.drop()
        return None
    if started.failed is not None:
        raise started.failed
    return started.reads


def drop_unused() -> None:
    """Drop what start() began on this thread and nobody took (the parse refused the command line): in a
    process that goes on (a test, an embedding caller), its workers would wait on their pipes until it ends."""
    started = _started.pop(_thread.get_ident(), None)
    if started is not None:
        started.drop()
