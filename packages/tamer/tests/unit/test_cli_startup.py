"""Start-up cost is part of the interface: `tamer --help`, `--version` and usage errors import no
command module and never the docker SDK; a read-only command on a unix socket never imports it either."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from tamer.cli import inspect_cmds
from tamer.collect import SIZING_CHOICES

HEAVY = (
    "docker",
    "requests",
    "urllib3",
    "tamer.engine",
    "tamer.inventory",
    "tamer.cli.clean_cmds",
    "tamer.cli.volume_cmds",
    "tamer.volumes",
    "multiprocessing",
)


def _modules_after(argv: list[str], env_host: str | None = None) -> tuple[int, str, set[str]]:
    """Run tamer's main in a fresh interpreter; its exit code, output and the modules it imported."""
    code = (
        "import sys, json\n"
        "from tamer.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code or 0\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
        "raise SystemExit(rc)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": env_host or "unix:///nonexistent/tamer-test.sock"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    line = [x for x in proc.stderr.splitlines() if x.startswith("MODULES ")][-1]
    return proc.returncode, proc.stdout + proc.stderr, set(json.loads(line.removeprefix("MODULES ")))


@pytest.mark.parametrize(
    "argv", [["--help"], [], ["--version"], ["--version", "--json"], ["pods"], ["--json", "pods"], ["-H"]]
)
def test_help_version_and_usage_errors_import_nothing_heavy(argv: list[str]) -> None:
    rc, out, modules = _modules_after(argv)
    assert rc in (0, 2), out
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not loaded, f"tamer {' '.join(argv)} imported {loaded}"


def test_version_is_printed_plainly_and_as_an_envelope() -> None:
    from tamer import __version__

    rc, out, _ = _modules_after(["--version"])
    assert rc == 0 and out.startswith(f"tamer {__version__}\n")
    rc, out, _ = _modules_after(["--version", "--json"])
    doc = json.loads(out.split("\nMODULES ")[0])
    assert rc == 0 and doc["data"] == {"name": "tamer", "version": __version__} and doc["status"] == "ok"


@pytest.mark.parametrize(
    "argv",
    [["ls", "--help"], ["ls", "pods"], ["ls", "volumes", "--filter", "colour=red"], ["df", "--top", "0"]],
)
def test_a_command_s_help_and_usage_errors_import_only_its_own_module(argv: list[str]) -> None:
    rc, out, modules = _modules_after(argv)
    assert rc in (0, 2), out
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not loaded, f"tamer {' '.join(argv)} imported {loaded}"


def test_reading_a_unix_socket_engine_does_not_import_the_docker_sdk() -> None:
    """An unreachable unix socket: the error comes from the lean transport, translated once."""
    rc, out, modules = _modules_after(["ls", "containers"], env_host="unix:///nonexistent/tamer-test.sock")
    assert rc == 1 and "no Docker engine answered at unix:///nonexistent/tamer-test.sock" in out, out
    assert "docker" not in modules and "requests" not in modules


# what the lean `tamer ls images|volumes` table must not import: each costs 2-10 ms, and the whole
# `docker images` it is measured against takes some 17 ms (bench/tamer_fast.py)
LEAN_LS_AVOIDS = (
    "typing",
    "dataclasses",
    "inspect",
    "urllib.parse",
    "ipaddress",
    "shutil",
    "pathlib",
    "concurrent.futures",
    "logging",
    "threading",  # tamer.background starts its thread with _thread: threading brings functools, collections
    "datetime",  # on 3.11 the module builds its pure-Python classes first (1.7 ms): tamer.datetimes
    "tamer.inventory",
    "tamer.accounting",
    "tamer.collect",
    "tamer.report.views",
    "tamer.state",
    "docker",
)


@pytest.mark.parametrize(
    "argv",
    [["ls", "images"], ["ls", "volumes"], ["ls", "volumes", "--filter", "orphaned", "--sort", "age"]],
)
def test_the_lean_listing_imports_only_what_its_table_needs(argv: list[str], tmp_path: Any) -> None:
    """A scripted engine answers /_ping and the lists; the table path must not pull in the model."""
    import socket
    import threading

    path = str(tmp_path / "engine.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    bodies = {
        b"/_ping": b"OK",
        b"/v1.41/images/json": json.dumps(
            [{"Id": "sha256:" + "a" * 64, "RepoTags": ["x:1"], "Size": 5}]
        ).encode(),
        b"/v1.41/volumes": json.dumps({"Volumes": [{"Name": "v1", "Driver": "local"}]}).encode(),
    }

    def answer(conn: socket.socket) -> None:  # one thread a connection: the volumes table uses two at once
        with conn:
            while True:
                request = b""
                while b"\r\n\r\n" not in request:
                    part = conn.recv(4096)
                    if not part:
                        return
                    request += part
                target = request.split(b" ")[1].split(b"?")[0]
                body = bodies.get(target, b"{}")
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        rc, out, modules = _modules_after(argv, env_host=f"unix://{path}")
    finally:
        server.close()
    assert rc == 0, out
    assert ("x:1" in out) if argv[1] == "images" else ("v1" in out), out
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in LEAN_LS_AVOIDS))
    assert not loaded, f"tamer {' '.join(argv)} imported {loaded}"


def test_the_cli_offers_the_sizing_choices_the_collector_knows() -> None:
    assert inspect_cmds.SIZING_CHOICES == SIZING_CHOICES


def test_every_command_in_the_table_is_registered_by_its_module() -> None:
    import argparse

    from tamer.cli.app import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {c.name for c in COMMANDS}
    assert [a.dest for a in sub._choices_actions] == [c.name for c in COMMANDS]  # --help lists them in order
    for command in COMMANDS:
        assert sub.choices[command.name]._defaults.get("handler") is not None, command
        # the line `tamer --help` shows without importing the module is the one the module registers
        [shown] = [a.help for a in sub._choices_actions if a.dest == command.name]
        assert shown == command.help


def test_ctrl_c_while_the_full_cli_loads_is_exit_130_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import types

    from tamer.cli import main

    class Interrupting(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "tamer.cli.app", Interrupting("tamer.cli.app"))
    monkeypatch.setenv("TAMER_FULL_CLI", "1")
    assert main(["history", "--bogus"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err == "tamer: error: interrupted\n"
