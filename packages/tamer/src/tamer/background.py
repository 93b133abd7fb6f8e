"""One read started on a thread while the caller does other work; its answer (or its exception) on demand.

The engine's slowest answers (the container list: 0.13 s at 2,000 containers on engine 20.10) are a
wait on a socket: asked first, on a thread, they overlap with reading /info or the records on disk.
A bare thread, not concurrent.futures: that imports logging, more than the lean listings can pay.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # not typing's: the lean `tamer ls` must not import typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")


def in_background(read: Callable[[], T]) -> Callable[[], T]:
    """Start `read()` on a thread now; the returned function waits for it and returns its answer, or
    raises what it raised (on the caller's thread, so the usual translation applies)."""
    answer: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(read())
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if failed:
            raise failed[0]
        return answer[0]

    return result
