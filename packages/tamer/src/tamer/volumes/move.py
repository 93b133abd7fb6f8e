"""`tamer volume move NAME --to PATH`: put a volume's data on another drive, safely.

Steps (each journaled; a killed move is resumed or rolled back by a rerun):
    stop          stop the running users (only with --stop-users)
    copy          cp -a the data to PATH (owners, modes, times, xattrs, hard links, sparse files)
    verify        compare both trees, sha256 of every file
    remove-users  remove the users (their configuration is in the journal)
    keep-source   default placement: move the engine's data folder into a keeper volume NAME.pre-move
                  (one rename), because removing the volume would delete it; symlink placement: put
                  the link aside (the engine refuses to remove a volume whose folder is a link)
    remove-old    remove the volume NAME (bind/symlink data stays where it was)
    create-new    create NAME with bind options to PATH
    recreate      create the users again with their exact configuration
    start         start the ones that were running
The source data stays until --purge-source after a verified move.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tamer.engine import Engine
from tamer.errors import (
    NotEnoughSpace,
    ObjectNotFound,
    TamerError,
    UsageError,
    VolumeInUse,
    VolumeOperationFailed,
)
from tamer.volumes import copy as cp
from tamer.volumes.journal import Journal, crash_point, wants_crash
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
STEPS = ("stop", "copy", "verify", "remove-users", "keep-source", "remove-old", "create-new", "recreate", "start")
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


def _place_from_json(d: JSON) -> VolumePlace:
    return VolumePlace(**d)


def plan_move(engine: Engine, name: str, to: str, *, stop_users: bool) -> MovePlan:
    """Check a move; changes nothing. Raises UsageError, PlacementRefused, VolumeInUse, NotEnoughSpace."""
    check_volume_name(name)
    journal = Journal.load("move", engine.where, name)
    if journal is not None:
        if os.path.normpath(to) != journal.data["dest"]:
            raise UsageError(f"a move of volume {name} to {journal.data['dest']} is unfinished; expected the same "
                             f"--to; rerun with --to {journal.data['dest']} to finish it, or add --rollback")
        return MovePlan(name, _place_from_json(journal.data["source"]), journal.data["dest"],
                        cp.TreeSize(**journal.data["size"]), 0, tuple(User(**u) for u in journal.data["users"]), journal.data.get("keeper"),
                        tuple(s for s in STEPS if not journal.is_done(s)), resume=journal.data,
                        notes=(f"resuming an unfinished move; done already: {', '.join(journal.data['done']) or 'nothing'}",))
    vol = inspect_volume_or_none(engine, name)
    if vol is None:
        raise ObjectNotFound(f"volume {name} does not exist; expected an existing volume; `tamer volume ls` lists them")
    vp = volume_place(vol)
    src = local_data_dir(vp)
    check: PlaceCheck = check_place(to, data_root(engine))
    dest = check.path
    real_src, real_dest = os.path.realpath(src), os.path.realpath(dest)
    if real_src == real_dest:
        raise UsageError(f"volume {name} already keeps its data at {dest}; nothing to move")
    if real_dest.startswith(real_src + "/") or real_src.startswith(real_dest + "/"):
        raise UsageError(f"{dest} and the volume's data folder {src} contain one another; expected separate folders")
    if check.entries:
        raise UsageError(f"{dest} is not empty ({check.entries} entries); expected a new or empty folder, so "
                         "nothing there is mixed up or overwritten; pick another folder")
    size = cp.measure(src)
    if size.allocated > check.free_bytes:
        raise NotEnoughSpace(f"volume {name} needs {size.allocated} bytes, {dest} has {check.free_bytes} free; "
                             "expected room for the whole volume; free space there or pick a bigger drive; "
                             "nothing was changed")
    users: list[User] = []
    for c in engine.containers_using_volume(name):
        info = engine.inspect_container(str(c["Id"]))
        running = bool((info.get("State") or {}).get("Running"))
        rec = recreate_body(info, image_ref(engine, info))
        users.append(User(str(info["Id"]), rec.name, running,
                          {"name": rec.name, "body": rec.body, "extra_networks": rec.extra_networks}))
    busy = [u.name for u in users if u.running]
    if busy and not stop_users:
        raise VolumeInUse(f"volume {name} is used by running container(s) {', '.join(busy)}; expected consent to "
                          "stop them: add --stop-users (they are re-created with the same configuration and "
                          "started again)")
    keeper = None
    if vp.placement == "default":
        keeper = f"{name}.pre-move"
        n = 1
        while inspect_volume_or_none(engine, keeper) is not None:
            n += 1
            keeper = f"{name}.pre-move{n}"
    notes = []
    if users:
        notes.append(f"container(s) {', '.join(u.name for u in users)} will be re-created (new ids, same "
                     "configuration)")
    return MovePlan(name, vp, dest, size, check.free_bytes, tuple(users), keeper, STEPS, notes=tuple(notes))


def _journal_data(plan: MovePlan) -> JSON:
    return {"kind": "move", "volume": plan.volume, "dest": plan.dest, "source": plan.source.__dict__,
            "size": plan.size.__dict__, "users": [u.__dict__ for u in plan.users], "keeper": plan.keeper,
            "made_dest": False, "new_ids": {}}


def apply_move(engine: Engine, plan: MovePlan, *, purge_source: bool = False) -> MoveResult:
    """Carry out (or resume) the move. On failure rolls back and re-raises; VolumeOperationFailed (exit 3)
    when the rollback itself could not finish (the journal stays for another try)."""
    resumed = plan.resume is not None
    journal = Journal.load("move", engine.where, plan.volume) if resumed else None
    if journal is None:
        journal = Journal.begin("move", engine.where, plan.volume, _journal_data(plan))
    ctx = _Move(engine, journal)
    try:
        for step in STEPS:
            if journal.is_done(step):
                continue
            getattr(ctx, "step_" + step.replace("-", "_"))()
            journal.mark(step)
            crash_point({"stop": "before-copy", "verify": "after-copy", "keep-source": "mid-swap-keep",
                         "remove-old": "mid-swap"}.get(step, step))
    except (Exception, KeyboardInterrupt) as exc:
        failed_at = next((s for s in STEPS if not journal.is_done(s)), "?")
        try:
            rollback_move(engine, plan.volume)
        except Exception as rb:
            raise VolumeOperationFailed(
                f"moving volume {plan.volume} failed at step {failed_at}: {exc}; rolling back also failed: {rb}; "
                f"the journal {journal.path} is kept: rerun with --rollback to retry") from exc
        msg = (f"{exc}; the move of {plan.volume} (failed at step {failed_at}) was rolled back: the volume, its data "
               "and its containers are as before")
        if isinstance(exc, TamerError):
            raise type(exc)(msg) from exc
        raise TamerError(msg) from exc
    users = [User(**u) for u in journal.data["users"]]
    source = _place_from_json(journal.data["source"])
    kept: str | None = journal.data.get("keeper") or source.data_path
    if purge_source:
        _purge(engine, source, journal.data.get("keeper"))
        kept = None
    journal.remove()
    size = journal.data["size"]
    return MoveResult(plan.volume, source.data_path, journal.data["dest"], size["files"], size["bytes"],
                      tuple(u.name for u in users), tuple(u.name for u in users if u.running), kept, resumed)


def _purge(engine: Engine, source: VolumePlace, keeper: str | None) -> None:
    if keeper:
        engine.remove_volume(keeper)
    elif os.path.isdir(source.data_path):
        shutil.rmtree(source.data_path)
        if source.placement == "symlink":
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(source.data_path))  # the essay's per-volume folder, when now empty


class _Move:
    def __init__(self, engine: Engine, journal: Journal) -> None:
        self.engine = engine
        self.j = journal
        self.d = journal.data
        self.name: str = self.d["volume"]
        self.source = _place_from_json(self.d["source"])
        self.dest = Path(self.d["dest"])
        self.users = [User(**u) for u in self.d["users"]]

    def step_stop(self) -> None:
        for u in self.users:
            if u.running:
                with contextlib.suppress(ObjectNotFound):
                    self.engine.stop_container(u.id)

    def step_copy(self) -> None:
        if not self.dest.exists():
            self.d["made_dest"] = True
            self.j.save()
            self.dest.mkdir(parents=True, mode=0o755)
        else:
            cp.clear_folder(self.dest)  # empty when planned: anything here is our own partial copy
        hook: Callable[[Any], None] | None = None
        if wants_crash("mid-copy"):
            def hook(proc: Any) -> None:
                cp.kill_copy_midway(proc, self.dest)
                os._exit(137)
        cp.copy_tree(Path(self.source.data_path), self.dest, on_started=hook)

    def step_verify(self) -> None:
        cp.verify_copy(Path(self.source.data_path), self.dest)

    def step_remove_users(self) -> None:
        for u in self.users:
            with contextlib.suppress(ObjectNotFound):
                self.engine.remove_container(u.id, force=True)

    def step_keep_source(self) -> None:
        if self.source.placement == "symlink":
            # The engine refuses to remove a volume whose folder is a link leading out of its root
            # ("Unable to remove a directory outside of the local volume root"): put the link aside
            # (one rename) and leave an ordinary empty folder in its place for the engine to remove.
            link, aside = _link_paths(self.source)
            if link.is_symlink():
                os.rename(link, aside)
            if not link.exists():
                os.mkdir(link, 0o700)
                os.mkdir(link / "_data", 0o755)
            return
        keeper = self.d.get("keeper")
        if not keeper:
            return
        if inspect_volume_or_none(self.engine, keeper) is None:
            self.engine.create_volume(keeper, labels={KEEPER_LABEL: self.name, "io.tamer.moved-to": str(self.dest)})
        kp = Path(self.engine.inspect_volume(keeper)["Mountpoint"])
        old = Path(self.source.mountpoint)
        if old.exists() and not (kp.exists() and any(os.scandir(kp))):
            if kp.exists():
                os.rmdir(kp)
            os.rename(old, kp)  # one rename on the same filesystem: the data is at one place or the other
        if not old.exists():
            os.mkdir(old, 0o755)  # leave the engine an ordinary, empty volume to remove

    def step_remove_old(self) -> None:
        vol = inspect_volume_or_none(self.engine, self.name)
        if vol is not None and volume_place(vol).data_path != str(self.dest):
            self.engine.remove_volume(self.name)
        if self.source.placement == "symlink":
            _link_paths(self.source)[1].unlink(missing_ok=True)  # the data stays where the link pointed

    def step_create_new(self) -> None:
        if inspect_volume_or_none(self.engine, self.name) is None:
            labels = {**self.source.labels, PLACED_LABEL: str(self.dest)}
            self.engine.create_volume(self.name, driver_opts=bind_options(str(self.dest)), labels=labels)

    def step_recreate(self) -> None:
        new_ids: dict[str, str] = self.d["new_ids"]
        for u in self.users:
            if u.name in new_ids:
                continue
            try:
                existing = self.engine.inspect_container(u.name)
                new_ids[u.name] = str(existing["Id"])  # made by a run that was killed before recording it
            except ObjectNotFound:
                new_ids[u.name] = create_again(self.engine, recreation_from_json(u.recreation))
            self.j.save()

    def step_start(self) -> None:
        for u in self.users:
            if u.running:
                self.engine.start_container(self.d["new_ids"][u.name])


def _link_paths(source: VolumePlace) -> tuple[Path, Path]:
    """The essay's link (volumes/NAME) and where a move puts it aside meanwhile."""
    link = Path(source.mountpoint).parent
    return link, link.with_name(f".{link.name}.tamer-link")


