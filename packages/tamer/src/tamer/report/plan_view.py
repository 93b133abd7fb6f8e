"""Human rendering of a cleanup Plan, an apply result and the journal."""

from __future__ import annotations

from collections import Counter

from tamer.apply import ApplyResult
from tamer.journal import Run
from tamer.plan import Plan
from tamer.report.table import render_table
from tamer.report.units import human_bytes


def _short(text: str, width: int = 44) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render_plan(plan: Plan, *, verbose: bool = False) -> str:
    out = [f"Plan {plan.plan_id} for {plan.host} (policy: {plan.policy})"]
    if plan.actions:
        out.append(f"\nWould remove {len(plan.actions)} object(s), reclaiming {human_bytes(plan.total_bytes)}:")
        out.append(render_table(["KIND", "NAME", "SIZE", "REASON"],
                                [[a.kind, _short(a.name), human_bytes(a.bytes), a.reason] for a in plan.actions],
                                right=(2,)))
    else:
        out.append("\nNothing to remove under this policy.")
    if plan.refusals:
        shown = plan.refusals if verbose else sorted(plan.refusals, key=lambda r: -r.bytes)[:15]
        out.append(f"\nWould keep {len(plan.refusals)} object(s)" +
                   ("" if verbose or len(shown) == len(plan.refusals) else " (largest shown; -v for all)") + ":")
        out.append(render_table(["KIND", "NAME", "SIZE", "WHY"],
                                [[r.kind, _short(r.name), human_bytes(r.bytes), r.why] for r in shown], right=(2,)))
    for note in plan.notes:
        out.append(f"note: {note}")
    return "\n".join(out)


def render_apply(result: ApplyResult) -> str:
    counts = Counter(s.status for s in result.steps)
    head = (f"{'Finished interrupted' if result.resumed else 'Applied'} plan {result.plan_id} (journal run "
            f"{result.run_id}): reclaimed {human_bytes(result.reclaimed)}; " +
            ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    rows = [[s.status, s.kind, _short(s.name), human_bytes(s.bytes), s.detail] for s in result.steps]
    return head + ("\n" + render_table(["STATUS", "KIND", "NAME", "SIZE", "DETAIL"], rows, right=(3,)) if rows else "")


def render_run(run: Run) -> str:
    counts = Counter(s.status for s in run.steps)
    head = (f"Journal run {run.id} (plan {run.plan_id}, {run.status}): " +
            ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    rows = [[s.status, s.kind, _short(s.name), human_bytes(s.bytes), s.detail] for s in run.steps]
    return head + "\n" + render_table(["STATUS", "KIND", "NAME", "SIZE", "DETAIL"], rows, right=(3,))
