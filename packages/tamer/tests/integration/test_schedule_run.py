"""The units `tamer schedule install` writes do what they say: each service's command line, as systemd
itself parses it (systemd-analyze's dump), run with the unit's Environment= against the private engine.
systemd is not PID 1 here, so the units cannot be started for real; this is the next best thing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ANALYZE = shutil.which("systemd-analyze")
BUSYBOX = "tamer-test/busybox:1"
POLICY = 'version = 1\n[containers]\nstates = ["created", "exited"]\nolder_than = "0s"\n'


def _shell_words(text: str) -> list[str]:
    """A POSIX shell's split (how systemd prints a command line); `\\$` inside double quotes is `$`."""
    words: list[str] = []
    word: list[str] | None = None
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and (not quoted or text[i + 1] in '$`"\\'):
            word = [*(word or []), text[i + 1]]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
            word = word or []
        elif ch == " " and not quoted:
            if word is not None:
                words.append("".join(word))
            word = None
        else:
            word = [*(word or []), ch]
        i += 1
    if word is not None:
        words.append("".join(word))
    return words


def _parsed_units(unit_dir: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """unit -> (ExecStart argv, Environment) as systemd parsed them."""
    assert ANALYZE is not None
    units = sorted(str(p) for p in unit_dir.iterdir() if p.suffix == ".service")
    proc = subprocess.run(
        [ANALYZE, "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    parsed: dict[str, tuple[list[str], dict[str, str]]] = {}
    for chunk in (proc.stdout + proc.stderr).split("-> Unit ")[1:]:
        name = chunk.split(":", 1)[0]
        if not name.startswith("tamer-"):
            continue
        env = {}
        argv: list[str] = []
        for line in chunk.splitlines():
            line = line.strip()
            if line.startswith("Environment: "):
                key, _, value = line.removeprefix("Environment: ").partition("=")
                env[key] = value
            elif line.startswith("Command Line: "):
                argv = [a.replace("$$", "$") for a in _shell_words(line.removeprefix("Command Line: "))]
        parsed[name] = (argv, env)
    return parsed


@pytest.mark.skipif(
    ANALYZE is None, reason="!!! systemd-analyze is not installed (Debian: apt-get install systemd)"
)
def test_the_timed_clean_record_and_watch_commands_work_on_the_engine_named(eng: Any, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    policy.chmod(0o600)
    unit_dir = tmp_path / "units"
    state = tmp_path / "state"
    proc = eng.tamer(
        "schedule", "install", "--policy", str(policy), "--every", "6h", "--unit-dir", str(unit_dir),
        env={"TAMER_STATE_DIR": str(state), "DOCKER_HOST": "unix:///nonexistent/not-this-one.sock"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # the engine comes from DOCKER_HOST above: nothing reaches; -H must win when given
    units = _parsed_units(unit_dir)
    assert units["tamer-clean.service"][1]["DOCKER_HOST"] == "unix:///nonexistent/not-this-one.sock"
    proc = eng.tamer(
        "-H", eng.host, "schedule", "install", "--policy", str(policy), "--every", "6h", "--unit-dir", str(unit_dir),
        env={"TAMER_STATE_DIR": str(state)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    units = _parsed_units(unit_dir)
    argv, env = units["tamer-clean.service"]
    assert env == {"TAMER_STATE_DIR": str(state), "DOCKER_HOST": eng.host}
    assert argv[-5:] == ["clean", "--apply", "--yes", "--policy", str(policy)]

    victim = eng.docker("create", "--name", "sched-victim", BUSYBOX).strip()
    bare = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **env}  # as systemd starts it
    ran = subprocess.run(
        argv, env=bare, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert victim not in eng.docker("ps", "-aq", "--no-trunc")  # the docker CLI: the timed clean removed it
    assert (state / "journal.sqlite").is_file()  # journaled in the state dir the unit pins

    if "tamer-record.service" in units:
        argv, env = units["tamer-record.service"]
        ran = subprocess.run(argv, env={**bare, **env}, capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, ran.stdout + ran.stderr
    argv, env = units["tamer-watch.service"]
    assert argv[-1] == "watch"
    ran = subprocess.run([*argv, "--once"], env={**bare, **env}, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
