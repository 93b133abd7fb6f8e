"""The Plan and its parts (Action, Refusal, Note) with their JSON form, and the facts the planner
records or reads off each object: fingerprints, when it was last used, which host folders a volume is in.

Split out of tamer.plan, which decides; tamer.plan re-exports every public name here, so callers import
from either. Pure: nothing here reads the host or decides what goes.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from tamer.inventory import Container, Image, Volume
from tamer.reasons import NoteCode, Reason

KIND_ORDER = {"container": 0, "volume": 1, "image": 2, "build-cache": 3}
LastUsed = Mapping[tuple[str, str], datetime]
Facts = dict[str, Any]


@dataclass(frozen=True)
class Action:
    """Remove one object. bytes: what its removal frees (allocated bytes of data that actually goes)."""

    kind: str
    id: str
    name: str
    bytes: int
    code: Reason
    facts: Facts
    fingerprint: dict[str, Any]
    needs_backup: bool = False


@dataclass(frozen=True)
class Refusal:
    """Keep one object, and why (a code and its facts)."""

    kind: str
    id: str
    name: str
    bytes: int
    code: Reason
    facts: Facts = field(default_factory=dict)


@dataclass(frozen=True)
class Note:
    code: NoteCode
    facts: Facts = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What a clean would do on one engine, under one recorded policy, judged at `made_at`.

    engine_id: the engine's ID from `docker info`; apply refuses any other engine.
    rules: the policy itself (policy_to_json), so apply can re-derive every action.
    """

    host: str
    engine_id: str
    policy: str
    rules: dict[str, Any]
    made_at: str
    actions: tuple[Action, ...]
    refusals: tuple[Refusal, ...]
    notes: tuple[Note, ...] = field(default_factory=tuple)

    @property
    def total_bytes(self) -> int:
        return sum(a.bytes for a in self.actions)

    @cached_property  # a plan is frozen: its actions' JSON is made once, for the digest and for to_json
    def _actions_json(self) -> tuple[dict[str, Any], ...]:
        return tuple(_action_json(a) for a in self.actions)

    @cached_property  # a plan is frozen; at 10,000 actions the digest costs seconds, and text and JSON both show it
    def plan_id(self) -> str:
        """A digest of what would be done and under which rules (an id, not a seal: see tamer.sealing)."""
        body = json.dumps(
            {"engine": self.engine_id, "rules": self.rules, "actions": self._actions_json},
            sort_keys=True,
        )
        return hashlib.sha256(f"{self.host}\n{body}".encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "host": self.host,
            "engine_id": self.engine_id,
            "policy": self.policy,
            "rules": self.rules,
            "made_at": self.made_at,
            "total_bytes": self.total_bytes,
            "actions": [_copy_json(a) for a in self._actions_json],  # copies: callers add to them
            "refusals": [{**asdict(r), "code": r.code.value} for r in self.refusals],
            "notes": [{"code": n.code.value, "facts": n.facts} for n in self.notes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """Rebuild a Plan from to_json's output (raises KeyError, TypeError or ValueError when it is not one)."""
        return cls(
            host=str(data["host"]),
            engine_id=str(data["engine_id"]),
            policy=str(data["policy"]),
            rules=dict(data["rules"]),
            made_at=str(data["made_at"]),
            actions=tuple(Action(**{**a, "code": Reason(a["code"])}) for a in data["actions"]),
            refusals=tuple(Refusal(**{**r, "code": Reason(r["code"])}) for r in data["refusals"]),
            notes=tuple(Note(NoteCode(n["code"]), dict(n.get("facts") or {})) for n in data.get("notes", ())),
        )


def _action_json(a: Action) -> dict[str, Any]:
    """{**asdict(a), "code": a.code.value}, written out: asdict's generic recursion was a fifth of a
    `tamer plan --json` on a host with 2,000 actions (a unit test requires the two to be equal)."""
    return {
        "kind": a.kind,
        "id": a.id,
        "name": a.name,
        "bytes": a.bytes,
        "code": a.code.value,
        "facts": _copy_json(a.facts),
        "fingerprint": _copy_json(a.fingerprint),
        "needs_backup": a.needs_backup,
    }


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, tuples, scalars), as asdict makes of a field."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copy_json(v) for v in value)
    return value


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def container_fingerprint(c: Container) -> dict[str, Any]:
    return {"state": c.state, "finished": _iso(c.finished), "started": _iso(c.started), "image": c.image_id}


def volume_fingerprint(v: Volume) -> dict[str, Any]:
    return {"created": _iso(v.created), "driver": v.driver, "anonymous": v.anonymous}


def image_fingerprint(i: Image) -> dict[str, Any]:
    return {"tags": sorted(i.tags)}


def image_last_used(
    img: Image, inv_containers: Mapping[str, Container], history: LastUsed
) -> datetime | None:
    times = [history[k] for k in [("image", img.id), *(("image", t) for t in img.tags)] if k in history]
    for cid in img.containers:
        c = inv_containers.get(cid)
        if c:
            times.extend(t for t in (c.finished, c.started, c.created) if t)
    if img.created:
        times.append(img.created)
    return max(times) if times else None


def _norm(path: str) -> str:
    return posixpath.normpath(path) if path else ""


def volume_folders(v: Volume) -> set[str]:
    """The host folders a volume's data is in (lexically): its mountpoint, where the data really is, and
    for a default-placed local volume the folder the engine deletes with it (the one holding _data)."""
    folders = {_norm(p) for p in (v.mountpoint, v.data_path) if p}
    if (
        v.driver == "local"
        and v.placement == "default"
        and posixpath.basename(_norm(v.mountpoint)) == "_data"
    ):
        folders.add(posixpath.dirname(_norm(v.mountpoint)))
    return {f for f in folders if f not in ("", "/", ".")}


def _folder_sharers(v: Volume, volumes: tuple[Volume, ...]) -> list[str]:
    """Other volumes whose data is v's folder or inside it (bind options pointing there)."""
    folders = volume_folders(v)
    return [
        w.name
        for w in volumes
        if w.name != v.name
        and w.data_path
        and any(_norm(w.data_path) == f or _norm(w.data_path).startswith(f + "/") for f in folders)
    ]


def volume_last_used(
    name: str, history: LastUsed, orphan_clock: Mapping[str, datetime]
) -> tuple[datetime | None, str]:
    """When a volume was last used, and how we know: the latest of `tamer watch` history and tamer's own
    orphan clock (last seen in use, its containers removed by a clean, or first seen orphaned)."""
    seen = [
        (t, src)
        for t, src in ((history.get(("volume", name)), "watch"), (orphan_clock.get(name), "tamer"))
        if t is not None
    ]
    if not seen:
        return None, "unknown"
    return max(seen, key=lambda ts: ts[0])
