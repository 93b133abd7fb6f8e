"""tamer fleet against hostile replies: what a host sends back never sinks the fleet's report or this
machine's memory. The far side is a program standing in for ssh (run as tamer runs ssh)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from tamer.cli import main
from tamer.fleet.aggregate import HostStatus, aggregate_df, check_plans, classify
from tamer.fleet.hosts import Host
from tamer.fleet.ssh import STDERR_TAIL_BYTES, Reply, run_on_host

H = Host("web1", "ssh://root@web1", "web1", "root")
DEEP = '{"version": 1, "exit_code": 0, "errors": [], "data": ' + "[" * 100_000 + "]" * 100_000 + "}"


def _envelope(data: object) -> str:
    return json.dumps(
        {"version": 1, "command": "df", "status": "ok", "exit_code": 0, "data": data, "errors": []}
    )


def test_json_nested_past_python_s_limit_is_a_bad_reply_not_a_crash() -> None:
    report = classify(H, Reply(0, DEEP, "", 0.1), timeout=9)
    assert report.status is HostStatus.BAD_REPLY  # it raised RecursionError out of the fleet command


def test_a_number_past_int_is_a_bad_reply_not_a_crash() -> None:
    totals = [{"kind": "image", "size": 1e400}]
    df = {"totals": totals, "safe_bytes": 0, "decision_bytes": 0}
    report = classify(H, Reply(0, _envelope(df).replace("Infinity", "1e400"), "", 0.1), timeout=9)
    assert aggregate_df([report]).reports[0].status is HostStatus.BAD_REPLY  # OverflowError before
    plan = {"plan_id": "p1", "actions": [], "refusals": [], "total_bytes": 1e400}
    planned = classify(H, Reply(0, _envelope(plan).replace("Infinity", "1e400"), "", 0.1), timeout=9)
    assert check_plans([planned])[0][0].status is HostStatus.BAD_REPLY


def _program(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-ssh"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_host_that_prints_without_end_is_stopped_at_the_limit(tmp_path: Path) -> None:
    ssh = _program(tmp_path, "exec yes 0123456789abcdef")
    started = time.monotonic()
    reply = run_on_host(H, ["df", "--json"], timeout=60, ssh=ssh, limit=1024 * 1024)
    assert time.monotonic() - started < 30  # stopped at the limit, not at the timeout
    assert reply.overflowed and not reply.timed_out and reply.stdout == ""
    report = classify(H, reply, timeout=60)
    assert report.status is HostStatus.BAD_REPLY and "sent more than" in report.message


def test_only_the_end_of_a_huge_stderr_is_kept(tmp_path: Path) -> None:
    ssh = _program(
        tmp_path, "head -c 20000000 /dev/zero | tr '\\0' x >&2; echo 'the real message' >&2; exit 255"
    )
    reply = run_on_host(H, ["df", "--json"], timeout=60, ssh=ssh)
    assert reply.returncode == 255 and len(reply.stderr) <= STDERR_TAIL_BYTES
    assert reply.stderr.endswith("the real message\n")
    assert classify(H, reply, timeout=60).status is HostStatus.UNREACHABLE


def test_a_timeout_still_stops_ssh_and_keeps_what_it_said(tmp_path: Path) -> None:
    ssh = _program(tmp_path, "echo partial; echo 'slow host' >&2; exec sleep 60")
    reply = run_on_host(H, ["df", "--json"], timeout=1, ssh=ssh)
    assert reply.timed_out and reply.returncode is None and "slow host" in reply.stderr


def test_one_hostile_host_does_not_sink_the_fleet_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three hosts through one stand-in ssh: a good df, a nested-past-the-limit reply, a 1e400 size."""
    good = {
        "totals": [{"kind": "image", "count": 1, "active": 1, "size": 100, "safe": 0, "needs_decision": 0}],
        "safe_bytes": 0,
        "decision_bytes": 0,
    }
    replies = tmp_path / "replies"
    replies.mkdir()
    (replies / "good").write_text(_envelope(good))
    (replies / "deep").write_text(DEEP)
    (replies / "inf").write_text(_envelope({**good, "safe_bytes": 1e400}).replace("Infinity", "1e400"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # the destination is the word after `--`; the stand-in prints that host's canned reply
    (bindir / "ssh").write_text(f'#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\ncat {replies}/"$2"\n')
    (bindir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ.get('PATH', '')}")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["ssh://good", "ssh://deep", "ssh://inf"]\n')
    code = main(["fleet", "df", "--hosts", str(hosts), "--json"])
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert code == 3 and doc["exit_code"] == 3, out
    rows = {h["name"]: h["status"] for h in doc["data"]["hosts"]}
    assert rows == {"good": "ok", "deep": "bad-reply", "inf": "bad-reply"}
    assert doc["data"]["total"]["size"] == 100
    assert "internal error" not in out.out + out.err
    assert sys.getrecursionlimit() < 100_000  # the nesting above really is past the limit
