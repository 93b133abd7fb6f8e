"""Restoring an archive (format in archive.py) into a folder, touching nothing outside it.

The archive is an input, never a permission. Every path is resolved
physically, relative to the target folder: folders are opened component by
component with O_NOFOLLOW | O_DIRECTORY relative to their parent's file
descriptor, so no symlink is ever followed as a folder, whatever the names
say (`d/s -> ..` followed by `d/s/l` is refused: `d/s` is a link, not a folder
of this archive). Entries are created with *at calls (O_EXCL, mkdirat,
symlinkat, linkat, mknodat for fifos); metadata is set with AT_SYMLINK_NOFOLLOW.

What an archive may hold, and what restore does with it:
    folders, regular files, fifos   created; owner, mode, times as recorded
    symlinks                        created exactly as stored (any target, absolute or `..`): a link
                                    object, never followed, nothing written through it
    hard links                      only to a regular file restored earlier from this archive
    device nodes                    never created: skipped and listed in the warnings (not volume data,
                                    and the one thing a hostile archive could use to reach the host)
    set-user/group-id bits,         restored only with privileged=True; otherwise dropped and listed
    security.* / trusted.* xattrs
    other xattrs (user.*, ACLs)     restored, only for entries of this archive
    the same path twice, a path     refused: nothing is restored
    escaping data/, an unknown type

Plain files (a ustar regular file in the folder the extractor has open, no set-id bit, nothing odd) are
written by tamer._crestore when it was built: the same calls, in C, with the GIL released; it takes only
what this module would take the same way and hands back the rest, so every refusal here holds on both paths
(tests/integration/test_restore_c.py; TAMER_PURE_RESTORE=1 forces the Python path).

Everything is first written into a staging folder inside the target
(`.tamer-restore-*`), then moved into place; on any failure the staging
folder is removed. A lock (flock on the target folder) keeps two restores
apart and tells a killed run's staging from a live one: the next run removes
what a dead run left (those steps: tamer.volumes.restore_staging).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import secrets
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tamer.errors import BackupCorrupt, NotEnoughSpace, RestoreRefused
from tamer.operation import faults
from tamer.volumes.archive import (
    DATA,
    Digest,
    PlainDone,
    PlainSink,
    ReadResult,
    compiled_restore,
    read_archive,
)
from tamer.volumes.restore_staging import (
    DIR_FLAGS,
    MOVING,
    STAGING_PREFIX,
    clean_leftovers,
    lock_target,
    record_moving,
    remove_entry,
    rename_noreplace,
)

ZERO_BLOCK = 64 * 1024
_ZEROS = bytes(ZERO_BLOCK)
_SETID = stat.S_ISUID | stat.S_ISGID
_PRIVILEGED_XATTRS = ("security.", "trusted.")
_PLAIN_XATTRS = ("user.", "system.posix_acl_access", "system.posix_acl_default")


def _ids() -> tuple[int, int]:
    return os.geteuid(), os.getegid()


@dataclass
class RestoreStats:
    """What a restore into a folder did: the archive as read, and what it skipped or dropped."""

    read: ReadResult
    warnings: list[str] = field(default_factory=list)
    dropped_privileged: int = 0  # set-id bits or security.*/trusted.* xattrs left out (privileged=False)
    privileged_seen: int = 0  # entries with set-id bits or security.*/trusted.* xattrs, kept or not
    skipped_devices: int = 0


class _FileOut:
    """One regular file being restored: all-zero blocks become holes, so sparse files come back sparse."""

    __slots__ = ("ex", "fd", "hole", "member")

    def __init__(self, ex: _Extractor, fd: int, member: tarfile.TarInfo) -> None:
        self.ex = ex
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
            part = view[off : off + ZERO_BLOCK]
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
            if (m.uid, m.gid) != self.ex.ids:
                with contextlib.suppress(PermissionError):  # not root: keep our own ids
                    os.fchown(self.fd, m.uid, m.gid)
            os.fchmod(self.fd, self.ex.mode_of(m))  # after chown, which clears set-id bits
            os.utime(self.fd, (m.mtime, m.mtime))
        finally:
            os.close(self.fd)


class _Extractor:
    """Writes archive entries below the staging folder (an open descriptor), refusing any that would not
    land inside it as a new entry of its own."""

    def __init__(self, archive: str, staging_fd: int, *, budget: int, privileged: bool) -> None:
        self.archive = archive
        self.staging_fd = staging_fd
        self.budget = budget
        self.used = 0
        self.privileged = privileged
        self.kinds: dict[str, str] = {}  # rel -> "dir" | "file" | "symlink" | "fifo"; "" is the root
        self.meta: list[tuple[str, tarfile.TarInfo]] = []  # folders, symlinks, fifos: set at the end
        self.root_member: tarfile.TarInfo | None = None
        self.warnings: list[str] = []
        self.dropped_privileged = 0
        self.privileged_seen = 0
        self.skipped_devices = 0
        self._cached: tuple[str, int] | None = None
        self.root_xattrs: dict[str, bytes] = {}
        self.ids = _ids()  # asked once: two syscalls per file otherwise
        self._cached_bytes = b""  # the cached folder's path as bytes, for the compiled path

    def plain_sink(self) -> PlainSink | None:
        """The compiled path for plain files (tamer._crestore), when built and not turned off by
        TAMER_PURE_RESTORE; None: every file goes through on_file."""
        extract = compiled_restore()
        if extract is None:
            return None

        def plain(buf: bytes, pos: int, factory: Callable[..., Digest] | None) -> tuple[int, PlainDone]:
            # only into the folder this extractor has verified and holds open: a file anywhere else, and
            # anything that is not a plain file this code would write the same way, is left to on_file
            cached = self._cached
            if cached is None:
                return 0, []
            consumed, used, done = extract(
                buf,
                pos,
                cached[1],
                self._cached_bytes,
                self.kinds,
                self.budget - self.used,
                self.ids[0],
                self.ids[1],
                factory,
            )
            for rel, _size, _digest in done:
                self.kinds[rel] = "file"  # new: the compiled path takes no path already in kinds
            self.used += used
            return consumed, done

        return plain

    # -- names ----------------------------------------------------------------
    def refuse(self, name: str, why: str) -> RestoreRefused:
        return RestoreRefused(
            f"{self.archive}: entry {name!r} refused: {why}; expected a backup written by "
            "`tamer volume backup`; nothing was restored; this archive was altered or not "
            "written by tamer"
        )

    def rel_of(self, member: tarfile.TarInfo) -> str:
        name = member.name
        if name.startswith("/"):
            raise self.refuse(name, "absolute path")
        parts = name.split("/")
        if ".." in parts:
            raise self.refuse(name, "`..` in the path escapes the volume")
        if parts[0] != DATA:
            raise self.refuse(name, f"outside the archive's {DATA}/ folder")
        rel = "/".join(p for p in parts[1:] if p not in ("", "."))
        if rel in self.kinds:
            raise self.refuse(name, f"{DATA}/{rel} appears twice in the archive (a duplicate entry)")
        if rel:
            parent = rel.rpartition("/")[0]
            kind = self.kinds.get(parent)
            if kind != "dir":
                what = f"a {kind}" if kind else "not in the archive before it"
                raise self.refuse(
                    name,
                    f"its folder {DATA}/{parent} is {what}, not a folder restored from this "
                    "archive (an entry below a link would leave the volume)",
                )
        return rel

    def parent_fd(self, rel: str) -> int:
        """The folder holding `rel`, opened physically from the staging folder without following links.

        The descriptor belongs to the extractor (cached for the next entry in the same folder)."""
        parent = rel.rpartition("/")[0]
        if self._cached is not None:
            if self._cached[0] == parent:
                return self._cached[1]
            if self._cached[1] != self.staging_fd:
                os.close(self._cached[1])
            self._cached = None
        fd = self.open_dir(parent)
        self._cached = (parent, fd)
        self._cached_bytes = os.fsencode(parent)
        return fd

    def open_dir(self, rel_dir: str) -> int:
        """A new descriptor (or staging_fd itself for "") for a folder below staging, no link followed."""
        if not rel_dir:
            return self.staging_fd
        fd = self.staging_fd
        try:
            for part in rel_dir.split("/"):
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
                if fd != self.staging_fd:
                    os.close(fd)
                fd = nxt
        except OSError as exc:
            if fd != self.staging_fd:
                os.close(fd)
            raise RestoreRefused(
                f"{self.archive}: the folder {DATA}/{rel_dir} is no longer a folder of this "
                f"restore ({exc.strerror}); something changed the staging folder while "
                "restoring; nothing was restored; retry"
            ) from exc
        return fd

    def close(self) -> None:
        if self._cached is not None and self._cached[1] != self.staging_fd:
            os.close(self._cached[1])
        self._cached = None

    def mode_of(self, m: tarfile.TarInfo) -> int:
        mode = m.mode & 0o7777
        if mode & _SETID:
            self.privileged_seen += 1
        if mode & _SETID and not self.privileged:
            self.dropped_privileged += 1
            self.warnings.append(
                f"{m.name}: set-user/group-id bit not restored (restore with the privileged "
                "option to keep it)"
            )
            mode &= ~_SETID
        return mode

    # -- entries --------------------------------------------------------------
    def on_file(self, member: tarfile.TarInfo) -> _FileOut:
        rel = self.rel_of(member)
        if not rel:
            raise self.refuse(member.name, f"the archive's {DATA} folder itself is stored as a file")
        if self.used + member.size > self.budget:
            raise NotEnoughSpace(
                f"{self.archive}: {member.name} declares {member.size} bytes; with the "
                f"{self.used} bytes before it that is more than the {self.budget} bytes free "
                "where the volume's data goes (sparse files count at full size); expected enough "
                "free space; free some space or restore elsewhere (--at); nothing was restored"
            )
        self.used += member.size
        pfd = self.parent_fd(rel)
        fd = os.open(
            rel.rpartition("/")[2],
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=pfd,
        )
        self.kinds[rel] = "file"
        return _FileOut(self, fd, member)

    def on_entry(self, member: tarfile.TarInfo) -> None:
        rel = self.rel_of(member)
        base = rel.rpartition("/")[2]
        if not rel:
            if not member.isdir():
                raise self.refuse(member.name, f"the archive's {DATA} folder itself is not a folder")
            self.kinds[""] = "dir"
            self.root_member = member  # applied to the volume's own folder at the end
            return
        if member.isdir():
            os.mkdir(base, 0o700, dir_fd=self.parent_fd(rel))
            self.kinds[rel] = "dir"
            self.meta.append((rel, member))
        elif member.issym():
            if not member.linkname:
                raise self.refuse(member.name, "a symlink with an empty target")
            # stored exactly as it was, whatever it points at: a link object, never followed
            os.symlink(member.linkname, base, dir_fd=self.parent_fd(rel))
            self.kinds[rel] = "symlink"
            self.meta.append((rel, member))
        elif member.islnk():
            target = member.linkname
            tparts = target.split("/")
            trel = "/".join(p for p in tparts[1:] if p not in ("", "."))
            if (
                target.startswith("/")
                or ".." in tparts
                or tparts[0] != DATA
                or self.kinds.get(trel) != "file"
            ):
                raise self.refuse(
                    member.name,
                    f"a hard link to {target}, which is not a regular file restored "
                    "earlier from this archive",
                )
            tfd = self.open_dir(trel.rpartition("/")[0])
            try:
                os.link(
                    trel.rpartition("/")[2],
                    base,
                    src_dir_fd=tfd,
                    dst_dir_fd=self.parent_fd(rel),
                    follow_symlinks=False,
                )
            finally:
                if tfd != self.staging_fd:
                    os.close(tfd)
            self.kinds[rel] = "file"
        elif member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=self.parent_fd(rel))
            self.kinds[rel] = "fifo"
            self.meta.append((rel, member))
        elif member.ischr() or member.isblk():
            self.kinds[rel] = "device"
            self.skipped_devices += 1
            self.warnings.append(
                f"{member.name}: a device node, never created by a restore (not volume data)"
            )
        else:
            raise self.refuse(member.name, f"entry type {member.type!r} is not one tamer writes")

    # -- metadata -------------------------------------------------------------
    def finish(self, xattrs: Any) -> None:
        """Owners, modes, times of folders, links and fifos (folders last, deepest first: writing into a
        folder bumps its mtime), then the manifest's xattrs, only for entries of this archive."""
        wanted = self._check_xattrs(xattrs)
        self.root_xattrs = wanted.get("", {})
        dirs = [(rel, m) for rel, m in self.meta if m.isdir()]
        for rel, m in self.meta:
            if not m.isdir():
                self._set(rel, m)
        for rel, m in sorted(dirs, key=lambda rm: rm[0].count("/"), reverse=True):
            self._set(rel, m)
        for rel, values in wanted.items():
            if rel:
                pfd = self.parent_fd(rel)
                self._set_xattrs(f"/proc/self/fd/{pfd}/{rel.rpartition('/')[2]}", values, rel)

    def _check_xattrs(self, xattrs: Any) -> dict[str, dict[str, bytes]]:
        if not isinstance(xattrs, dict):
            raise self.refuse("tamer-manifest.json", "its xattrs are not a mapping")
        out: dict[str, dict[str, bytes]] = {}
        for rel, values in xattrs.items():
            if not isinstance(rel, str) or not isinstance(values, dict):
                raise self.refuse("tamer-manifest.json", f"xattrs for {rel!r} are malformed")
            kind = self.kinds.get(rel)
            if kind is None or kind == "device":
                raise self.refuse(
                    f"{DATA}/{rel}",
                    "the manifest sets xattrs on a path that is not an entry restored from this archive",
                )
            decoded: dict[str, bytes] = {}
            for key, value in values.items():
                try:
                    raw = base64.b64decode(value, validate=True)
                except (ValueError, TypeError) as exc:
                    raise self.refuse(f"{DATA}/{rel}", f"xattr {key!r} is not base64") from exc
                if not isinstance(key, str) or not key or "\0" in key:
                    raise self.refuse(f"{DATA}/{rel}", f"xattr name {key!r} is malformed")
                if key.startswith(_PRIVILEGED_XATTRS):
                    self.privileged_seen += 1
                    if not self.privileged:
                        self.dropped_privileged += 1
                        self.warnings.append(
                            f"{DATA}/{rel}: xattr {key} not restored (restore with the "
                            "privileged option to keep security.* and trusted.* xattrs)"
                        )
                        continue
                elif not key.startswith(_PLAIN_XATTRS):
                    self.warnings.append(f"{DATA}/{rel}: xattr {key} not restored (an unknown namespace)")
                    continue
                decoded[key] = raw
            if decoded:
                out[rel] = decoded
        return out

    def _set_xattrs(self, path: str, values: dict[str, bytes], rel: str) -> None:
        for key, value in values.items():
            try:
                os.setxattr(path, key, value, follow_symlinks=False)
            except OSError as exc:  # e.g. a filesystem without user xattrs, or user.* on a symlink
                self.warnings.append(f"{DATA}/{rel}: xattr {key} not restored ({exc.strerror})")

    def _set(self, rel: str, m: tarfile.TarInfo) -> None:
        pfd = self.parent_fd(rel)
        base = rel.rpartition("/")[2]
        st = os.lstat(base, dir_fd=pfd)
        want = {"dir": stat.S_ISDIR, "symlink": stat.S_ISLNK, "fifo": stat.S_ISFIFO}[self.kinds[rel]]
        if not want(st.st_mode):
            raise RestoreRefused(
                f"{self.archive}: {DATA}/{rel} changed type while restoring; something else "
                "writes into the staging folder; nothing was restored; retry"
            )
        if (m.uid, m.gid) != (st.st_uid, st.st_gid):
            with contextlib.suppress(PermissionError):  # not root: keep our own ids
                os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if not m.issym():
            os.chmod(base, self.mode_of(m), dir_fd=pfd, follow_symlinks=False)
        os.utime(base, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)

    def set_root(self, root_fd: int) -> None:
        m = self.root_member
        if m is not None:
            if (m.uid, m.gid) != _ids():
                with contextlib.suppress(PermissionError):
                    os.fchown(root_fd, m.uid, m.gid)
            os.fchmod(root_fd, self.mode_of(m))
            os.utime(root_fd, (m.mtime, m.mtime))
        for key, value in self.root_xattrs.items():
            try:
                os.setxattr(root_fd, key, value)
            except OSError as exc:
                self.warnings.append(f"{DATA}: xattr {key} not restored ({exc.strerror})")


