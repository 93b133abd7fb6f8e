"""`tamer adopt CONTAINER`: give a container's anonymous volumes names (and places) after the fact.

For the essay's situation after the fact: a `docker run mongo` without -v left
the data in two anonymous volumes with 64-hex names that one `docker volume
prune` away from gone. plan_adopt finds them and names each CONTAINER-<path>;
apply_adopt stops the container, copies and verifies the data into the named
volumes, re-creates the container with identical configuration using them,
and starts it again if it was running. The anonymous volumes are kept until
the user removes them. Any failure rolls back to the original container.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tamer.engine import Engine
from tamer.errors import NotEnoughSpace, ObjectNotFound, TamerError, UsageError
from tamer.volumes import copy as cp
from tamer.volumes.place import (
    CreatePlan,
    apply_create,
    check_place,
    data_root,
    inspect_volume_or_none,
    local_data_dir,
    plan_create,
    volume_place,
)
from tamer.volumes.recreate import Recreation, create_again, image_ref, recreate_body
from tamer.volumes.run import FOR_LABEL, PATH_LABEL, volume_name_for

JSON = dict[str, Any]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # engines >= 23 (API 1.43) label anonymous volumes


@dataclass(frozen=True)
class Adoption:
    anonymous: str  # the anonymous volume's name
    path: str  # where the container mounts it
    create: CreatePlan  # the named volume to make


@dataclass(frozen=True)
class AdoptPlan:
    container: str
    container_id: str
    running: bool
    adoptions: tuple[Adoption, ...]
    recreation: Recreation
    notes: tuple[str, ...] = field(default_factory=tuple)


def _is_anonymous(mount: JSON, vol: JSON | None, explicit_names: set[str]) -> bool:
    name = str(mount.get("Name") or "")
    if mount.get("Type") != "volume" or name in explicit_names:
        return False
    labels = (vol or {}).get("Labels") or {}
    return ANONYMOUS_LABEL in labels or bool(_HEX64.match(name))


def plan_adopt(engine: Engine, container: str, *, at: str | None = None) -> AdoptPlan:
    """Find the container's anonymous volumes and plan a named volume for each; changes nothing."""
    info = engine.inspect_container(container)
    name = str(info.get("Name", "")).lstrip("/")
    host = info.get("HostConfig") or {}
    explicit = {str(b).split(":")[0] for b in host.get("Binds") or []}
    explicit |= {str(m.get("Source")) for m in host.get("Mounts") or [] if m.get("Type") == "volume"}
    if at is not None:
        check_place(at, data_root(engine))
    adoptions: list[Adoption] = []
    for m in info.get("Mounts") or []:
        vol = inspect_volume_or_none(engine, str(m.get("Name"))) if m.get("Type") == "volume" else None
        if not _is_anonymous(m, vol, explicit):
            continue
        path = os.path.normpath(str(m["Destination"]))
        new = volume_name_for(name, path)
        if inspect_volume_or_none(engine, new) is not None:
            raise UsageError(f"volume {new} (for {name}:{path}) exists already; expected a free name; remove or "
                             "rename it first")
        create = plan_create(engine, new, os.path.join(at, new) if at else None, {FOR_LABEL: name, PATH_LABEL: path})
        adoptions.append(Adoption(str(m["Name"]), path, create))
    _check_room(engine, adoptions, at)
    rec = recreate_body(info, image_ref(engine, info), {a.path: a.create.name for a in adoptions})
    running = bool((info.get("State") or {}).get("Running"))
    notes = []
    if adoptions and running:
        notes.append(f"{name} is running: it is stopped for the copy and started again")
    if adoptions:
        notes.append("the anonymous volumes are kept; remove them with `docker volume rm` once satisfied")
    return AdoptPlan(name, str(info["Id"]), running, tuple(adoptions), rec, tuple(notes))


def _check_room(engine: Engine, adoptions: list[Adoption], at: str | None) -> None:
    if not adoptions:
        return
    need = sum(cp.measure(local_data_dir(volume_place(engine.inspect_volume(a.anonymous)))).allocated
               for a in adoptions)
    where = at or data_root(engine)
    probe = where
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if need > free:
        raise NotEnoughSpace(f"the anonymous volumes hold {need} bytes, {where} has {free} free; expected room for "
                             "a copy; free space there or pick another --at; nothing was changed")


def apply_adopt(engine: Engine, plan: AdoptPlan) -> str:
    """Carry out the adoption; returns the new container's id. Rolls back on failure and re-raises."""
    if not plan.adoptions:
        return plan.container_id
    made: list[CreatePlan] = []
    parked: str | None = None
    new_id: str | None = None
    try:
        if plan.running:
            engine.stop_container(plan.container_id)
        for a in plan.adoptions:
            apply_create(engine, a.create)
            made.append(a.create)
            src = local_data_dir(volume_place(engine.inspect_volume(a.anonymous)))
            dst = local_data_dir(volume_place(engine.inspect_volume(a.create.name)))
            cp.copy_tree(Path(src), Path(dst))
            cp.verify_copy(Path(src), Path(dst))
        parked = f"{plan.container}-pre-adopt-{secrets.token_hex(3)}"
        engine.rename_container(plan.container_id, parked)
        new_id = create_again(engine, plan.recreation)
        if plan.running:
            engine.start_container(new_id)
        engine.remove_container(plan.container_id)  # its anonymous volumes stay
        return new_id
    except (Exception, KeyboardInterrupt) as exc:
        undo: list[str] = []
        with contextlib.suppress(TamerError):
            if new_id is not None:
                engine.remove_container(new_id, force=True)
            if parked is not None:
                engine.rename_container(plan.container_id, plan.container)
            for c in reversed(made):
                engine.remove_volume(c.name)
                if c.at is not None and not c.at.exists:
                    with contextlib.suppress(OSError):
                        cp.clear_folder(Path(c.at.path))
                        os.rmdir(c.at.path)
            if plan.running:
                engine.start_container(plan.container_id)
            undo.append("rolled back")
        state = "rolled back: the container and its anonymous volumes are as before" if undo else \
            "rolling back did not finish: check `docker ps -a` and `docker volume ls`"
        msg = f"adopting the volumes of {plan.container} failed: {exc}; {state}"
        if isinstance(exc, TamerError):
            raise type(exc)(msg) from exc
        raise TamerError(msg) from exc


def container_exists(engine: Engine, name: str) -> bool:
    try:
        engine.inspect_container(name)
    except ObjectNotFound:
        return False
    return True
