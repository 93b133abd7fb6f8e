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

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
from tamer.operation import Operation, OperationState, StepStatus, faults, operation_lock
from tamer.volumes import copy as cp
from tamer.volumes import guard
from tamer.volumes.place import (
    PLACED_LABEL,
    PlaceCheck,
    VolumePlace,
    bind_options,
    check_place,
    check_volume_name,
    data_root,
    inspect_volume_or_none,
    local_data_dir,
    volume_place,
)
from tamer.volumes.recreate import create_again, image_ref, recreate_body, recreation_from_json

JSON = dict[str, Any]
STEPS = (
    "stop",
    "copy",
    "verify",
    "remove-users",
    "keep-source",
    "remove-old",
    "create-new",
    "recreate",
    "start",
)
KEEPER_LABEL = "io.tamer.moved-from"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    running: bool
    recreation: JSON  # Recreation as JSON (name, body, extra_networks)


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


def _place_from_json(d: JSON) -> VolumePlace:
    return VolumePlace(**d)


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
                    f"{rb}; the journal {op.path} is kept: rerun with --rollback to retry"
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


class Move(Operation):
    kind: ClassVar[str] = "move"
    steps: ClassVar[tuple[str, ...]] = STEPS
    engine: Engine

    @property
    def name(self) -> str:
        return str(self.data["volume"])

    @property
    def source(self) -> VolumePlace:
        return _place_from_json(self.data["source"])

    @property
    def dest(self) -> Path:
        return Path(self.data["dest"])

    @property
    def users(self) -> list[User]:
        return [User(**u) for u in self.data["users"]]

    # -- forward ---------------------------------------------------------------------
    def do_stop(self) -> None:
        for u in self.users:
            if u.running:
                with contextlib.suppress(ObjectNotFound):
                    self.engine.stop_container(u.id)

    def do_copy(self) -> None:
        guard.assert_no_running_users(self.engine, self.name, f"copy volume {self.name}")
        if not self.data["copy_started"]:
            # the point of action: PATH was empty and unused when planned; it must still be
            if self.dest.exists() and any(os.scandir(self.dest)):
                raise UsageError(
                    f"{self.dest} is no longer empty; expected the new or empty folder the plan saw; "
                    "nothing there was touched; pick another folder"
                )
            guard.assert_folder_free(self.engine, str(self.dest), "copy volume data into")
            if not self.dest.exists():
                self.data["made_dest"] = True
                self.save()
                self.dest.mkdir(parents=True, mode=0o755)
            self.data["copy_started"] = True
            self.save()
        else:
            cp.clear_folder(self.dest)  # our own partial copy from a killed run
        cp.copy_tree(
            Path(self.source.data_path),
            self.dest,
            on_started=lambda proc: faults.hit("move.copy.started", proc=proc, dest=self.dest),
        )

    def do_verify(self) -> None:
        cp.verify_copy(Path(self.source.data_path), self.dest)

    def do_remove_users(self) -> None:
        for u in self.users:
            with contextlib.suppress(ObjectNotFound):
                self.engine.remove_container(u.id, force=True)

    def do_keep_source(self) -> None:
        source = self.source
        if source.placement == "symlink":
            # The engine refuses to remove a volume whose folder is a link leading out of its root
            # ("Unable to remove a directory outside of the local volume root"): put the link aside
            # (one rename) and leave an ordinary empty folder in its place for the engine to remove.
            link, aside = _link_paths(source)
            if link.is_symlink():
                os.rename(link, aside)
            if not link.exists():
                os.mkdir(link, 0o700)
                os.mkdir(link / "_data", 0o755)
            return
        keeper = self.data.get("keeper")
        if not keeper:
            return
        if inspect_volume_or_none(self.engine, keeper) is None:
            self.engine.create_volume(
                keeper, labels={KEEPER_LABEL: self.name, "io.tamer.moved-to": str(self.dest)}
            )
        kp = Path(self.engine.inspect_volume(keeper)["Mountpoint"])
        old = Path(source.mountpoint)
        if old.exists() and not (kp.exists() and any(os.scandir(kp))):
            if kp.exists():
                os.rmdir(kp)
            os.rename(old, kp)  # one rename on the same filesystem: the data is at one place or the other
        if not old.exists():
            os.mkdir(old, 0o755)  # leave the engine an ordinary, empty volume to remove

    def do_remove_old(self) -> None:
        vol = inspect_volume_or_none(self.engine, self.name)
        if vol is not None and volume_place(vol).data_path != str(self.dest):
            old = Path(self.source.mountpoint)
            if self.source.placement == "default" and old.exists() and any(os.scandir(old)):
                raise TamerError(
                    f"{old} holds data again after it was set aside; expected it empty; nothing was removed"
                )
            self.engine.remove_volume(self.name)
        if self.source.placement == "symlink":
            _link_paths(self.source)[1].unlink(missing_ok=True)  # the data stays where the link pointed

    def do_create_new(self) -> None:
        if inspect_volume_or_none(self.engine, self.name) is None:
            labels = {**self.source.labels, PLACED_LABEL: str(self.dest)}
            self.engine.create_volume(self.name, driver_opts=bind_options(str(self.dest)), labels=labels)

    def do_recreate(self) -> None:
        new_ids: dict[str, str] = self.data["new_ids"]
        for u in self.users:
            if u.name in new_ids:
                continue
            try:
                existing = self.engine.inspect_container(u.name)
                new_ids[u.name] = str(existing["Id"])  # made by a run that was killed before recording it
            except ObjectNotFound:
                cid = create_again(self.engine, recreation_from_json(u.recreation))
                faults.hit(
                    "move.recreate.created", op=self
                )  # made, not recorded: rollback must still find it
                new_ids[u.name] = cid
            self.save()

    def do_start(self) -> None:
        for u in self.users:
            if u.running:
                self.engine.start_container(self.data["new_ids"][u.name])

    # -- commit: the only irreversible part -------------------------------------------------
    def finish(self) -> None:
        if not self.data.get("purge"):
            return
        try:
            self._purge()
        except guard.FolderInUse as exc:
            # the move itself is complete and verified; only the deletion is refused: keep the old data
            self.data["purge_refused"] = str(exc)

    def _purge(self) -> None:
        source = self.source
        keeper = self.data.get("keeper")
        if keeper:
            kv = inspect_volume_or_none(self.engine, keeper)
            if kv is not None:
                guard.assert_folder_free(
                    self.engine, str(kv["Mountpoint"]), "delete the old data", except_volumes={keeper}
                )
                faults.hit("move.purge.before", op=self)
                self.engine.remove_volume(keeper)
        elif os.path.isdir(source.data_path):
            guard.assert_folder_free(self.engine, source.data_path, "delete the old data")
            faults.hit("move.purge.before", op=self)
            shutil.rmtree(source.data_path)
            if source.placement == "symlink":
                with contextlib.suppress(OSError):
                    os.rmdir(
                        os.path.dirname(source.data_path)
                    )  # the essay's per-volume folder, when now empty

    # -- rollback: re-establish the original from the live system, whatever step was killed ---------------
    def rollback(self) -> list[str]:
        if self.state is OperationState.COMMITTING and self.data.get("purge"):
            # the move is done and verified and the old data may be half deleted: the copy is now the only
            # whole one, and undoing would remove it
            raise UsageError(
                f"the move of {self.name} to {self.dest} finished and was deleting the old data "
                "(--purge-source) when it stopped; it cannot be rolled back: the data is whole at "
                f"{self.dest}; expected a rerun to finish: run the same `tamer volume move` again"
            )
        self.set_state(OperationState.ROLLING_BACK)
        did = _undo_move(self.engine, self)
        self.remove()
        return did