def restore_into(archive: str, root: str, *, privileged: bool = False) -> RestoreStats:
    """Restore `archive` into the empty folder `root`; nothing outside `root` is created, followed or changed.

    privileged: also restore set-user/group-id bits and security.*/trusted.*
    xattrs (dropped and listed in the warnings otherwise). Staging folders left
    by a killed restore into `root` are removed first. Raises RestoreRefused
    (root not empty, another restore running, an entry refused), BackupCorrupt,
    NotEnoughSpace; on any failure `root` is left as it was found.

    Example:
        >>> restore_into("/backups/mongo.tar.zst", "/mnt/big/mongo_copy")  # doctest: +SKIP
    """
    real = os.path.realpath(root)
    root_fd = os.open(real, DIR_FLAGS)
    try:
        lock_target(root_fd, real)
        clean_leftovers(root_fd)
        present = os.listdir(root_fd)
        if present:
            raise RestoreRefused(
                f"{real} is not empty (it holds {', '.join(sorted(present)[:3])}"
                f"{' and more' if len(present) > 3 else ''}); expected a new or empty folder so "
                "nothing is overwritten; restore into a new volume, or empty it first"
            )
        vfs = os.fstatvfs(root_fd)
        staging = f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        os.mkdir(staging, 0o700, dir_fd=root_fd)
        moved: list[str] = []
        staging_fd = os.open(staging, DIR_FLAGS, dir_fd=root_fd)
        ex = _Extractor(archive, staging_fd, budget=vfs.f_bavail * vfs.f_frsize, privileged=privileged)
        try:
            try:
                result = read_archive(
                    archive, on_file=ex.on_file, on_entry=ex.on_entry, plain=ex.plain_sink()
                )
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise NotEnoughSpace(
                        f"{real} ran out of space while restoring {archive}; expected enough "
                        "free space; free some and retry; nothing was restored"
                    ) from exc
                raise
            if "" not in ex.kinds:
                raise BackupCorrupt(f"{archive}: no {DATA} folder entry; expected a backup written by tamer")
            xattrs = result.manifest.get("xattrs") or {}
            ex.finish(xattrs)
            ex.close()
            faults.hit("restore.extract.after", staging=staging)
            names = sorted(os.listdir(staging_fd))
            record_moving(root_fd, staging, names)  # first: a run killed while moving is undone by the next
            for name in names:
                rename_noreplace(staging_fd, name, root_fd)
                moved.append(name)
                faults.hit("restore.move", name=name)
            os.close(staging_fd)
            staging_fd = -1
            os.rmdir(staging, dir_fd=root_fd)
            os.unlink(staging + MOVING, dir_fd=root_fd)
            ex.set_root(root_fd)
        except BaseException:
            ex.close()
            if staging_fd >= 0:
                os.close(staging_fd)
            for name in [staging, *moved, staging + MOVING]:
                with contextlib.suppress(OSError):
                    remove_entry(name, root_fd)
            raise
    finally:
        os.close(root_fd)
    return RestoreStats(
        read=result,
        warnings=ex.warnings,
        dropped_privileged=ex.dropped_privileged,
        privileged_seen=ex.privileged_seen,
        skipped_devices=ex.skipped_devices,
    )
