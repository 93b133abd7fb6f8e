"""Worker processes forked by hand (os.fork and two pipes each) for the walk: no multiprocessing.

Why not concurrent.futures.ProcessPoolExecutor, as before: a warm `tamer df` forks its workers first
thing, while the second core idles, and importing that pool (concurrent.futures.process and
multiprocessing) took 28-30 ms of it; the pool also ran two threads of its own in the forking process
(its manager and its queue's feeder) that took the GIL from the reads done while the workers walk.

How: each worker has a pipe for its tasks and one for its answers; a message is a 4-byte length and
a `marshal` blob (builtin: nothing to import, and the walk's tasks and answers are only ints, strings,
tuples, lists, dicts and frozensets). A task names its handler by its index in the handlers fixed at
fork time, so no code travels. One thread of the forking process (the pump) writes the tasks and
reads the answers, with poll() on non-blocking pipes, so neither side can block the other however
big a message is; it keeps up to `depth` tasks queued in each worker's pipe, so a worker never waits
for the pump to be scheduled (the GIL may be busy for some ms), and hands out the rest as they
answer, which balances the workers. Each task's `done(ok, answer)` is called on the pump thread.

Failures: a worker whose task raised answers (False, "Type: message"); one that ends before answering
(killed, out of memory) fails every task not answered yet, and the pool with it: the caller gets an
error, never a figure with a part missing. Workers ignore Ctrl-C (the parent stops the walk and says
so), end with the process that forked them even when it is SIGKILLed (PR_SET_PDEATHSIG; and a closed
task pipe ends them), never print, and leave with os._exit (no exit hooks, no flushing of buffers
they share with the parent). close() and kill() reap them: no zombies. A worker keeps open only its two
pipe ends and stdin, stdout, stderr: every other descriptor the parent had at the fork (its engine
connection, its files, the other workers' pipes) is closed in the worker first thing.

Threads: fork copies only the forking thread, and a lock another thread held at that moment stays
held in the child forever. So the workers run only code that takes no such lock (no import, no print,
no logging: marshal, os, and the walk itself, whose modules are imported before the fork); `tamer df`
forks before it starts any thread, and `tamer serve`, which forks from its refresh thread while its
HTTP threads run, is safe for the same reason (a test forks beside threads holding the stderr,
import and logging locks).
"""

from __future__ import annotations

import _signal  # builtin, loaded at start: `signal` would import enum
import _thread
import gc
import marshal
import os
import select
import time

from tamer.errors import TamerError

TYPE_CHECKING = False  # not typing's (see tamer.background)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    Done = Callable[[bool, Any], None]

_LENGTH = 4  # bytes of a message's length, little-endian
_READ_SIZE = 1 << 20
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WalkFailed(TamerError):
    """A worker process of the walk failed or ended before answering: no figure is given for that walk."""


class _Worker:
    __slots__ = ("answers", "got", "inflight", "out", "pid", "tasks")

    def __init__(self, pid: int, tasks: int, answers: int) -> None:
        self.pid = pid
        self.tasks = tasks  # the write end of its task pipe (non-blocking)
        self.answers = answers  # the read end of its answer pipe (non-blocking)
        self.out = bytearray()  # written to `tasks` as the pipe takes it
        self.inflight: list[Done] = []  # its tasks not answered yet, oldest first
        self.got = bytearray()  # read from `answers`, not yet a whole message


