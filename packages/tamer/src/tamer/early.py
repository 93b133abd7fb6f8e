"""A `tamer df`'s first engine reads and its walk's workers, started before its command line is parsed.

Parsing a df's command line (argparse, the command's module and what it imports) is some 25 ms of a
warm df; the walk cannot start before the workers are forked (4 ms) and the engine has said where its
data-root is and which volumes it has (its info's answer took 15-20 ms on a host of 1,003 containers).
So when the command line is plainly a df on a local socket (tamer.cli.lean says when), those are started
first, here, and read_raw_snapshot takes them up: the parse runs while the engine answers.

Nothing here decides anything. Whatever the parse then says (a usage error, --help, another host), the
started work is dropped and the command runs as it would have: the requests only read, and the workers
only walk what they are handed (nothing yet) and are reaped when dropped (or end with the process).

Only the fork is done on the caller's thread (before any thread starts: see tamer.forkpool); the connect
and the reads run on a thread, so the parse never waits for the engine: a command line the parse then
refuses costs no wait on an engine that is slow or hung. When the parsed command names the engine that
was started on, take() hands it the connect's outcome, a failure too (the command says it as it says its
own connect's): connecting a second time would double every failed connect, a hung engine's 15 s wait
among them. Each thread has its own start: another thread of an embedding caller never takes or drops it.
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # not typing's: imported before the command line is parsed
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from tamer.engine import Engine
    from tamer.sizes import Walker

    JSON = dict[str, Any]
    Begun = tuple[Engine, Callable[[], JSON], Callable[[], list[JSON]]]


class EarlyReads:
    """The engine, the workers and the two first reads of a df, started ahead of it (see the module)."""

    __slots__ = ("engine", "info", "volumes", "walker")

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

    def drop(self) -> None:
        """Not taken up: let the workers go (the reads' threads end with their answers)."""
        self.walker.abandon()


class _Started:
    """What start() began: the engine's address, the forked workers, and the connect and first reads under
    way on a thread (`begun()` waits for them: the engine and the two reads, or raises the connect's error)."""

    __slots__ = ("begun", "walker", "where")

    def __init__(self, where: str, walker: Walker, begun: Callable[[], Begun]) -> None:
        self.where = where
        self.walker = walker
        self.begun = begun

    def drop(self) -> None:
        self.walker.abandon()  # the connect's thread ends with its answer (or its timeout): it only reads


_started: dict[int, _Started] = {}  # by the thread that started it (the one that parses and runs the df)


def _begin(host: str | None) -> Begun:
    from tamer.engine import connect

    engine = connect(host)
    return engine, engine.ahead(engine.info), engine.ahead(engine.volumes)


def start(host: str | None) -> None:
    """Start a df's first reads of the engine at `host` (as -H gives it; None: DOCKER_HOST, else the
    default socket), when that is a unix socket; returns at once (the connect runs on a thread), and a
    failure to start leaves nothing started."""
    drop_unused()  # what an earlier command on this thread left, if anything: never this command's
    try:
        from tamer.background import in_background
        from tamer.engine.client import resolve_host

        where = resolve_host(host)
        if not where.startswith("unix://"):
            return
        from tamer.sizes import Walker

        walker = Walker(fork_now=True)  # forked before the connect's thread starts (see tamer.forkpool)
    except Exception:  # the command meets it again, and says it its way
        return
    me = _thread.get_ident()
    try:
        _started[me] = _Started(where, walker, in_background(lambda: _begin(host)))
    except BaseException as exc:  # no thread to be had, or Ctrl-C: the workers go now
        _started.pop(me, None)
        walker.abandon()
        if not isinstance(exc, Exception):
            raise


def take(host: str | None) -> EarlyReads | None:
    """What start() began on this thread for the engine at `host`, if anything (once): the engine, or the
    error its connect met (raised here, as the command's own connect would raise it). Started for another
    engine, it is dropped."""
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
    try:
        engine, info, volumes = started.begun()
    except BaseException:
        started.drop()
        raise
    return EarlyReads(engine, started.walker, info, volumes)


def drop_unused() -> None:
    """Drop what start() began on this thread and nobody took (the parse refused the command line): in a
    process that goes on (a test, an embedding caller), its workers would wait on their pipes until it ends."""
    started = _started.pop(_thread.get_ident(), None)
    if started is not None:
        started.drop()
