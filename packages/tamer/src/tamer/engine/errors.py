"""One translator from docker-py / transport exceptions to TamerError subclasses.

It never imports docker-py or requests itself: an exception can only be one of theirs when
they were imported already (the lean transport raises EngineHTTPError and OS errors), so
their classes are looked up in sys.modules. Start-up stays free of their import cost.
"""

from __future__ import annotations

import errno
import sys

from tamer.engine.transport import EngineHTTPError
from tamer.errors import EngineError, EnginePermissionDenied, EngineUnreachable, ObjectNotFound, TamerError

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms, a fifth of a `docker images`
if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType, TracebackType
    from typing import Any

START_HINT = (
    "start one (`sudo systemctl start docker`, or `sudo dockerd &`), "
    "or point DOCKER_HOST at a running engine (e.g. DOCKER_HOST=unix:///var/run/docker.sock)"
)

# an engine behind ssh:// is on another machine: its volumes, logs and data-root can only be read there
SSH_HINT = (
    "to read a host over ssh, run tamer there: `tamer fleet df --hosts FILE` (FILE lists "
    "ssh://user@host; see `tamer fleet --help`) reads its volumes, logs and data-root where they are, "
    "as `ssh HOST tamer df` does"
)


NOT_RESPONDING_HINT = (
    "it accepts connections but does not answer: it is running but hung or overloaded; check it "
    "(`docker -H {where} info`, `systemctl status docker`, `journalctl -u docker`), restart it if it stays "
    "stuck (`sudo systemctl restart docker`), then retry"
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo += [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]
        todo += [c for c in (cur.__cause__, cur.__context__) if c is not None]


def _loaded(name: str) -> ModuleType | None:
    """A module if something already imported it (then its exceptions can occur), else None."""
    return sys.modules.get(name)


def _is(exc: BaseException, module: ModuleType | None, *names: str) -> bool:
    if module is None:
        return False
    classes: tuple[Any, ...] = tuple(getattr(module, n) for n in names)
    return isinstance(exc, classes)


def _timed_out(exc: BaseException) -> bool:
    # docker-py wraps the first request's timeout in a DockerException; look through the chain
    requests_exceptions = _loaded("requests.exceptions")
    return any(
        (isinstance(e, TimeoutError) or _is(e, requests_exceptions, "Timeout"))
        and not _is(e, requests_exceptions, "ConnectTimeout")
        for e in _chain(exc)
    )


def _caused_by_permission(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, PermissionError) or getattr(cur, "errno", None) == errno.EACCES:
            return True
        if "Permission denied" in str(cur):
            return True
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException) and _caused_by_permission(arg):
                return True
        cur = cur.__cause__ or cur.__context__
    return False


def translate(exc: BaseException, *, where: str, what: str = "") -> TamerError:
    """Turn an exception raised while talking to the engine into a TamerError.

    Parameters: `exc` the original exception; `where` the engine address we used
    (shown to the user); `what` the operation, e.g. "inspect container web".
    """
    doing = f" while trying to {what}" if what else ""
    if isinstance(exc, TamerError):
        return exc
    if _caused_by_permission(exc):
        return EnginePermissionDenied(
            f"permission denied on the Docker socket at {where}{doing}; "
            "run as root, or add your user to the `docker` group (`sudo usermod -aG docker $USER`, then log in again)"
        )
    if _timed_out(exc):
        return EngineUnreachable(
            f"the Docker engine at {where} did not answer in time{doing} ({_short(exc)}); "
            + NOT_RESPONDING_HINT.format(where=where)
        )
    docker_errors, requests_exceptions = _loaded("docker.errors"), _loaded("requests.exceptions")
    if (isinstance(exc, EngineHTTPError) and exc.status == 404) or _is(exc, docker_errors, "NotFound"):
        return ObjectNotFound(f"not found{doing}: {_explanation(exc)}; run `tamer ls` to see what exists")
    if isinstance(exc, EngineHTTPError) or _is(exc, docker_errors, "APIError"):
        return EngineError(f"the engine at {where} refused{doing}: {_explanation(exc)}")
    hint = SSH_HINT if where.startswith("ssh://") else START_HINT
    if (
        isinstance(exc, FileNotFoundError | ConnectionError)
        or _is(exc, docker_errors, "DockerException")
        or _is(exc, requests_exceptions, "ConnectionError")
    ):
        return EngineUnreachable(f"no Docker engine answered at {where}{doing} ({_why(exc, where)}); {hint}")
    if isinstance(exc, OSError) or _is(exc, requests_exceptions, "RequestException"):
        return EngineUnreachable(
            f"talking to the Docker engine at {where} failed{doing} ({_why(exc, where)}); {hint}"
        )
    return EngineError(f"unexpected error from the engine at {where}{doing}: {_short(exc)}")


def _explanation(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


def _why(exc: BaseException, where: str) -> str:
    """The exception in short; through ssh://, what ssh itself said when it failed (the real reason)."""
    ssh = _loaded("tamer.engine.ssh")  # loaded whenever an ssh:// connection was made
    said = ssh.why_ssh_failed(where) if ssh is not None and where.startswith("ssh://") else None
    return f"{said}; {_short(exc)}" if said else _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


class translated:
    """Context manager: re-raise anything from docker-py as the matching TamerError.

    A class, not contextlib.contextmanager: contextlib (with collections and functools) is a
    millisecond of every command's start, for this one use."""

    __slots__ = ("what", "where")

    def __init__(self, where: str, what: str = "") -> None:
        self.where = where
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, TamerError) or not isinstance(exc, Exception):
            return  # nothing to translate: whatever it is goes on as it was
        # the one place where engine exceptions are caught broadly
        raise translate(exc, where=self.where, what=self.what) from exc
