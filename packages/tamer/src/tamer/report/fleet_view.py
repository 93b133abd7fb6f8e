"""Human tables and JSON data for `tamer fleet`: a row per host, its status, and the fleet's total."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tamer.fleet.aggregate import (
    ApplySummary,
    DfSummary,
    FleetDf,
    HostReport,
    HostStatus,
    PlanSummary,
    status_counts,
)
from tamer.report.table import render_table
from tamer.report.units import human_bytes


def host_json(report: HostReport, summary: Any = None) -> dict[str, Any]:
    """One host for --json: who, its status and message, the numbers read, and the remote envelope whole."""
    return {
        "name": report.host.name,
        "url": report.host.url,
        "labels": dict(report.host.labels),
        "status": report.status.value,
        "message": report.message,
        "exit_code": report.exit_code,
        "seconds": round(report.seconds, 3),
        "summary": dataclasses.asdict(summary) if summary is not None else None,
        "envelope": report.envelope,
    }


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _headline(command: str, reports: Sequence[HostReport]) -> str:
    counts = status_counts(reports)
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: kv[0] != "ok"))
    return f"tamer fleet {command} on {len(reports)} host(s): {parts}"


def _problems(reports: Sequence[HostReport]) -> list[str]:
    lines = [f"{r.host.name}: {r.status.value}: {r.message}" for r in reports if not r.ok and r.message]
    for r in reports:
        lines.extend(f"{r.host.name}: {w}" for w in r.warnings)
    return lines


def fleet_df_json(fleet: FleetDf) -> dict[str, Any]:
    return {
        "hosts": [host_json(r, s) for r, s in zip(fleet.reports, fleet.summaries, strict=True)],
        "total": {**dataclasses.asdict(fleet.total), "reclaimable": fleet.total.reclaimable},
        "hosts_reported": fleet.reported,
        "hosts_total": len(fleet.reports),
        "counts": status_counts(fleet.reports),
    }


def _money(s: DfSummary | None) -> list[str]:
    if s is None:
        return ["-", "-", "-", "-"]
    return [
        human_bytes(s.size),
        human_bytes(s.safe),
        human_bytes(s.needs_decision),
        human_bytes(s.reclaimable),
    ]


def render_fleet_df(fleet: FleetDf) -> str:
    rows = [
        [r.host.name, labels_text(r.host.labels), r.status.value, *_money(s)]
        for r, s in zip(fleet.reports, fleet.summaries, strict=True)
    ]
    rows.append([f"TOTAL ({fleet.reported} of {len(fleet.reports)} hosts)", "", "", *_money(fleet.total)])
    out = [
        _headline("df", fleet.reports),
        "",
        render_table(
            ["HOST", "LABELS", "STATUS", "SIZE", "SAFE TO FREE", "NEEDS A DECISION", "RECLAIMABLE"],
            rows,
            right=(3, 4, 5, 6),
        ),
    ]
    if fleet.reported < len(fleet.reports):
        out.append(f"the total counts only the {fleet.reported} host(s) that reported")
    problems = _problems(fleet.reports)
    if problems:
        out.append("")
        out.extend(problems)
    return printable("\n".join(out))


def render_plans(reports: Sequence[HostReport], summaries: Sequence[PlanSummary | None]) -> str:
    """Every host's plan: a summary row each, then what each plan would remove, in the host's own words."""
    rows = []
    for r, s in zip(reports, summaries, strict=True):
        rows.append(
            [
                r.host.name,
                labels_text(r.host.labels),
                r.status.value,
                s.plan_id if s else "-",
                str(s.actions) if s else "-",
                human_bytes(s.frees) if s else "-",
                str(s.kept) if s else "-",
            ]
        )
    total = sum(s.frees for s in summaries if s is not None)
    reported = sum(s is not None for s in summaries)
    rows.append(
        [
            f"TOTAL ({reported} of {len(reports)} hosts)",
            "",
            "",
            "",
            str(sum(s.actions for s in summaries if s)),
            human_bytes(total),
            "",
        ]
    )
    out = [
        render_table(
            ["HOST", "LABELS", "STATUS", "PLAN ID", "REMOVES", "FREES", "KEEPS"], rows, right=(4, 5, 6)
        )
    ]
    for r, s in zip(reports, summaries, strict=True):
        if s is None or not s.actions:
            continue
        data = r.data if isinstance(r.data, Mapping) else {}
        actions = [a for a in data.get("actions") or [] if isinstance(a, Mapping)]
        head = f"\n{r.host.name}: plan {s.plan_id} would remove {s.actions} object(s), freeing {human_bytes(s.frees)}"
        if not actions:
            out.append(f"{head} (the plan is kept sealed on the host, as {r.host.plan_file})")
            continue
        out.append(head + ":")
        out.append(
            render_table(
                ["KIND", "NAME", "FREES", "REASON"],
                [
                    [
                        str(a.get("kind")),
                        _short(str(a.get("name"))),
                        human_bytes(_int(a.get("bytes"))),
                        str(a.get("reason") or a.get("code")),
                    ]
                    for a in actions
                ],
                right=(2,),
            )
        )
    problems = _problems(reports)
    if problems:
        out.append("")
        out.extend(problems)
    return printable("\n".join(out))


def render_fleet_plan(
    reports: Sequence[HostReport], summaries: Sequence[PlanSummary | None], *, command: str = "plan"
) -> str:
    return _headline(command, reports) + "\n\n" + render_plans(reports, summaries)


def render_applied(
    plans: Sequence[PlanSummary | None],
    applied: Sequence[HostReport],
    results: Sequence[ApplySummary | None],
) -> str:
    rows = []
    for shown, r, res in zip(plans, applied, results, strict=True):
        steps = res.steps if res else {}
        rows.append(
            [
                r.host.name,
                r.status.value,
                shown.plan_id if shown else "-",
                human_bytes(res.reclaimed) if res else "-",
                str(steps.get("done", 0) + steps.get("gone", 0)) if res else "-",
                str(steps.get("skipped", 0)) if res else "-",
                str(steps.get("failed", 0)) if res else "-",
            ]
        )
    freed = sum(res.reclaimed for res in results if res is not None)
    rows.append(["TOTAL", "", "", human_bytes(freed), "", "", ""])
    out = [
        _headline("clean --apply", applied),
        "",
        render_table(
            ["HOST", "STATUS", "PLAN ID", "FREED", "REMOVED", "SKIPPED", "FAILED"], rows, right=(3, 4, 5, 6)
        ),
    ]
    problems = _problems(applied)
    if problems:
        out.append("")
        out.extend(problems)
    return printable("\n".join(out))


def render_fleet_history(reports: Sequence[HostReport]) -> str:
    """A row per host from its `tamer history --json`: snapshots, growth over the window, free space, forecast."""
    rows = []
    changes = []
    for r in reports:
        h = _history(r)
        if h is not None and isinstance(h["change"], int):
            changes.append(h["change"])
        rows.append(
            [r.host.name, labels_text(r.host.labels), r.status.value]
            + (
                [
                    str(h["snapshots"]),
                    _signed(h["change"]),
                    _signed(h["per_day"]),
                    human_bytes(h["free"]),
                    h["forecast"],
                ]
                if h is not None
                else ["-", "-", "-", "-", "-"]
            )
        )
    rows.append(
        [f"TOTAL ({len(changes)} of {len(reports)} hosts)", "", "", "", _signed(sum(changes)), "", "", ""]
    )
    out = [
        _headline("history", reports),
        "",
        render_table(
            ["HOST", "LABELS", "STATUS", "SNAPSHOTS", "GREW", "PER DAY", "FREE", "DISK FULL"],
            rows,
            right=(3, 4, 5, 6),
        ),
    ]
    hints = [
        f"{r.host.name}: {r.data['hint']}"
        for r in reports
        if r.ok and isinstance(r.data, Mapping) and isinstance(r.data.get("hint"), str) and r.data["hint"]
    ]
    problems = _problems(reports)
    if hints or problems:
        out.append("")
        out.extend([*problems, *hints])
    return printable("\n".join(out))


def _history(report: HostReport) -> dict[str, Any] | None:
    """The few figures of a host's history data that the fleet table shows; None when it has none."""
    data = report.data
    if report.status is not HostStatus.OK or not isinstance(data, Mapping):
        return None
    total = _table(data.get("total"))
    forecast = _table(data.get("forecast"))
    status = str(forecast.get("status") or "-")
    full = forecast.get("full_at")
    if isinstance(full, str) and full:
        status = f"{full[:10]}"
        earliest, latest = forecast.get("full_earliest"), forecast.get("full_latest")
        if isinstance(earliest, str) and earliest:
            status += (
                f" ({earliest[:10]} to {latest[:10] if isinstance(latest, str) and latest else 'never'})"
            )
    snapshots = data.get("snapshots")
    return {
        "snapshots": snapshots if isinstance(snapshots, int) else "?",
        "change": _int(total.get("change")),
        "per_day": _int_or_round(total.get("per_day")),
        "free": _int(forecast.get("free_bytes")),
        "forecast": status,
    }


def _table(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _signed(n: int | None) -> str:
    if n is None:
        return "-"
    return ("+" if n >= 0 else "-") + human_bytes(abs(n))


def _int_or_round(value: Any) -> int | None:
    if isinstance(value, float):
        return round(value)
    return _int(value)


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with control characters shown as "?": what a host sends back (a container name, a message)
    must not reach the terminal as escape sequences."""
    return _CONTROL.sub("?", text)


def _short(text: str, width: int = 44) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
