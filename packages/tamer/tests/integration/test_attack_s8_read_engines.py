"""Which engine a read answers about: the one the docker CLI would use, docker contexts included (session 8).

`docker context use rootless` (rootless Docker, Docker Desktop, colima) leaves DOCKER_HOST unset and
writes only the docker config's `currentContext` and the context's file; tamer read DOCKER_HOST alone
and went to the default socket: another engine, or "no engine" while `docker ps` in the same shell
answered. Here the context names the private engine and the default socket has no engine at all: the
docker CLI (the oracle, run with the same environment) and every tamer path (the lean `ls`, the full
CLI's --json, a plain df with its early start) must answer about the private engine, with the docker
CLI's order (-H, DOCKER_HOST, DOCKER_CONTEXT, currentContext) and its refusal of a context that does
not exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _make_context(config: Path, name: str, host: str, *, tls: bool = False) -> None:
    """What `docker context create NAME --docker host=HOST` writes."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    body = {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}
    (meta / "meta.json").write_text(json.dumps(body))
    if tls:
        keys = config / "contexts" / "tls" / digest / "docker"
        keys.mkdir(parents=True)
        for pem in ("ca.pem", "cert.pem", "key.pem"):
            (keys / pem).write_text("not a real key\n")


def _env(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "TAMER_FULL_CLI"))}
    env["DOCKER_CONFIG"] = str(config)
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def _tamer(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "tamer", *args], env)


@pytest.fixture
def config(tmp_path: Path, eng: Any) -> Path:
    """A docker config folder whose current context is the private engine; the default socket is empty."""
    assert not os.path.exists("/var/run/docker.sock"), "this test needs no engine at the default socket"
    folder = tmp_path / "docker-config"
    _make_context(folder, "priv", eng.host)
    _make_context(folder, "tls-remote", "tcp://127.0.0.1:9", tls=True)
    (folder / "config.json").write_text(json.dumps({"currentContext": "priv"}))
    return folder


def _names(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()]


def test_the_current_context_names_the_engine_of_every_read_path(
    eng: Any, config: Path, tmp_path: Path
) -> None:
    eng.docker("volume", "create", "s8-ctx-vol")
    env = _env(config, TAMER_STATE_DIR=str(tmp_path / "state"))
    oracle = _run(["docker", "volume", "ls", "-q"], env)
    assert oracle.returncode == 0 and "s8-ctx-vol" in oracle.stdout.split(), oracle.stderr
    lean = _tamer(env, "ls", "volumes")
    assert "s8-ctx-vol" in _names(lean)
    full = _tamer(env, "--json", "ls", "volumes")
    assert full.returncode == 0, full.stdout + full.stderr
    assert "s8-ctx-vol" in json.dumps(json.loads(full.stdout)["data"])
    containers = _tamer(env, "ls", "containers")  # lean, and the same rows as with -H
    assert containers.returncode == 0, containers.stderr
    assert containers.stdout == _tamer(env, "-H", eng.host, "ls", "containers").stdout
    df = _tamer(env, "df", "-q", "--json")  # the early start of a plain df, then the full CLI
    assert df.returncode == 0, df.stdout + df.stderr
    assert "s8-ctx-vol" in df.stdout


@pytest.mark.parametrize(
    ("extra", "args"),
    [
        # DOCKER_CONTEXT wins over the config's currentContext (which names one that does not exist)
        ({"DOCKER_CONTEXT": "priv"}, []),
        # DOCKER_HOST wins over DOCKER_CONTEXT
        ({"DOCKER_CONTEXT": "nosuch", "DOCKER_HOST": "@"}, []),
        # -H wins over both
        ({"DOCKER_CONTEXT": "nosuch", "DOCKER_HOST": "unix:///nonexistent/docker.sock"}, ["-H", "@"]),
    ],
)
def test_the_docker_cli_order_of_h_docker_host_and_contexts(
    eng: Any, config: Path, extra: dict[str, str], args: list[str]
) -> None:
    (config / "config.json").write_text(json.dumps({"currentContext": "nosuch"}))
    eng.docker("volume", "create", "s8-order-vol")
    extra = {k: (eng.host if v == "@" else v) for k, v in extra.items()}
    args = [eng.host if a == "@" else a for a in args]
    env = _env(config, **extra)
    oracle = _run(["docker", *args, "volume", "ls", "-q"], env)
    assert oracle.returncode == 0 and "s8-order-vol" in oracle.stdout.split(), oracle.stderr
    for argv in (["ls", "volumes"], ["--json", "ls", "volumes"]):
        proc = _tamer(env, *args, *argv)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        assert "s8-order-vol" in proc.stdout, argv


