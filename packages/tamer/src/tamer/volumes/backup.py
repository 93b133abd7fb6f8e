"""`tamer volume backup` and `tamer volume restore`, and the check the cleanup relies on.

backup_volume writes a zstd-compressed tar with a checksum manifest (format in
archive.py), mode 0600, into a partial file beside the output (locked while
written; a killed backup's partial is removed by the next run) that is linked
into place only when complete, never over a file that appeared meanwhile. A
copy read while containers using the volume ran is marked as possibly torn.
verify_backup re-reads an archive and checks every checksum; proof.py's
prove_restorable shows it restores the volume's current data.
plan_restore/apply_restore restore into a new or empty volume whose folder
no other volume or container uses, re-checked when acting; the extraction
itself (restore.py) resolves every path physically inside the volume.
Backup and restore run under tamer's one operation lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shlex
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tamer.engine import Engine
from tamer.errors import (
    EngineUnreachable,
    NotEnoughSpace,
    ObjectNotFound,
    RestoreRefused,
    TamerError,
    UsageError,
)
from tamer.operation import faults, operation_lock
from tamer.volumes.archive import read_archive
from tamer.volumes.archive_write import gnu_tar, write_archive
from tamer.volumes.guard import assert_folder_free, relation, require_data_access, running_users
from tamer.volumes.place import (
    CreatePlan,
    PlaceCheck,
    VolumePlace,
    apply_create,
    check_volume_name,
    data_root,
    hold_data_folder,
    inspect_volume_or_none,
    local_data_dir,
    plan_create,
    replaced_since,
    require_engine_here,
    volume_place,
)
from tamer.volumes.restore import restore_into
from tamer.volumes.restore_staging import leftovers


@dataclass(frozen=True)
class BackupResult:
    """A backup archive, as written or as verified.

    path: the archive; volume: the volume it holds; files: regular files;
    entries: all entries below the volume root; bytes: sum of file sizes;
    sha256: of the archive file itself; archive_bytes: its size;
    paused: containers paused while it was written; warnings: files that
    changed while read, entries skipped; consistent: False when containers
    using the volume ran (unpaused) while it was read, so the copy may be
    torn (for a verified archive: False when its header says users ran when
    the backup started; a copy torn by a user started midway is only caught
    at backup time, or by prove_restorable).
    """

    path: Path
    volume: str
    files: int
    bytes: int
    sha256: str
    archive_bytes: int
    entries: int
    paused: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    consistent: bool = True


def _running_users(engine: Engine, name: str) -> list[str]:
    return [str(c["Id"]) for c in engine.containers_using_volume(name) if c.get("State") == "running"]


TMP_MARK = ".tamer-"
# the output's disk or quota took no more (EFBIG: past the filesystem's or the process's file size limit)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _clean_dead_partials(out: Path) -> list[str]:
    """Remove partial archives that killed backups to `out` left beside it.

    Each backup holds an flock on its partial file while writing; a partial
    whose lock can be taken has no live writer (the kernel drops the lock
    when the process dies), so it is removed. Live ones are left alone.
    """
    gone = []
    prefix = f".{out.name}{TMP_MARK}"
    with contextlib.suppress(OSError):
        names = [n for n in os.listdir(out.parent) if n.startswith(prefix)]
        for n in names:
            path = out.parent / n
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a backup writing it right now
                os.unlink(path)
                gone.append(n)
            finally:
                os.close(fd)
    return gone


def backup_volume(
    engine: Engine,
    name: str,
    out: Path,
    *,
    pause_users: bool = False,
    overwrite: bool = False,
    writer: str = "auto",
) -> BackupResult:
    """Back up volume `name` to the file `out` (tar + zstd, checksum manifest, mode 0600).

    pause_users: pause the running containers using the volume while it is
    read (a consistent copy), unpausing them afterwards whatever happens.
    Without it, a copy taken while a container using the volume runs may be
    torn: `consistent` is False and a warning says so. writer: "auto" (the
    compiled writer when built, else GNU tar when installed, else Python),
    "compiled", "tar" or "python". Partial files left beside `out`
    by killed backups are removed first (never a live one's). Raises
    ObjectNotFound, UsageError (out exists, unless overwrite), TamerError when
    the data folder is not reachable from this host.

    Example:
        >>> r = backup_volume(engine, "mongo_data", Path("/backups/mongo.tar.zst"))  # doctest: +SKIP
        >>> verify_backup(r.path).sha256 == r.sha256  # doctest: +SKIP
        True
    """
    require_engine_here(engine, "volume backup")
    vol = engine.inspect_volume(name)
    vp = volume_place(vol)
    root = local_data_dir(vp)
    require_data_access(str(root), "volume backup", write=False)
    out = Path(out).absolute()
    if not out.parent.is_dir():
        raise UsageError(
            f"folder {out.parent} for the backup does not exist; expected an existing folder; nothing was "
            f"written; create it (mkdir -p {shlex.quote(str(out.parent))}) or pick another -o"
        )
    if out.is_dir():
        raise UsageError(
            f"{out} is a folder; expected the path of a new backup file, e.g. {out / (name + '.tar.zst')}; "
            "nothing was written"
        )
    if os.path.lexists(out) and not overwrite:  # lexists: a dangling symlink is there too (link() fails)
        what = "a symlink" if out.is_symlink() else "a file"
        raise UsageError(
            f"backup file {out} already exists ({what}); expected a new file; pick another name or remove it"
        )
    for data in {str(root), str(vol.get("Mountpoint") or "")} - {""}:
        if relation(str(out.parent), data) in ("the same folder", "inside it"):
            raise UsageError(
                f"{out} is inside volume {name}'s folder {data}: the backup would be written into the "
                "data it copies (and hold a partial copy of itself); expected a file outside the "
                "volume; pick another folder; nothing was written"
            )
    gnu_tar(writer)  # an unknown or missing writer is refused before anything is written
    with operation_lock(f"volume backup {name}", engine=engine):
        _clean_dead_partials(out)
        return _backup_locked(
            engine, name, vp, root, out, pause_users=pause_users, overwrite=overwrite, writer=writer
        )


def _backup_locked(
    engine: Engine,
    name: str,
    vp: VolumePlace,
    root: Path,
    out: Path,
    *,
    pause_users: bool,
    overwrite: bool,
    writer: str,
) -> BackupResult:
    paused: list[str] = []
    running: list[str] = []
    tmp = out.with_name(f".{out.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until closed or killed: tells a live partial from a dead one
        os.fchmod(fd, 0o600)
        with os.fdopen(os.dup(fd), "wb") as f:
            if pause_users:
                for cid in _running_users(engine, name):
                    engine.pause_container(cid)
                    paused.append(cid)
            else:
                running = _running_users(engine, name)
            try:
                header = {
                    "volume": name,
                    "created": datetime.now(UTC).isoformat(),
                    "placement": vp.placement,
                    "data_path": vp.data_path,
                    "labels": vp.labels,
                    "users_paused": paused,
                    "users_running": running,
                }
                faults.hit("backup.write.before", tmp=str(tmp))
                stats, digest, size = write_archive(str(root), f, header, writer=writer)
                faults.hit("backup.write.after", tmp=str(tmp))
                if not pause_users:
                    running = sorted(set(running) | set(_running_users(engine, name)))
            finally:
                for cid in paused:
                    with contextlib.suppress(TamerError):
                        engine.unpause_container(cid)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # never replaces a file that appeared meanwhile
            except FileExistsError as exc:
                raise UsageError(
                    f"backup file {out} appeared while the backup ran; expected a new file; pick another name"
                ) from exc
            os.unlink(tmp)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            what = (
                "the backup file grew past the largest file that filesystem or this process (ulimit -f) allows"
                if exc.errno == errno.EFBIG
                else f"the disk holding {out.parent} filled up"
            )
            raise NotEnoughSpace(
                f"{what} while the backup of {name} was written ({exc.strerror}); expected room for the whole "
                "archive; the partial file was removed and nothing else was changed; free space there or write "
                "the backup elsewhere (-o), then run this again"
            ) from None
        raise
    finally:
        os.close(fd)
    warnings = list(stats.warnings)
    if running:
        warnings.insert(
            0,
            f"{len(running)} container(s) using {name} ran while it was read, so this copy may be "
            "torn (files caught mid-write); back up with --pause-users (or stop them) for a "
            "consistent copy",
        )
    return BackupResult(
        path=out,
        volume=name,
        files=stats.files,
        bytes=stats.bytes,
        sha256=digest,
        archive_bytes=size,
        entries=stats.entries,
        paused=tuple(paused),
        warnings=tuple(warnings),
        consistent=not running,
    )


def verify_backup(path: Path) -> BackupResult:
    """Re-read the archive at `path` and check every file against its manifest checksum.

    Returns what it holds. Raises BackupCorrupt naming the file that failed
    (damaged, truncated, checksum mismatch, missing or extra).
    """
    r = read_archive(str(path))
    # the header can only lower trust: a copy its writer saw taken under running users may be torn
    running = r.header.get("users_running")
    running = running if isinstance(running, list) else []
    torn = bool(running)
    return BackupResult(
        path=Path(path).absolute(),
        volume=str(r.header.get("volume", "")),
        files=r.files,
        bytes=r.bytes,
        sha256=r.sha256,
        archive_bytes=r.archive_bytes,
        entries=r.entries,
        consistent=not torn,
        warnings=(f"taken while {len(running)} container(s) using the volume ran: it may be torn",)
        if torn
        else (),
    )


# -- restore --------------------------------------------------------------------
@dataclass(frozen=True)
class RestorePlan:
    """Restore `archive` into volume `volume`; `create` holds the plan for a new volume, None for an
    existing empty one."""

    archive: Path
    volume: str
    create: CreatePlan | None
    at: PlaceCheck | None


@dataclass(frozen=True)
class RestoreResult:
    volume: str
    created: bool
    data_path: str
    files: int
    entries: int
    bytes: int
    sha256: str
    warnings: tuple[str, ...] = ()


def _refuse_shared(engine: Engine, name: str, folder: str) -> None:
    """No other volume and no container bind mount may use the folder a restore writes into, and no running
    container may mount the volume (an "empty" folder a running program owns fills up under the restore,
    and the program sees files appear under it); checked live."""
    assert_folder_free(engine, folder, f"restore volume {name} into", except_volumes=[name])
    busy = running_users(engine, name)
    if busy:
        raise RestoreRefused(
            f"volume {name} is mounted by running container(s) {', '.join(busy)}; expected no "
            "running user, so nothing is written under a running program; stop them, restore, "
            "then start them; nothing was restored"
        )


def plan_restore(
    engine: Engine, archive: Path, name: str, *, at: str | None = None, allow_volatile: bool = False
) -> RestorePlan:
    """Check that `archive` is readable and `name` is new (or an existing, empty local volume whose folder no
    other volume uses). allow_volatile: accept an --at folder on tmpfs/ramfs. Changes nothing; apply_restore
    checks it all again when it acts."""
    check_volume_name(name)
    require_engine_here(engine, "volume restore")
    archive = Path(archive).absolute()
    if not archive.is_file():
        raise UsageError(
            f"backup file {archive} does not exist or is not a file; expected a file written by "
            "`tamer volume backup`"
        )
    existing = inspect_volume_or_none(engine, name)
    if existing is None:
        create = plan_create(engine, name, at, allow_volatile=allow_volatile)
        if create.at is not None:
            if create.at.entries:
                raise RestoreRefused(
                    f"{create.at.path} already holds {create.at.entries} entries; expected a new "
                    "or empty folder for a restore, so nothing is overwritten; pick another "
                    "--at folder"
                )
            _refuse_shared(engine, name, create.at.path)
        return RestorePlan(archive, name, create, create.at)
    if at is not None:
        raise UsageError(
            f"volume {name} already exists, so --at cannot place it; expected a new volume name with "
            "--at, or no --at to restore into the existing empty volume"
        )
    root = local_data_dir(volume_place(existing))
    dead = leftovers(str(root))  # what a killed restore left: restore removes it under its lock
    if any(e.name not in dead for e in os.scandir(root)):
        raise RestoreRefused(
            f"volume {name} is not empty ({root}); expected a new or empty volume so nothing is "
            "overwritten; restore into a new name, or empty it first"
        )
    _refuse_shared(engine, name, str(root))
    return RestorePlan(archive, name, None, None)


def apply_restore(engine: Engine, plan: RestorePlan, *, privileged: bool = False) -> RestoreResult:
    """Create the volume (when new), restore into it through a staging folder (restore.restore_into), checking
    again at this moment that its folder is empty and used by no other volume.

    privileged: also restore set-user/group-id bits and security.*/trusted.*
    xattrs. On any failure the staging folder is removed, and so is the volume
    when this restore created it. Raises BackupCorrupt, RestoreRefused,
    NotEnoughSpace.
    """
    with operation_lock(f"volume restore {plan.volume}", engine=engine):
        return _restore_locked(engine, plan, privileged=privileged)


def _restore_locked(engine: Engine, plan: RestorePlan, *, privileged: bool) -> RestoreResult:
    require_engine_here(engine, "volume restore")
    created = False
    if plan.create is not None and plan.create.at is None:
        require_data_access(data_root(engine), "volume restore")
    ours = -1  # the volume's folder, held open: tells this volume from one removed and re-created meanwhile
    if plan.create is not None:
        if inspect_volume_or_none(engine, plan.volume) is not None:
            raise RestoreRefused(
                f"volume {plan.volume} appeared while planning the restore; expected a new volume; "
                "nothing was restored; run the restore again"
            )
        ours = hold_data_folder(apply_create(engine, plan.create))
        created = True
        faults.hit("restore.created")
    where = ""  # the volume's folder, once known
    try:
        try:
            vol = engine.inspect_volume(plan.volume)
            root = local_data_dir(volume_place(vol))
            where = str(root)
            if ours < 0:
                ours = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            elif replaced_since(engine, plan.volume, ours):
                raise _replaced(plan.volume)
            _refuse_shared(engine, plan.volume, str(root))
            done = restore_into(str(plan.archive), str(root), privileged=privileged)
            if replaced_since(engine, plan.volume, ours):
                raise _replaced(plan.volume)
        except BaseException as exc:
            # an engine that went away cannot say whether the volume is still ours: never "replaced", and
            # nothing can be removed now; say what this restore may have left and how to start over
            if isinstance(exc, EngineUnreachable) or _engine_gone(engine, plan.volume):
                raise _engine_went_away(plan, created, where, exc) from exc
            # only the volume this restore made, still in place (a folder held open keeps its inode, so a
            # volume of the same name made by someone else meanwhile never matches): never another's
            replaced = replaced_since(engine, plan.volume, ours)
            if created and not replaced:
                with contextlib.suppress(TamerError):
                    engine.remove_volume(plan.volume)
                if plan.at is not None and not plan.at.exists:
                    with contextlib.suppress(OSError):
                        os.rmdir(plan.at.path)  # only when empty: never remove data
            if replaced and not isinstance(exc, RestoreRefused):
                raise _replaced(plan.volume) from exc
            raise
    finally:
        if ours >= 0:
            os.close(ours)
    r = done.read
    return RestoreResult(
        volume=plan.volume,
        created=created,
        data_path=str(root),
        files=r.files,
        entries=r.entries,
        bytes=r.bytes,
        sha256=r.sha256,
        warnings=tuple(done.warnings),
    )


def _engine_gone(engine: Engine, name: str) -> bool:
    try:
        inspect_volume_or_none(engine, name)
    except EngineUnreachable:
        return True
    except TamerError:
        return False
    return False


def _engine_went_away(plan: RestorePlan, created: bool, root: str, exc: BaseException) -> EngineUnreachable:
    cause = str(exc) if isinstance(exc, EngineUnreachable) else "no engine answers now"
    folder = f" and empty its folder {root}" if root and plan.at is not None else ""
    undo = (
        f"remove the volume this restore made (`docker volume rm {plan.volume}`{folder}: it holds only what this "
        "restore wrote)"
        if created
        else f"empty volume {plan.volume}{f' ({root})' if root else ''}: it was empty before this restore"
    )
    return EngineUnreachable(
        f"the engine went away while volume {plan.volume} was restored from {plan.archive} ({cause}); the volume "
        "may hold part or all of the archive's data, unchecked; expected the engine to answer until the restore "
        f"ended; once it is back, {undo}, then restore again"
    )


def _replaced(name: str) -> RestoreRefused:
    return RestoreRefused(
        f"volume {name} was removed (or removed and created again) by someone else while it was restored; "
        f"expected it to stay while tamer restored into it; the volume now named {name}, if any, was left "
        "as it is; nothing was restored; check who changed it, then restore again"
    )


def volume_exists(engine: Engine, name: str) -> bool:
    try:
        engine.inspect_volume(name)
    except ObjectNotFound:
        return False
    return True
