"""The journaled `Operation` of a volume move (see tamer.volumes.move, which plans and runs it): the
users' record, the steps forward (`do_<step>`), the commit (--purge-source) and the rollback, which
re-establishes the original state from the live system whatever step was killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tamer.engine import Engine
from tamer.errors import ObjectNotFound, TamerError, UsageError
from tamer.operation import Operation, OperationState, StepStatus, faults
from tamer.volumes import copy as cp
from tamer.volumes import guard
from tamer.volumes.place import (
    PLACED_LABEL,
    VolumePlace,
    bind_options,
    inspect_volume_or_none,
    volume_place,
)
from tamer.volumes.recreate import create_again, recreation_from_json

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


def _place_from_json(d: JSON) -> VolumePlace:
    return VolumePlace(**d)


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
                missing = [self.dest, *(p for p in self.dest.parents if not p.exists())]
                self.data["made_dest"] = True
                # the folders above PATH this move makes: a rollback removes them again (only while empty)
                self.data["made_parents"] = [str(p) for p in missing[1:]]
                self.save()
                try:
                    self.dest.mkdir(parents=True, mode=0o755)
                except OSError as exc:
                    raise UsageError(
                        f"{self.dest} cannot be made ({exc.strerror}); expected a folder tamer can create "
                        "on a disk; pick another --to"
                    ) from None
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
    if d.get("made_dest") and os.path.realpath(dest) != os.path.realpath(source.data_path):
        # made, then killed before the copy began: the folder is still empty (rmdir removes nothing else)
        with contextlib.suppress(OSError):
            os.rmdir(dest_path)
    if d.get("made_dest") and not os.path.lexists(dest_path):  # lexists: False for a name past NAME_MAX
        for parent in d.get("made_parents") or ():  # deepest first; never one that holds anything
            try:
                os.rmdir(parent)
            except OSError:
                break
    return did
