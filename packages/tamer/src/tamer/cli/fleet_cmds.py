"""`tamer fleet df|plan|clean|history --hosts FILE`: tamer on every host of a fleet, over OpenSSH.

Each host runs its own tamer (`ssh HOST -- tamer df --json`), which reads its engine, volumes and logs
where they are; this side only parses the envelopes and adds them up. `fleet clean` shows every host's
plan first and then, on --apply, asks each host to apply exactly the plan it showed: the plan is kept
sealed on that host (`tamer plan -o`) and applied with `tamer clean --plan FILE --plan-id ID`, so a host
whose saved plan was replaced refuses, and the host's own apply re-checks every object against its live
state (a container started since is kept, and reported). Exit codes: 0 every host ok, 2 bad input (the
hosts file, an option; nothing was run), 3 at least one host did not report ok (its row says why), 1 no
host could be asked at all (no ssh here).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tamer.cli.app import Outcome, parent_parser
from tamer.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tamer.fleet.aggregate import HostReport, PlanSummary
    from tamer.fleet.hosts import Host

DEFAULT_PARALLEL = 8
DEFAULT_TIMEOUT_S = 900.0
FLEET_PLAN_FORMAT = "tamer-fleet-plan"
FLEET_PLAN_VERSION = 1

DESCRIPTION = """\
Run tamer on every host of a fleet over OpenSSH and add up what each one says.

The hosts file (TOML):

  [defaults]                            # optional, for every host
  ssh_options = ["-i", "~/.ssh/fleet"]
  [[hosts]]
  url = "ssh://admin@web1.example.com"  # ssh://[user@]host[:port]
  labels = { role = "web" }
  [[hosts]]
  url = "ssh://root@db1.example.com:2222"
  policy = "/etc/tamer/policy.toml"     # on that host, for plan and clean
  tamer = "/usr/local/bin/tamer"        # the remote command (default: tamer)

exit codes: 0 every host ok, 2 bad input (nothing run), 3 a host did not report ok, 1 no ssh here
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    shared = parent_parser()
    shared.add_argument(
        "--hosts", required=True, metavar="FILE", help="the hosts file (TOML; see tamer fleet -h)"
    )
    shared.add_argument(
        "--parallel",
        type=_count,
        default=DEFAULT_PARALLEL,
        metavar="N",
        help=f"hosts contacted at once (default {DEFAULT_PARALLEL})",
    )
    shared.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"per host and command (default {DEFAULT_TIMEOUT_S:g}); a host past it is reported, not dropped",
    )
    fleet = sub.add_parser(
        "fleet",
        parents=[common],
        help="df, plan, clean or history on every host of a fleet, over ssh",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fsub = fleet.add_subparsers(dest="fleet_command", metavar="ACTION")
    df = fsub.add_parser(
        "df", parents=[common, shared], help="every host's df: a row each and the fleet's total"
    )
    df.set_defaults(handler=run_fleet_df)
    plan = fsub.add_parser(
        "plan", parents=[common, shared], help="every host's cleanup plan, with its plan id"
    )
    plan.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="keep each plan sealed on its host and list them in FILE, for `fleet clean --plan FILE --apply`",
    )
    plan.set_defaults(handler=run_fleet_plan)
    clean = fsub.add_parser(
        "clean", parents=[common, shared], help="show every host's plan; with --apply, apply exactly those"
    )
    clean.add_argument(
        "--apply", action="store_true", help="apply the plans shown (without a terminal, also --yes)"
    )
    clean.add_argument("--yes", "-y", action="store_true", help="don't ask for confirmation")
    clean.add_argument(
        "--plan", dest="plan_file", metavar="FILE", help="apply the plans `tamer fleet plan -o FILE` showed"
    )
    clean.set_defaults(handler=run_fleet_clean)
    history = fsub.add_parser("history", parents=[common, shared], help="every host's `tamer history`")
    history.add_argument("--since", default=None, help="passed to each host's tamer history (e.g. 30d)")
    history.add_argument("--by", choices=("kind", "owner", "volume"), default=None, help="passed on, too")
    history.set_defaults(handler=run_fleet_history)
    fleet.set_defaults(handler=_needs_action)


def _needs_action(args: argparse.Namespace) -> Outcome:
    raise UsageError("tamer fleet needs an action: df, plan, clean or history, with --hosts FILE")


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 1000, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"expected seconds, more than 0 and at most 86400, got {text!r}")
    return value


