"""tamer.engine.ssh: -H ssh:// through the user's OpenSSH, with an `ssh` stand-in first on PATH.

The stand-ins are real programs run the way tamer runs ssh (over a socketpair); what they stand in for is
the far side: a login that hangs after connecting, an ssh that fails with a message, one that relays to a
tiny HTTP engine. The sshd-backed tests (a real OpenSSH login to a private engine) are in
tests/integration/test_fleet.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from tamer.engine import connect
from tamer.engine.ssh import SshAddress, parse_address, ssh_argv
from tamer.errors import EngineUnreachable, UsageError


def _fake_ssh(folder: Path, body: str) -> None:
    """A program named ssh (first on PATH) that logs its argv and then runs `body` (Python)."""
    folder.mkdir(exist_ok=True)
    script = folder / "ssh"
    log = folder / "argv.log"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys, time\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n{body}\n"
    )
    script.chmod(0o755)


@pytest.fixture
def fake_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{folder}:{os.environ.get('PATH', '')}")
    return folder


def test_a_login_that_connects_and_then_says_nothing_times_out(fake_path: Path) -> None:
    """docker-py's own shell-out socket reads ssh's pipe with no timeout: this hung for ever."""
    _fake_ssh(fake_path, "time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(EngineUnreachable) as caught:
        connect("ssh://admin@web1", answer_within=1.0)
    assert time.monotonic() - started < 20
    assert "did not answer in time" in str(caught.value)


def test_what_ssh_said_is_in_the_error_with_the_fleet_hint(fake_path: Path) -> None:
    _fake_ssh(
        fake_path,
        "sys.stderr.write('ssh: connect to host web1 port 22: No route to host\\x1b[2J\\n'); sys.exit(255)",
    )
    with pytest.raises(EngineUnreachable) as caught:
        connect("ssh://web1", answer_within=5.0)
    text = str(caught.value)
    assert "ssh exited with status 255" in text and "No route to host" in text
    assert "\x1b" not in text  # the far side's terminal escapes are not passed on
    assert "tamer fleet df --hosts" in text


def test_a_connection_speaks_http_through_ssh_and_is_reused(fake_path: Path) -> None:
    """The stand-in answers as an engine would; every request of the session goes over one ssh."""
    engine_body = r"""
import sys
out = sys.stdout.buffer
inp = sys.stdin.buffer
while True:
    line = inp.readline()
    if not line:
        break
    path = line.split()[1].decode()
    while inp.readline() not in (b"\r\n", b""):
        pass
    body = json.dumps({"ApiVersion": "1.41", "Path": path}).encode() if "ping" not in path else b"OK"
    ctype = b"application/json" if "ping" not in path else b"text/plain"
    out.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    out.flush()
"""
    _fake_ssh(fake_path, engine_body)
    engine = connect("ssh://admin@web1:2222")
    assert engine.api_version == "1.41"
    for _ in range(3):
        assert engine.version()["Path"].endswith("/version")
    calls = [json.loads(x) for x in (fake_path / "argv.log").read_text().splitlines()]
    assert len(calls) == 1, calls
    assert calls[0] == ssh_argv(SshAddress("admin", "web1", 2222))[1:]


@pytest.mark.parametrize(
    "address",
    ["ssh://[::1", "ssh://a b", "ssh://h:0", "ssh://u:secret@h", "ssh://h/path", "ssh://-oProxyCommand=x"],
)
def test_a_malformed_address_is_bad_input_and_runs_nothing(address: str, fake_path: Path) -> None:
    _fake_ssh(fake_path, "sys.exit(0)")
    with pytest.raises(UsageError) as caught:
        connect(address)
    assert "expected ssh://[user@]host[:port]" in str(caught.value)
    assert not (fake_path / "argv.log").exists()


def test_the_host_is_never_an_option_and_no_port_is_forced() -> None:
    argv = ssh_argv(parse_address("ssh://web1"))
    assert argv[-3:] == ["--", "web1", "docker system dial-stdio"]
    assert "-p" not in argv and "-l" not in argv  # the user's ~/.ssh/config decides (Port, User)
    assert "BatchMode=yes" in argv  # never a password prompt in the middle of tamer's output
    ipv6 = ssh_argv(parse_address("ssh://root@[::1]:2200"))
    assert ipv6[-3:] == ["--", "::1", "docker system dial-stdio"] and ipv6[-7:-5] == ["-p", "2200"]


@pytest.mark.parametrize("url", ["ssh://[::1", "ssh://[web1]:22", "ssh://h]"])
def test_a_hosts_file_url_urlsplit_refuses_is_bad_input_not_an_internal_error(url: str) -> None:
    """`tamer fleet --hosts` with url = "ssh://[::1" was "internal error: ValueError: Invalid IPv6 URL"."""
    from tamer.fleet.hosts import load_hosts

    with pytest.raises(UsageError) as caught:
        load_hosts(f'[[hosts]]\nurl = "{url}"\n')
    assert "expected ssh://[user@]host[:port]" in str(caught.value)


def test_no_ssh_client_installed_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh anywhere on it
    with pytest.raises(EngineUnreachable) as caught:
        connect("ssh://web1", answer_within=5.0)
    assert "OpenSSH client (ssh) is not installed" in str(caught.value)
