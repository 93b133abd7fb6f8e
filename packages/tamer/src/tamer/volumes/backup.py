"""`tamer volume backup` and `tamer volume restore`, and the check the cleanup relies on.

backup_volume writes a zstd-compressed tar with a checksum manifest (format in
archive.py), mode 0600, through a temporary file renamed into place only when
complete. verify_backup re-reads an archive and checks every checksum.
restore extracts into a new or empty volume: first into a staging folder
inside the volume, verified, then moved into place; entries that would escape
the volume are refused before anything is written for them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tamer.engine import Engine
from tamer.errors import ObjectNotFound, RestoreRefused, TamerError, UsageError
from tamer.volumes.archive import DATA, read_archive
from tamer.volumes.archive_write import write_archive
from tamer.volumes.place import (
    CreatePlan,
    PlaceCheck,
    apply_create,
    check_volume_name,
    inspect_volume_or_none,
    local_data_dir,
    plan_create,
    volume_place,
)

ZERO_BLOCK = 64 * 1024


@dataclass(frozen=True)
class BackupResult:
    """A backup archive, as written or as verified.

    path: the archive; volume: the volume it holds; files: regular files;
    entries: all entries below the volume root; bytes: sum of file sizes;
    sha256: of the archive file itself; archive_bytes: its size;
    paused: containers paused while it was written; warnings: files that
    changed while read, entries skipped.
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


def _running_users(engine: Engine, name: str) -> list[str]:
    return [str(c["Id"]) for c in engine.containers_using_volume(name) if c.get("State") == "running"]


