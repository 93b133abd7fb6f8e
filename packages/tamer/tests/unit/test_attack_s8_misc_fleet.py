"""Hostile review (session 8, helper F) of `tamer fleet`'s sums: a host's reply (another version, a
broken or hostile host) whose numbers are not byte counts is a bad reply, never part of a total."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tamer.fleet.aggregate import HostStatus, aggregate_df, check_plans, classify
from tamer.fleet.hosts import Host
from tamer.fleet.ssh import Reply

HOST = Host("web1", "ssh://web1", "web1")


def _report(data: dict[str, Any]) -> Any:
    envelope = {"version": 1, "command": "df", "status": "ok", "exit_code": 0, "errors": [], "data": data}
    return classify(HOST, Reply(0, json.dumps(envelope), "", 0.1), timeout=10)


def _df(size: Any = 100, safe: Any = 10, decision: Any = 5, totals: Any = None) -> dict[str, Any]:
    return {
        "totals": totals if totals is not None else [{"kind": "images", "size": size}],
        "safe_bytes": safe,
        "decision_bytes": decision,
    }


def test_a_good_df_reply_is_summed() -> None:
    fleet = aggregate_df([_report(_df())])
    assert fleet.reports[0].status is HostStatus.OK
    assert (fleet.total.size, fleet.total.safe, fleet.total.needs_decision) == (100, 10, 5)


@pytest.mark.parametrize(
    "data",
    [
        _df(size=-(10**12)),
        _df(size="100"),
        _df(size=1.9),
        _df(size=True),
        _df(safe=-1),
        _df(decision="5"),
        _df(totals=[{"kind": "images", "size": 1}, {"kind": "images", "size": 2}]),  # one kind twice
        _df(totals=[{"kind": 7, "size": 1}]),
        _df(totals={"kind": "images", "size": 1}),  # a mapping, not a list
    ],
)
def test_a_df_reply_whose_numbers_are_not_byte_counts_is_a_bad_reply_not_summed(data: dict[str, Any]) -> None:
    # int() took "100", 1.9, True and -10**12; a kind listed twice lost the first size
    fleet = aggregate_df([_report(data), _report(_df())])
    assert fleet.reports[0].status is HostStatus.BAD_REPLY, fleet.reports[0]
    assert fleet.reports[1].status is HostStatus.OK
    assert (fleet.total.size, fleet.total.safe, fleet.total.needs_decision) == (100, 10, 5)


@pytest.mark.parametrize(
    "data",
    [
        {"plan_id": "ab", "actions": "xyz", "total_bytes": 1, "refusals": []},  # len("xyz") was 3 actions
        {"plan_id": "ab", "actions": [], "total_bytes": -1, "refusals": []},
        {"plan_id": "ab", "actions": [], "total_bytes": "7", "refusals": []},
        {"plan_id": "ab", "actions": [], "total_bytes": 0, "refusals": {"a": 1}},
    ],
)
def test_a_plan_reply_that_is_not_a_plan_is_a_bad_reply(data: dict[str, Any]) -> None:
    reports, summaries = check_plans([_report(data)])
    assert reports[0].status is HostStatus.BAD_REPLY and summaries == (None,), reports[0]


def test_a_fleet_plan_file_that_lists_a_host_twice_is_refused_and_nothing_runs(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the second entry silently won: a hand-merged file applied a plan nobody chose between
    from tamer.cli.app import main
    from tamer.fleet.hosts import read_hosts_file

    def no_ssh(*a: Any, **k: Any) -> Any:
        raise AssertionError("a host was contacted")

    monkeypatch.setattr("tamer.fleet.ssh.run_on_fleet", no_ssh)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["ssh://a"]')
    (host,) = read_hosts_file(str(hosts))

    def entry(plan_id: str, actions: Any = 1) -> dict[str, Any]:
        return {
            "name": "a",
            "url": "ssh://a",
            "plan_id": plan_id,
            "actions": actions,
            "frees": 5,
            "plan_file": host.plan_file,
        }

    for entries in ([entry("0" * 16), entry("1" * 16)], [entry("0" * 16, True)], [entry("0" * 16, -1)]):
        plan = tmp_path / "fleet-plan.json"
        plan.write_text(json.dumps({"format": "tamer-fleet-plan", "version": 1, "hosts": entries}))
        code = main(["fleet", "clean", "--hosts", str(hosts), "--plan", str(plan), "--apply", "--yes"])
        assert code == 2, entries
        err = capsys.readouterr().err
        assert "twice" in err or "damaged" in err, err


def test_a_hosts_file_that_never_ends_is_refused_not_read_into_memory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # --hosts /dev/zero read without end (memory filled); a file past the limit is refused, nothing run
    from tamer.cli.app import main
    from tamer.fleet import hosts as hosts_module

    def no_ssh(*a: Any, **k: Any) -> Any:
        raise AssertionError("a host was contacted")

    monkeypatch.setattr("tamer.fleet.ssh.run_on_fleet", no_ssh)
    monkeypatch.setattr(hosts_module, "MAX_HOSTS_FILE_CHARS", 1 << 20)  # the same check, sooner
    assert main(["fleet", "df", "--hosts", "/dev/zero"]) == 2
    err = capsys.readouterr().err
    assert "over" in err and "/dev/zero" in err, err
    big = tmp_path / "hosts.toml"
    big.write_text('hosts = ["ssh://a"]\n' + "#" * (1 << 20))
    assert main(["fleet", "df", "--hosts", str(big)]) == 2
    assert "over" in capsys.readouterr().err


def test_a_fleet_plan_file_that_never_ends_is_refused(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tamer.cli import fleet_cmds
    from tamer.cli.app import main

    def no_ssh(*a: Any, **k: Any) -> Any:
        raise AssertionError("a host was contacted")

    monkeypatch.setattr("tamer.fleet.ssh.run_on_fleet", no_ssh)
    monkeypatch.setattr(fleet_cmds, "MAX_FLEET_PLAN_CHARS", 1 << 20)  # the same check, sooner
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["ssh://a"]')
    code = main(["fleet", "clean", "--hosts", str(hosts), "--plan", "/dev/zero", "--apply", "--yes"])
    assert code == 2
    assert "over" in capsys.readouterr().err
