"""Proof that a backup restores a volume's current data: restore it into a scratch folder, compare.

A verified archive only says the archive is intact. Before a named volume is
removed, tamer wants more: that restoring the archive gives back the data the
volume holds *now*. prove_restorable restores the archive (with the same
code as `tamer volume restore`) into a private scratch folder, compares the
result with the live folder entry by entry (type, mode, owner, mtime,
content sha256, symlink target, xattrs, hard-link groups, and that sparse
files stayed sparse), and removes the scratch folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tamer.errors import BackupCorrupt
from tamer.volumes.restore import restore_into

_SPARSE_SLACK = 1 << 20


@dataclass(frozen=True)
class RestoreProof:
    """The result of prove_restorable: the archive restores `volume_path`'s current data exactly.

    files/entries/bytes: what the archive holds; sha256: of the archive;
    warnings: from the restore (entries it would not create, bits it
    dropped); privileged: whether the proof needed set-id bits or
    security.*/trusted.* xattrs (a real restore then needs the privileged
    option too).
    """

    archive: Path
    volume_path: Path
    files: int
    entries: int
    bytes: int
    sha256: str
    privileged: bool
    warnings: tuple[str, ...] = ()


def _sha256(fd: int) -> str:
    sha = hashlib.sha256()
    while chunk := os.read(fd, 8 << 20):
        sha.update(chunk)
    return sha.hexdigest()


def tree_state(root: str) -> dict[str, dict[str, Any]]:
    """Everything a faithful copy keeps, per entry below (and of) `root`, read without following links.

    rel -> {type, mode, uid, gid, mtime (not for links), sha256 (files),
    target (symlinks), xattrs, link (first path of its hard-link group),
    size, allocated (bytes on disk, files)}.
    """
    out: dict[str, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], str] = {}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        path = os.path.join(root, rel_dir) if rel_dir else root
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            out[rel] = _entry_state(e.path, inodes, rel)
            if out[rel]["type"] == "dir":
                stack.append(rel)
    out[""] = _entry_state(root, {}, "")
    return out


def _entry_state(path: str, inodes: dict[tuple[int, int], str], rel: str) -> dict[str, Any]:
    st = os.lstat(path)
    mode = st.st_mode
    kind = (
        "dir"
        if stat.S_ISDIR(mode)
        else "file"
        if stat.S_ISREG(mode)
        else "symlink"
        if stat.S_ISLNK(mode)
        else "fifo"
        if stat.S_ISFIFO(mode)
        else "other"
    )
    e: dict[str, Any] = {"type": kind, "mode": stat.S_IMODE(mode), "uid": st.st_uid, "gid": st.st_gid}
    if kind != "symlink":
        e["mtime"] = int(st.st_mtime)
    if kind == "file":
        e["size"] = st.st_size
        e["allocated"] = st.st_blocks * 512
        if st.st_nlink > 1:
            e["link"] = inodes.setdefault((st.st_dev, st.st_ino), rel)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            e["sha256"] = _sha256(fd)
        finally:
            os.close(fd)
    elif kind == "symlink":
        e["target"] = os.readlink(path)
    try:
        e["xattrs"] = {
            k: os.getxattr(path, k, follow_symlinks=False).hex()
            for k in sorted(os.listxattr(path, follow_symlinks=False))
        }
    except OSError:
        e["xattrs"] = {}
    return e


def compare_trees(live: dict[str, dict[str, Any]], restored: dict[str, dict[str, Any]]) -> list[str]:
    """What differs between two tree_state results, in words; [] when the restore is exact."""
    out = []
    for rel in sorted(set(live) | set(restored)):
        name = rel or "."
        a, b = live.get(rel), restored.get(rel)
        if a is None:
            out.append(f"{name}: restored, but not in the volume")
            continue
        if b is None:
            out.append(f"{name}: a {a['type']} in the volume, missing from the restore")
            continue
        for key in ("type", "mode", "uid", "gid", "mtime", "size", "sha256", "target", "xattrs", "link"):
            if a.get(key) != b.get(key):
                out.append(f"{name}: {key} differs (volume {a.get(key)!r}, restored {b.get(key)!r})")
        if a["type"] == "file" and b["type"] == "file" and b["allocated"] > a["allocated"] + _SPARSE_SLACK:
            out.append(
                f"{name}: sparseness lost ({a['allocated']} bytes on disk in the volume, "
                f"{b['allocated']} restored)"
            )
    return out


def prove_restorable(
    archive: Path, volume_path: Path, *, scratch_dir: Path | None = None, privileged: bool = True
) -> RestoreProof:
    """Prove that `archive` restores the data `volume_path` holds now; raise BackupCorrupt when it does not.

    archive: a backup written by backup_volume. volume_path: the live volume
    folder (its users should be stopped or paused: data that changes after
    the backup makes the proof fail, as it should). scratch_dir: where the
    scratch restore goes (a new private folder inside it, removed afterwards;
    default: beside the archive); it needs room for the volume's data.
    privileged: restore set-id bits and security.*/trusted.* xattrs in the
    scratch copy (the proof then says a real restore needs the same option).

    Returns a RestoreProof. Raises BackupCorrupt listing the first
    differences (or the archive's damage), RestoreRefused, NotEnoughSpace.

    Example:
        >>> proof = prove_restorable(Path("/backups/db.tar.zst"), Path("/var/lib/docker/volumes/db/_data"))
        ... # doctest: +SKIP
    """
    archive = Path(archive).absolute()
    volume_path = Path(volume_path).absolute()
    parent = Path(scratch_dir) if scratch_dir is not None else archive.parent
    scratch = Path(tempfile.mkdtemp(prefix=".tamer-prove-", dir=parent))
    try:
        os.chmod(scratch, 0o700)
        target = scratch / "data"
        target.mkdir(mode=0o700)
        done = restore_into(str(archive), str(target), privileged=privileged)
        differences = compare_trees(tree_state(str(volume_path)), tree_state(str(target)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if differences:
        more = f" (and {len(differences) - 5} more)" if len(differences) > 5 else ""
        raise BackupCorrupt(
            f"{archive} does not restore the current data of {volume_path}: "
            f"{'; '.join(differences[:5])}{more}; expected an exact round trip; take a new backup "
            "with the volume's users stopped or paused (--pause-users)"
        )
    r = done.read
    return RestoreProof(
        archive=archive,
        volume_path=volume_path,
        files=r.files,
        entries=r.entries,
        bytes=r.bytes,
        sha256=r.sha256,
        privileged=done.privileged_seen > 0,
        warnings=tuple(done.warnings),
    )
