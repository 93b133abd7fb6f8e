"""Why an object goes or stays, as data: reason codes with their facts. Pure, no prose.

Every remove (Action) and keep (Refusal) of a plan, and every step of an apply,
carries one `Reason` and a small dict of facts (numbers, names). Code decides
by comparing codes, never by matching message text; `tamer.report.reasons`
turns a code and its facts into the sentence a user reads.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # -- removals ----------------------------------------------------------------------------------
    CONTAINER_STOPPED = "container-stopped"  # facts: state, stopped_for (s)
    VOLUME_ORPHANED = "volume-orphaned"  # anonymous; facts: orphaned_for (s), since (clock source)
    VOLUME_NAMED_RULE = "volume-named-rule"  # facts: orphaned_for (s)
    IMAGE_DANGLING = "image-dangling"
    IMAGE_UNUSED = "image-unused"  # facts: unused_for, threshold (s)
    CACHE_UNUSED = "cache-unused"  # facts: unused_for (s)
    CACHE_OVER_BUDGET = "cache-over-budget"  # facts: budget (bytes)
    BUDGET_LRU = "budget-lru"  # facts: over (bytes), budget (bytes), last_used_for (s or None)

    # -- keeps ---------------------------------------------------------------------------------------
    RUNNING = "running"  # facts: state
    PROTECTED_LABEL = "protected-label"  # facts: label
    POLICY_KEEPS_CONTAINERS = "policy-keeps-containers"
    STATE_NOT_SELECTED = "state-not-selected"  # facts: state, states
    NAME_KEPT = "name-kept"
    NAME_NOT_SELECTED = "name-not-selected"
    LABEL_NOT_SELECTED = "label-not-selected"
    NAMED_ON_PURPOSE = "named-on-purpose"
    CONTAINER_TOO_RECENT = "container-too-recent"  # facts: state, stopped_for, threshold
    VOLUME_IN_USE = "volume-in-use"  # facts: users
    VOLUME_USED_BY_STOPPED = "volume-used-by-stopped"  # facts: users
    VOLUME_USERS_GO_THIS_RUN = "volume-users-go-this-run"  # facts: users
    POLICY_KEEPS_ANONYMOUS = "policy-keeps-anonymous"
    ORPHAN_TOO_RECENT = "orphan-too-recent"  # facts: orphaned_for, threshold, since
    NAMED_TOO_RECENT = "named-too-recent"  # facts: orphaned_for, threshold, since
    NAMED_NOT_LOCAL = "named-not-local"  # facts: driver
    NAMED_NO_BACKUP = "named-no-backup"
    NAMED_NO_RULE = "named-no-rule"
    VOLUME_SYMLINKED = "volume-symlinked"  # facts: data_path
    FOLDER_SHARED = "folder-shared"  # facts: volumes (whose data is its folder, or inside it)
    IMAGE_IN_USE = "image-in-use"  # facts: count, users
    DANGLING_KEPT = "dangling-kept"
    TAG_KEPT = "tag-kept"  # facts: tag
    NEWEST_KEPT = "newest-kept"  # facts: keep_newest
    IMAGE_RECENT = "image-recent"  # facts: unused_for (s or None), threshold (s or None)
    CACHE_IN_USE = "cache-in-use"
    CACHE_RECENT = "cache-recent"

    # -- apply: what happened to a step ------------------------------------------------------------
    REMOVED = "removed"
    BACKED_UP_REMOVED = "backed-up-removed"  # facts: archive
    ALREADY_GONE = "already-gone"
    NOT_ELIGIBLE_NOW = "not-eligible-now"  # the recorded policy no longer selects it on the live host
    RUNNING_NOW = "running-now"  # facts: state
    RAN_SINCE_PLAN = "ran-since-plan"
    STATE_CHANGED = "state-changed"  # facts: was, now
    IN_USE_NOW = "in-use-now"  # facts: users
    REPLACED = "replaced"  # a different object of the same name exists now
    TAGS_CHANGED = "tags-changed"  # facts: tags
    NO_BACKUP_SUPPORT = "no-backup-support"
    BACKUP_FAILED = "backup-failed"  # facts: error
    SYMLINKED_NOW = "symlinked-now"  # facts: data_path
    ENGINE_REFUSED = "engine-refused"  # facts: error
    REMOVAL_FAILED_MIDWAY = (
        "removal-failed-midway"  # a volume; facts: error, archive (its proven backup, if any)
    )
    UNKNOWN_KIND = "unknown-kind"
    ABANDONED = "abandoned"


class NoteCode(enum.StrEnum):
    NO_HISTORY = "no-history"
    WITHIN_BUDGET = "within-budget"  # facts: total, after, budget
    STILL_OVER_BUDGET = "still-over-budget"  # facts: over
    BUDGET_MET = "budget-met"  # facts: budget, after


# Reasons that keep an orphaned volume only because its clock has not run out:
# the disk budget may evict those, least recently used first, and nothing else.
BUDGET_EVICTABLE_VOLUME = frozenset({Reason.ORPHAN_TOO_RECENT})
