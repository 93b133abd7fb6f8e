"""Inventory + policy -> Plan: what would go (with reason and bytes) and what stays (with why). Pure.

The same inventory, policy, history, orphan clock and `now` always give the
same Plan. A dry run renders the Plan; `clean --apply` executes that same
object, and apply.py re-derives each action from the recorded policy and the
live host, so a plan can narrow what happens, never widen it. Each action
carries a fingerprint of what must still hold at apply time.

Decisions are data: every Action and Refusal carries a `Reason` code and its
facts (tamer.reasons); tamer.report turns them into prose. Nothing here
decides by message text, and nothing here imports tamer.report.

Orphaned volumes age from when they were last used (the orphan clock: `tamer
watch` history, the clean journal, or when tamer first saw them orphaned),
never from their creation; a volume whose containers go in this run stays in
this run: its clock starts when they are gone.

Order of execution: containers, then volumes, then images, then build cache.

The Plan, its parts and the per-object facts (fingerprints, last use, volume folders) are in
tamer.plan_model; this module decides, and re-exports them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from tamer.accounting import (
    container_bytes,
    container_freed_bytes,
    docker_total,
    volume_bytes,
    volume_freed_bytes,
)
from tamer.inventory import BuildCache, Container, Image, Inventory, Volume
from tamer.plan_model import (
    KIND_ORDER,
    Action,
    Facts,
    LastUsed,
    Note,
    Plan,
    Refusal,
    _folder_sharers,
    _iso,
    _norm,
    container_fingerprint,
    image_fingerprint,
    image_last_used,
    volume_fingerprint,
    volume_folders,
    volume_last_used,
)
from tamer.policy import Policy, policy_to_json
from tamer.reasons import BUDGET_EVICTABLE_VOLUME, NoteCode, Reason

# re-exported from tamer.plan_model, so callers keep importing them from here
__all__ = [
    "KIND_ORDER",
    "Action",
    "Facts",
    "LastUsed",
    "Note",
    "Plan",
    "Refusal",
    "container_fingerprint",
    "image_fingerprint",
    "image_last_used",
    "make_plan",
    "volume_fingerprint",
    "volume_folders",
    "volume_last_used",
]


def _protected(labels: Mapping[str, str], policy: Policy) -> str | None:
    """The protect label that matches, if any."""
    for spec in policy.protect_labels:
        key, sep, value = spec.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return spec
    return None


def _has_any_label(labels: Mapping[str, str], specs: tuple[str, ...]) -> bool:
    for spec in specs:
        key, sep, value = spec.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return True
    return False


def _secs(delta: timedelta | None) -> float | None:
    return None if delta is None else round(delta.total_seconds(), 3)


def make_plan(
    inv: Inventory,
    policy: Policy,
    *,
    history: LastUsed | None = None,
    orphan_clock: Mapping[str, datetime] | None = None,
    now: datetime | None = None,
    backup_available: bool = False,
) -> Plan:
    """Decide, for every object, remove (an Action) or keep (a Refusal with a reason code).

    Parameters:
        inv: the host, as read.
        policy: the rules (policy.DEFAULT_POLICY when the user gave none).
        history: last-used times from `tamer watch` (None: fall back to timestamps, and say so).
        orphan_clock: volume name -> when tamer last saw it used (or first saw it orphaned); a volume in
            neither this nor `history` has just been found orphaned: its clock starts now.
        now: the time to judge ages against (default: when the inventory was taken).
        backup_available: whether named volumes can be backed up and verified before removal.
    Returns: the Plan; it records the engine's id and the policy, for apply to re-derive it.
    """
    now = now or inv.taken_at
    hist: LastUsed = history or {}
    clock: Mapping[str, datetime] = orphan_clock or {}
    actions: list[Action] = []
    refusals: list[Refusal] = []
    notes: list[Note] = []
    containers = {c.id: c for c in inv.containers}

    # -- containers --------------------------------------------------------
    removed_containers: set[str] = set()
    for c in inv.containers:
        verdict = _container_verdict(c, policy, now)
        size = container_freed_bytes(c)
        if verdict is None:
            stopped_for = now - (c.finished or c.created or now)
            actions.append(
                Action(
                    "container",
                    c.id,
                    c.name,
                    size,
                    Reason.CONTAINER_STOPPED,
                    {"state": c.state, "stopped_for": _secs(stopped_for)},
                    container_fingerprint(c),
                )
            )
            removed_containers.add(c.id)
        else:
            refusals.append(Refusal("container", c.id, c.name, size, *verdict))

    # -- volumes -----------------------------------------------------------
    users_of: dict[str, list[Container]] = defaultdict(list)
    for c in inv.containers:
        for m in c.mounts:
            if m.type == "volume" and m.name:
                users_of[m.name].append(c)
    # a container that bind-mounts a volume's folder (or a folder inside it) uses that volume as surely as
    # one that mounts it by name: removing the volume deletes the folder under it
    binds = [(c, _norm(m.source)) for c in inv.containers for m in c.mounts if m.type == "bind" and m.source]
    for v in inv.volumes:
        folders = volume_folders(v)
        for c, source in binds:
            if c not in users_of[v.name] and any(source == f or source.startswith(f + "/") for f in folders):
                users_of[v.name].append(c)
    for v in inv.volumes:
        users = users_of.get(v.name, [])
        last, since = volume_last_used(v.name, hist, clock)
        if last is not None and v.created is not None and last < v.created:
            last = v.created  # never used before it existed: that time came from a wrong clock
        code, facts, needs_backup = _volume_verdict(
            v, users, removed_containers, last, since, policy, now, backup_available
        )
        if code in _VOLUME_REMOVALS and v.placement == "default":
            sharers = _folder_sharers(v, inv.volumes)
            if sharers:  # the engine deletes the folder with the volume, and other volumes' data with it
                code, facts, needs_backup = Reason.FOLDER_SHARED, {"volumes": sharers[:3]}, False
        size = volume_freed_bytes(v)
        if code in _VOLUME_REMOVALS:
            if v.placement == "bind":
                facts = {**facts, "folder_stays": v.data_path}
            actions.append(
                Action(
                    "volume",
                    v.name,
                    v.name,
                    size,
                    code,
                    facts,
                    volume_fingerprint(v),
                    needs_backup=needs_backup,
                )
            )
        else:
            refusals.append(Refusal("volume", v.name, v.name, size, code, facts))

    # -- images ------------------------------------------------------------
    if (policy.images_unused_older_than is not None or policy.budget is not None) and not history:
        notes.append(Note(NoteCode.NO_HISTORY))
    newest_kept = _newest_per_repo(inv.images, policy.keep_newest)
    image_candidates: list[tuple[datetime | None, Image]] = []
    for img in inv.images:
        users_left = [cid for cid in img.containers if cid not in removed_containers]
        last = image_last_used(img, containers, hist)
        keep: tuple[Reason, Facts] | None = None
        label = _protected(img.labels, policy)
        if label:
            keep = (Reason.PROTECTED_LABEL, {"label": label})
        elif users_left:
            keep = (
                Reason.IMAGE_IN_USE,
                {
                    "count": len(users_left),
                    "users": [containers[cid].name for cid in users_left[:3] if cid in containers],
                },
            )
        elif img.dangling:
            if policy.dangling_images:
                actions.append(
                    Action(
                        "image",
                        img.id,
                        img.display_name,
                        img.unique_size,
                        Reason.IMAGE_DANGLING,
                        {},
                        image_fingerprint(img),
                    )
                )
                continue
            keep = (Reason.DANGLING_KEPT, {})
        if keep is None:
            kept_tag = next((t for t in img.tags for pat in policy.keep_tags if fnmatchcase(t, pat)), None)
            if kept_tag:
                keep = (Reason.TAG_KEPT, {"tag": kept_tag})
            elif img.id in newest_kept:
                keep = (Reason.NEWEST_KEPT, {"keep_newest": policy.keep_newest})
        if (
            keep is None
            and policy.images_unused_older_than is not None
            and last is not None
            and now - last >= policy.images_unused_older_than
        ):
            actions.append(
                Action(
                    "image",
                    img.id,
                    img.display_name,
                    img.unique_size,
                    Reason.IMAGE_UNUSED,
                    {"unused_for": _secs(now - last), "threshold": _secs(policy.images_unused_older_than)},
                    image_fingerprint(img),
                )
            )
            continue
        if keep is None:
            image_candidates.append((last, img))
            keep = (
                Reason.IMAGE_RECENT,
                {
                    "unused_for": _secs(now - last) if last else None,
                    "threshold": _secs(policy.images_unused_older_than),
                },
            )
        refusals.append(Refusal("image", img.id, img.display_name, img.unique_size, *keep))

    # -- build cache -------------------------------------------------------
    cache_candidates: list[BuildCache] = []
    for b in sorted(inv.build_cache, key=lambda b: b.last_used or b.created or now):
        if b.in_use:
            refusals.append(Refusal("build-cache", b.id, b.description or b.id, b.size, Reason.CACHE_IN_USE))
            continue
        last = b.last_used or b.created
        if policy.cache_older_than is not None and last is not None and now - last >= policy.cache_older_than:
            actions.append(
                Action(
                    "build-cache",
                    b.id,
                    b.description or b.id,
                    b.size,
                    Reason.CACHE_UNUSED,
                    {"unused_for": _secs(now - last)},
                    {"last_used": _iso(b.last_used)},
                )
            )
        else:
            cache_candidates.append(b)
    if policy.cache_max_size is not None:
        kept = sum(b.size for b in cache_candidates) + sum(b.size for b in inv.build_cache if b.in_use)
        for b in list(cache_candidates):
            if kept <= policy.cache_max_size:
                break
            actions.append(
                Action(
                    "build-cache",
                    b.id,
                    b.description or b.id,
                    b.size,
                    Reason.CACHE_OVER_BUDGET,
                    {"budget": policy.cache_max_size},
                    {"last_used": _iso(b.last_used)},
                )
            )
            cache_candidates.remove(b)
            kept -= b.size
    refusals.extend(
        Refusal("build-cache", b.id, b.description or b.id, b.size, Reason.CACHE_RECENT)
        for b in cache_candidates
    )

    # -- disk budget: least recently used first, never protected or in use --
    if policy.budget is not None:
        _apply_budget(
            inv, policy.budget, actions, refusals, image_candidates, cache_candidates, notes, now, hist, clock
        )

    actions.sort(key=lambda a: KIND_ORDER[a.kind])  # stable: keeps LRU order within a kind
    return Plan(
        host=inv.host,
        engine_id=inv.engine_id,
        policy=policy.source,
        rules=policy_to_json(policy),
        made_at=now.isoformat(),
        actions=tuple(actions),
        refusals=tuple(refusals),
        notes=tuple(notes),
    )


_VOLUME_REMOVALS = frozenset({Reason.VOLUME_ORPHANED, Reason.VOLUME_NAMED_RULE})


def _container_verdict(c: Container, policy: Policy, now: datetime) -> tuple[Reason, Facts] | None:
    """None to remove; else why it stays."""
    if c.running:
        return Reason.RUNNING, {"state": c.state}
    label = _protected(c.labels, policy)
    if label:
        return Reason.PROTECTED_LABEL, {"label": label}
    if not policy.remove_containers:
        return Reason.POLICY_KEEPS_CONTAINERS, {}
    if c.state not in policy.container_states:
        return Reason.STATE_NOT_SELECTED, {"state": c.state, "states": list(policy.container_states)}
    if any(fnmatchcase(c.name, p) for p in policy.container_keep_names):
        return Reason.NAME_KEPT, {}
    if policy.container_names and not any(fnmatchcase(c.name, p) for p in policy.container_names):
        return Reason.NAME_NOT_SELECTED, {}
    if policy.container_labels and not _has_any_label(c.labels, policy.container_labels):
        return Reason.LABEL_NOT_SELECTED, {}
    if policy.generated_names_only and not c.name_generated:
        return Reason.NAMED_ON_PURPOSE, {}
    since = c.finished or c.created
    if since is not None and now - since < policy.container_older_than:
        return Reason.CONTAINER_TOO_RECENT, {
            "state": c.state,
            "stopped_for": _secs(now - since),
            "threshold": _secs(policy.container_older_than),
        }
    return None


def _volume_verdict(
    v: Volume,
    users: list[Container],
    removed: set[str],
    last: datetime | None,
    since: str,
    policy: Policy,
    now: datetime,
    backup_available: bool,
) -> tuple[Reason, Facts, bool]:
    """(code, facts, needs_backup); the code is a removal code when the volume may go."""
    label = _protected(v.labels, policy)
    if label:
        return Reason.PROTECTED_LABEL, {"label": label}, False
    staying = [c for c in users if c.id not in removed]
    if staying:
        running = [c.name for c in staying if c.running]
        if running:
            return Reason.VOLUME_IN_USE, {"users": running[:3]}, False
        return Reason.VOLUME_USED_BY_STOPPED, {"users": [c.name for c in staying[:3]]}, False
    if users:
        # its containers go in this run: it becomes orphaned only then, and its clock starts then
        return Reason.VOLUME_USERS_GO_THIS_RUN, {"users": [c.name for c in users[:3]]}, False
    orphaned_for = now - last if last is not None else timedelta(0)
    clock = {"orphaned_for": _secs(max(orphaned_for, timedelta(0))), "since": since}
    if v.anonymous:
        threshold = policy.orphaned_anonymous_older_than
        if threshold is None:
            return Reason.POLICY_KEEPS_ANONYMOUS, {}, False
        if orphaned_for < threshold:
            return Reason.ORPHAN_TOO_RECENT, {**clock, "threshold": _secs(threshold)}, False
        if v.placement == "symlink":
            return Reason.VOLUME_SYMLINKED, {"data_path": v.data_path}, False
        return Reason.VOLUME_ORPHANED, clock, False
    for rule in policy.named_volume_rules:
        if any(fnmatchcase(v.name, p) for p in rule.names) or _has_any_label(v.labels, rule.labels):
            if orphaned_for < rule.older_than:
                return Reason.NAMED_TOO_RECENT, {**clock, "threshold": _secs(rule.older_than)}, False
            if v.driver != "local":
                return Reason.NAMED_NOT_LOCAL, {"driver": v.driver}, False
            if v.placement == "symlink":
                # the engine refuses to remove it (its _data is a link): a backup would be made for nothing
                return Reason.VOLUME_SYMLINKED, {"data_path": v.data_path}, False
            if not backup_available:
                return Reason.NAMED_NO_BACKUP, {}, False
            return Reason.VOLUME_NAMED_RULE, clock, True
    return Reason.NAMED_NO_RULE, {}, False


def _newest_per_repo(images: tuple[Image, ...], keep: int) -> set[str]:
    if keep <= 0:
        return set()
    by_repo: dict[str, list[Image]] = defaultdict(list)
    for img in images:
        for tag in img.tags:
            by_repo[tag.rpartition(":")[0]].append(img)
    kept: set[str] = set()
    for imgs in by_repo.values():
        imgs.sort(key=lambda i: (i.created is None, i.created), reverse=True)
        kept.update(i.id for i in imgs[:keep])
    return kept


def _counted_in_total(action: Action, inv: Inventory) -> int:
    """What docker_total stops counting when `action` is done (apparent sizes, as df shows them)."""
    if action.kind == "container":
        return next((container_bytes(c) for c in inv.containers if c.id == action.id), 0)
    if action.kind == "volume":
        return next((volume_bytes(v) for v in inv.volumes if v.name == action.id), 0)
    return action.bytes  # images and build cache: the same figure in both


def _apply_budget(
    inv: Inventory,
    budget: int,
    actions: list[Action],
    refusals: list[Refusal],
    image_candidates: list[tuple[datetime | None, Image]],
    cache_candidates: list[BuildCache],
    notes: list[Note],
    now: datetime,
    hist: LastUsed,
    clock: Mapping[str, datetime],
) -> None:
    # the budget is judged in docker_total's terms (what df shows), so what each removal takes off that
    # total is counted the same way; an action's own `bytes` stays what it frees on disk
    total = docker_total(inv)
    after = total - sum(_counted_in_total(a, inv) for a in actions)
    if after <= budget:
        notes.append(Note(NoteCode.WITHIN_BUDGET, {"total": total, "after": after, "budget": budget}))
        return
    # candidates: unused images, idle build cache, orphaned volumes kept only for their clock
    pool: list[tuple[datetime, str, Any]] = []
    epoch = datetime.min.replace(tzinfo=now.tzinfo)
    for last, img in image_candidates:
        pool.append((last or epoch, "image", img))
    for b in cache_candidates:
        pool.append((b.last_used or b.created or epoch, "build-cache", b))
    waiting = {r.id for r in refusals if r.kind == "volume" and r.code in BUDGET_EVICTABLE_VOLUME}
    volumes = {v.name: v for v in inv.volumes}
    for name in sorted(waiting):
        v = volumes[name]
        if v.placement == "symlink":
            continue
        pool.append((volume_last_used(name, hist, clock)[0] or epoch, "volume", v))
    pool.sort(key=lambda t: t[0])
    evicted: set[tuple[str, str]] = set()
    for last, kind, obj in pool:
        if after <= budget:
            break
        facts: Facts = {
            "over": after - budget,
            "budget": budget,
            "last_used_for": _secs(now - last) if last != epoch else None,
        }
        if kind == "image":
            actions.append(
                Action(
                    "image",
                    obj.id,
                    obj.display_name,
                    obj.unique_size,
                    Reason.BUDGET_LRU,
                    facts,
                    image_fingerprint(obj),
                )
            )
            after -= obj.unique_size
            evicted.add(("image", obj.id))
        elif kind == "build-cache":
            actions.append(
                Action(
                    "build-cache",
                    obj.id,
                    obj.description or obj.id,
                    obj.size,
                    Reason.BUDGET_LRU,
                    facts,
                    {"last_used": _iso(obj.last_used)},
                )
            )
            after -= obj.size
            evicted.add(("build-cache", obj.id))
        else:
            size = volume_freed_bytes(obj)
            actions.append(
                Action("volume", obj.name, obj.name, size, Reason.BUDGET_LRU, facts, volume_fingerprint(obj))
            )
            after -= volume_bytes(obj)
            evicted.add(("volume", obj.name))
    refusals[:] = [r for r in refusals if (r.kind, r.id) not in evicted]
    if after > budget:
        notes.append(Note(NoteCode.STILL_OVER_BUDGET, {"over": after - budget}))
    else:
        notes.append(Note(NoteCode.BUDGET_MET, {"budget": budget, "after": after}))
