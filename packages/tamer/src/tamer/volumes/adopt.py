"""`tamer adopt CONTAINER`: give a container's anonymous volumes names (and places) after the fact.

For the essay's situation after the fact: a `docker run mongo` without -v left the data in two anonymous
volumes with 64-hex names, one `docker volume prune` away from gone. plan_adopt finds them and names each
CONTAINER-<path> (refusing two paths that would share a name: `/data/db` and `/data-db`; --name-for
PATH=NAME names one). An adoption is an `Operation` (tamer.operation), journaled step by step:
    stop        stop the container (a copy of data being written may be torn)
    create      create the named volumes (each must still be new: the engine would silently reuse one)
    copy        copy each anonymous volume into its new, empty volume (checked live: nothing runs on it)
    verify      compare both trees, sha256 of every file
    park        rename the container aside (its name is in the journal before the rename)
    recreate    create it again, same configuration, with the named volumes
    start       start it if it was running
    remove-old  remove the parked original (its anonymous volumes are kept)
A kill at any step is finished by a rerun or undone with --rollback (the original container, running if it
was, with its anonymous volumes; the new volumes and folders removed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tamer.engine import Engine
from tamer.errors import NotEnoughSpace, ObjectNotFound, TamerError, UsageError, VolumeOperationFailed
from tamer.facts import is_anonymous_volume
from tamer.operation import Operation, OperationState, StepStatus, faults, operation_lock
from tamer.volumes import copy as cp
from tamer.volumes import guard
from tamer.volumes.place import (
    CreatePlan,
    PlaceCheck,
    apply_create,
    check_place,
    data_root,
    inspect_volume_or_none,
    local_data_dir,
    plan_create,
    volume_place,
)
from tamer.volumes.recreate import Recreation, create_again, image_ref, recreate_body, recreation_from_json
from tamer.volumes.run import FOR_LABEL, PATH_LABEL, assign_volume_names, parse_name_for

JSON = dict[str, Any]
STEPS = ("stop", "create", "copy", "verify", "park", "recreate", "start", "remove-old")


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
    original: Recreation  # the container as it is, to make it again if a rollback needs to
    notes: tuple[str, ...] = field(default_factory=tuple)
    resume: JSON | None = None


def _is_anonymous(mount: JSON, vol: JSON | None, explicit_names: set[str]) -> bool:
    name = str(mount.get("Name") or "")
    if mount.get("Type") != "volume" or name in explicit_names:
        return False
    labels = (vol or {}).get("Labels") or {}
    # the one rule tamer has for "anonymous" (facts.py): the engine's label, or a bare 64-hex name
    return is_anonymous_volume(name, labels)


def adopt_key(engine: Engine, container: str) -> str:
    return f"{container}@{hashlib.sha256(engine.where.encode()).hexdigest()[:10]}"


def plan_adopt(
    engine: Engine,
    container: str,
    *,
    at: str | None = None,
    name_for: tuple[str, ...] = (),
    allow_volatile: bool = False,
) -> AdoptPlan:
    """Find the container's anonymous volumes and plan a named volume for each; changes nothing.

    Raises UsageError (a name taken, two paths on one name), PlacementRefused, NotEnoughSpace, and a
    TamerError saying what needs root when this user may not write the engine's data-root.
    """
    overrides = parse_name_for(name_for)
    pending = Adopt.load(adopt_key(engine, container))
    if pending is not None:
        d = pending.data
        resumed = tuple(
            Adoption(a["anonymous"], a["path"], _create_from_json(a["create"])) for a in d["adoptions"]
        )
        done = [s for s in pending.step_names() if pending.is_done(s)]
        return AdoptPlan(
            d["container"],
            d["container_id"],
            d["running"],
            resumed,
            recreation_from_json(d["recreation"]),
            recreation_from_json(d["original"]),
            (f"resuming an unfinished adoption; done already: {', '.join(done) or 'nothing'}",),
            resume=pending.record,
        )
    root = data_root(engine)
    if os.path.isdir(root):
        guard.require_data_access(root, "adopt")
    info = engine.inspect_container(container)
    name = str(info.get("Name", "")).lstrip("/")
    host = info.get("HostConfig") or {}
    explicit = {str(b).split(":")[0] for b in host.get("Binds") or []}
    explicit |= {str(m.get("Source")) for m in host.get("Mounts") or [] if m.get("Type") == "volume"}
    if at is not None:
        check_place(at, root)
    found: list[tuple[str, str]] = []
    taken: dict[str, str] = {}
    for m in info.get("Mounts") or []:
        vol = inspect_volume_or_none(engine, str(m.get("Name"))) if m.get("Type") == "volume" else None
        if _is_anonymous(m, vol, explicit):
            found.append((str(m["Name"]), os.path.normpath(str(m["Destination"]))))
        elif m.get("Type") == "volume":
            taken[str(m.get("Name"))] = os.path.normpath(str(m.get("Destination")))
    names = assign_volume_names(name, [p for _, p in found], overrides, taken)
    adoptions: list[Adoption] = []
    for anonymous, path in found:
        new = names[path]
        existing = inspect_volume_or_none(engine, new)
        if existing is not None:
            labels = existing.get("Labels") or {}
            owner = (
                f" (made for {labels[FOR_LABEL]}:{labels.get(PATH_LABEL, '?')})"
                if labels.get(FOR_LABEL)
                else ""
            )
            raise UsageError(
                f"volume {new} (for {name}:{path}) exists already{owner}; expected a free name, so no "
                f"other data is mixed in; remove or rename it first, or pick a name with --name-for "
                f"{path}=NAME"
            )
        create = plan_create(
            engine,
            new,
            os.path.join(at, new) if at else None,
            {FOR_LABEL: name, PATH_LABEL: path},
            allow_volatile=allow_volatile,
        )
        adoptions.append(Adoption(anonymous, path, create))
    _check_room(engine, adoptions, at)
    image = image_ref(engine, info)
    rec = recreate_body(info, image, {a.path: a.create.name for a in adoptions})
    original = recreate_body(info, image)
    running = bool((info.get("State") or {}).get("Running"))
    notes = []
    if adoptions and running:
        notes.append(f"{name} is running: it is stopped for the copy and started again")
    if adoptions:
        notes.append("the anonymous volumes are kept; remove them with `docker volume rm` once satisfied")
    return AdoptPlan(name, str(info["Id"]), running, tuple(adoptions), rec, original, tuple(notes))


def _check_room(engine: Engine, adoptions: list[Adoption], at: str | None) -> None:
    if not adoptions:
        return
    need = sum(
        cp.measure(local_data_dir(volume_place(engine.inspect_volume(a.anonymous)))).allocated
        for a in adoptions
    )
    where = at or data_root(engine)
    probe = where
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    if need > free:
        raise NotEnoughSpace(
            f"the anonymous volumes hold {need} bytes, {where} has {free} free; expected room for "
            "a copy; free space there or pick another --at; nothing was changed"
        )


def _create_to_json(c: CreatePlan) -> JSON:
    return {
        "name": c.name,
        "at": c.at.__dict__ if c.at else None,
        "driver_opts": c.driver_opts,
        "labels": c.labels,
    }


def _create_from_json(d: JSON) -> CreatePlan:
    return CreatePlan(
        d["name"], PlaceCheck(**d["at"]) if d["at"] else None, dict(d["driver_opts"]), dict(d["labels"])
    )


def _rec_json(r: Recreation) -> JSON:
    return {"name": r.name, "body": r.body, "extra_networks": r.extra_networks}


def apply_adopt(engine: Engine, plan: AdoptPlan) -> str:
    """Carry out (or resume) the adoption; returns the new container's id. Rolls back on failure and
    re-raises; VolumeOperationFailed (exit 3) when the rollback could not finish (the journal stays)."""
    if not plan.adoptions:
        return plan.container_id
    with operation_lock(f"adopt {plan.container}", engine=engine):
        key = adopt_key(engine, plan.container)
        op: Adopt | None = Adopt.load(key) if plan.resume is not None else None
        if op is None:
            op = Adopt.begin(
                key,
                {
                    "container": plan.container,
                    "container_id": plan.container_id,
                    "running": plan.running,
                    "adoptions": [
                        {"anonymous": a.anonymous, "path": a.path, "create": _create_to_json(a.create)}
                        for a in plan.adoptions
                    ],
                    "recreation": _rec_json(plan.recreation),
                    "original": _rec_json(plan.original),
                    "parked": f"{plan.container}-pre-adopt-{secrets.token_hex(3)}",
                    "made": [],
                    "made_dirs": [],
                    "copying": [],
                    "new_id": None,
                },
            )
        op.engine = engine
        try:
            op.stash()
        except (Exception, KeyboardInterrupt) as exc:
            try:
                op.rollback()
            except Exception as rb:
                raise VolumeOperationFailed(
                    f"adopting the volumes of {plan.container} failed: {exc}; rolling back also failed: "
                    f"{'the same error' if str(rb) == str(exc) else rb}; the "
                    f"journal {op.path} is kept: rerun `tamer adopt {plan.container} --rollback --apply`"
                ) from exc
            msg = (
                f"adopting the volumes of {plan.container} failed: {exc}; rolled back: the container and its "
                "anonymous volumes are as before"
            )
            if isinstance(exc, TamerError):
                raise type(exc)(msg) from exc
            raise TamerError(msg) from exc
        new_id = str(op.data["new_id"])
        op.commit()
        return new_id


def _copy_started(dest: Path) -> Callable[[subprocess.Popen[bytes]], None]:
    def hit(proc: subprocess.Popen[bytes]) -> None:
        faults.hit("adopt.copy.started", proc=proc, dest=dest)

    return hit


class Adopt(Operation):
    kind: ClassVar[str] = "adopt"
    steps: ClassVar[tuple[str, ...]] = STEPS
    engine: Engine

    @property
    def adoptions(self) -> list[tuple[str, str, CreatePlan]]:
        return [(a["anonymous"], a["path"], _create_from_json(a["create"])) for a in self.data["adoptions"]]

    def _dst(self, c: CreatePlan) -> Path:
        return local_data_dir(volume_place(self.engine.inspect_volume(c.name)))

    def do_stop(self) -> None:
        if self.data["running"]:
            with contextlib.suppress(ObjectNotFound):
                self.engine.stop_container(self.data["container_id"])

    def do_create(self) -> None:
        made: list[str] = self.data["made"]
        for _, _, c in self.adoptions:
            if c.name in made and inspect_volume_or_none(self.engine, c.name) is not None:
                continue  # made by this adoption before a kill
            if c.at is not None and not os.path.isdir(c.at.path):
                self.data["made_dirs"].append(c.at.path)
            made.append(c.name)  # recorded first: a rollback removes it only if it exists and is ours
            self.save()
            apply_create(self.engine, c, allow_volatile=True)

    def do_copy(self) -> None:
        copying: list[str] = self.data["copying"]
        for anonymous, _, c in self.adoptions:
            guard.assert_no_running_users(self.engine, anonymous, f"copy volume {anonymous}")
            src = local_data_dir(volume_place(self.engine.inspect_volume(anonymous)))
            dst = self._dst(c)
            if c.name in copying:
                cp.clear_folder(dst)  # our own partial copy from a killed run
            elif any(os.scandir(dst)):
                raise UsageError(
                    f"the new volume {c.name} is not empty ({dst}); expected an empty volume, so no "
                    "data is merged; nothing was copied"
                )
            else:
                copying.append(c.name)
                self.save()
            cp.copy_tree(src, dst, on_started=_copy_started(dst))

    def do_verify(self) -> None:
        for anonymous, _, c in self.adoptions:
            src = local_data_dir(volume_place(self.engine.inspect_volume(anonymous)))
            cp.verify_copy(src, self._dst(c))

    def do_park(self) -> None:
        info = self.engine.inspect_container(self.data["container_id"])
        if str(info.get("Name", "")).lstrip("/") != self.data["parked"]:
            self.engine.rename_container(self.data["container_id"], self.data["parked"])

    def do_recreate(self) -> None:
        rec = recreation_from_json(self.data["recreation"])
        try:
            existing = self.engine.inspect_container(rec.name)
            if str(existing["Id"]) == self.data["container_id"]:
                raise TamerError(f"container {rec.name} still has its old name; expected it parked")
            self.data["new_id"] = str(existing["Id"])  # made by a run killed before recording it
        except ObjectNotFound:
            cid = create_again(self.engine, rec)
            faults.hit("adopt.recreate.created", op=self)
            self.data["new_id"] = cid
        self.save()

    def do_start(self) -> None:
        if self.data["running"]:
            self.engine.start_container(str(self.data["new_id"]))

    def do_remove_old(self) -> None:
        with contextlib.suppress(ObjectNotFound):
            self.engine.remove_container(self.data["container_id"])  # its anonymous volumes stay

    def rollback(self) -> list[str]:
        self.set_state(OperationState.ROLLING_BACK)
        d = self.data
        did: list[str] = []
        name, old_id = d["container"], d["container_id"]
        # the re-created container, recorded or not
        with contextlib.suppress(ObjectNotFound):
            info = self.engine.inspect_container(name)
            if str(info["Id"]) != old_id:
                self.engine.remove_container(str(info["Id"]), force=True)
                did.append(f"removed the re-created {name}")
        if d.get("new_id") and d["new_id"] != old_id:
            with contextlib.suppress(ObjectNotFound):
                self.engine.remove_container(str(d["new_id"]), force=True)
        try:
            info = self.engine.inspect_container(old_id)
            if str(info.get("Name", "")).lstrip("/") != name:
                self.engine.rename_container(old_id, name)
                did.append(f"renamed {d['parked']} back to {name}")
        except ObjectNotFound:
            create_again(self.engine, recreation_from_json(d["original"]))  # removed already: make it again
            did.append(f"re-created {name} with its anonymous volumes")
        for _, _, c in reversed(self.adoptions):
            if c.name not in d["made"]:
                continue
            vol = inspect_volume_or_none(self.engine, c.name)
            if vol is not None and (vol.get("Labels") or {}).get(FOR_LABEL) == name:
                self.engine.remove_volume(c.name)
                did.append(f"removed the new volume {c.name}")
            if c.at is not None and os.path.isdir(c.at.path) and c.name in d["copying"]:
                guard.assert_folder_free(self.engine, c.at.path, "remove the copy at")
                if c.at.path in d["made_dirs"]:
                    shutil.rmtree(c.at.path)
                else:
                    cp.clear_folder(Path(c.at.path))  # it was empty before this adoption
            elif c.at is not None and c.at.path in d["made_dirs"] and os.path.isdir(c.at.path):
                with contextlib.suppress(OSError):
                    os.rmdir(c.at.path)
        if d["running"]:
            if self.status("stop") is not StepStatus.PENDING:
                # a stop killed midway goes on in the engine: wait for it (a stop of a stopped container
                # returns at once), or the container would go down after we found it running
                self.engine.stop_container(name)
            info = self.engine.inspect_container(name)
            if not (info.get("State") or {}).get("Running"):
                self.engine.start_container(name)
                did.append(f"started {name}")
        self.remove()
        return did


def rollback_adopt(engine: Engine, container: str) -> list[str]:
    """Undo an unfinished adoption of `container` from its journal; returns what was done."""
    with operation_lock(f"adopt {container} --rollback", engine=engine):
        op: Adopt | None = Adopt.load(adopt_key(engine, container))
        if op is None:
            raise UsageError(
                f"no unfinished adoption of {container} to roll back; expected one left by a killed "
                "or failed `tamer adopt`"
            )
        op.engine = engine
        return op.rollback()


def pending_adopt(engine: Engine, container: str) -> JSON | None:
    op = Adopt.load(adopt_key(engine, container))
    if op is None:
        return None
    return {**op.data, "done": [s for s in op.step_names() if op.is_done(s)], "state": op.state.value}


def container_exists(engine: Engine, name: str) -> bool:
    try:
        engine.inspect_container(name)
    except ObjectNotFound:
        return False
    return True
