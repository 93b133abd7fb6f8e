"""`tamer volume move NAME --to PATH`: put a volume's data on another drive, safely.

A move is an `Operation` (tamer.operation): each step journaled; a killed move is resumed by a rerun or
undone with --rollback, from any step. Steps:
    stop          stop the running users (only with --stop-users)
    copy          cp -a the data to PATH (owners, modes, times, xattrs, hard links, sparse files); checked
                  first, live: no user runs (a copy of data being written may be torn), PATH is empty and no
                  other volume or container uses it
    verify        compare both trees, sha256 of every file
    remove-users  remove the users (their configuration is in the journal)
    keep-source   default placement: move the engine's data folder into a keeper volume NAME.pre-move
                  (one rename), because removing the volume would delete it; symlink placement: put
                  the link aside (the engine refuses to remove a volume whose folder is a link)
    remove-old    remove the volume NAME (bind/symlink data stays where it was)
    create-new    create NAME with bind options to PATH
    recreate      create the users again with their exact configuration
    start         start the ones that were running
commit: with --purge-source, the old data is deleted, but only when, checked at that moment against the
live engine, no other volume or container uses that folder, a parent or a child of it.
Rollback re-establishes the original state from the live system (whatever step was killed): re-created
containers go, the bind volume goes, NAME and its data come back, the users are re-created and started.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from tamer.engine import Engine
from tamer.errors import (
    NotEnoughSpace,
    ObjectNotFound,
    PlacementRefused,
    TamerError,
    UsageError,
    VolumeInUse,
    VolumeOperationFailed,
)
from tamer.operation import OperationState, operation_lock
from tamer.volumes import copy as cp
from tamer.volumes import guard
from tamer.volumes.move_operation import JSON as JSON
from tamer.volumes.move_operation import KEEPER_LABEL as KEEPER_LABEL
from tamer.volumes.move_operation import STEPS as STEPS
from tamer.volumes.move_operation import Move as Move
from tamer.volumes.move_operation import User as User
from tamer.volumes.move_operation import _place_from_json
from tamer.volumes.place import (
    PlaceCheck,
    VolumePlace,
    check_place,
    check_volume_name,
    data_root,
    inspect_volume_or_none,
    local_data_dir,
    volume_place,
)
from tamer.volumes.recreate import image_ref, recreate_body


@dataclass(frozen=True)
class MovePlan:
    """A move, checked. `resume` holds the journal of an unfinished move of this volume, if any."""

    volume: str
    source: VolumePlace
    dest: str
    size: cp.TreeSize
    free_bytes: int
    users: tuple[User, ...]
    keeper: str | None
    steps: tuple[str, ...]
    resume: JSON | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    source_shared_with: tuple[str, ...] = ()  # other users of the source folder: never purged


@dataclass(frozen=True)
class MoveResult:
    volume: str
    source: str
    dest: str
    files: int
    bytes: int
    recreated: tuple[str, ...]
    started: tuple[str, ...]
    source_kept: str | None  # where the old data still is (a keeper volume or a folder), None when purged
    resumed: bool
    warnings: tuple[str, ...] = ()


def move_key(engine: Engine, name: str) -> str:
    """The journal key of a move of `name` on this engine (one move per volume per engine)."""
    return f"{name}@{hashlib.sha256(engine.where.encode()).hexdigest()[:10]}"


def plan_move(
    engine: Engine,
    name: str,
    to: str,
    *,
    stop_users: bool,
    purge_source: bool = False,
    allow_volatile: bool = False,
) -> MovePlan:
    """Check a move; changes nothing. Raises UsageError, PlacementRefused, VolumeInUse, NotEnoughSpace,
    FolderInUse; a TamerError saying what needs root when this user may not write the data-root."""
    check_volume_name(name)
    op = Move.load(move_key(engine, name))
    if op is not None:
        d = op.data
        if os.path.normpath(to) != d["dest"]:
            raise UsageError(
                f"a move of volume {name} to {d['dest']} is unfinished; expected the same "
                f"--to; rerun with --to {d['dest']} to finish it, or add --rollback"
            )
        done = [s for s in op.step_names() if op.is_done(s)]
        return MovePlan(
            name,
            _place_from_json(d["source"]),
            d["dest"],
            cp.TreeSize(**d["size"]),
            0,
            tuple(User(**u) for u in d["users"]),
            d.get("keeper"),
            tuple(op.pending_steps()),
            resume=op.record,
            notes=(f"resuming an unfinished move; done already: {', '.join(done) or 'nothing'}",),
            source_shared_with=tuple(d.get("shared", ())),
        )
    root = data_root(engine)
    if os.path.isdir(root):
        guard.require_data_access(root, "volume move")
    vol = inspect_volume_or_none(engine, name)
    if vol is None:
        raise ObjectNotFound(
            f"volume {name} does not exist; expected an existing volume; `tamer volume ls` lists them"
        )
    vp = volume_place(vol)
    src = local_data_dir(vp)
    check: PlaceCheck = check_place(to, root)
    dest = check.path
    real_src, real_dest = os.path.realpath(src), os.path.realpath(dest)
    if real_src == real_dest:
        raise UsageError(f"volume {name} already keeps its data at {dest}; nothing to move")
    if real_dest.startswith(real_src + "/") or real_src.startswith(real_dest + "/"):
        raise UsageError(
            f"{dest} and the volume's data folder {src} contain one another; expected separate folders"
        )
    if check.entries:
        raise UsageError(
            f"{dest} is not empty ({check.entries} entries); expected a new or empty folder, so "
            "nothing there is mixed up or overwritten; pick another folder"
        )
    others = guard.folder_users(engine, dest, except_volumes=())
    if others:
        raise PlacementRefused(
            f"{dest} is used already: {'; '.join(u.describe() for u in others)}; expected a "
            "folder no other volume or container uses (two volumes on one folder mix their "
            "data); pick another folder"
        )
    volatile = guard.volatile_filesystem(dest)
    if volatile and not allow_volatile:
        raise PlacementRefused(
            f"{dest} is on a {volatile} filesystem, which lives in memory: its data is lost at "
            "the next reboot; expected a folder on a disk; pick one, or add --allow-tmpfs if "
            "losing the data at reboot is really what you want"
        )
    size = cp.measure(src)
    if size.allocated > check.free_bytes:
        raise NotEnoughSpace(
            f"volume {name} needs {size.allocated} bytes, {dest} has {check.free_bytes} free; "
            "expected room for the whole volume; free space there or pick a bigger drive; "
            "nothing was changed"
        )
    users: list[User] = []
    for c in engine.containers_using_volume(name):
        info = engine.inspect_container(str(c["Id"]))
        running = bool((info.get("State") or {}).get("Running"))
        rec = recreate_body(info, image_ref(engine, info))
        users.append(
            User(
                str(info["Id"]),
                rec.name,
                running,
                {"name": rec.name, "body": rec.body, "extra_networks": rec.extra_networks},
            )
        )
    busy = [u.name for u in users if u.running]
    if busy and not stop_users:
        raise VolumeInUse(
            f"volume {name} is used by running container(s) {', '.join(busy)}; expected consent to "
            "stop them: add --stop-users (they are re-created with the same configuration and "
            "started again)"
        )
    shared = guard.folder_users(
        engine, str(src), except_volumes={name}, except_containers={u.id for u in users}
    )
    if shared and vp.placement == "default":
        raise VolumeInUse(
            f"the data folder {src} of volume {name} is also used: "
            f"{'; '.join(u.describe() for u in shared)}; expected it to be this volume's alone, "
            "because the move takes the folder away from the engine's volume; move or remove those "
            "users first; nothing was changed"
        )
    if shared and purge_source:
        raise VolumeInUse(
            f"--purge-source refused: the old data folder {src} is also used: "
            f"{'; '.join(u.describe() for u in shared)}; expected a folder no one else uses before "
            "deleting it; move without --purge-source (the folder stays for them); nothing was "
            "changed"
        )
    keeper = None
    if vp.placement == "default":
        keeper = f"{name}.pre-move"
        n = 1
        while inspect_volume_or_none(engine, keeper) is not None:
            n += 1
            keeper = f"{name}.pre-move{n}"
    notes = []
    if users:
        notes.append(
            f"container(s) {', '.join(u.name for u in users)} will be re-created (new ids, same "
            "configuration)"
        )
    if shared:
        notes.append(f"the old folder {src} stays: " + "; ".join(u.describe() for u in shared))
    if volatile:
        notes.append(f"warning: {dest} is on {volatile}: the moved data is lost at the next reboot")
    return MovePlan(
        name,
        vp,
        dest,
        size,
        check.free_bytes,
        tuple(users),
        keeper,
        STEPS,
        notes=tuple(notes),
        source_shared_with=tuple(u.describe() for u in shared),
    )


def _journal_data(plan: MovePlan) -> JSON:
    return {
        "volume": plan.volume,
        "dest": plan.dest,
        "source": plan.source.__dict__,
        "size": plan.size.__dict__,
        "users": [u.__dict__ for u in plan.users],
        "keeper": plan.keeper,
        "made_dest": False,
        "copy_started": False,
        "new_ids": {},
        "purge": False,
        "shared": list(plan.source_shared_with),
    }


def apply_move(engine: Engine, plan: MovePlan, *, purge_source: bool = False) -> MoveResult:
    """Carry out (or resume) the move. On failure rolls back and re-raises; VolumeOperationFailed (exit 3)
    when the rollback itself could not finish (the journal stays for another try)."""
    with operation_lock(f"volume move {plan.volume}", engine=engine):
        key = move_key(engine, plan.volume)
        op = Move.load(key) if plan.resume is not None else None
        resumed = op is not None
        if op is None:
            op = Move.begin(key, _journal_data(plan))
        op.engine = engine
        if op.state is OperationState.ROLLING_BACK:
            # a rollback was cut short: finishing it is what --rollback is for; a move asked for now must not
            # quietly finish it instead and then report both "rerun with --rollback" and "rolled back"
            raise UsageError(
                f"a rollback of the move of {plan.volume} was started and did not finish (journal {op.path}); "
                f"expected it finished first; run `tamer volume move {plan.volume} --rollback --apply`, then "
                "move again; nothing was changed"
            )
        if purge_source and not op.data["purge"]:
            op.data["purge"] = True
            op.save()
        try:
            op.stash()
        except (Exception, KeyboardInterrupt) as exc:
            failed_at = next((s for s in op.step_names() if not op.is_done(s)), "?")
            try:
                op.rollback()
            except Exception as rb:
                raise VolumeOperationFailed(
                    f"moving volume {plan.volume} failed at step {failed_at}: {exc}; rolling back also failed: "
                    f"{'the same error' if str(rb) == str(exc) else rb}; the journal {op.path} is kept: rerun "
                    "with --rollback to retry"
                ) from exc
            msg = (
                f"{exc}; the move of {plan.volume} (failed at step {failed_at}) was rolled back: the volume, its "
                "data and its containers are as before"
            )
            if isinstance(exc, TamerError):
                raise type(exc)(msg) from exc
            raise TamerError(msg) from exc
        d = op.data
        users = [User(**u) for u in d["users"]]
        source = _place_from_json(d["source"])
        kept: str | None = d.get("keeper") or source.data_path
        op.commit()
        purged = bool(d["purge"]) and not d.get("purge_refused")
        size = d["size"]
        warnings = (f"the old data was not deleted: {d['purge_refused']}",) if d.get("purge_refused") else ()
        return MoveResult(
            plan.volume,
            source.data_path,
            d["dest"],
            size["files"],
            size["bytes"],
            tuple(u.name for u in users),
            tuple(u.name for u in users if u.running),
            None if purged else kept,
            resumed,
            warnings,
        )


def rollback_move(engine: Engine, name: str) -> list[str]:
    """Undo an unfinished move of `name` from its journal; returns what was done. Raises UsageError when
    there is no unfinished move."""
    with operation_lock(f"volume move {name} --rollback", engine=engine):
        op: Move | None = Move.load(move_key(engine, name))
        if op is None:
            raise UsageError(
                f"no unfinished move of volume {name} to roll back; expected one left by a killed or "
                "failed `tamer volume move`"
            )
        op.engine = engine
        return op.rollback()


def pending_move(engine: Engine, name: str) -> JSON | None:
    op = Move.load(move_key(engine, name))
    if op is None:
        return None
    return {**op.data, "done": [s for s in op.step_names() if op.is_done(s)], "state": op.state.value}


__all__ = [
    "Move",
    "MovePlan",
    "MoveResult",
    "apply_move",
    "move_key",
    "pending_move",
    "plan_move",
    "rollback_move",
]