def _hosts(args: argparse.Namespace) -> tuple[Host, ...]:
    if args.host is not None:
        raise UsageError(
            "-H/--host names one engine; tamer fleet reaches its hosts through the hosts file "
            "(--hosts FILE), over ssh; drop -H (nothing was run)"
        )
    from tamer.fleet.hosts import read_hosts_file

    return read_hosts_file(args.hosts)


def _run(
    args: argparse.Namespace,
    hosts: Sequence[Host],
    args_for: Callable[[Host], Sequence[str] | None],
    label: str,
) -> list[HostReport | None]:
    """Run on every host; a report per host (None where args_for said nothing to run)."""
    from tamer.cli.progress import Progress
    from tamer.fleet.aggregate import classify
    from tamer.fleet.ssh import run_on_fleet

    progress = Progress(label, enabled=not (args.json or args.quiet))
    try:
        replies = run_on_fleet(
            hosts, args_for, parallel=args.parallel, timeout=args.timeout, progress=progress
        )
    finally:
        progress.close()
    return [
        classify(h, r, timeout=args.timeout) if r is not None else None
        for h, r in zip(hosts, replies, strict=True)
    ]


def _all(reports: list[HostReport | None]) -> list[HostReport]:
    assert all(r is not None for r in reports), "every host was asked"
    return [r for r in reports if r is not None]


def run_fleet_df(args: argparse.Namespace) -> Outcome:
    from tamer.fleet.aggregate import aggregate_df, fleet_exit_code
    from tamer.report.fleet_view import fleet_df_json, render_fleet_df

    hosts = _hosts(args)
    fleet = aggregate_df(_all(_run(args, hosts, lambda h: ["df", "--json"], "hosts")))
    return Outcome(fleet_df_json(fleet), render_fleet_df(fleet), fleet_exit_code(fleet.reports))


def _plan_args(host: Host, *, keep: bool) -> list[str]:
    args = ["plan", "--json"]
    if host.policy:
        args.append(f"--policy={host.policy}")
    if keep:
        args.append(f"--output={host.plan_file}")
    return args


def run_fleet_plan(args: argparse.Namespace) -> Outcome:
    from tamer.fleet.aggregate import check_plans, fleet_exit_code
    from tamer.report.fleet_view import host_json, render_fleet_plan

    hosts = _hosts(args)
    if args.output:
        _check_fleet_plan_target(args.output)  # before any host is asked, so bad input runs nothing
    keep = bool(args.output)
    reports, summaries = check_plans(_all(_run(args, hosts, lambda h: _plan_args(h, keep=keep), "hosts")))
    text = render_fleet_plan(reports, summaries)
    data: dict[str, Any] = {"hosts": [host_json(r, s) for r, s in zip(reports, summaries, strict=True)]}
    if args.output:
        entries = [
            {
                "name": r.host.name,
                "url": r.host.url,
                "plan_file": r.host.plan_file,
                "plan_id": s.plan_id,
                "actions": s.actions,
                "frees": s.frees,
            }
            if s is not None
            else {
                "name": r.host.name,
                "url": r.host.url,
                "plan_file": None,
                "plan_id": None,
                "actions": None,
                "frees": None,
            }
            for r, s in zip(reports, summaries, strict=True)
        ]
        _write_fleet_plan(args.output, args.hosts, entries)
        data["saved"] = args.output
        text += (
            f"\n\nsaved to {args.output} (each plan is kept sealed on its host); "
            f"`tamer fleet clean --hosts {args.hosts} --plan {args.output} --apply` applies exactly these"
        )
    return Outcome(data, text, fleet_exit_code(reports))


