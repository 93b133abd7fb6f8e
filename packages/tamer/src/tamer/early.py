"""A `tamer df`'s first engine reads and its walk's workers, started before its command line is parsed.

Parsing a df's command line (argparse, the command's module and what it imports) is some 25 ms of a
warm df; the walk cannot start before the workers are forked (4 ms) and the engine has said where its
data-root is and which volumes it has (its info's answer took 15-20 ms on a host of 1,003 containers).
So when the command line is plainly a df on a local socket (tamer.cli.lean says when), those are started
first, here, and read_raw_snapshot takes them up: the parse runs while the engine answers.

Nothing here decides anything. Whatever the parse then says (a usage error, --help, another host), the
started work is dropped and the command runs as it would have: the requests only read, the workers only
walk what they are handed (nothing yet) and end with the process, and a failure here (no engine, no
permission) is left for the command itself to meet and report.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: imported before the command line is parsed
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from tamer.engine import Engine
    from tamer.sizes import Walker

    JSON = dict[str, Any]


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


_started: list[EarlyReads] = []


def start(host: str | None) -> None:
    """Start a df's first reads of the engine at `host` (as -H gives it; None: DOCKER_HOST, else the
    default socket), when that is a unix socket; any failure leaves nothing started."""
    try:
        from tamer.engine import connect
        from tamer.engine.client import resolve_host

        if not resolve_host(host).startswith("unix://"):
            return
        engine = connect(host)
        from tamer.sizes import Walker

        walker = Walker(fork_now=True)  # forked before the reads' threads start (see tamer.forkpool)
    except Exception:  # the command meets it again, and says it its way
        return
    _started.append(EarlyReads(engine, walker, engine.ahead(engine.info), engine.ahead(engine.volumes)))


def take(host: str | None) -> EarlyReads | None:
    """What start() began for the engine at `host`, if anything (once); started for another engine, it
    is dropped."""
    if not _started:
        return None
    early = _started.pop()
    from tamer.engine.client import resolve_host

    try:
        same = early.engine.where == resolve_host(host)
    except Exception:  # a host the command will refuse, its way
        same = False
    if not same:
        early.drop()
        return None
    return early


def drop_unused() -> None:
    """Drop what start() began and nobody took (the parse refused the command line): in a process that
    goes on (a test, an embedding caller), its workers would wait on their pipes until it ends."""
    while _started:
        _started.pop().drop()