def rollback_move(engine: Engine, name: str) -> list[str]:
    """Undo an unfinished move of `name` from its journal; returns what was done. Raises UsageError when
    there is no unfinished move."""
    j = Journal.load("move", engine.where, name)
    if j is None:
        raise UsageError(f"no unfinished move of volume {name} to roll back; expected one left by a killed or "
                         "failed `tamer volume move`")
    d = j.data
    did: list[str] = []
    source = _place_from_json(d["source"])
    dest = d["dest"]
    users = [User(**u) for u in d["users"]]
    for cname, cid in d.get("new_ids", {}).items():
        with contextlib.suppress(ObjectNotFound):
            engine.remove_container(cid, force=True)
            did.append(f"removed the re-created container {cname}")
    vol = inspect_volume_or_none(engine, name)
    if vol is not None and volume_place(vol).placement == "bind" and volume_place(vol).data_path == dest \
            and source.data_path != dest:
        engine.remove_volume(name)
        vol = None
    keeper = d.get("keeper")
    keeper_vol = inspect_volume_or_none(engine, keeper) if keeper else None
    if source.placement == "symlink":
        link, aside = _link_paths(source)
        if aside.is_symlink():
            if link.exists() and not link.is_symlink():
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
                    raise TamerError(f"both {old} and the keeper volume {keeper} hold data; expected only one; "
                                     "nothing was deleted: compare them and keep the right one by hand")
                os.rmdir(old)
            os.rename(kp, old)
            os.mkdir(kp, 0o755)
            did.append(f"moved the data back from {keeper}")
        engine.remove_volume(keeper)
    for u in users:
        try:
            engine.inspect_container(u.name)
        except ObjectNotFound:
            create_again(engine, recreation_from_json(u.recreation))
            did.append(f"re-created container {u.name}")
    for u in users:
        if u.running:
            info = engine.inspect_container(u.name)
            if not (info.get("State") or {}).get("Running"):
                engine.start_container(u.name)
                did.append(f"started {u.name}")
    dest_path = Path(dest)
    if dest_path.exists() and os.path.realpath(dest) != os.path.realpath(source.data_path):
        if d.get("made_dest"):
            shutil.rmtree(dest_path, ignore_errors=True)
        else:
            cp.clear_folder(dest_path)
        did.append(f"removed the copy at {dest}")
    j.remove()
    return did


def pending_move(engine: Engine, name: str) -> JSON | None:
    j = Journal.load("move", engine.where, name)
    return j.data if j else None


__all__ = ["MovePlan", "MoveResult", "apply_move", "pending_move", "plan_move", "rollback_move"]
