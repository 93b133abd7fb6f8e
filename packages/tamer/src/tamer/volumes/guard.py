"""Invariants checked at the point of action, against the live engine and filesystem.

Whatever a plan, a journal or a flag says, the code that deletes a folder, writes into one or copies live
data calls these first:
- `assert_folder_free(...)`: no other volume (bind device, symlink-trick target, default _data) and no
  container's bind mount uses the folder, its parents or its children (compared physically: realpath and
  st_dev/st_ino, so another spelling of the same folder is caught);
- `assert_no_running_users(...)`: nothing runs on the data being copied (a copy of live data may be torn);
- `volatile_filesystem(path)`: the folder is on tmpfs/ramfs (lost at reboot);
- `require_data_access(...)`: this process may read and write the engine's data-root, with a message
  saying what needs root and why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tamer.engine import Engine
from tamer.errors import TamerError, VolumeInUse

JSON = dict[str, Any]
VOLATILE_FS = frozenset({"tmpfs", "ramfs", "devtmpfs"})
# kernel interfaces, not storage: a folder made there is a cgroup, a configfs item or a refusal, and a
# file written there is a kernel setting or vanishes
PSEUDO_FS = frozenset(
    {
        "proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs", "pstore",
        "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "efivarfs", "binfmt_misc", "autofs", "nsfs",
        "rpc_pipefs", "selinuxfs",
    }
)  # fmt: skip


class FolderInUse(TamerError):
    """A folder tamer was about to delete or write into is used by another volume or container."""


@dataclass(frozen=True)
class FolderUser:
    kind: str  # "volume" or "container"
    name: str
    path: str  # the folder as that user names it
    relation: str  # "the same folder", "inside it", "a parent of it"

    def describe(self) -> str:
        return f"{self.kind} {self.name} uses {self.path} ({self.relation})"


def _ident(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _inside(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


def relation(candidate: str, folder: str) -> str | None:
    """How `candidate` relates to `folder` physically: same, inside it, a parent of it, or None."""
    if not candidate:
        return None
    a, b = os.path.realpath(candidate), os.path.realpath(folder)
    if a == b:
        return "the same folder"
    ia, ib = _ident(a), _ident(b)
    if ia is not None and ia == ib:
        return "the same folder"
    if _inside(a, b):
        return "inside it"
    if _inside(b, a):
        return "a parent of it"
    return None


def volume_data_path(vol: JSON) -> str:
    """Where a volume's files are on this host ("" for plugin drivers)."""
    if str(vol.get("Driver") or "local") != "local":
        return ""
    options = vol.get("Options") or {}
    if "bind" in str(options.get("o", "")).split(",") and options.get("device"):
        return str(options["device"])
    return os.path.realpath(str(vol.get("Mountpoint") or "")) if vol.get("Mountpoint") else ""


def folder_users(
    engine: Engine, folder: str, *, except_volumes: Iterable[str] = (), except_containers: Iterable[str] = ()
) -> list[FolderUser]:
    """Every volume and container (running or not) whose data is `folder`, inside it or above it."""
    skip_v, skip_c = set(except_volumes), set(except_containers)
    users: list[FolderUser] = []
    for vol in engine.volumes():
        name = str(vol.get("Name"))
        if name in skip_v:
            continue
        paths = {volume_data_path(vol)}
        if vol.get("Mountpoint"):
            paths.add(str(vol["Mountpoint"]))  # the symlink trick: the link itself and what it points to
        for p in paths:
            rel = relation(p, folder)
            if rel:
                users.append(FolderUser("volume", name, p, rel))
                break
    for c in engine.containers():
        cid = str(c.get("Id"))
        names = [str(n).lstrip("/") for n in c.get("Names") or []]
        if cid in skip_c or skip_c.intersection(names):
            continue
        for m in c.get("Mounts") or []:
            if m.get("Type") != "bind":
                continue
            rel = relation(str(m.get("Source") or ""), folder)
            if rel:
                users.append(
                    FolderUser("container", names[0] if names else cid[:12], str(m.get("Source")), rel)
                )
                break
    return users


def assert_folder_free(
    engine: Engine,
    folder: str,
    doing: str,
    *,
    except_volumes: Iterable[str] = (),
    except_containers: Iterable[str] = (),
) -> None:
    """Raise FolderInUse when anything else uses `folder` (checked now, against the live engine)."""
    users = folder_users(engine, folder, except_volumes=except_volumes, except_containers=except_containers)
    if users:
        raise FolderInUse(
            f"refusing to {doing} {folder}: "
            + "; ".join(u.describe() for u in users)
            + "; expected a folder no other volume or container uses; nothing there was deleted "
            "or overwritten; move or remove those users first, or leave the folder"
        )


def running_users(engine: Engine, volume: str) -> list[str]:
    """Names of the running containers that mount `volume` now."""
    out = []
    for c in engine.containers_using_volume(volume):
        info = engine.inspect_container(str(c["Id"]))
        if (info.get("State") or {}).get("Running"):
            out.append(str(info.get("Name", "")).lstrip("/"))
    return out


def assert_no_running_users(engine: Engine, volume: str, doing: str) -> None:
    busy = running_users(engine, volume)
    if busy:
        raise VolumeInUse(
            f"cannot {doing}: container(s) {', '.join(busy)} started using volume {volume} "
            "meanwhile; expected its users stopped, because a copy of data being written may be "
            "torn; stop them (or rerun with --stop-users) and try again"
        )


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding `path` (from /proc/self/mountinfo), "" when unknown."""
    probe = os.path.realpath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                mount = left.split()[4].replace("\\040", " ")
                if (probe == mount or _inside(probe, mount) or mount == "/") and len(mount) >= len(best):
                    best, fstype = mount, right.split()[0]
    except OSError:
        return ""
    return fstype


def volatile_filesystem(path: str) -> str | None:
    """The fs type when `path` is on a filesystem that does not survive a reboot, else None."""
    fstype = filesystem_type(path)
    return fstype if fstype in VOLATILE_FS else None


def require_data_access(
    folder: str,
    action: str,
    *,
    write: bool = True,
    uid: int | None = None,
    access: Callable[[str, int], bool] = os.access,
) -> None:
    """Raise before anything changes when this process may not read and write `folder` (the data-root).

    uid and access are injectable for tests. Example: require_data_access("/var/lib/docker", "volume move").
    """
    euid = os.geteuid() if uid is None else uid
    if access(folder, os.R_OK | os.X_OK | (os.W_OK if write else 0)):
        return
    verb = "reads and writes" if write else "reads"
    raise TamerError(
        f"`tamer {action}` needs root: it {verb} volume data directly in the engine's data-root "
        f"{folder}, which is owned by root and closed to other users (uid {euid} may not "
        f"{'write' if write else 'read'} there); expected to run as root on the engine's host; rerun "
        "with sudo; nothing was changed"
    )
