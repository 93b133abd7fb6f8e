"""The hosts file of `tamer fleet`: what it accepts, and a clear exit-2 error (nothing run) for the rest."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tamer.cli.app import main
from tamer.errors import UsageError
from tamer.fleet import ssh
from tamer.fleet.hosts import DEFAULT_CONNECT_TIMEOUT, load_hosts, parse_url
from tamer.fleet.ssh import remote_command, ssh_argv

GOOD = """
version = 1
[defaults]
ssh_options = ["-i", "/keys/fleet"]
labels = { dc = "fra" }

[[hosts]]
url = "ssh://admin@web1.example.com"
labels = { role = "web" }

[[hosts]]
url = "ssh://root@db1:2222"
name = "db1"
policy = "/etc/tamer/policy with spaces.toml"
tamer = "sudo -n /opt/tamer/bin/tamer"
labels = { dc = "ams" }
connect_timeout = 3
"""


def test_a_good_file_gives_hosts_with_defaults_merged() -> None:
    web, db = load_hosts(GOOD)
    assert (web.name, web.user, web.address, web.port) == (
        "admin@web1.example.com",
        "admin",
        "web1.example.com",
        None,
    )
    assert web.labels == {"dc": "fra", "role": "web"} and web.ssh_options == ("-i", "/keys/fleet")
    assert web.tamer == ("tamer",) and web.connect_timeout == DEFAULT_CONNECT_TIMEOUT and web.policy is None
    assert (db.name, db.user, db.port, db.connect_timeout) == ("db1", "root", 2222, 3)
    assert db.labels == {"dc": "ams"} and db.tamer == ("sudo", "-n", "/opt/tamer/bin/tamer")
    assert web.plan_file != db.plan_file and web.plan_file.startswith(".tamer-fleet-plan-")


def test_bare_url_strings_and_ipv6() -> None:
    a, b = load_hosts('hosts = ["ssh://a.example", "ssh://ops@[::1]:2200"]')
    assert (a.user, a.address, a.port) == (None, "a.example", None)
    assert (b.user, b.address, b.port) == ("ops", "::1", 2200)


def test_the_ssh_command_keeps_batch_mode_first_and_quotes_the_remote_words() -> None:
    _, db = load_hosts(GOOD)
    argv = ssh_argv(db, ["plan", "--json", f"--policy={db.policy}"])
    assert argv[:3] == ["ssh", "-n", "-T"]
    assert argv.index("BatchMode=yes") < argv.index("/keys/fleet")  # ssh keeps the first value it reads
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "root"
    assert argv[-3:-1] == ["--", "db1"]
    assert argv[-1] == remote_command(db, ["plan", "--json", f"--policy={db.policy}"])
    assert "'--policy=/etc/tamer/policy with spaces.toml'" in argv[-1]
    assert argv[-1].startswith("sudo -n /opt/tamer/bin/tamer plan")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('hosts = ["ssh://a"]\ncolour = "red"', "unknown key 'colour'"),
        ('[[hosts]]\nurl = "ssh://a"\nport = 22', "unknown key 'port'"),
        ('[defaults]\nurl = "ssh://a"\n[[hosts]]\nurl = "ssh://b"', "unknown key 'url'"),
        ('hosts = ["http://a"]', "not an ssh:// address"),
        ('hosts = ["ssh://a:0"]', "expected 1 to 65535"),
        ('hosts = ["ssh://a:70000"]', "expected 1 to 65535"),
        ('hosts = ["ssh://a:22x"]', "expected 1 to 65535"),
        ('hosts = ["ssh://u:secret@a"]', "carries a password"),
        ('hosts = ["ssh://-oProxyCommand=x"]', "no usable host name"),
        ('hosts = ["ssh://-l@a"]', "unusable user name"),
        ('hosts = ["ssh://a/path"]', "path, query or fragment"),
        ('hosts = ["ssh://a b"]', "whitespace"),
        ('hosts = ["ssh://::1"]', "in brackets"),
        ('hosts = ["ssh://a", "ssh://A:22"]', "same host as hosts[1]"),
        ('hosts = ["ssh://u@a", "ssh://u@a"]', "same host as hosts[1]"),
        ('[[hosts]]\nurl = "ssh://a"\nname = "x"\n[[hosts]]\nurl = "ssh://b"\nname = "x"', "already used"),
        ("hosts = []", "lists no hosts"),
        ("version = 2\nhosts = ['ssh://a']", "version = 2"),
        ('hosts = ["ssh://a"', "not valid TOML"),
        ("hosts = [3]", "must be a URL string or a table"),
        ('[[hosts]]\nname = "x"', "has no url"),
        ('[[hosts]]\nurl = "ssh://a"\nlabels = { role = 3 }', "labels.role must be a one-line string"),
        ('[[hosts]]\nurl = "ssh://a"\nlabels = { "a b" = "x" }', "label name"),
        ('[[hosts]]\nurl = "ssh://a"\ntamer = "-oops"', "must start with the program"),
        ('[[hosts]]\nurl = "ssh://a"\ntamer = ""', "must start with the program"),
        ('[[hosts]]\nurl = "ssh://a"\ntamer = "tamer \'unclosed"', "not a command line"),
        ('[[hosts]]\nurl = "ssh://a"\nssh_options = "-i key"', "ssh_options must be a list"),
        ('[[hosts]]\nurl = "ssh://a"\nconnect_timeout = 0', "connect_timeout"),
        ('[[hosts]]\nurl = "ssh://a"\nconnect_timeout = true', "connect_timeout"),
        ('[[hosts]]\nurl = "ssh://a"\npolicy = ""', "policy must be a one-line path"),
    ],
)
def test_bad_files_are_refused_with_the_entry_and_the_key(text: str, said: str) -> None:
    with pytest.raises(UsageError) as err:
        load_hosts(text, "hosts file H")
    assert said in str(err.value) and str(err.value).startswith("hosts file H")


def test_parse_url_round_trip() -> None:
    assert parse_url("ssh://admin@web1:2222", "x") == ("admin", "web1", 2222)
    assert parse_url("SSH://web1/", "x") == (None, "web1", None)


@pytest.mark.parametrize(
    "text",
    ['hosts = ["ssh://a"]\nextra = 1', 'hosts = ["ssh://a:99999"]', 'hosts = ["ssh://a", "ssh://a"]'],
)
def test_the_cli_says_so_with_exit_2_and_runs_nothing(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_ssh(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may run for a bad hosts file")

    monkeypatch.setattr(ssh.subprocess, "run", no_ssh)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(text)
    for action in (["df"], ["plan"], ["clean", "--apply", "--yes"], ["history"]):
        assert main(["fleet", *action, "--hosts", str(hosts), "--json"]) == 2
        doc = json.loads(capsys.readouterr().out)
        assert doc["status"] == "usage" and str(hosts) in doc["errors"][0]
    assert main(["fleet", "df", "--hosts", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_fleet_options_are_checked_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ssh.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["ssh://a"]')
    for argv in (
        ["fleet", "df"],  # no --hosts
        ["fleet", "df", "--hosts", str(hosts), "--parallel", "0"],
        ["fleet", "df", "--hosts", str(hosts), "--timeout", "-1"],
        ["fleet", "history", "--hosts", str(hosts), "--since", "soon"],
        ["fleet", "df", "--hosts", str(hosts), "-H", "unix:///x.sock"],
        ["-H", "unix:///x.sock", "fleet", "df", "--hosts", str(hosts)],
        ["fleet"],
    ):
        assert main(argv) == 2, argv
        assert "tamer: error:" in capsys.readouterr().err
    not_a_plan = tmp_path / "notes.txt"
    not_a_plan.write_text("mine")
    assert main(["fleet", "plan", "--hosts", str(hosts), "-o", str(not_a_plan)]) == 2
    assert not_a_plan.read_text() == "mine"
    assert main(["fleet", "clean", "--hosts", str(hosts), "--plan", str(not_a_plan), "--apply", "--yes"]) == 2


def test_apply_without_a_terminal_needs_yes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["ssh://a"]')
    assert main(["fleet", "clean", "--hosts", str(hosts), "--apply"]) == 2


def test_apply_with_json_needs_yes_even_at_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["ssh://a"]')
    assert main(["fleet", "clean", "--hosts", str(hosts), "--apply", "--json"]) == 2


@pytest.mark.parametrize("answer", ["n", "y"])
def test_the_question_comes_after_every_plan_and_no_applies_nothing(
    answer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tamer.fleet.ssh import Reply
    from tamer.report.envelope import envelope

    calls: list[list[list[str] | None]] = []

    def fake_fleet(hosts: list, args_for, **kw: object) -> list[Reply | None]:  # type: ignore[no-untyped-def]
        asked = [None if (a := args_for(h)) is None else list(a) for h in hosts]
        calls.append(asked)
        out: list[Reply | None] = []
        for h, a in zip(hosts, asked, strict=True):
            if a is None:
                out.append(None)
            elif a[0] == "plan":
                plan = {"plan_id": f"id-{h.name}", "actions": [{"kind": "container", "name": "x"}]}
                out.append(Reply(0, envelope("plan", 0, {**plan, "total_bytes": 5, "refusals": []}), "", 0.1))
            else:
                result = {"plan_id": f"id-{h.name}", "reclaimed": 5, "steps": [{"status": "done"}]}
                out.append(Reply(0, envelope("clean", 0, result), "", 0.1))
        return out

    monkeypatch.setattr("tamer.fleet.ssh.run_on_fleet", fake_fleet)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: answer)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["ssh://a", "ssh://b"]')
    assert main(["fleet", "clean", "--hosts", str(hosts), "--apply"]) == 0
    out = capsys.readouterr().out
    assert "plan id-a would remove" in out and "plan id-b would remove" in out  # every plan was shown
    plan_call = calls[0]
    assert all(
        a is not None and a[0] == "plan" and any(x.startswith("--output=") for x in a) for a in plan_call
    )
    if answer == "n":
        assert len(calls) == 1 and "nothing was removed" in out
    else:
        assert len(calls) == 2
        assert all(a is not None and f"--plan-id=id-{h}" in a for a, h in zip(calls[1], "ab", strict=True))


@pytest.mark.parametrize("command", [["df"], ["plan"]])
def test_an_ssh_engine_address_is_offered_the_fleet_command(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """-H ssh://: volume data, logs and the data-root are on that host; tamer says to run it there."""
    assert main(["-H", "ssh://root@127.0.0.1:1", *command]) == 1
    err = capsys.readouterr().err
    assert "ssh://root@127.0.0.1:1" in err and "tamer fleet df --hosts FILE" in err
