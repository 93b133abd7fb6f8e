"""tamer.engine.context: the docker CLI's choice of engine, on hand-made config folders (session 8).

The order and the refusals are checked against the real docker CLI and a private engine in
tests/integration/test_attack_s8_read_engines.py; here the hostile files: damaged, huge, of the wrong
shape, unreadable, and a context named by the config while DOCKER_CONFIG points elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from tamer.engine.context import DEFAULT_HOST, ContextError, resolve_host


def _context(config: Path, name: str, body: object) -> Path:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    path = meta / "meta.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def _host(host: str) -> dict[str, object]:
    return {"Name": "x", "Endpoints": {"docker": {"Host": host}}}


def test_nothing_said_is_the_default_socket(tmp_path: Path) -> None:
    assert resolve_host(None, {"HOME": str(tmp_path)}) == DEFAULT_HOST
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text('{"auths": {}}')
    assert resolve_host(None, {"HOME": str(tmp_path)}) == DEFAULT_HOST
    (tmp_path / ".docker" / "config.json").write_text('{"currentContext": "default"}')
    assert resolve_host(None, {"HOME": str(tmp_path)}) == DEFAULT_HOST
    assert resolve_host(None, {"HOME": str(tmp_path), "DOCKER_CONTEXT": "default"}) == DEFAULT_HOST


def test_home_and_docker_config_each_hold_the_config(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text('{"currentContext": "rootless"}')
    _context(home / ".docker", "rootless", _host("unix:///run/user/1000/docker.sock"))
    assert resolve_host(None, {"HOME": str(home)}) == "unix:///run/user/1000/docker.sock"
    # DOCKER_CONFIG elsewhere: that folder's config and contexts, not HOME's
    elsewhere.mkdir()
    assert resolve_host(None, {"HOME": str(home), "DOCKER_CONFIG": str(elsewhere)}) == DEFAULT_HOST
    (elsewhere / "config.json").write_text('{"currentContext": "rootless"}')
    with pytest.raises(ContextError, match=r"'rootless'.*does not exist"):
        resolve_host(None, {"HOME": str(home), "DOCKER_CONFIG": str(elsewhere)})
    # -H and DOCKER_HOST are taken as given, without reading anything
    assert resolve_host("unix:///a.sock", {"HOME": str(home), "DOCKER_CONTEXT": "x"}) == "unix:///a.sock"
    assert resolve_host(None, {"DOCKER_HOST": "ssh://u@h", "DOCKER_CONTEXT": "x"}) == "ssh://u@h"


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ("{", "not valid JSON"),
        ('{"currentContext": 7}', "not a name"),
        ('{"currentContext": ["a"]}', "not a name"),
        ("x" * ((1 << 20) + 10), "not a docker config"),
    ],
)
def test_a_damaged_config_is_an_error_never_the_default_socket(
    tmp_path: Path, config: str, said: str
) -> None:
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ContextError, match=said) as caught:
        resolve_host(None, {"DOCKER_CONFIG": str(tmp_path)})
    assert caught.value.exit_code == 2 and "-H" in str(caught.value)


@pytest.mark.parametrize(
    ("meta", "said"),
    [
        ("[1, 2]", "names no engine address"),
        ({"Endpoints": {}}, "names no engine address"),
        ({"Endpoints": {"docker": {"Host": ""}}}, "names no engine address"),
        ({"Endpoints": {"docker": {"Host": None}}}, "names no engine address"),
        ("\x00garbage", "not valid JSON"),
    ],
)
def test_a_damaged_context_is_an_error(tmp_path: Path, meta: object, said: str) -> None:
    _context(tmp_path, "bad", meta)
    with pytest.raises(ContextError, match=said):
        resolve_host(None, {"DOCKER_CONFIG": str(tmp_path), "DOCKER_CONTEXT": "bad"})


def test_a_config_that_is_no_file_is_an_error_and_never_blocks(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ContextError, match="not a regular file"):
        resolve_host(None, {"DOCKER_CONFIG": str(tmp_path)})
    (tmp_path / "config.json").rmdir()
    os.mkfifo(tmp_path / "config.json")  # an open without O_NONBLOCK would wait for a writer forever
    with pytest.raises(ContextError, match="not a regular file"):
        resolve_host(None, {"DOCKER_CONFIG": str(tmp_path)})


def test_tls_is_refused_on_tcp_only(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert resolve_host("unix:///x.sock", {**env, "DOCKER_TLS_VERIFY": "1"}) == "unix:///x.sock"
    assert resolve_host("tcp://h:2375", {**env, "DOCKER_CERT_PATH": "/certs"}) == "tcp://h:2375"
    assert resolve_host("tcp://h:2375", {**env, "DOCKER_TLS_VERIFY": ""}) == "tcp://h:2375"
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_TLS"):
        with pytest.raises(ContextError, match=name):
            resolve_host("tcp://h:2376", {**env, name: "1"})
    _context(tmp_path, "secure", _host("tcp://h:2376"))
    tls = tmp_path / "contexts" / "tls" / hashlib.sha256(b"secure").hexdigest() / "docker"
    assert resolve_host(None, {**env, "DOCKER_CONTEXT": "secure"}) == "tcp://h:2376"
    tls.mkdir(parents=True)
    with pytest.raises(ContextError, match="TLS"):
        resolve_host(None, {**env, "DOCKER_CONTEXT": "secure"})


def test_a_context_name_is_hashed_never_used_as_a_path(tmp_path: Path) -> None:
    """A hostile DOCKER_CONTEXT ("../../x") names a file by its hash, as the docker CLI does."""
    target = tmp_path / "x" / "meta.json"
    target.parent.mkdir()
    target.write_text(json.dumps(_host("unix:///evil.sock")))
    with pytest.raises(ContextError, match="does not exist"):
        resolve_host(None, {"DOCKER_CONFIG": str(tmp_path / "cfg"), "DOCKER_CONTEXT": "../../x"})
    assert os.path.exists(target)


def test_a_scheduled_clean_is_pinned_to_the_context_s_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd starts the timed clean without the shell's DOCKER_CONTEXT or the user's docker config:
    the engine the context names is written into the unit, as -H or DOCKER_HOST would be."""
    from tamer.cli import main

    config = tmp_path / "docker"
    config.mkdir()
    _context(config, "rootless", _host("unix:///run/user/1000/docker.sock"))
    policy = tmp_path / "policy.toml"
    policy.write_text('version = 1\n[containers]\nstates = ["exited"]\nolder_than = "1d"\n')
    policy.chmod(0o644)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    argv = ["schedule", "install", "--policy", str(policy), "--every", "1d", "--print"]
    monkeypatch.setenv("DOCKER_CONTEXT", "rootless")
    assert main(argv) == 0
    assert 'Environment="DOCKER_HOST=unix:///run/user/1000/docker.sock"' in capsys.readouterr().out
    monkeypatch.setenv("DOCKER_CONTEXT", "gone")  # refused, nothing printed as if it were fine
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "'gone'" in err and "Environment=" not in out
    monkeypatch.delenv("DOCKER_CONTEXT")  # no context: nothing pinned, as before
    assert main(argv) == 0
    assert "DOCKER_HOST" not in capsys.readouterr().out