def backup_volume(engine: Engine, name: str, out: Path, *, pause_users: bool = False,
                  overwrite: bool = False) -> BackupResult:
    """Back up volume `name` to the file `out` (tar + zstd, checksum manifest, mode 0600).

    pause_users: pause the running containers using the volume while it is
    read (a consistent copy), unpausing them afterwards whatever happens.
    Raises ObjectNotFound, UsageError (out exists, unless overwrite), TamerError
    when the data folder is not reachable from this host.

    Example:
        >>> r = backup_volume(engine, "mongo_data", Path("/backups/mongo.tar.zst"))  # doctest: +SKIP
        >>> verify_backup(r.path).sha256 == r.sha256  # doctest: +SKIP
        True
    """
    vol = engine.inspect_volume(name)
    vp = volume_place(vol)
    root = local_data_dir(vp)
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise UsageError(f"backup file {out} already exists; expected a new file; pick another name or remove it")
    if not out.parent.is_dir():
        raise UsageError(f"folder {out.parent} for the backup does not exist; expected an existing folder")
    paused: list[str] = []
    tmp = out.with_name(f".{out.name}.tamer-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            if pause_users:
                for cid in _running_users(engine, name):
                    engine.pause_container(cid)
                    paused.append(cid)
            try:
                header = {"volume": name, "created": datetime.now(UTC).isoformat(), "placement": vp.placement,
                          "data_path": vp.data_path, "labels": vp.labels}
                stats, digest, size = write_archive(str(root), f, header)
            finally:
                for cid in paused:
                    with contextlib.suppress(TamerError):
                        engine.unpause_container(cid)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return BackupResult(path=out, volume=name, files=stats.files, bytes=stats.bytes, sha256=digest,
                        archive_bytes=size, entries=stats.entries, paused=tuple(paused),
                        warnings=tuple(stats.warnings))


def verify_backup(path: Path) -> BackupResult:
    """Re-read the archive at `path` and check every file against its manifest checksum.

    Returns what it holds. Raises BackupCorrupt naming the file that failed
    (damaged, truncated, checksum mismatch, missing or extra).
    """
    r = read_archive(str(path))
    return BackupResult(path=Path(path).absolute(), volume=str(r.header.get("volume", "")), files=r.files,
                        bytes=r.bytes, sha256=r.sha256, archive_bytes=r.archive_bytes, entries=r.entries)


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


def plan_restore(engine: Engine, archive: Path, name: str, *, at: str | None = None) -> RestorePlan:
    """Check that `archive` is readable and `name` is new (or an existing, empty local volume)."""
    check_volume_name(name)
    archive = Path(archive).absolute()
    if not archive.is_file():
        raise UsageError(f"backup file {archive} does not exist or is not a file; expected a file written by "
                         "`tamer volume backup`")
    existing = inspect_volume_or_none(engine, name)
    if existing is None:
        create = plan_create(engine, name, at)
        return RestorePlan(archive, name, create, create.at)
    if at is not None:
        raise UsageError(f"volume {name} already exists, so --at cannot place it; expected a new volume name with "
                         "--at, or no --at to restore into the existing empty volume")
    root = local_data_dir(volume_place(existing))
    if any(os.scandir(root)):
        raise RestoreRefused(f"volume {name} is not empty ({root}); expected a new or empty volume so nothing is "
                             "overwritten; restore into a new name, or empty it first")
    return RestorePlan(archive, name, None, None)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


class _FileOut:
    """One regular file being restored: all-zero blocks become holes, so sparse files come back sparse."""

    __slots__ = ("fd", "hole", "member")

    def __init__(self, fd: int, member: tarfile.TarInfo) -> None:
        self.fd = fd
        self.member = member
        self.hole = False

    def write(self, chunk: bytes) -> None:
        if len(chunk) < ZERO_BLOCK:
            os.write(self.fd, chunk)
            self.hole = False
            return
        view = memoryview(chunk)
        for off in range(0, len(view), ZERO_BLOCK):
            part = view[off:off + ZERO_BLOCK]
            if len(part) == ZERO_BLOCK and part == _ZEROS:
                os.lseek(self.fd, ZERO_BLOCK, os.SEEK_CUR)
                self.hole = True
            else:
                os.write(self.fd, part)
                self.hole = False

    def close(self) -> None:
        m = self.member
        try:
            if self.hole:
                os.ftruncate(self.fd, m.size)
            if (m.uid, m.gid) != _IDS:
                with contextlib.suppress(PermissionError):  # not root: keep our own ids
                    os.fchown(self.fd, m.uid, m.gid)
            if m.mode & 0o7000:
                os.fchmod(self.fd, m.mode)  # after chown, which clears set-id bits
            os.utime(self.fd, (m.mtime, m.mtime))
        finally:
            os.close(self.fd)


_ZEROS = bytes(ZERO_BLOCK)
_IDS = (os.geteuid(), os.getegid())


class _Extractor:
    """Writes archive entries below `staging`, refusing any that would land outside it.

    Folders it made itself are known to be real folders (mkdir fails on
    anything existing), so only entries below anything else need the slower
    check that resolves links.
    """

    def __init__(self, archive: str, staging: str) -> None:
        self.archive = archive
        self.staging = staging
        self.real_staging = os.path.realpath(staging)
        self.meta: list[tuple[str, tarfile.TarInfo]] = []
        self.files: set[str] = set()
        self.safe_dirs: set[str] = {""}
        self.current: _FileOut | None = None
        self.root_member: tarfile.TarInfo | None = None
        self.skipped: list[str] = []

    def _refuse(self, name: str, why: str) -> RestoreRefused:
        return RestoreRefused(f"{self.archive}: entry {name!r} refused: {why}; expected every entry inside the "
                              "volume; nothing was restored; this archive was not written by tamer or was altered")

    def _target(self, member: tarfile.TarInfo) -> tuple[str, str]:
        name = member.name
        if name.startswith("/"):
            raise self._refuse(name, "absolute path")
        parts = name.split("/")
        if ".." in parts:
            raise self._refuse(name, "`..` in the path escapes the volume")
        if parts[0] != DATA:
            raise self._refuse(name, f"outside the archive's {DATA}/ folder")
        rel = "/".join(p for p in parts[1:] if p not in ("", "."))
        if not rel:
            return "", self.staging
        path = self.staging + "/" + rel
        parent_rel = rel.rpartition("/")[0]
        if parent_rel not in self.safe_dirs and not _inside(os.path.realpath(os.path.dirname(path)),
                                                            self.real_staging):
            raise self._refuse(name, "its folder is reached through a link that leaves the volume")
        return rel, path

    def on_file(self, member: tarfile.TarInfo) -> _FileOut:
        rel, path = self._target(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, member.mode & 0o777)
        self.files.add(rel)
        return _FileOut(fd, member)

    def on_entry(self, member: tarfile.TarInfo) -> None:
        rel, path = self._target(member)
        if member.isdir():
            if not rel:
                self.root_member = member  # applied to the volume's own folder at the end
                return
            os.mkdir(path, 0o700)
            self.safe_dirs.add(rel)
            self.meta.append((path, member))
        elif member.issym():
            target = member.linkname
            if os.path.isabs(target):
                raise self._refuse(member.name, f"a link to the absolute path {target} points outside the volume")
            resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
            if resolved == ".." or resolved.startswith("../"):
                raise self._refuse(member.name, f"a link to {target} points outside the volume")
            os.symlink(target, path)
            self.meta.append((path, member))
        elif member.islnk():
            target = member.linkname
            tparts = target.split("/")
            trel = "/".join(tparts[1:])
            if target.startswith("/") or ".." in tparts or tparts[0] != DATA or trel not in self.files:
                raise self._refuse(member.name, f"a hard link to {target}, which is not a file earlier in the "
                                                "archive")
            os.link(os.path.join(self.staging, trel), path, follow_symlinks=False)
        elif member.isfifo():
            os.mkfifo(path, 0o600)
            self.meta.append((path, member))
        else:
            self.skipped.append(f"{rel}: a device node or other special file, not restored")

    def finish(self, xattrs: dict[str, dict[str, str]]) -> None:
        """Owners, modes, times of folders, links and fifos (folders last, deepest first: writing into a
        folder bumps its mtime), then every recorded xattr."""
        dirs = []
        for path, m in self.meta:
            if m.isdir():
                dirs.append((path, m))
            else:
                self._set(path, m)
        for path, m in sorted(dirs, key=lambda pm: pm[0].count("/"), reverse=True):
            self._set(path, m)
        for rel, values in xattrs.items():
            if rel:
                self._set_xattrs(os.path.join(self.staging, rel), values)

    def set_root(self, root: str, xattrs: dict[str, dict[str, str]]) -> None:
        if self.root_member is not None:
            self._set(root, self.root_member)
        self._set_xattrs(root, xattrs.get("") or {})

    @staticmethod
    def _set_xattrs(path: str, values: dict[str, str]) -> None:
        for key, value in values.items():
            with contextlib.suppress(OSError):  # a filesystem without xattrs (e.g. some tmpfs) loses them
                os.setxattr(path, key, base64.b64decode(value), follow_symlinks=False)

    @staticmethod
    def _set(path: str, m: tarfile.TarInfo) -> None:
        with contextlib.suppress(PermissionError):  # not root: keep our own ids
            os.lchown(path, m.uid, m.gid)
        if not m.issym():
            os.chmod(path, m.mode)
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)


