"""Human tables and JSON data for `tamer fleet`: a row per host, its status, and the fleet's total."""

from __future__ import annotations

import dataclasses
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
    return "\n".join(out)


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
    return "\n".join(out)


def render_fleet_plan(reports: Sequence[HostReport], summaries: Sequence[PlanSummary | None]) -> str:
    return _headline("plan", reports) + "\n\n" + render_plans(reports, summaries)


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
    return "\n".join(out)


def render_fleet_history(reports: Sequence[HostReport]) -> str:
    rows = [[r.host.name, labels_text(r.host.labels), r.status.value, _history_line(r)] for r in reports]
    out = [_headline("history", reports), "", render_table(["HOST", "LABELS", "STATUS", "SUMMARY"], rows)]
    problems = _problems(reports)
    if problems:
        out.append("")
        out.extend(problems)
    out.append("\nper-host detail: --json (each host's own `tamer history --json` envelope)")
    return "\n".join(out)


def _history_line(report: HostReport) -> str:
    """A one-line gist of a host's history data, from whichever of the usual keys it carries."""
    data = report.data
    if report.status is not HostStatus.OK or not isinstance(data, Mapping):
        return "-"
    parts = []
    for key in ("snapshots", "count", "span", "since"):
        value = data.get(key)
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            parts.append(f"{key} {value}")
        elif isinstance(value, list):
            parts.append(f"{len(value)} {key}")
    forecast = data.get("forecast")
    if isinstance(forecast, Mapping):
        said = forecast.get("text") or forecast.get("summary") or forecast.get("status")
        if said:
            parts.append(f"forecast: {said}")
    elif isinstance(forecast, str):
        parts.append(f"forecast: {forecast}")
    return _short(", ".join(parts), 80) or "ok"


def _short(text: str, width: int = 44) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
