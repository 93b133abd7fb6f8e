"""One read started on a thread while the caller does other work; its answer (or its exception) on demand.

The engine's slowest answers (the container list: 0.13 s at 2,000 containers on engine 20.10) are a
wait on a socket: asked first, on a thread, they overlap with reading /info or the records on disk.
A bare _thread, not threading (which imports functools and collections: some 3 ms before a lean
`tamer ls` can send its first request) nor concurrent.futures (which imports logging as well).
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # not typing's: the lean `tamer ls` must not import typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")


def in_background(read: Callable[[], T]) -> Callable[[], T]:
    """Start `read()` on a thread now; the returned function waits for it and returns its answer, or
    raises what it raised (on the caller's thread, so the usual translation applies). Like a daemon
    thread, it does not keep the process alive at exit."""
    answer: list[T] = []
    failed: list[BaseException] = []
    running = _thread.allocate_lock()
    running.acquire()  # released by the thread when `read` is done

    def run() -> None:
        try:
            answer.append(read())
        except BaseException as exc:  # handed to the caller
            failed.append(exc)
        finally:
            running.release()

    _thread.start_new_thread(run, ())

    def result() -> T:
        with running:  # waits for the thread (Ctrl-C interrupts the wait); asked again, at once
            pass
        if failed:
            raise failed[0]
        return answer[0]

    return result