class ForkPool:
    """`workers` processes forked now, each running `handlers[kind](payload)` for the tasks it is sent.

    Parameters: workers: how many (>= 1); handlers: the functions a task may name (by index), each
    taking and returning what marshal can carry; depth: tasks queued in a worker's pipe at once.
    Raises OSError when a pipe or a fork fails (nothing is left behind).

    Example:
        >>> pool = ForkPool(2, [len])
        >>> answers = []
        >>> pool.submit(0, "four", lambda ok, n: answers.append((ok, n)))
        >>> pool.wait_idle(); pool.close(); answers
        [(True, 4)]
    """

    def __init__(self, workers: int, handlers: Sequence[Callable[[Any], Any]], *, depth: int = 2) -> None:
        if workers < 1:
            raise ValueError(f"a pool needs at least one worker, got {workers}")
        self._handlers = tuple(handlers)
        self._depth = depth
        self._queue: list[tuple[bytes, Done]] = []  # not handed out yet, oldest first (under _lock)
        self._head = 0  # the next one of _queue to hand out
        self._lock = _thread.allocate_lock()
        self._workers: list[_Worker] = []
        self._broken: str | None = None
        self._closing = False
        self._idle = _thread.allocate_lock()  # held while tasks are queued or in flight
        self._pump_ended = _thread.allocate_lock()
        setup = _worker_setup()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        # Ctrl-C is held back while the workers are forked: a KeyboardInterrupt raised in a new worker before
        # it is inside its try (on the fork's return) would unwind the parent's frames in the worker, which
        # then says "interrupted" (a second --json envelope on the shared stdout: seen) and ends as the
        # parent would. Each worker ignores SIGINT before it lets it through (a held one is then dropped);
        # the parent gets a held one once every worker is in self._workers (reaped if it interrupts).
        held = _signal.pthread_sigmask(_signal.SIG_BLOCK, (_signal.SIGINT,))
        try:
            try:
                for _ in range(workers):
                    self._workers.append(self._fork(setup))
            finally:
                _signal.pthread_sigmask(_signal.SIG_SETMASK, held)
        except BaseException:
            self._reap(kill=True)
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self._pump_ended.acquire()
        self._pump_thread = _thread.start_new_thread(self._pump, ())

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def _fork(self, setup: Callable[[int], bool]) -> _Worker:
        parent = os.getpid()
        open_max = _open_max()
        task_r, task_w = os.pipe2(os.O_CLOEXEC)
        try:
            answer_r, answer_w = os.pipe2(os.O_CLOEXEC)
        except BaseException:
            os.close(task_r)
            os.close(task_w)
            raise
        try:
            pid = os.fork()  # (SIGINT held back: see __init__)
        except BaseException:
            for fd in (task_r, task_w, answer_r, answer_w):
                os.close(fd)
            raise
        if pid == 0:  # the worker: never returns
            code = 1
            try:
                try:  # noqa: SIM105  (no contextlib: see _wake)
                    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
                except ValueError:  # not the main thread (it is, after a fork, on CPython)
                    pass
                _signal.pthread_sigmask(_signal.SIG_UNBLOCK, (_signal.SIGINT,))
                # only its own two ends stay open (and stdin/stdout/stderr, which it never uses, as any
                # process has them): a worker holding another's task pipe would keep that one from seeing
                # it closed (the end of the pool, or of the parent); one holding the parent's engine
                # connection would keep it open after the parent closed it, and its files (the state
                # database, a lock, an archive being written) open after the parent let them go
                _close_all_but((0, 1, 2, task_r, answer_w), open_max)
                # no collection of the parent's objects here: it would touch (copy) all of their pages,
                # and could run a finalizer that writes to a file the parent shares
                gc.disable()
                if setup(parent):
                    _serve(task_r, answer_w, self._handlers)
                    code = 0
            finally:
                os._exit(code)
        os.close(task_r)
        os.close(answer_w)
        os.set_blocking(task_w, False)
        os.set_blocking(answer_r, False)
        return _Worker(pid, task_w, answer_r)

    def submit(self, kind: int, payload: Any, done: Done) -> None:
        """Queue `handlers[kind](payload)`; `done(True, answer)` or `done(False, why)` is called later, on
        the pump thread (at once, on this one, when the pool is broken or closed). Any thread may submit,
        a `done` too."""
        message = marshal.dumps((kind, payload))
        with self._lock:
            why = self._broken or ("the pool was closed" if self._closing else None)
            if why is None:
                if self._head == len(self._queue) and not any(w.inflight for w in self._workers):
                    self._idle.acquire(False)  # not idle any more (released when all have answered)
                self._queue.append((len(message).to_bytes(_LENGTH, "little") + message, done))
        if why is not None:
            done(False, why)
            return
        if _thread.get_ident() != self._pump_thread:  # on the pump (a `done` submitting): it hands out next
            self._wake()

    def wait_idle(self) -> None:
        """Wait until every task submitted so far has answered (or failed)."""
        with self._idle:
            pass

    def close(self) -> None:
        """Let the workers go once their tasks are done (call after the answers you wait for), and reap them."""
        self._stop(kill=False)

    def kill(self) -> None:
        """End the workers now (SIGKILL: they only read, so nothing is lost, and one may be stuck in a stat
        of a dead network mount); tasks not answered fail. Reaps them."""
        self._stop(kill=True)

    def _stop(self, *, kill: bool) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            kill = kill or self._broken is not None  # a worker may still be walking for nobody
        if kill:
            for w in self._workers:
                _kill(w.pid)
            self._break("the walk was stopped")
        self._wake()
        with self._pump_ended:  # the pump ends once nothing is queued or in flight (at once when killed)
            pass
        self._reap(kill=False)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _reap(self, *, kill: bool) -> None:
        for w in self._workers:
            for fd in (w.tasks, w.answers):
                if fd >= 0:
                    os.close(fd)
            w.tasks = w.answers = -1  # a closed task pipe ends an idle worker
            if kill:
                _kill(w.pid)
            if w.pid > 0:
                _wait(w.pid)
                w.pid = 0

    def _wake(self) -> None:
        # try/except, not contextlib.suppress, here: contextlib imports collections, some 2-3 ms of a df's
        # start before tamer.early forks the workers
        try:  # noqa: SIM105
            os.write(self._wake_w, b"\0")
        except OSError:  # full: the pump is to wake anyway; closed: it has ended
            pass

    def _break(self, why: str) -> None:
        """Fail every task not answered, and every later one, with `why` (the caller's error message)."""
        with self._lock:
            if self._broken is None:
                self._broken = why
            failed = [done for _, done in self._queue[self._head :]]
            self._head = len(self._queue)
            for w in self._workers:
                failed += w.inflight
                w.inflight = []
                w.out.clear()
            self._idle.acquire(False)
            self._idle.release()
        for done in failed:
            done(False, why)

    # -- the pump thread ---------------------------------------------------------------------------
    def _pump(self) -> None:
        try:
            self._run_pump()
        except BaseException as exc:  # a bug here must fail the waiting walks, not hang them
            self._break(f"the walk's coordinator failed: {type(exc).__name__}: {exc}")
        finally:
            self._pump_ended.release()

    def _run_pump(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        by_answers = {w.answers: w for w in self._workers}
        by_tasks = {w.tasks: w for w in self._workers}
        for w in self._workers:
            poller.register(w.answers, select.POLLIN)
        writing: set[int] = set()
        while True:
            self._hand_out()
            with self._lock:
                if self._broken is not None:
                    return  # every task failed (see _break); close() or kill() reaps the workers
                if self._head == len(self._queue) and not any(w.inflight for w in self._workers):
                    self._idle.acquire(False)
                    self._idle.release()
                    if self._closing:
                        return
            for w in self._workers:
                if w.out and w.tasks not in writing:
                    poller.register(w.tasks, select.POLLOUT)
                    writing.add(w.tasks)
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                elif fd in by_answers:
                    self._read(by_answers[fd])
                elif fd in by_tasks:
                    w = by_tasks[fd]
                    self._write(w)
                    if not w.out:
                        poller.unregister(fd)
                        writing.discard(fd)
                if self._broken is not None:
                    break

    def _hand_out(self) -> None:
        """Queue tasks in the workers' pipes, the least busy first, up to `depth` each."""
        while True:
            with self._lock:
                if self._broken is not None or self._head == len(self._queue):
                    return
                w = min(self._workers, key=lambda w: len(w.inflight))
                # a task queued behind a busy worker's is one the next idle worker cannot take: only
                # while more tasks wait than there are workers (measured on the df bench host: the
                # workers ended 20-40 ms apart, one core idle, when the last ones were queued so)
                waiting = len(self._queue) - self._head
                if len(w.inflight) >= (self._depth if waiting > len(self._workers) else 1):
                    return
                message, done = self._queue[self._head]
                self._head += 1
                if self._head == len(self._queue):  # all handed out: let the queue go
                    self._queue = []
                    self._head = 0
                w.inflight.append(done)
                w.out += message
            self._write(w)

    def _write(self, w: _Worker) -> None:
        try:
            sent = os.write(w.tasks, w.out)
        except BlockingIOError:
            return
        except OSError as exc:  # EPIPE: it ended (its answer pipe says how)
            self._lost(w, f"could not be sent a task ({exc.strerror})")
            return
        del w.out[:sent]

    def _read(self, w: _Worker) -> None:
        try:
            data = os.read(w.answers, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._lost(w, "ended before answering")
            return
        w.got += data
        while len(w.got) >= _LENGTH:
            size = int.from_bytes(w.got[:_LENGTH], "little")
            if len(w.got) < _LENGTH + size:
                return
            ok, answer = marshal.loads(w.got[_LENGTH : _LENGTH + size])
            del w.got[: _LENGTH + size]
            with self._lock:
                if not w.inflight:  # failed already (the pool broke meanwhile)
                    continue
                done = w.inflight.pop(0)
            try:
                done(ok, answer)
            except Exception as exc:  # the caller's bug: its walk fails, and every other (none is sure now)
                why = f"adding up a worker's answer failed: {type(exc).__name__}: {exc}"
                try:
                    done(False, why)
                finally:
                    self._break(why)

    def _lost(self, w: _Worker, what: str) -> None:
        pid = w.pid
        # its pipes close before the kernel has it ready to be reaped: a moment's wait says how it ended
        status = _wait(pid, block=False)
        for _ in range(100):
            if status is not None:
                break
            time.sleep(0.01)
            status = _wait(pid, block=False)
        if status is not None:
            w.pid = 0  # reaped
        self._break(
            f"a worker process of the walk (pid {pid}) {what}{_ending(status)}; no figure is given for a "
            "walk with a part missing, and nothing was changed; run the command again (a worker the "
            "kernel's out-of-memory killer ended: see `dmesg`)"
        )


def _open_max() -> int:
    """One past the highest descriptor this process may hold (looked up before the fork)."""
    try:
        limit = os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        limit = -1
    return limit if limit > 0 else 1 << 20


def _close_all_but(keep: tuple[int, ...], open_max: int) -> None:
    """Close every descriptor but `keep` (os.closerange: one close_range() call on Linux)."""
    low = 0
    for fd in sorted(set(keep)):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, max(open_max, low))


def _ending(status: int | None) -> str:
    if status is None:
        return ""
    if os.WIFSIGNALED(status):
        return f" (killed by signal {os.WTERMSIG(status)})"
    return f" (exit status {os.waitstatus_to_exitcode(status)})"


def _kill(pid: int) -> None:
    if pid > 0:
        try:  # noqa: SIM105  (no contextlib: see _wake)
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _wait(pid: int, *, block: bool = True) -> int | None:
    """Reap `pid`: its wait status, or None when it has not ended (block=False) or was reaped already."""
    if pid <= 0:
        return None
    try:
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None
    return status if got == pid else None


def _worker_setup() -> Callable[[int], bool]:
    """What a worker does first (looked up before the fork: the worker imports nothing): ignore Ctrl-C,
    be killed when the forking thread's process ends, and say whether that process is still its parent."""
    from tamer.compiled import load

    native = load("tamer._cwalk", None)
    if native is not None and hasattr(native, "end_with_parent"):
        setup: Callable[[int], bool] = native.end_with_parent
        return setup
    import ctypes  # imported here, before the fork (the C helper was not built)
    import signal

    def setup_python(parent: int) -> bool:
        try:  # noqa: SIM105  (no contextlib: see _wake)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread here: Ctrl-C's traceback is the cost
            pass
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # not Linux: the workers end with their task pipes
            pass
        return os.getppid() == parent

    return setup_python


def _serve(tasks: int, answers: int, handlers: tuple[Callable[[Any], Any], ...]) -> None:
    """A worker's loop: read a task, run it, write its answer, until the task pipe closes."""
    while True:
        head = _read_exact(tasks, _LENGTH)
        if head is None:
            return  # the pool closed, or the parent ended
        body = _read_exact(tasks, int.from_bytes(head, "little"))
        if body is None:
            return
        try:
            kind, payload = marshal.loads(body)
            message = marshal.dumps((True, handlers[kind](payload)))
        except Exception as exc:  # the caller's to report; a worker never prints
            message = marshal.dumps((False, f"{type(exc).__name__}: {exc}"))
        data = len(message).to_bytes(_LENGTH, "little") + message
        view = memoryview(data)
        while view:
            view = view[os.write(answers, view) :]


def _read_exact(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None at its end."""
    parts: list[bytes] = []
    while size > 0:
        data = os.read(fd, min(size, _READ_SIZE))
        if not data:
            return None
        parts.append(data)
        size -= len(data)
    return b"".join(parts)
