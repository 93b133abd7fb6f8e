"""Ctrl-C at random moments of real `tamer df` runs (the package's launcher, bin/tamer, on the session's
private engine): exit 130 and one line every time, or the df's output and 0 when it came too late to stop
it; never a death by SIGINT (subprocess's -2), never a traceback, no walker process left behind.

Before tamer.cli.run() some 10-30% of these runs ended by SIGINT or with a traceback: a second SIGINT
during the first one's cleanup, one landing between main's return and sys.exit, one during the
interpreter's shutdown (Python puts SIGINT back to its default action there). The moments before
bin/tamer runs at all (the interpreter's own start and site import) are out of tamer's reach: each run
here says when the launcher is about to run, and the SIGINTs come after that.

TAMER_S8_CTRL_C_RUNS sets the number of runs (default 40, some 10 s).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

LAUNCHER = Path(__file__).resolve().parents[2] / "bin" / "tamer"
RUNS = int(os.environ.get("TAMER_S8_CTRL_C_RUNS", "40"))

# says "about to run the launcher" on the fd given, then runs it (read and compiled first) as the
# installed command does
_WRAPPER = (
    "import os, sys; fd = int(sys.argv[1]); sys.argv = [sys.argv[2], *sys.argv[4:]]; "
    "code = compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'); "
    "os.write(fd, b'.'); os.close(fd); exec(code, {'__name__': '__main__', '__file__': sys.argv[0]})"
)


def _alive_with(marker: str) -> list[int]:
    """Processes (not zombies) whose command line holds `marker`: the run's own, and its forked workers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _run_and_interrupt(
    host: str, args: list[str], delay: float, signals: int, gap: float, *, ignored: bool = False
) -> tuple[Any, ...]:
    marker = f"s8-ctrl-c-{uuid.uuid4().hex}"
    ready_r, ready_w = os.pipe()
    env = {**os.environ, "DOCKER_HOST": host}
    env.pop("TAMER_FULL_CLI", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, str(ready_w), str(LAUNCHER), marker, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        pass_fds=(ready_w,),
        start_new_session=True,  # its own process group: SIGINT to the group, as a terminal's Ctrl-C
        # started with SIGINT ignored, as a script's `tamer ... &` is
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored else None,
    )
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"."
    finally:
        os.close(ready_r)
    time.sleep(delay)
    for _ in range(signals):
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(gap)
    out, err = proc.communicate(timeout=60)
    left = _alive_with(marker)
    for _ in range(50):  # a worker SIGKILLed with its parent may take a moment to be gone
        if not left:
            break
        time.sleep(0.02)
        left = _alive_with(marker)
    for pid in left:  # not to leave them to the next test
        os.kill(pid, signal.SIGKILL)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), left


def _json(text: str) -> dict[str, Any]:
    try:
        got = json.loads(text)
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def test_ctrl_c_at_random_moments_of_real_dfs_is_exit_130_and_one_line(eng: Any) -> None:
    for i in range(3):  # volumes with files: the walk's workers have something to do
        eng.docker("volume", "create", f"s8-ctrl-c-{i}")
        data = eng.data_root / "volumes" / f"s8-ctrl-c-{i}" / "_data"
        for j in range(200):
            (data / f"f{j}").write_text(str(j) * j)
    rng = random.Random(int(os.environ.get("TAMER_S8_SEED", "0")) or None)
    wrong: list[str] = []
    outcomes: dict[int, int] = {}
    for n in range(RUNS):
        as_json = n % 2 == 1
        args = ["df", "--json"] if as_json else ["df"]
        delay = rng.uniform(0.0, 0.2)
        signals = 1 if n % 3 == 0 else 2  # a second Ctrl-C (a user pressing twice) while the first is handled
        gap = rng.uniform(0.0, 0.04)
        code, out, err, left = _run_and_interrupt(eng.host, args, delay, signals, gap)
        outcomes[code] = outcomes.get(code, 0) + 1
        what = f"run {n} ({' '.join(args)}, SIGINT x{signals} after {delay * 1000:.0f} ms, gap {gap * 1000:.0f} ms)"
        if left:
            wrong.append(f"{what}: processes left behind: {left}")
        if "Traceback" in err or "KeyboardInterrupt" in err:
            wrong.append(f"{what}: a traceback: {err[-300:]!r}")
        if code == 130:
            if as_json:
                envelope = _json(out)
                if (envelope.get("status"), envelope.get("exit_code"), envelope.get("errors"), err) != (
                    "interrupted",
                    130,
                    ["interrupted"],
                    "",
                ):
                    wrong.append(f"{what}: exit 130 said as {out!r} / {err!r}")
            elif (out, err) != ("", "tamer: error: interrupted\n"):
                wrong.append(f"{what}: exit 130 said as {out!r} / {err!r}")
        elif code == 0:  # too late to stop it: the whole report, nothing on stderr
            complete = _json(out).get("exit_code") == 0 if as_json else "Volumes" in out
            if not complete or err:
                wrong.append(f"{what}: exit 0 with {out[-200:]!r} / {err!r}")
        else:
            wrong.append(f"{what}: exit status {code} (-2: ended by SIGINT); stderr {err[-300:]!r}")
    assert not wrong, f"{len(wrong)} of {RUNS} runs went wrong (outcomes {outcomes}):\n" + "\n".join(wrong)
    assert outcomes.get(130, 0) > 0, f"no run was interrupted: the test tested nothing ({outcomes})"


def test_a_run_started_with_sigint_ignored_keeps_ignoring_it(eng: Any) -> None:
    """As Python itself does (and `tamer df &` in a script relies on): run() takes SIGINT only where it was
    Python's usual KeyboardInterrupt."""
    for delay in (0.03, 0.08):
        code, out, err, left = _run_and_interrupt(eng.host, ["df"], delay, 2, 0.01, ignored=True)
        assert (code, err, left) == (0, "", []), (code, err, left)
        assert "Volumes" in out