def _link_paths(source: VolumePlace) -> tuple[Path, Path]:
    """The essay's link (volumes/NAME) and where a move puts it aside meanwhile."""
    link = Path(source.mountpoint).parent
    return link, link.with_name(f".{link.name}.tamer-link")


def _undo_move(engine: Engine, op: Move) -> list[str]:
    d = op.data
    name = op.name
    did: list[str] = []
    source = op.source
    dest = d["dest"]
    users = op.users
    original_ids = {u.id for u in users}
    # 1. every container this move made (recorded or not: a kill may come between create and record)
    made = dict(d.get("new_ids", {}))
    for u in users:
        with contextlib.suppress(ObjectNotFound):
            info = engine.inspect_container(u.name)
            if str(info["Id"]) not in original_ids:
                made[u.name] = str(info["Id"])
    for cname, cid in made.items():
        if cid in original_ids:
            continue
        with contextlib.suppress(ObjectNotFound):
            engine.remove_container(cid, force=True)
            did.append(f"removed the re-created container {cname}")
    # 2. the bind volume pointing at the copy
    vol = inspect_volume_or_none(engine, name)
    if (
        vol is not None
        and volume_place(vol).placement == "bind"
        and volume_place(vol).data_path == dest
        and source.data_path != dest
    ):
        engine.remove_volume(name)
        did.append(f"removed the new volume {name} at {dest}")
        vol = None
    keeper = d.get("keeper")
    keeper_vol = inspect_volume_or_none(engine, keeper) if keeper else None
    # 3. the volume and its data where they were
    if source.placement == "symlink":
        link, aside = _link_paths(source)
        if aside.is_symlink():
            if link.exists() and not link.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(link / "_data")  # the empty stand-in made by keep-source; never holds data
                os.rmdir(link)
            os.rename(aside, link)
            did.append(f"put the link {link} back")
    if vol is None:
        if source.placement == "symlink":
            link = Path(source.mountpoint).parent
            if not link.exists():
                os.symlink(os.path.dirname(source.data_path), link)
        opts = source.options if source.placement == "bind" else None
        engine.create_volume(name, driver=source.driver, driver_opts=opts, labels=source.labels)
        did.append(f"re-created volume {name}")
    if keeper and keeper_vol is not None:
        kp = Path(keeper_vol["Mountpoint"])
        old = Path(source.mountpoint)
        if kp.exists() and any(os.scandir(kp)):
            if old.exists():
                if any(os.scandir(old)):
                    raise TamerError(
                        f"both {old} and the keeper volume {keeper} hold data; expected only one; "
                        "nothing was deleted: compare them and keep the right one by hand"
                    )
                os.rmdir(old)
            os.rename(kp, old)
            os.mkdir(kp, 0o755)
            did.append(f"moved the data back from {keeper}")
        elif not old.exists():
            raise TamerError(
                f"the data of {name} is neither at {old} nor in the keeper volume {keeper}; "
                "expected it at one of them; nothing was deleted; look for it by hand"
            )
        engine.remove_volume(keeper)
    # 4. the users, with their exact configuration, running if they were
    for u in users:
        try:
            engine.inspect_container(u.name)
        except ObjectNotFound:
            create_again(engine, recreation_from_json(u.recreation))
            did.append(f"re-created container {u.name}")
    stop_issued = op.status("stop") is not StepStatus.PENDING
    for u in users:
        if u.running:
            if stop_issued:
                # a stop killed midway goes on in the engine: wait for it (a stop of a stopped container
                # returns at once), or the user would go down after we found it running
                engine.stop_container(u.name)
            info = engine.inspect_container(u.name)
            if not (info.get("State") or {}).get("Running"):
                engine.start_container(u.name)
                did.append(f"started {u.name}")
    # 5. the copy, only when nothing else uses its folder now
    dest_path = Path(dest)
    if (
        d.get("copy_started")
        and dest_path.exists()
        and os.path.realpath(dest) != os.path.realpath(source.data_path)
    ):
        guard.assert_folder_free(engine, dest, "remove the copy at")
        if d.get("made_dest"):
            shutil.rmtree(dest_path)
        else:
            cp.clear_folder(dest_path)
        did.append(f"removed the copy at {dest}")
    return did


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