@pytest.mark.parametrize(
    ("extra", "config_json", "names"),
    [
        ({}, {"currentContext": "nosuch"}, ["nosuch"]),
        ({"DOCKER_CONTEXT": "gone"}, {"currentContext": "priv"}, ["gone"]),
        ({"DOCKER_CONTEXT": "tls-remote"}, {}, ["tls-remote", "TLS"]),
        ({"DOCKER_HOST": "tcp://127.0.0.1:9", "DOCKER_TLS_VERIFY": "1"}, {}, ["DOCKER_TLS_VERIFY"]),
    ],
)
def test_a_context_that_cannot_be_used_is_refused_never_the_default_socket(
    eng: Any,
    config: Path,
    tmp_path: Path,
    extra: dict[str, str],
    config_json: dict[str, str],
    names: list[str],
) -> None:
    (config / "config.json").write_text(json.dumps(config_json))
    env = _env(config, TAMER_STATE_DIR=str(tmp_path / "state"), **extra)
    if "DOCKER_TLS_VERIFY" not in extra:  # the docker CLI fails there too
        assert _run(["docker", "volume", "ls"], env).returncode != 0
    for argv in (["ls", "volumes"], ["ls", "images"], ["df"], ["plan"], ["clean", "--apply", "--yes"]):
        proc = _tamer(env, *argv)
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert all(n in proc.stderr for n in names), (argv, proc.stderr)
        assert "docker.sock" not in proc.stderr, (argv, proc.stderr)
        assert proc.stdout == ""
    proc = _tamer(env, "--json", "ls", "volumes")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 2 and doc["status"] == "usage" and doc["exit_code"] == 2
    assert all(n in doc["errors"][0] for n in names)


@pytest.mark.parametrize("given", [["-H", ""], ["--host="], ["-H", "  "], ["-H", "@", "--host="]])
@pytest.mark.parametrize("where", ["before", "after"])
def test_an_empty_h_is_refused_by_the_lean_listing_too(eng: Any, given: list[str], where: str) -> None:
    """The full CLI refuses an empty -H; the lean `ls` read DOCKER_HOST's engine instead: not the one named."""
    eng.docker("volume", "create", "s8-empty-h-vol")
    given = [eng.host if g == "@" else g for g in given]
    argv = [*given, "ls", "volumes"] if where == "before" else ["ls", "volumes", *given]
    for full in ("", "1"):
        proc = eng.tamer(*argv, env={"TAMER_FULL_CLI": full})
        assert proc.returncode == 2, (full, argv, proc.stdout, proc.stderr)
        assert "empty" in proc.stderr and proc.stdout == "", (full, argv, proc.stderr)


@pytest.fixture
def foreign_engine_id(eng: Any) -> Any:
    """The private engine's data-root made to look like another engine's, as an engine since 23 marks it
    (<data-root>/engine-id): Docker Desktop's engine says /var/lib/docker from inside its VM, and the
    folder of that name here is docker-ce's. The private engine (20.10) keeps no such file itself."""
    path = eng.data_root / "engine-id"
    assert not path.exists()
    path.write_text("0f0f0f0f-another-engine-0f0f0f0f\n")
    try:
        yield path
    finally:
        path.unlink()


def test_a_data_root_that_is_another_engines_is_never_walked_nor_backed_up(
    eng: Any, foreign_engine_id: Path, tmp_path: Path
) -> None:
    eng.docker("volume", "create", "s8-foreign-vol")
    eng.docker("run", "--rm", "-v", "s8-foreign-vol:/d", BUSYBOX, "sh", "-c", "echo data > /d/f")
    out = tmp_path / "b.tar.zst"
    backup = eng.tamer("volume", "backup", "s8-foreign-vol", "-o", str(out))
    assert backup.returncode == 1, backup.stdout + backup.stderr
    assert "another engine" in backup.stderr and "0f0f0f0f-another-engine" in backup.stderr
    assert not out.exists() and not list(tmp_path.glob("*.tar*"))
    for argv in (["df", "--json"], ["df", "-q", "--json"]):  # the early start (-q walks volumes early) too
        df = eng.tamer(*argv)
        assert df.returncode == 0, df.stdout + df.stderr
        notes = json.loads(df.stdout)["data"]["notes"]
        assert any("engine's own figures" in n for n in notes), (argv, notes)  # not this folder's walk
    # the same engine's own mark: walked again
    engine_id = json.loads(eng.docker("info", "--format", "{{json .ID}}"))
    foreign_engine_id.write_text(engine_id + "\n")
    df = eng.tamer("df", "--json")
    assert not [n for n in json.loads(df.stdout)["data"]["notes"] if "engine's own figures" in n]
    assert eng.tamer("volume", "backup", "s8-foreign-vol", "-o", str(out)).returncode == 0
    assert out.exists()


BUSYBOX = "tamer-test/busybox:1"
