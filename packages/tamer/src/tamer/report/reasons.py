"""Reason codes and their facts -> the sentence a user reads. The only place that words decisions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tamer.reasons import NoteCode, Reason
from tamer.report.units import human_bytes

Facts = Mapping[str, Any]


def ago(seconds: float | None) -> str:
    """A duration in seconds, short: 45s, 12m, 5h, 8d ('?' when unknown)."""
    if seconds is None:
        return "?"
    s = max(0.0, float(seconds))
    if s < 120:
        return f"{int(s)}s"
    if s < 7200:
        return f"{int(s // 60)}m"
    if s < 172800:
        return f"{int(s // 3600)}h"
    return f"{int(s // 86400)}d"


def _names(facts: Facts, key: str = "users") -> str:
    return ", ".join(str(n) for n in facts.get(key) or []) or "?"


def _clock(f: Facts) -> str:
    if f.get("since") == "unknown":
        return "just found orphaned (its clock starts now)"
    if f.get("since") == "tamer":
        return (
            f"unused for {ago(f.get('orphaned_for'))} as far as tamer knows (since it last saw it in use, "
            "or first seen orphaned)"
        )
    return f"unused for {ago(f.get('orphaned_for'))} (from `tamer watch`)"


_PROSE: dict[Reason, Callable[[Facts], str]] = {
    Reason.CONTAINER_STOPPED: lambda f: (
        f"{f.get('state')} {ago(f.get('stopped_for'))} ago; policy removes {f.get('state')} containers"
    ),
    Reason.VOLUME_ORPHANED: lambda f: (
        f"orphaned anonymous volume, unused for {ago(f.get('orphaned_for'))}"
        + (" (tamer's clock)" if f.get("since") == "tamer" else "")
    ),
    Reason.VOLUME_NAMED_RULE: lambda f: (
        "named volume selected by a [[volumes.named]] rule; backed up, verified and proven to restore first"
    ),
    Reason.IMAGE_DANGLING: lambda f: "dangling (untagged) and unused",
    Reason.IMAGE_UNUSED: lambda f: (
        f"unused for {ago(f.get('unused_for'))} (policy: {ago(f.get('threshold'))})"
    ),
    Reason.CACHE_UNUSED: lambda f: f"unused for {ago(f.get('unused_for'))}",
    Reason.CACHE_OVER_BUDGET: lambda f: (
        f"build cache over its {human_bytes(f.get('budget'))} budget; least recently used"
    ),
    Reason.BUDGET_LRU: lambda f: (
        f"over budget by {human_bytes(f.get('over'))} (budget "
        f"{human_bytes(f.get('budget'))}); least recently used, "
        + (
            f"last used {ago(f['last_used_for'])} ago"
            if f.get("last_used_for") is not None
            else "never seen used"
        )
    ),
    Reason.RUNNING: lambda f: f"{f.get('state')}: running containers are never touched",
    Reason.PROTECTED_LABEL: lambda f: f"protected by label {f.get('label')}",
    Reason.POLICY_KEEPS_CONTAINERS: lambda f: "the policy removes no containers",
    Reason.STATE_NOT_SELECTED: lambda f: (
        f"state {f.get('state')} is not one the policy removes ({', '.join(f.get('states') or [])})"
    ),
    Reason.NAME_KEPT: lambda f: "name matches keep_names",
    Reason.NAME_NOT_SELECTED: lambda f: "name matches none of the policy's names",
    Reason.LABEL_NOT_SELECTED: lambda f: "has none of the policy's labels",
    Reason.NAMED_ON_PURPOSE: lambda f: "named on purpose (the policy removes only containers docker named)",
    Reason.CONTAINER_TOO_RECENT: lambda f: (
        f"too recent: {f.get('state')} {ago(f.get('stopped_for'))} ago, "
        f"policy waits {ago(f.get('threshold'))}"
    ),
    Reason.VOLUME_IN_USE: lambda f: f"in use by running container(s): {_names(f)}",
    Reason.VOLUME_USED_BY_STOPPED: lambda f: f"used by stopped container(s) that stay: {_names(f)}",
    Reason.VOLUME_USERS_GO_THIS_RUN: lambda f: (
        f"its container(s) {_names(f)} are removed in this run; the "
        "volume's orphan clock starts then, never in the same run"
    ),
    Reason.POLICY_KEEPS_ANONYMOUS: lambda f: "orphaned anonymous volume; the policy keeps them",
    Reason.ORPHAN_TOO_RECENT: lambda f: f"too recent: {_clock(f)}, policy waits {ago(f.get('threshold'))}",
    Reason.NAMED_TOO_RECENT: lambda f: (
        f"too recent for its named-volume rule: {_clock(f)}, rule waits {ago(f.get('threshold'))}"
    ),
    Reason.NAMED_NOT_LOCAL: lambda f: (
        f"named volume on driver {f.get('driver')}: tamer can only back up local volumes"
    ),
    Reason.NAMED_NO_BACKUP: lambda f: "named volume: no verified backup possible here, so it stays",
    Reason.NAMED_NO_RULE: lambda f: (
        "named volume: no [[volumes.named]] rule names it (named volumes never go by default)"
    ),
    Reason.VOLUME_SYMLINKED: lambda f: (
        f"its _data is a symlink to {f.get('data_path')}: the engine will not "
        "remove it (and a backup would be made for nothing); move it back with "
        "`tamer volume move` or replace the link by hand, then clean"
    ),
    Reason.FOLDER_SHARED: lambda f: (
        f"its folder holds the data of other volume(s) {_names(f, 'volumes')} (bind "
        "options): removing it would delete their data"
    ),
    Reason.IMAGE_IN_USE: lambda f: f"used by {f.get('count')} container(s): {_names(f)}",
    Reason.DANGLING_KEPT: lambda f: "dangling, but the policy keeps dangling images",
    Reason.TAG_KEPT: lambda f: f"tag {f.get('tag')} matches keep_tags",
    Reason.NEWEST_KEPT: lambda f: f"one of the {f.get('keep_newest')} newest of its repository (keep_newest)",
    Reason.IMAGE_RECENT: lambda f: (
        "tagged; unused for "
        + (ago(f["unused_for"]) if f.get("unused_for") is not None else "an unknown time")
        + ("" if f.get("threshold") is None else f", policy waits {ago(f['threshold'])}")
    ),
    Reason.CACHE_IN_USE: lambda f: "in use by a build",
    Reason.CACHE_RECENT: lambda f: "recent enough",
    Reason.REMOVED: lambda f: "",
    Reason.BACKED_UP_REMOVED: lambda f: f"backed up, verified and proven to restore: {f.get('archive')}",
    Reason.ALREADY_GONE: lambda f: "already gone",
    Reason.NOT_ELIGIBLE_NOW: lambda f: (
        "changed since the plan: the plan's policy no longer selects it on the "
        f"host as it is now ({f.get('now', '?')})"
    ),
    Reason.RUNNING_NOW: lambda f: f"changed since the plan: it is {f.get('state')} now",
    Reason.RAN_SINCE_PLAN: lambda f: "changed since the plan: it ran again since the plan",
    Reason.STATE_CHANGED: lambda f: f"changed since the plan: it was {f.get('was')}, now {f.get('now')}",
    Reason.IN_USE_NOW: lambda f: f"changed since the plan: now used by {_names(f)}",
    Reason.REPLACED: lambda f: "changed since the plan: a different object of the same name exists now",
    Reason.TAGS_CHANGED: lambda f: f"changed since the plan: its tags changed to {_names(f, 'tags')}",
    Reason.NO_BACKUP_SUPPORT: lambda f: "named volume: no backup support available, so it stays",
    Reason.BACKUP_FAILED: lambda f: f"backup failed, volume kept: {f.get('error')}",
    Reason.SYMLINKED_NOW: lambda f: (
        f"its _data is a symlink to {f.get('data_path')}: not removed, not backed up"
    ),
    Reason.ENGINE_REFUSED: lambda f: f"the engine refused: {f.get('error')}",
    Reason.REMOVAL_FAILED_MIDWAY: lambda f: (
        f"the engine failed while deleting its files ({f.get('error')}): part of "
        "its data may be gone already; "
        + (
            f"its backup, verified and proven to restore, is {f['archive']}: `tamer volume restore {f['archive']} "
            "NEW_NAME` brings it all back"
            if f.get("archive")
            else "it had no backup (an anonymous volume)"
        )
    ),
    Reason.UNKNOWN_KIND: lambda f: f"unknown kind {f.get('kind')}",
    Reason.ABANDONED: lambda f: "run abandoned by the user",
}

_NOTES: dict[NoteCode, Callable[[Facts], str]] = {
    NoteCode.NO_HISTORY: lambda f: (
        "no usage history for this engine: image last-used falls back to container "
        "timestamps and creation times; run `tamer watch` for true least-recently-used "
        "eviction"
    ),
    NoteCode.WITHIN_BUDGET: lambda f: (
        f"within budget: Docker uses {human_bytes(f.get('total'))}, "
        f"{human_bytes(f.get('after'))} after this plan, budget "
        f"{human_bytes(f.get('budget'))}"
    ),
    NoteCode.STILL_OVER_BUDGET: lambda f: (
        f"still over budget by {human_bytes(f.get('over'))} after this plan: the "
        "rest is in use, protected, or a named volume"
    ),
    NoteCode.BUDGET_MET: lambda f: (
        f"budget {human_bytes(f.get('budget'))}: evicting least recently used first "
        f"brings Docker to {human_bytes(f.get('after'))}"
    ),
}


def describe(code: Reason | str, facts: Facts | None = None) -> str:
    """The sentence for a reason code (an unknown code is shown as itself, never guessed at)."""
    try:
        reason = Reason(code)
    except ValueError:
        return str(code)
    text = _PROSE[reason](facts or {})
    if (
        reason in (Reason.VOLUME_ORPHANED, Reason.VOLUME_NAMED_RULE, Reason.BUDGET_LRU)
        and facts
        and facts.get("folder_stays")
    ):
        text += f"; its folder {facts['folder_stays']} stays (bind options): frees 0B"
    return text


def describe_note(code: NoteCode | str, facts: Facts | None = None) -> str:
    try:
        note = NoteCode(code)
    except ValueError:
        return str(code)
    return _NOTES[note](facts or {})
