"""Judging each host's reply and adding up the fleet: pure, on replies made here."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tamer.fleet.aggregate import (
    HostStatus,
    aggregate_df,
    apply_message,
    apply_summary,
    check_plans,
    classify,
    fleet_exit_code,
    parse_envelope,
)
from tamer.fleet.hosts import Host
from tamer.fleet.ssh import Reply
from tamer.report.envelope import envelope
from tamer.report.fleet_view import fleet_df_json, render_fleet_df

H = Host("web1", "ssh://root@web1", "web1", "root", labels={"role": "web"})
H2 = Host("web2", "ssh://root@web2", "web2", "root")
H3 = Host("web3", "ssh://root@web3", "web3", "root")


def df_data(image: int, volume: int, safe: int, decision: int) -> dict[str, Any]:
    return {
        "totals": [
            {"kind": "image", "count": 1, "active": 1, "size": image, "safe": 0, "needs_decision": 0},
            {
                "kind": "volume",
                "count": 2,
                "active": 1,
                "size": volume,
                "safe": safe,
                "needs_decision": decision,
            },
        ],
        "safe_bytes": safe,
        "decision_bytes": decision,
        "sizing": "local",
        "notes": [],
    }


def reply(code: int, data: Any = None, errors: list[str] | None = None, rc: int | None = None) -> Reply:
    return Reply(code if rc is None else rc, envelope("df", code, data, errors), "", 0.5)


def test_an_envelope_is_the_host_s_own_status() -> None:
    ok = classify(H, reply(0, df_data(10, 20, 5, 3), ["warning: state unreadable"]), timeout=9)
    assert ok.status is HostStatus.OK and ok.message == "" and ok.warnings == ["warning: state unreadable"]
    err = classify(H, reply(1, None, ["no Docker engine answered at unix:///x"]), timeout=9)
    assert err.status is HostStatus.ERROR and "no Docker engine answered" in err.message
    assert classify(H, reply(2, None, ["bad policy"]), timeout=9).status is HostStatus.USAGE
    assert classify(H, reply(3, {}), timeout=9).status is HostStatus.PARTIAL
    assert classify(H, reply(130, None, ["interrupted"]), timeout=9).status is HostStatus.INTERRUPTED


def test_ssh_failures_are_named_for_what_they_are() -> None:
    down = classify(
        H, Reply(255, "", "ssh: connect to host web1 port 22: Connection refused\n", 0.1), timeout=9
    )
    assert down.status is HostStatus.UNREACHABLE and "Connection refused" in down.message
    missing = classify(H, Reply(127, "", "bash: line 1: tamer: command not found\n", 0.1), timeout=9)
    assert missing.status is HostStatus.NO_TAMER and "command not found" in missing.message
    assert "tamer = " in missing.message  # says what to do
    assert classify(H, Reply(126, "", "Permission denied", 0.1), timeout=9).status is HostStatus.NO_TAMER
    slow = classify(H, Reply(None, "", "", 9.0, timed_out=True), timeout=9)
    assert slow.status is HostStatus.TIMEOUT and "9s" in slow.message
    junk = classify(H, Reply(0, "Welcome!\nnot json", "", 0.1), timeout=9)
    assert junk.status is HostStatus.BAD_REPLY and "without tamer's --json envelope" in junk.message
    # a remote tamer that printed its envelope and then exited 255 is judged by its envelope
    assert classify(H, reply(0, df_data(1, 1, 0, 0), rc=255), timeout=9).status is HostStatus.OK


def test_a_login_banner_before_the_envelope_is_skipped() -> None:
    text = "Last login: today\n{not json\n" + envelope("df", 0, {"x": 1})
    assert parse_envelope(text) == json.loads(envelope("df", 0, {"x": 1}))
    assert parse_envelope('{"version": 2, "exit_code": 0}') is None
    assert parse_envelope("") is None


def test_the_fleet_total_adds_the_hosts_that_reported_and_no_host_is_dropped() -> None:
    reports = [
        classify(H, reply(0, df_data(100, 2_000, 300, 40)), timeout=9),
        classify(H2, Reply(255, "", "Connection timed out", 5.0), timeout=9),
        classify(H3, reply(0, df_data(7, 11, 1, 2)), timeout=9),
    ]
    fleet = aggregate_df(reports)
    assert [r.host.name for r in fleet.reports] == ["web1", "web2", "web3"]
    assert fleet.summaries[1] is None and fleet.reported == 2
    assert (fleet.total.size, fleet.total.safe, fleet.total.needs_decision) == (2118, 301, 42)
    assert fleet.total.by_kind == {"image": 107, "volume": 2011} and fleet.total.reclaimable == 343
    assert fleet_exit_code(fleet.reports) == 3
    data = fleet_df_json(fleet)
    assert (
        data["hosts_reported"] == 2
        and data["hosts_total"] == 3
        and data["counts"] == {"ok": 2, "unreachable": 1}
    )
    assert data["hosts"][0]["envelope"]["data"]["safe_bytes"] == 300 and data["hosts"][1]["envelope"] is None
    text = render_fleet_df(fleet)
    assert "TOTAL (2 of 3 hosts)" in text and "web2: unreachable: could not reach web2" in text
    assert "role=web" in text and "2.12kB" in text  # 2118 bytes, decimal units as df prints them


def test_every_host_ok_is_exit_0_and_data_that_is_not_df_is_a_bad_reply() -> None:
    good = [classify(h, reply(0, df_data(1, 2, 0, 0)), timeout=9) for h in (H, H2)]
    assert fleet_exit_code(aggregate_df(good).reports) == 0
    odd = aggregate_df([classify(H, reply(0, {"totals": "nope"}), timeout=9)])
    assert odd.reports[0].status is HostStatus.BAD_REPLY and odd.total.size == 0
    assert fleet_exit_code(odd.reports) == 3


def test_plans_and_apply_results_are_read_with_their_ids() -> None:
    plan = {"plan_id": "abc123", "actions": [{"kind": "container"}], "total_bytes": 42, "refusals": []}
    reports, summaries = check_plans(
        [classify(H, reply(0, plan), timeout=9), classify(H2, reply(0, {"what": 1}), timeout=9)]
    )
    assert summaries[0] is not None and (summaries[0].plan_id, summaries[0].actions, summaries[0].frees) == (
        "abc123",
        1,
        42,
    )
    assert summaries[1] is None and reports[1].status is HostStatus.BAD_REPLY
    result = {
        "plan_id": "abc123",
        "reclaimed": 42,
        "steps": [
            {"kind": "container", "name": "a", "status": "done", "detail": ""},
            {"kind": "container", "name": "b", "status": "skipped", "detail": "running now"},
        ],
    }
    summary = apply_summary(result)
    assert summary is not None and summary.steps == {"done": 1, "skipped": 1} and summary.reclaimed == 42
    partial = apply_message(classify(H, reply(3, result), timeout=9), summary)
    assert partial.status is HostStatus.PARTIAL and "container b: skipped, running now" in partial.message
    assert apply_summary({"no": "steps"}) is None


@pytest.mark.parametrize("code", [1, 4, 99])
def test_unknown_remote_exit_codes_are_errors(code: int) -> None:
    assert classify(H, reply(code, None, ["boom"]), timeout=9).status is HostStatus.ERROR


def test_the_runner_keeps_its_bound_and_the_order_of_the_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from tamer.fleet import ssh

    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def fake(host: Host, args: Any, *, timeout: float, ssh: str) -> Reply:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return Reply(0, host.name, "", 0.05)

    monkeypatch.setattr(ssh, "run_on_host", fake)
    monkeypatch.setattr(ssh, "find_ssh", lambda: "ssh")
    hosts = [Host(f"h{i}", f"ssh://h{i}", f"h{i}") for i in range(7)]
    replies = ssh.run_on_fleet(hosts, lambda h: None if h.name == "h3" else ["df"], parallel=2, timeout=5)
    assert running[1] == 2
    assert [r.stdout if r else None for r in replies] == ["h0", "h1", "h2", None, "h4", "h5", "h6"]


def test_a_host_past_the_timeout_is_stopped_and_reported(tmp_path: Any) -> None:
    from tamer.fleet.ssh import run_on_host

    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text("#!/bin/sh\necho started\nexec sleep 30\n")
    fake_ssh.chmod(0o755)
    got = run_on_host(H, ["df", "--json"], timeout=0.5, ssh=str(fake_ssh))
    assert got.timed_out and got.returncode is None and got.stdout == "started\n"
    assert classify(H, got, timeout=0.5).status is HostStatus.TIMEOUT


def test_what_a_host_sends_back_never_reaches_the_terminal_as_escape_sequences() -> None:
    from tamer.report.fleet_view import render_fleet_plan

    plan = {
        "plan_id": "abc\x1b[2J",
        "actions": [{"kind": "container", "name": "evil\x1b]0;pwned\x07", "bytes": 1, "reason": "r\x1b[31m"}],
        "total_bytes": 1,
        "refusals": [],
    }
    reports, summaries = check_plans(
        [
            classify(H, reply(0, plan), timeout=9),
            classify(H2, Reply(255, "", "ssh: \x1b[31mred\x1b[0m refused", 0.1), timeout=9),
        ]
    )
    text = render_fleet_plan(reports, summaries)
    assert "\x1b" not in text and "\x07" not in text
    assert "evil?]0;pwned?" in text and "ssh: ?[31mred" in text
