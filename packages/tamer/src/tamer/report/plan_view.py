"""Human rendering and JSON of a cleanup Plan, an apply result and the journal (codes become prose here)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from tamer.apply import ApplyResult
from tamer.journal import Run, Step
from tamer.plan import Plan
from tamer.report.reasons import describe, describe_note
from tamer.report.table import render_table
from tamer.report.units import human_bytes


def _short(text: str, width: int = 44) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as data for --json: every code with its facts, and the prose made from them."""
    data = plan.to_json()
    for a in data["actions"]:
        a["reason"] = describe(a["code"], a["facts"])
    for r in data["refusals"]:
        r["why"] = describe(r["code"], r["facts"])
    for n in data["notes"]:
        n["text"] = describe_note(n["code"], n["facts"])
    return data


def step_detail(code: str, facts: dict[str, Any] | None, legacy: str = "") -> str:
    """A step's detail: prose from its code, or the text an older tamer journaled."""
    if not code:
        return legacy or str((facts or {}).get("detail", ""))
    if code == "not-eligible-now" and facts and facts.get("now_code"):
        return "changed since the plan: the plan's policy keeps it now: " + describe(
            facts["now_code"], facts.get("now_facts")
        )
    return describe(code, facts)


def render_plan(plan: Plan, *, verbose: bool = False) -> str:
    out = [f"Plan {plan.plan_id} for {plan.host} (policy: {plan.policy})"]
    if plan.actions:
        out.append(
            f"\nWould remove {len(plan.actions)} object(s), freeing {human_bytes(plan.total_bytes)} on disk:"
        )
        out.append(
            render_table(
                ["KIND", "NAME", "FREES", "REASON"],
                [
                    [a.kind, _short(a.name), human_bytes(a.bytes), describe(a.code, a.facts)]
                    for a in plan.actions
                ],
                right=(2,),
            )
        )
    else:
        out.append("\nNothing to remove under this policy.")
    if plan.refusals:
        # ties broken by kind, name and id: the engine lists volumes in no fixed order, and two runs on an
        # unchanged host must show the same fifteen
        largest = sorted(plan.refusals, key=lambda r: (-r.bytes, r.kind, r.name, r.id))
        shown = plan.refusals if verbose else largest[:15]
        out.append(
            f"\nWould keep {len(plan.refusals)} object(s)"
            + ("" if verbose or len(shown) == len(plan.refusals) else " (largest shown; -v for all)")
            + ":"
        )
        out.append(
            render_table(
                ["KIND", "NAME", "SIZE", "WHY"],
                [[r.kind, _short(r.name), human_bytes(r.bytes), describe(r.code, r.facts)] for r in shown],
                right=(2,),
            )
        )
    for note in plan.notes:
        out.append(f"note: {describe_note(note.code, note.facts)}")
    return "\n".join(out)


def result_json(result: ApplyResult) -> dict[str, Any]:
    steps = []
    for s in result.steps:
        d = dataclasses.asdict(s)
        d["status"] = s.status.value
        d["detail"] = step_detail(s.code, s.facts)
        steps.append(d)
    return {
        "run_id": result.run_id,
        "plan_id": result.plan_id,
        "resumed": result.resumed,
        "reclaimed": result.reclaimed,
        "steps": steps,
    }


def render_apply(result: ApplyResult) -> str:
    counts = Counter(s.status.value for s in result.steps)
    head = (
        f"{'Finished interrupted' if result.resumed else 'Applied'} plan {result.plan_id} (journal run "
        f"{result.run_id}): freed {human_bytes(result.reclaimed)}; "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    )
    rows = [
        [s.status.value, s.kind, _short(s.name), human_bytes(s.bytes), step_detail(s.code, s.facts)]
        for s in result.steps
    ]
    return head + (
        "\n" + render_table(["STATUS", "KIND", "NAME", "SIZE", "DETAIL"], rows, right=(3,)) if rows else ""
    )


def _step_row(s: Step) -> list[str]:
    return [
        s.status.value,
        s.kind,
        _short(s.name),
        human_bytes(s.bytes),
        step_detail(s.code, s.facts, s.detail),
    ]


def render_run(run: Run) -> str:
    counts = Counter(s.status.value for s in run.steps)
    head = f"Journal run {run.id} (plan {run.plan_id}, {run.status}): " + ", ".join(
        f"{n} {k}" for k, n in sorted(counts.items())
    )
    return (
        head
        + "\n"
        + render_table(
            ["STATUS", "KIND", "NAME", "SIZE", "DETAIL"], [_step_row(s) for s in run.steps], right=(3,)
        )
    )
