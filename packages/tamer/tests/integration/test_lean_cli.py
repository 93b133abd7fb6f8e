"""The lean path of `tamer ls` (tamer.cli.lean) says exactly what the full CLI says.

Each command line runs twice on the private engine, lean and with TAMER_FULL_CLI=1 (argparse and the
command tree), under one frozen clock: stdout, stderr and the exit code must be identical. Command
lines the lean path does not take (bad filters, --json, --help, options before `ls`) fall through to
the full CLI, so they are identical too, which is the point: one source for every error and help."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

# lean ones first, then the ones that must fall through (and still say the same)
ARGVS = [
    ["ls", "images"],
    ["ls", "volumes"],
    ["ls", "containers"],
    ["ls"],
    ["-q", "ls", "images"],
    ["ls", "images", "-q"],
    ["ls", "--sort", "age", "images"],
    ["ls", "images", "--sort=age"],
    ["ls", "images", "--sort", "name", "--sort", "age"],
    ["ls", "images", "--filter", "dangling=true"],
    ["ls", "images", "-f", "dangling=false"],
    ["ls", "images", "--filter=older-than=1d"],
    ["ls", "images", "--filter", "label=lean.test"],
    ["ls", "volumes", "--filter", "orphaned=true"],
    ["ls", "volumes", "-f", "named", "-f", "orphaned=no"],
    ["ls", "volumes", "--filter", "anonymous=1", "--sort", "age"],
    ["ls", "volumes", "--filter", "placement=default"],
    ["ls", "volumes", "--filter", "label=lean.test=a b"],
    ["ls", "containers", "--filter", "state=exited,created"],
    ["ls", "containers", "-f", "generated-name=false", "--sort", "age"],
    # falling through
    ["ls", "images", "--filter", "colour=red"],
    ["ls", "images", "--filter"],
    ["ls", "images", "--filter", "older-than=forever"],
    ["ls", "images", "--sort", "size"],
    ["ls", "images", "--sort", "colour"],
    ["ls", "images", "--sort="],
    ["ls", "pods"],
    ["ls", "images", "extra"],
    ["--sort", "age", "ls", "images"],
    ["ls", "images", "--json"],
    ["ls", "images", "--users"],
    ["ls", "images", "-u"],
    ["ls", "images", "--help"],
    ["ls", "images", "--traceback"],
    ["ls", "images", "--"],
    ["ls", "images", "-H"],
    ["ls", "images", "-Hunix:///nonexistent.sock"],
    ["ls", "images", "--hos", "x"],
    ["ls", "images", "--filter", "-x"],
    ["ls", "cache"],
    ["df", "--top", "0"],
]


def _run(
    eng: Any, argv: list[str], *, full: bool, extra_env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    env = {**os.environ, "DOCKER_HOST": eng.host, **(extra_env or {})}
    env.pop("TAMER_FULL_CLI", None)
    if full:
        env["TAMER_FULL_CLI"] = "1"
    if os.path.exists(LIBFAKETIME):  # one frozen clock for both runs: ages print alike
        env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME="2031-06-01 12:00:00", FAKETIME_DONT_FAKE_MONOTONIC="1")
    proc = subprocess.run(
        [sys.executable, "-m", "tamer", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def host_with_things(test_engine: Any) -> Any:
    """One host for every command line (made once: each case only reads it)."""
    eng = test_engine
    eng.docker("volume", "create", "lean-named")
    eng.docker("volume", "create", "--label", "lean.test=a b", "lean-labelled")
    eng.docker("create", "--name", "lean-user", "-v", "lean-named:/d", BUSYBOX, "true")
    # a generated name and an anonymous volume
    anon = eng.docker("create", "-v", "/anon", BUSYBOX, "true").strip()
    eng.docker("run", "--name", "lean-exited", BUSYBOX, "true")
    eng.docker("tag", BUSYBOX, "lean/extra:tag")
    try:
        yield eng
    finally:
        eng.docker("rm", "-f", "-v", "lean-user", "lean-exited", anon, check=False)
        eng.docker("volume", "rm", "-f", "lean-named", "lean-labelled", check=False)
        eng.docker("rmi", "lean/extra:tag", check=False)


@pytest.mark.parametrize("argv", ARGVS, ids=[" ".join(a) or "-" for a in ARGVS])
def test_lean_and_full_cli_say_the_same(host_with_things: Any, argv: list[str]) -> None:
    lean = _run(host_with_things, argv, full=False)
    full = _run(host_with_things, argv, full=True)
    assert lean == full


def test_an_unreachable_engine_is_the_same_error_either_way(eng: Any) -> None:
    env = {"DOCKER_HOST": "unix:///nonexistent/tamer-lean.sock"}
    for argv in (["ls", "images"], ["ls", "volumes"], ["-H", "unix:///nonexistent/x.sock", "ls"]):
        lean = _run(eng, argv, full=False, extra_env=env)
        full = _run(eng, argv, full=True, extra_env=env)
        assert lean == full and lean[0] == 1 and "no Docker engine answered" in lean[2]


def test_a_usage_error_comes_before_an_unreachable_engine_either_way(eng: Any) -> None:
    """The lean `ls volumes` asks the engine before it imports the table code, but only once the
    command line is known to be right: a bad filter is the usage error (2), as in the full CLI, not the
    engine's absence (1); a good one is the engine's error, the same either way."""
    env = {"DOCKER_HOST": "unix:///nonexistent/tamer-lean.sock"}
    for argv, code in (
        (["ls", "volumes", "--filter", "colour=red"], 2),
        (["ls", "volumes", "--filter", "older-than=forever"], 2),
        (["ls", "volumes", "--filter", "placement=moon"], 2),
        (["ls", "volumes", "--filter", "older-than=1d", "--sort", "age"], 1),
        (["ls", "volumes", "-f", "orphaned"], 1),
    ):
        lean = _run(eng, argv, full=False, extra_env=env)
        full = _run(eng, argv, full=True, extra_env=env)
        assert lean == full and lean[0] == code, (argv, lean, full)


def test_a_plain_listing_imports_no_parser_no_re_no_json(eng: Any) -> None:
    """What the lean path is for: no argparse (gettext, locale), no `re`/`enum` (argparse, json and
    socket.py import them), no typing, no docker SDK; and it printed the same table as the full CLI."""
    code = (
        "import sys, os\n"
        "from tamer.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "sys.stdout.flush()\n"
        "os.write(2, ('\\nMODULES ' + ' '.join(sorted(sys.modules))).encode())\n"
        "raise SystemExit(rc)\n"
    )
    env = {**os.environ, "DOCKER_HOST": eng.host}
    env.pop("TAMER_FULL_CLI", None)
    heavy = {
        "argparse",
        "gettext",
        "locale",
        "re",
        "enum",
        "json",
        "socket",
        "typing",
        "docker",
        "dataclasses",
    }
    for kind in ("images", "volumes"):
        proc = subprocess.run(
            [sys.executable, "-c", code, "ls", kind], capture_output=True, text=True, env=env, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        modules = set(proc.stderr.rsplit("\nMODULES ", 1)[1].split())
        assert not heavy & modules, f"tamer ls {kind} imported {sorted(heavy & modules)}"
        assert "tamer.cli.app" not in modules
        assert proc.stdout.splitlines()[0].split()[0] in ("IMAGE", "VOLUME")


def test_the_installed_command_does_not_import_re_before_main() -> None:
    """pip's generated wrapper imports `re` (~5 ms) before tamer's main; the installed `tamer` is the
    package's own launcher (packages/tamer/bin/tamer), which does not."""
    tamer = shutil.which("tamer", path=os.path.dirname(sys.executable))
    if tamer is None:
        pytest.fail(f"no `tamer` command next to {sys.executable}: is the package installed?")
    with open(tamer, encoding="utf-8") as f:
        text = f.read()
    assert "import re" not in text and "from tamer.cli import run" in text  # run(): main(), then the exit
    proc = subprocess.run([tamer, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("tamer ")
    assert json.loads(subprocess.run([tamer, "--version", "--json"], capture_output=True, text=True).stdout)