def apply_restore(engine: Engine, plan: RestorePlan) -> RestoreResult:
    """Create the volume (when new), extract and verify into a staging folder inside it, then move into place.

    On any failure the staging folder is removed, and so is the volume when
    this restore created it. Raises BackupCorrupt, RestoreRefused.
    """
    created = False
    if plan.create is not None:
        apply_create(engine, plan.create)
        created = True
    try:
        vol = engine.inspect_volume(plan.volume)
        root = local_data_dir(volume_place(vol))
        staging = root / f".tamer-restore-{secrets.token_hex(4)}"
        os.mkdir(staging, 0o700)
        ex = _Extractor(str(plan.archive), str(staging))
        old_umask = os.umask(0)  # files are created with their final mode
        try:
            result = read_archive(str(plan.archive), on_file=ex.on_file, on_entry=ex.on_entry)
            os.umask(old_umask)
            xattrs = result.manifest.get("xattrs") or {}
            ex.finish(xattrs)
            for entry in os.listdir(staging):
                os.rename(staging / entry, root / entry)
            os.rmdir(staging)
            ex.set_root(str(root), xattrs)
        except BaseException:
            os.umask(old_umask)
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except BaseException:
        if created:
            with contextlib.suppress(TamerError):
                engine.remove_volume(plan.volume)
            if plan.at is not None and not plan.at.exists:
                shutil.rmtree(plan.at.path, ignore_errors=True)
        raise
    return RestoreResult(volume=plan.volume, created=created, data_path=str(root), files=result.files,
                         entries=result.entries, bytes=result.bytes, sha256=result.sha256,
                         warnings=tuple(ex.skipped))


def volume_exists(engine: Engine, name: str) -> bool:
    try:
        engine.inspect_volume(name)
    except ObjectNotFound:
        return False
    return True