def run_fleet_clean(args: argparse.Namespace) -> Outcome:
    from tamer.fleet.aggregate import (
        HostReport,
        HostStatus,
        apply_summary,
        check_plans,
        fleet_exit_code,
    )
    from tamer.report.fleet_view import host_json, render_applied, render_fleet_plan

    if args.apply and not args.yes and not sys.stdin.isatty():
        raise UsageError("--apply without a terminal also needs --yes (nothing was run, nothing removed)")
    if args.apply and not args.yes and args.json:
        raise UsageError("--apply --json also needs --yes: no question can be asked in the JSON on stdout")
    hosts = _hosts(args)
    if args.plan_file:
        plans, shown = _plans_from_file(args.plan_file, args.hosts, hosts)
        head = f"the plans shown by `tamer fleet plan -o {args.plan_file}`:\n"
    else:
        plans, shown = check_plans(
            _all(_run(args, hosts, lambda h: _plan_args(h, keep=args.apply), "planning"))
        )
        head = ""
    preview = head + render_fleet_plan(plans, shown, command="clean")
    plan_data = [host_json(r, s) for r, s in zip(plans, shown, strict=True)]
    if not args.apply:
        data = {"applied": False, "hosts": [{"plan": p, "apply": None} for p in plan_data]}
        hint = (
            "\n\nThis was a preview: nothing was removed. `--apply` applies these plans "
            "(a host whose plan changed in between refuses)."
        )
        return Outcome(data, preview + hint, fleet_exit_code(plans))
    todo = {r.host.name: s for r, s in zip(plans, shown, strict=True) if s is not None and s.actions}
    if not args.yes and todo:
        print(preview)
        objects = sum(s.actions for s in todo.values())
        answer = (
            input(f"\nApply these plans: {objects} object(s) on {len(todo)} host(s)? [y/N] ").strip().lower()
        )
        if answer not in ("y", "yes"):
            data = {"applied": False, "hosts": [{"plan": p, "apply": None} for p in plan_data]}
            return Outcome(data, "nothing was removed")
        preview = ""

    def apply_args(host: Host) -> list[str] | None:
        summary = todo.get(host.name)
        if summary is None:
            return None
        return [
            "clean",
            "--apply",
            "--yes",
            "--json",
            f"--plan={host.plan_file}",
            f"--plan-id={summary.plan_id}",
        ]

    applied = _run(args, hosts, apply_args, "cleaning")
    finals: list[HostReport] = []
    for plan_report, summary, report in zip(plans, shown, applied, strict=True):
        if report is not None:
            finals.append(_checked_apply(report, summary))
        elif not plan_report.ok:  # its own status stays (unreachable, no-tamer...): it says why
            why = plan_report.message or "no plan was shown for it"
            finals.append(replace(plan_report, message=f"not cleaned: {why}"))
        else:
            finals.append(HostReport(plan_report.host, HostStatus.OK, "nothing to remove", 0))
    results = [apply_summary(r.data) for r in finals]
    data = {
        "applied": True,
        "hosts": [
            {"plan": p, "apply": host_json(r, res)}
            for p, r, res in zip(plan_data, finals, results, strict=True)
        ],
    }
    text = (preview + "\n\n" if preview else "") + render_applied(shown, finals, results)
    return Outcome(data, text, fleet_exit_code([*finals, *plans]))


def _checked_apply(report: HostReport, shown: PlanSummary | None) -> HostReport:
    """A host's apply reply, checked against the plan shown: it must say it applied that very plan."""
    from tamer.fleet.aggregate import HostStatus, apply_message, apply_summary

    result = apply_summary(report.data)
    if report.ok and shown is not None and (result is None or result.plan_id != shown.plan_id):
        said = f"plan {result.plan_id}" if result is not None else "no apply result"
        return replace(
            report,
            status=HostStatus.ERROR,
            message=f"{report.host.name} answered with {said}, not the result of plan {shown.plan_id} that was shown",
        )
    return apply_message(report, result)


def run_fleet_history(args: argparse.Namespace) -> Outcome:
    from tamer.fleet.aggregate import fleet_exit_code
    from tamer.report.fleet_view import host_json, render_fleet_history
    from tamer.report.units import parse_duration

    if args.since is not None:
        parse_duration(args.since)  # a typo fails here, before any host is asked
    hosts = _hosts(args)
    remote = ["history", "--json"]
    if args.since is not None:
        remote.append(f"--since={args.since}")
    if args.by is not None:
        remote.append(f"--by={args.by}")
    reports = _all(_run(args, hosts, lambda h: remote, "hosts"))
    return Outcome(
        {"hosts": [host_json(r) for r in reports]}, render_fleet_history(reports), fleet_exit_code(reports)
    )


# -- the fleet plan file: which plan id each host showed, and where that host keeps it ----------------


MAX_FLEET_PLAN_CHARS = 64 * 1024 * 1024  # a plan id and a few numbers per host


