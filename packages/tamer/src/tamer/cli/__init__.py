"""The `tamer` command line: parses arguments, calls the library, renders the result.

main() is the command as a function (a test or an embedding caller gets its exit code back); run() is
the process's entry (bin/tamer, `python -m tamer`): main(), then the process ends with main's code.

Ctrl-C: exit 130 and one line ("tamer: error: interrupted", or the --json envelope), whenever it
lands. Python's own handling gets three moments wrong, each seen in real runs (tests/integration/
test_s8_ctrl_c.py sends SIGINT at random moments to many real `tamer df` runs):
- a second Ctrl-C (a user pressing twice, a terminal's Ctrl-C reaching the whole process group again)
  while the first one's cleanup and message run: a KeyboardInterrupt raised there, uncaught, makes
  Python print a traceback and end the process by SIGINT (it re-raises the signal to say it died of
  it: subprocess's -2);
- one that lands after main returned but before sys.exit ran: the same;
- one that lands once the interpreter's shutdown has begun: Python puts SIGINT back to its default
  action before it tears the modules down (10-40 ms after a df, whose objects are many), so the
  process is ended by SIGINT after it printed its output and chose its code.
So run() takes SIGINT itself: the first one raises KeyboardInterrupt (main says it and returns 130)
and from then on SIGINT is ignored (the exit is on its way: the walk's workers are killed, not waited
for, and end with this process anyway, PR_SET_PDEATHSIG); once main has returned, SIGINT is ignored
too, through the shutdown (an ignored signal stays ignored there). What no code of ours can cover:
a Ctrl-C in the interpreter's own first milliseconds, before it runs bin/tamer (it ends by SIGINT,
which a shell reports as 130 too, or with Python's traceback from its site import).
"""

from __future__ import annotations

import _thread
import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import NoReturn

__all__ = ["exit_interrupted", "main", "run"]

# True in the command's own process (run()), which ends when the command returns: what lives then may be
# left to the exit (tamer.cli.inspect_cmds freezes a df's objects); False for a caller of main() that goes on
process_ends_after = False

INTERRUPTED = 130  # the exit code of a run Ctrl-C stopped (128 + SIGINT, as a shell reports a SIGINT death)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `tamer`; returns the exit code (0 ok, 1 error, 2 usage, 3 partial, 130 interrupted).

    A plain listing runs on the lean path (tamer.cli.lean), everything else through argparse
    (tamer.cli.app), imported only then."""
    args = list(sys.argv[1:] if argv is None else argv)
    from tamer.cli.lean import run_lean

    code = run_lean(args)
    if code is not None:
        return code
    try:
        from tamer.cli.app import main as full  # some 20-30 ms: a Ctrl-C may land in it
    except KeyboardInterrupt:  # said as the full CLI says it, not as a traceback
        _drop_early()
        return _say_interrupted(args)
    try:
        return full(args)
    finally:
        _drop_early()  # what run_lean started for a df the parse then refused: its workers go


def run() -> NoReturn:
    """The process's entry: main() on sys.argv with SIGINT taken as the module says, then exit with its code."""
    import _signal  # builtin and loaded at start: `signal` would import enum (some 5 ms of every command)

    global process_ends_after
    process_ends_after = True
    code: int | None = None
    try:
        try:
            # only where Ctrl-C is Python's usual KeyboardInterrupt: one started with SIGINT ignored (a
            # script's `tamer ... &`, nohup) keeps ignoring it, as Python itself would
            if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
                _signal.signal(_signal.SIGINT, _interrupt_once)
            code = main()
        finally:
            # from here to the end of the shutdown a Ctrl-C changes nothing: the code is chosen
            ignore_sigint()
    except KeyboardInterrupt:  # it landed outside main's own handling (its first lines, or its return)
        pass
    if code is None:  # interrupted before main chose a code
        _drop_early()
        code = _say_interrupted()
    if code == INTERRUPTED:
        # what a Ctrl-C stopped may have left threads running (a df's early reads, its volumes' walk, in C
        # at times): the interpreter's shutdown under them crashed (SIGSEGV, malloc's abort) in real runs.
        # The command has said its line and undone what it does on Ctrl-C: the process ends here.
        _flush()
        os._exit(INTERRUPTED)
    sys.exit(code)


def ignore_sigint() -> None:
    """SIGINT ignored from now on. signal.signal() first runs the handlers of signals already caught: a
    Ctrl-C that came just before is raised here, as its KeyboardInterrupt (the handler has then ignored
    SIGINT already), and is taken as landing a moment before this call; the caller says what it meant."""
    import _signal

    interrupted = False
    while True:
        try:
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
            break
        except KeyboardInterrupt:  # (more than one only under Python's own handler: bin/tamer's start)
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt


_DEFER_FOR = 2.0  # seconds a Ctrl-C may wait for the import machinery to let go (then it lands anyway)
_deferred_since: list[float] = []


def _interrupt_once(signum: int, frame: FrameType | None) -> None:
    """SIGINT's handler in run(): a KeyboardInterrupt the first time, and SIGINT ignored from then on, so
    no second one can cut the first one's cleanup short (and end the process by SIGINT, not with 130).

    Never inside the import machinery: a KeyboardInterrupt raised there, between an acquire and its
    try, leaves the import lock or a module's lock held, and the next import of another thread (a df's
    early reads import as they go) waits for it forever (seen: a df hung after Ctrl-C). There the
    interrupt is delivered again a millisecond later, until the import is done."""
    import _signal
    import time

    if _in_import(frame) and (not _deferred_since or time.monotonic() - _deferred_since[0] < _DEFER_FOR):
        if not _deferred_since:
            _deferred_since.append(time.monotonic())
        _thread.start_new_thread(_interrupt_main_soon, ())
        return
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    raise KeyboardInterrupt


def _in_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _interrupt_main_soon() -> None:
    import time

    time.sleep(0.001)
    _thread.interrupt_main()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105  (no contextlib: some ms of every command's start)
            stream.flush()
        except (OSError, ValueError):  # closed, or its reader left: nothing more to say there
            pass


def exit_interrupted() -> NoReturn:
    """bin/tamer's way out when a Ctrl-C lands while it imports this module (before run() takes SIGINT)."""
    try:  # noqa: SIM105  (no contextlib: it imports collections, a Ctrl-C's way out need not)
        ignore_sigint()
    except KeyboardInterrupt:  # a second Ctrl-C: this one is said already
        pass
    code = _say_interrupted()
    _flush()
    os._exit(code)


def _say_interrupted(args: list[str] | None = None) -> int:
    """The line "interrupted" as the full CLI says it (the --json envelope too), or plainly when its module cannot
    load (the Ctrl-C landed in its import, and in-process, without run(), a second one may land again)."""
    try:
        from tamer.cli.app import interrupted

        return interrupted(sys.argv[1:] if args is None else args)
    except BaseException:
        sys.stderr.write("tamer: error: interrupted\n")
        return INTERRUPTED


def _drop_early() -> None:
    early = sys.modules.get("tamer.early")
    if early is not None:
        early.drop_unused()
