"""The re-checks at the moment of removal: each object asked of the live engine right before it goes.

Used by tamer.apply, the only module that removes things; these only read. Each raises Keep (the object
stays, with a reason code and facts) when what the plan saw no longer holds: a container that runs or ran
since the plan, a volume that any container mounts or bind-mounts, whose folder another volume uses, whose
_data became a symlink or that was re-created, an image whose tags changed or that a container uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tamer.engine import Engine
from tamer.facts import RUNNING_STATES, engine_labels_anonymous, is_anonymous_volume, parse_time
from tamer.plan import Action
from tamer.reasons import Reason

Facts = dict[str, Any]


class Keep(Exception):
    """Raised inside a step: the object stays, for this reason."""

    def __init__(self, code: Reason, facts: Facts | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.facts = facts or {}


def recheck_container(engine: Engine, action: Action) -> list[str]:
    """Raise _Keep unless the container is stopped as planned; returns the volumes it mounts."""
    data = engine.inspect_container(action.id)
    state = data.get("State") or {}
    status = str(state.get("Status"))
    if status in RUNNING_STATES or state.get("Running") or state.get("Restarting") or state.get("Paused"):
        raise Keep(Reason.RUNNING_NOW, {"state": status})
    # "dead" is the engine's mark of a removal that failed midway (an engine killed while it removed this
    # very container, in a run that is resumed now): it can never run again and going is what the plan
    # wanted; whether it ran since the plan is still checked below, by its times
    if status != action.fingerprint.get("state") and status != "dead":
        raise Keep(Reason.STATE_CHANGED, {"was": action.fingerprint.get("state"), "now": status})
    for key, live in (("finished", state.get("FinishedAt")), ("started", state.get("StartedAt"))):
        when = parse_time(live)
        if key in action.fingerprint and (when.isoformat() if when else None) != action.fingerprint[key]:
            raise Keep(Reason.RAN_SINCE_PLAN)
    # its name is the one thing a policy judges it by that can change (keep_names, names,
    # generated_names_only): renamed since the plan was re-derived (a user protecting it mid-run), it stays
    name = str(data.get("Name") or "").lstrip("/")
    if name and name != action.name:
        raise Keep(Reason.STATE_CHANGED, {"was": f"named {action.name}", "now": f"named {name}"})
    return [str(m["Name"]) for m in data.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name")]


def recheck_volume(engine: Engine, action: Action) -> bool:
    """Raise _Keep unless the volume is unused and the same one; returns whether it is named (live)."""
    data = engine.inspect_volume(action.id)
    # users first: that is the precise reason to keep it (and the local driver's
    # CreatedAt follows its folder's mtime, which a new user can change)
    users = engine.containers_using(volume=action.id)
    if users:
        raise Keep(
            Reason.IN_USE_NOW, {"users": [str((u.get("Names") or ["?"])[0]).lstrip("/") for u in users[:3]]}
        )
    binders = bind_users(engine, data)
    if binders:
        raise Keep(Reason.IN_USE_NOW, {"users": binders[:3], "bind_mounted": True})
    sharers = folder_sharers(engine, data)
    if sharers:
        raise Keep(Reason.FOLDER_SHARED, {"volumes": sharers[:3]})
    # a symlinked _data is checked before the creation time: engine 20.10 reports the link target's mtime as
    # CreatedAt, so the link alone would read as "replaced", the less precise reason
    mountpoint = str(data.get("Mountpoint") or "")
    if data.get("Driver") == "local" and mountpoint and os.path.islink(mountpoint):
        raise Keep(Reason.SYMLINKED_NOW, {"data_path": os.path.realpath(mountpoint)})
    created = parse_time(data.get("CreatedAt"))
    if (
        "created" in action.fingerprint
        and (created.isoformat() if created else None) != action.fingerprint["created"]
    ):
        raise Keep(Reason.REPLACED)
    return not is_anonymous_volume(
        str(data.get("Name") or action.id),
        dict(data.get("Labels") or {}),
        engine_labels_them=engine_labels_anonymous(engine.api_version),
    )


def bind_users(engine: Engine, volume: Mapping[str, Any]) -> list[str]:
    """Containers (any state) that bind-mount this volume's folder or a folder inside it, asked of the
    engine now and compared physically (another spelling of the same folder counts). The engine's own
    check sees only mounts by name, and removing the volume deletes the folder under them."""
    from tamer.volumes.guard import relation, volume_data_path

    mountpoint = str(volume.get("Mountpoint") or "")
    folders = {f for f in (mountpoint, volume_data_path(dict(volume))) if f}
    if mountpoint and os.path.basename(mountpoint.rstrip("/")) == "_data":
        folders.add(os.path.dirname(mountpoint.rstrip("/")))  # the folder the engine deletes with it
    users: list[str] = []
    for c in engine.containers():
        for m in c.get("Mounts") or []:
            if m.get("Type") == "bind" and any(
                relation(str(m.get("Source") or ""), f) in ("the same folder", "inside it") for f in folders
            ):
                users.append(str((c.get("Names") or [str(c.get("Id"))[:12]])[0]).lstrip("/"))
                break
    return users


def folder_sharers(engine: Engine, volume: Mapping[str, Any]) -> list[str]:
    """Other volumes (asked of the engine now) whose data is this volume's folder or inside it, when removing
    this volume deletes its folder (a local volume without bind options)."""
    from tamer.volumes.guard import relation, volume_data_path

    options = volume.get("Options") or {}
    if volume.get("Driver") != "local" or "bind" in str(options.get("o", "")).split(","):
        return []
    mountpoint = str(volume.get("Mountpoint") or "")
    folders = {f for f in (mountpoint, os.path.dirname(mountpoint.rstrip("/"))) if f and f != "/"}
    name = str(volume.get("Name") or "")
    return [
        str(w.get("Name"))
        for w in engine.volumes()
        if str(w.get("Name")) != name
        and any(relation(volume_data_path(w), f) in ("the same folder", "inside it") for f in folders)
    ]


def recheck_image(engine: Engine, action: Action) -> list[str]:
    data = engine.inspect_image(action.id)
    tags = sorted(t for t in data.get("RepoTags") or [] if t != "<none>:<none>")
    if tags != action.fingerprint.get("tags"):
        raise Keep(Reason.TAGS_CHANGED, {"tags": tags})
    users = engine.containers_using(image=action.id)
    if users:
        raise Keep(
            Reason.IN_USE_NOW, {"users": [str((u.get("Names") or ["?"])[0]).lstrip("/") for u in users[:3]]}
        )
    return tags