def _read_bounded(path: str) -> str:
    """A fleet plan file's text; ValueError past MAX_FLEET_PLAN_CHARS (`--plan /dev/zero` must not fill
    memory)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read(MAX_FLEET_PLAN_CHARS + 1)
    if len(text) > MAX_FLEET_PLAN_CHARS:
        raise ValueError(f"it is over {MAX_FLEET_PLAN_CHARS} characters, far more than a fleet plan")
    return text


def _check_fleet_plan_target(path: str) -> None:
    """`path` may be a new file or an earlier fleet plan file; never anything else, never a symlink."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not Path(path).parent.is_dir():
            raise UsageError(f"can't write {path}: its folder does not exist; nothing was run") from None
        return
    except OSError as exc:
        raise UsageError(f"can't write {path}: {exc.strerror or exc}; nothing was run") from None
    old: Any = None
    if stat.S_ISREG(st.st_mode):
        try:
            old = json.loads(_read_bounded(path))
        except (OSError, ValueError):
            old = None
    if not (isinstance(old, dict) and old.get("format") == FLEET_PLAN_FORMAT):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a fleet plan saved by tamer"
        raise UsageError(
            f"{path} exists and is {kind}; expected a new file or an earlier `tamer fleet plan -o` file, "
            "so nothing else is overwritten; pick another path; nothing was run"
        )


def _write_fleet_plan(path: str, hosts_file: str, entries: list[dict[str, Any]]) -> None:
    _check_fleet_plan_target(path)
    doc = {
        "format": FLEET_PLAN_FORMAT,
        "version": FLEET_PLAN_VERSION,
        "made_at": datetime.now(UTC).isoformat(),
        "hosts_file": os.path.abspath(hosts_file),
        "hosts": entries,
    }
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(doc, indent=1))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(
            f"can't write {path}: {exc.strerror or exc}; the plans are kept on their hosts but this list "
            "of them was not saved: run `tamer fleet plan -o FILE` again with a writable path"
        ) from None


def _plans_from_file(
    path: str, hosts_file: str, hosts: Sequence[Host]
) -> tuple[tuple[HostReport, ...], tuple[Any, ...]]:
    """The plans a fleet plan file lists, as if just shown: one report per host of the hosts file."""
    from tamer.fleet.aggregate import HostReport, HostStatus, PlanSummary, not_run

    redo = f"make a new one with `tamer fleet plan --hosts {hosts_file} -o FILE`; nothing was run"
    try:
        doc = json.loads(_read_bounded(path))
    except (OSError, ValueError) as exc:
        raise UsageError(f"can't use the fleet plan file {path}: {exc}; {redo}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != FLEET_PLAN_FORMAT
        or not isinstance(doc.get("hosts"), list)
    ):
        raise UsageError(f"{path} is not a fleet plan saved by `tamer fleet plan -o`; {redo}")
    by_name = {h.name: h for h in hosts}
    listed: dict[str, dict[str, Any]] = {}
    for entry in doc["hosts"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise UsageError(f"{path} has an entry that is not a host's plan: {entry!r}; {redo}")
        host = by_name.get(entry["name"])
        if host is None or host.url != entry.get("url"):
            raise UsageError(
                f"{path} lists host {entry['name']!r} ({entry.get('url')}), which the hosts file {hosts_file} "
                f"does not have at that address; use the hosts file the plans were made with; {redo}"
            )
        if host.name in listed:  # which of the two was shown? neither is applied on a guess
            raise UsageError(f"{path} lists host {entry['name']!r} twice; {redo}")
        plan_id, actions = entry.get("plan_id"), entry.get("actions")
        if plan_id is not None and (
            not isinstance(plan_id, str)
            or not isinstance(actions, int)
            or isinstance(actions, bool)
            or actions < 0
            or entry.get("plan_file") != host.plan_file
        ):
            raise UsageError(f"{path}: the entry of {entry['name']!r} is damaged or edited; {redo}")
        listed[host.name] = entry
    reports: list[HostReport] = []
    summaries: list[PlanSummary | None] = []
    for host in hosts:
        entry = listed.get(host.name)
        if entry is None:
            reports.append(not_run(host, f"not in {path}: no plan was shown for it, so it is not cleaned"))
            summaries.append(None)
        elif entry.get("plan_id") is None:
            reports.append(not_run(host, "its plan did not come back when the plans were shown: not cleaned"))
            summaries.append(None)
        else:
            reports.append(HostReport(host, HostStatus.OK, "", 0))
            frees = entry.get("frees")
            frees = frees if isinstance(frees, int) and not isinstance(frees, bool) else 0
            summaries.append(PlanSummary(str(entry["plan_id"]), int(entry["actions"]), frees, 0))
    return tuple(reports), tuple(summaries)
