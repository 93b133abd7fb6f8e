"""Inventory + policy -> Plan: what would go (with reason and bytes) and what stays (with why). Pure.

The same inventory, policy, history and `now` always give the same Plan. A
dry run renders the Plan; `clean --apply` executes that same object (apply.py
never re-decides). Each action carries a fingerprint of what must still hold
at apply time (the container still stopped, the volume still unused...).

Order of execution: containers, then volumes, then images, then build cache,
so images and anonymous volumes freed by removed containers can go too (as
`docker system prune` does for dangling images).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from tamer.accounting import container_bytes, docker_total, volume_bytes
from tamer.inventory import BuildCache, Container, Image, Inventory, Volume
from tamer.policy import Policy
from tamer.report.units import human_bytes

KIND_ORDER = {"container": 0, "volume": 1, "image": 2, "build-cache": 3}
LastUsed = Mapping[tuple[str, str], datetime]


@dataclass(frozen=True)
class Action:
    kind: str
    id: str
    name: str
    bytes: int
    reason: str
    fingerprint: dict[str, Any]
    needs_backup: bool = False


@dataclass(frozen=True)
class Refusal:
    kind: str
    id: str
    name: str
    bytes: int
    why: str


@dataclass(frozen=True)
class Plan:
    host: str
    policy: str
    made_at: str
    actions: tuple[Action, ...]
    refusals: tuple[Refusal, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_bytes(self) -> int:
        return sum(a.bytes for a in self.actions)

    @property
    def plan_id(self) -> str:
        """A digest of exactly what would be done; the journal and the preview show it."""
        body = json.dumps([asdict(a) for a in self.actions], sort_keys=True)
        return hashlib.sha256(f"{self.host}\n{body}".encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"plan_id": self.plan_id, "host": self.host, "policy": self.policy, "made_at": self.made_at,
                "total_bytes": self.total_bytes, "actions": [asdict(a) for a in self.actions],
                "refusals": [asdict(r) for r in self.refusals], "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        plan = cls(host=data["host"], policy=data["policy"], made_at=data["made_at"],
                   actions=tuple(Action(**a) for a in data["actions"]),
                   refusals=tuple(Refusal(**r) for r in data["refusals"]), notes=tuple(data.get("notes", ())))
        if data.get("plan_id") and data["plan_id"] != plan.plan_id:
            from tamer.errors import UsageError

            raise UsageError("the saved plan was edited (its plan_id does not match its actions); "
                             "make a new one with `tamer plan -o FILE`")
        return plan


def _protected(labels: Mapping[str, str], policy: Policy) -> str | None:
    for spec in policy.protect_labels:
        key, sep, value = spec.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return f"protected by label {spec}"
    return None


def _has_any_label(labels: Mapping[str, str], specs: tuple[str, ...]) -> bool:
    for spec in specs:
        key, sep, value = spec.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return True
    return False


def _ago(delta: timedelta) -> str:
    s = delta.total_seconds()
    if s < 120:
        return f"{int(s)}s"
    if s < 7200:
        return f"{int(s // 60)}m"
    if s < 172800:
        return f"{int(s // 3600)}h"
    return f"{int(s // 86400)}d"


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def container_fingerprint(c: Container) -> dict[str, Any]:
    return {"state": c.state, "finished": _iso(c.finished), "image": c.image_id}


def volume_fingerprint(v: Volume) -> dict[str, Any]:
    return {"created": _iso(v.created), "driver": v.driver}


def image_fingerprint(i: Image) -> dict[str, Any]:
    return {"tags": sorted(i.tags)}


def image_last_used(img: Image, inv_containers: Mapping[str, Container], history: LastUsed) -> datetime | None:
    times = [history[k] for k in [("image", img.id), *(("image", t) for t in img.tags)] if k in history]
    for cid in img.containers:
        c = inv_containers.get(cid)
        if c:
            times.extend(t for t in (c.finished, c.started, c.created) if t)
    if img.created:
        times.append(img.created)
    return max(times) if times else None


def make_plan(inv: Inventory, policy: Policy, *, history: LastUsed | None = None,
              now: datetime | None = None, backup_available: bool = False) -> Plan:
    """Decide, for every object, remove (an Action) or keep (a Refusal with why).

    Parameters:
        inv: the host, as read.
        policy: the rules (policy.DEFAULT_POLICY when the user gave none).
        history: last-used times from `tamer watch` (None: fall back to timestamps, and say so).
        now: the time to judge ages against (default: when the inventory was taken).
        backup_available: whether named volumes can be backed up and verified before removal.
    """
    now = now or inv.taken_at
    hist: LastUsed = history or {}
    actions: list[Action] = []
    refusals: list[Refusal] = []
    notes: list[str] = []
    containers = {c.id: c for c in inv.containers}

    # -- containers --------------------------------------------------------
    removed_containers: set[str] = set()
    for c in inv.containers:
        why = _container_verdict(c, policy, now)
        size = container_bytes(c)
        if why is None:
            stopped_for = now - (c.finished or c.created or now)
            actions.append(Action("container", c.id, c.name, size,
                                  f"{c.state} {_ago(stopped_for)} ago; policy removes {c.state} containers",
                                  container_fingerprint(c)))
            removed_containers.add(c.id)
        else:
            refusals.append(Refusal("container", c.id, c.name, size, why))

    # -- volumes -----------------------------------------------------------
    users_of: dict[str, list[Container]] = defaultdict(list)
    for c in inv.containers:
        for m in c.mounts:
            if m.type == "volume" and m.name:
                users_of[m.name].append(c)
    for v in inv.volumes:
        users = users_of.get(v.name, [])
        left = [c for c in users if c.id not in removed_containers]
        why, reason, needs_backup = _volume_verdict(v, left, users, policy, now, backup_available)
        if why is None:
            actions.append(Action("volume", v.name, v.name, volume_bytes(v), reason, volume_fingerprint(v),
                                  needs_backup=needs_backup))
        else:
            refusals.append(Refusal("volume", v.name, v.name, volume_bytes(v), why))

    # -- images ------------------------------------------------------------
    if (policy.images_unused_older_than is not None or policy.budget is not None) and not history:
        notes.append("no usage history for this engine: image last-used falls back to container timestamps "
                     "and creation times; run `tamer watch` for true least-recently-used eviction")
    newest_kept = _newest_per_repo(inv.images, policy.keep_newest)
    image_candidates: list[tuple[datetime | None, Image]] = []
    for img in inv.images:
        users_left = [cid for cid in img.containers if cid not in removed_containers]
        last = image_last_used(img, containers, hist)
        why = _protected(img.labels, policy)
        if why is None and users_left:
            names = ", ".join(containers[cid].name for cid in users_left[:3] if cid in containers)
            why = f"used by {len(users_left)} container(s): {names}"
        if why is None and img.dangling:
            if policy.dangling_images:
                actions.append(Action("image", img.id, img.display_name, img.unique_size,
                                      "dangling (untagged) and unused", image_fingerprint(img)))
                continue
            why = "dangling, but the policy keeps dangling images"
        if why is None:
            kept_tag = next((t for t in img.tags for pat in policy.keep_tags if fnmatchcase(t, pat)), None)
            if kept_tag:
                why = f"tag {kept_tag} matches keep_tags"
            elif img.id in newest_kept:
                why = f"one of the {policy.keep_newest} newest of its repository (keep_newest)"
        if why is None and policy.images_unused_older_than is not None and last is not None \
                and now - last >= policy.images_unused_older_than:
            actions.append(Action("image", img.id, img.display_name, img.unique_size,
                                  f"unused for {_ago(now - last)} (policy: {_ago(policy.images_unused_older_than)})",
                                  image_fingerprint(img)))
            continue
        if why is None:
            image_candidates.append((last, img))
            why = "tagged; unused for " + (_ago(now - last) if last else "an unknown time") + \
                  ("" if policy.images_unused_older_than is None
                   else f", policy waits {_ago(policy.images_unused_older_than)}")
        refusals.append(Refusal("image", img.id, img.display_name, img.unique_size, why))

    # -- build cache -------------------------------------------------------
    cache_candidates: list[BuildCache] = []
    for b in sorted(inv.build_cache, key=lambda b: b.last_used or b.created or now):
        if b.in_use:
            refusals.append(Refusal("build-cache", b.id, b.description or b.id, b.size, "in use by a build"))
            continue
        last = b.last_used or b.created
        if policy.cache_older_than is not None and last is not None and now - last >= policy.cache_older_than:
            actions.append(Action("build-cache", b.id, b.description or b.id, b.size,
                                  f"unused for {_ago(now - last)}", {"last_used": _iso(b.last_used)}))
        else:
            cache_candidates.append(b)
    if policy.cache_max_size is not None:
        kept = sum(b.size for b in cache_candidates) + sum(b.size for b in inv.build_cache if b.in_use)
        for b in list(cache_candidates):
            if kept <= policy.cache_max_size:
                break
            actions.append(Action("build-cache", b.id, b.description or b.id, b.size,
                                  f"build cache over its {human_bytes(policy.cache_max_size)} budget; least recently used",
                                  {"last_used": _iso(b.last_used)}))
            cache_candidates.remove(b)
            kept -= b.size
    refusals.extend(Refusal("build-cache", b.id, b.description or b.id, b.size, "recent enough")
                    for b in cache_candidates)

    # -- disk budget: least recently used first, never protected or in use --
    if policy.budget is not None:
        _apply_budget(inv, policy.budget, actions, refusals, image_candidates, cache_candidates, notes, now,
                      hist)

    actions.sort(key=lambda a: KIND_ORDER[a.kind])  # stable: keeps LRU order within a kind
    return Plan(host=inv.host, policy=policy.source, made_at=now.isoformat(), actions=tuple(actions),
                refusals=tuple(refusals), notes=tuple(notes))


def _container_verdict(c: Container, policy: Policy, now: datetime) -> str | None:
    """None to remove; else why it stays."""
    if c.running:
        return f"{c.state}: running containers are never touched"
    protected = _protected(c.labels, policy)
    if protected:
        return protected
    if not policy.remove_containers:
        return "the policy removes no containers"
    if c.state not in policy.container_states:
        return f"state {c.state} is not one the policy removes ({', '.join(policy.container_states)})"
    if any(fnmatchcase(c.name, p) for p in policy.container_keep_names):
        return "name matches keep_names"
    if policy.container_names and not any(fnmatchcase(c.name, p) for p in policy.container_names):
        return "name matches none of the policy's names"
    if policy.container_labels and not _has_any_label(c.labels, policy.container_labels):
        return "has none of the policy's labels"
    if policy.generated_names_only and not c.name_generated:
        return "named on purpose (the policy removes only containers docker named)"
    since = c.finished or c.created
    if since is not None and now - since < policy.container_older_than:
        return f"too recent: {c.state} {_ago(now - since)} ago, policy waits {_ago(policy.container_older_than)}"
    return None


def _volume_verdict(v: Volume, left: list[Container], users: list[Container], policy: Policy, now: datetime,
                    backup_available: bool) -> tuple[str | None, str, bool]:
    protected = _protected(v.labels, policy)
    if protected:
        return protected, "", False
    if left:
        running = [c.name for c in left if c.running]
        if running:
            return f"in use by running container(s): {', '.join(running[:3])}", "", False
        return f"used by stopped container(s) that stay: {', '.join(c.name for c in left[:3])}", "", False
    freed = " (its containers are being removed)" if users else ""
    age = now - v.created if v.created else None
    if v.anonymous:
        threshold = policy.orphaned_anonymous_older_than
        if threshold is None:
            return "orphaned anonymous volume; the policy keeps them", "", False
        if age is not None and age < threshold:
            return f"too recent: orphaned anonymous volume created {_ago(age)} ago, policy waits {_ago(threshold)}", \
                "", False
        return None, f"orphaned anonymous volume{freed}, created {_ago(age) if age else '?'} ago", False
    for rule in policy.named_volume_rules:
        if any(fnmatchcase(v.name, p) for p in rule.names) or _has_any_label(v.labels, rule.labels):
            if age is not None and age < rule.older_than:
                return f"too recent for its named-volume rule: created {_ago(age)} ago, rule waits " \
                       f"{_ago(rule.older_than)}", "", False
            if v.driver != "local":
                return f"named volume on driver {v.driver}: tamer can only back up local volumes", "", False
            if not backup_available:
                return "named volume: no verified backup possible here, so it stays", "", False
            return None, f"named volume{freed} selected by a [[volumes.named]] rule; backed up and verified first", \
                True
    return "named volume: no [[volumes.named]] rule names it (named volumes never go by default)", "", False


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


def _apply_budget(inv: Inventory, budget: int, actions: list[Action], refusals: list[Refusal],
                  image_candidates: list[tuple[datetime | None, Image]], cache_candidates: list[BuildCache],
                  notes: list[str], now: datetime, hist: LastUsed) -> None:
    total = docker_total(inv)
    after = total - sum(a.bytes for a in actions)
    if after <= budget:
        notes.append(f"within budget: Docker uses {human_bytes(total)}, {human_bytes(after)} after this plan, "
                     f"budget {human_bytes(budget)}")
        return
    # candidates: unused images, idle build cache, orphaned anonymous volumes kept only for being recent
    pool: list[tuple[datetime, str, Any]] = []
    epoch = datetime.min.replace(tzinfo=now.tzinfo)
    for last, img in image_candidates:
        pool.append((last or epoch, "image", img))
    for b in cache_candidates:
        pool.append((b.last_used or b.created or epoch, "build-cache", b))
    refused_volumes = {r.id for r in refusals if r.kind == "volume" and r.why.startswith("too recent: orphaned")}
    for v in inv.volumes:
        if v.name in refused_volumes:
            pool.append((hist.get(("volume", v.name)) or v.created or epoch, "volume", v))
    pool.sort(key=lambda t: t[0])
    evicted: set[tuple[str, str]] = set()
    for last, kind, obj in pool:
        if after <= budget:
            break
        over = f"over budget ({human_bytes(after)} > {human_bytes(budget)}); least recently used"
        stamp = f", last used {_ago(now - last)} ago" if last != epoch else ", never seen used"
        if kind == "image":
            actions.append(Action("image", obj.id, obj.display_name, obj.unique_size, over + stamp,
                                  image_fingerprint(obj)))
            after -= obj.unique_size
            evicted.add(("image", obj.id))
        elif kind == "build-cache":
            actions.append(Action("build-cache", obj.id, obj.description or obj.id, obj.size, over + stamp,
                                  {"last_used": _iso(obj.last_used)}))
            after -= obj.size
            evicted.add(("build-cache", obj.id))
        else:
            actions.append(Action("volume", obj.name, obj.name, volume_bytes(obj), over + stamp,
                                  volume_fingerprint(obj)))
            after -= volume_bytes(obj)
            evicted.add(("volume", obj.name))
    refusals[:] = [r for r in refusals if (r.kind, r.id) not in evicted]
    if after > budget:
        notes.append(f"still over budget by {human_bytes(after - budget)} after this plan: the rest is in use, "
                     "protected, or a named volume")
    else:
        notes.append(f"budget {human_bytes(budget)}: evicting least recently used first brings Docker to "
                     f"{human_bytes(after)}")
