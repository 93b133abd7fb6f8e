"""Where a volume's data lives, where it may live, and `tamer volume create NAME --at PATH`.

The essay puts volumes on a bigger disk by planting a symlink inside
/var/lib/docker/volumes. The robust form is the local driver's bind options
(type=none, o=bind, device=PATH): the engine records the location itself, so
it survives engine upgrades and `docker volume inspect` tells the truth.
Volumes placed with the symlink trick are recognised (placement "symlink").
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tamer.engine import Engine
from tamer.errors import ObjectNotFound, PlacementRefused, TamerError, UsageError
from tamer.facts import local_placement
from tamer.volumes import guard

JSON = dict[str, Any]
# The engine's own rule for volume names (daemon/names: RestrictedNamePattern).
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
PLACED_LABEL = "io.tamer.placed-at"


def check_volume_name(name: str) -> str:
    """Return `name` when the engine would accept it as a volume name, else raise UsageError."""
    if not _VOLUME_NAME.fullmatch(name):  # (match with $ lets a trailing newline through)
        raise UsageError(
            f"volume name {name!r} is not valid: expected 2 or more of letters, digits, '_', '.', '-', "
            "starting with a letter or digit; e.g. mongo_data"
        )
    if len(name.encode()) > 255:
        raise UsageError(
            f"volume name {name[:40]}... is {len(name.encode())} bytes long; expected at most 255 (the "
            "engine keeps each volume in a folder of that name); pick a shorter one (with `tamer "
            "adopt`/`run`: --name-for PATH=NAME)"
        )
    return name


# -- where a volume's data lives ------------------------------------------------
@dataclass(frozen=True)
class VolumePlace:
    """Where an existing volume keeps its data.

    placement: "default" (under the data-root), "bind" (local driver bind
    options, as `tamer volume create --at` makes), "symlink" (the essay's link
    planted in the volumes folder) or "plugin" (another driver: only it knows).
    data_path: the folder holding the files on this host ("" for plugins).
    """

    name: str
    driver: str
    placement: str
    data_path: str
    mountpoint: str
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def volume_place(vol: JSON) -> VolumePlace:
    """Classify a volume from its inspect JSON (pure except for resolving symlinks on this host)."""
    name = str(vol.get("Name"))
    options = {str(k): str(v) for k, v in (vol.get("Options") or {}).items()}
    labels = {str(k): str(v) for k, v in (vol.get("Labels") or {}).items()}
    mountpoint = str(vol.get("Mountpoint") or "")
    driver = str(vol.get("Driver") or "local")
    if driver != "local":
        return VolumePlace(name, driver, "plugin", "", mountpoint, options, labels)
    placement, data_path = local_placement(options, mountpoint)
    return VolumePlace(name, driver, placement, data_path, mountpoint, options, labels)


def describe_place(vp: VolumePlace) -> str:
    if vp.placement == "bind":
        return f"at {vp.data_path} (bind options)"
    if vp.placement == "symlink":
        return (
            f"at {vp.data_path} through a symlink planted in the engine's volumes folder (the essay's trick; "
            f"`tamer volume move {vp.name} --to {os.path.dirname(vp.data_path)}` makes it a bind placement)"
        )
    if vp.placement == "plugin":
        return f"with the {vp.driver} driver"
    return f"in the engine's data-root ({vp.data_path})"


def local_data_dir(vp: VolumePlace) -> Path:
    """The volume's data folder on this host; raises when it is not reachable from here."""
    if vp.placement == "plugin":
        raise TamerError(
            f"volume {vp.name} uses the {vp.driver} driver: its data is not in a folder tamer can read; "
            "expected a local-driver volume; back it up with the plugin's own tools"
        )
    path = Path(vp.data_path)
    if not path.is_dir():
        raise TamerError(
            f"volume {vp.name}: its data folder {path} is not reachable from here; expected tamer to run "
            "on the engine's own host as root; run it there (or check that the drive is mounted)"
        )
    return path


def require_engine_here(engine: Engine, action: str) -> None:
    """Refuse (before anything is read or written) when the engine is reached through a network address.

    Volume data is read and written in folders on the engine's own host; through -H ssh:// or tcp:// the
    folders at the paths that engine names are on another machine, and a folder of the same path here
    (both hosts run the same compose project, both use /var/lib/docker) holds other data: a backup of it
    would pass every check and then let the remote volume go. Only an engine on a unix socket is here.
    """
    if not engine.where.startswith("unix://"):
        raise TamerError(
            f"`tamer {action}` reads and writes volume data in folders on the engine's own host, and the "
            f"engine at {engine.where} is reached through a network address: its folders are not on this "
            "machine (a folder of the same path here is another host's); expected a local engine "
            "(unix socket); run tamer on that host (`ssh HOST tamer ...`, or `tamer fleet` for df, plan "
            "and clean); nothing was changed"
        )
    # a unix socket is not enough: Docker Desktop's engine (in a VM) says /var/lib/docker, which here may
    # be another engine's folder holding other data under the same volume names
    from tamer.facts import another_engines_folder

    info = engine.info()
    other = another_engines_folder(
        engine.where, str(info.get("DockerRootDir") or ""), str(info.get("ID") or "")
    )
    if other is not None:
        raise TamerError(
            f"`tamer {action}` reads and writes volume data in the engine's data-root, and {other}; expected "
            "the engine whose data-root is on this machine; run tamer where that engine runs (inside the VM), "
            "or name the local engine with -H; nothing was changed"
        )


def data_root(engine: Engine, action: str = "volume") -> str:
    """The engine's data-root, as a folder on this machine (require_engine_here first)."""
    require_engine_here(engine, action)
    return str(engine.info().get("DockerRootDir") or "/var/lib/docker")


def inspect_volume_or_none(engine: Engine, name: str) -> JSON | None:
    try:
        return engine.inspect_volume(name)
    except ObjectNotFound:
        return None


# -- where a volume may live ----------------------------------------------------
@dataclass(frozen=True)
class PlaceCheck:
    """A checked location for volume data. `exists`: the folder is already there; `entries`: how many
    entries it holds (0 when new); `free_bytes`/`total_bytes`: of the filesystem that will hold it."""

    path: str
    exists: bool
    entries: int
    free_bytes: int
    total_bytes: int


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _resolve_prospective(path: str) -> str:
    """realpath that also works for a path whose last parts do not exist yet."""
    return os.path.realpath(path)  # realpath resolves the existing prefix and keeps the rest


def check_place(path: str, engine_data_root: str) -> PlaceCheck:
    """Check a location for volume data; raise PlacementRefused saying why it cannot be used.

    Refused: a relative path, `/`, anything inside the engine's data-root (the
    engine owns it and may delete it), an existing file, a place that cannot
    be made. Example: check_place("/mnt/big/mongo_data", "/var/lib/docker").
    """
    if not path or not os.path.isabs(path):
        raise PlacementRefused(
            f"volume location {path!r} is relative; expected an absolute path such as "
            f"/mnt/big/{path or 'NAME'}; give the full path"
        )
    norm = os.path.normpath(path)
    if norm == "/":
        raise PlacementRefused(
            "volume location `/` refused: expected a folder of its own, not the root of the "
            "filesystem; give e.g. /mnt/big/NAME"
        )
    real = _resolve_prospective(norm)
    if real == "/":
        raise PlacementRefused(f"volume location {path} resolves to `/`; expected a folder of its own")
    root_real = os.path.realpath(engine_data_root)
    if _inside(real, root_real) or _inside(norm, os.path.normpath(engine_data_root)):
        raise PlacementRefused(
            f"volume location {path} is inside the engine's data-root {engine_data_root}; "
            "expected a folder outside it (the engine owns its data-root and may delete what "
            "is there); pick a folder on another drive, e.g. /mnt/big/NAME"
        )
    if _inside(root_real, real):
        raise PlacementRefused(
            f"volume location {path} contains the engine's data-root {engine_data_root}; "
            "expected a folder of its own outside it"
        )
    if os.path.lexists(norm) and not os.path.isdir(norm):
        raise PlacementRefused(
            f"volume location {path} is a file, not a folder; expected a folder (existing or "
            "new); pick another path or move the file away"
        )
    existing = norm
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise PlacementRefused(
            f"volume location {path} cannot be made: {existing} is a file; expected folders all the way down"
        )
    fstype = guard.filesystem_type(existing)
    if fstype in guard.PSEUDO_FS:
        raise PlacementRefused(
            f"volume location {path} is on the kernel's {fstype} filesystem, which stores no data (a "
            "kernel interface); expected a folder on a disk, e.g. /mnt/big/NAME; nothing was changed"
        )
    if existing != norm and not os.access(existing, os.W_OK | os.X_OK):
        raise PlacementRefused(
            f"volume location {path} cannot be made: no permission to create folders in "
            f"{existing}; run as root or pick a writable place"
        )
    usage = shutil.disk_usage(existing)
    entries = len(os.listdir(norm)) if existing == norm else 0
    return PlaceCheck(
        path=norm, exists=existing == norm, entries=entries, free_bytes=usage.free, total_bytes=usage.total
    )


def bind_options(path: str) -> dict[str, str]:
    """The local driver options that keep a volume's data at `path`."""
    return {"type": "none", "o": "bind", "device": path}


# -- tamer volume create NAME --at PATH -----------------------------------------
@dataclass(frozen=True)
class CreatePlan:
    name: str
    at: PlaceCheck | None
    driver_opts: dict[str, str]
    labels: dict[str, str]
    notes: tuple[str, ...] = ()


def plan_create(
    engine: Engine,
    name: str,
    at: str | None,
    labels: dict[str, str] | None = None,
    *,
    allow_volatile: bool = False,
) -> CreatePlan:
    """Check everything `volume create` needs; changes nothing. Raises UsageError / PlacementRefused.

    An --at folder must be new or empty, used by no other volume or container (two volumes on one folder
    mix their data, and removing one may delete the other's), and on a disk (tmpfs/ramfs lose everything at
    reboot) unless allow_volatile.
    """
    check_volume_name(name)
    existing = inspect_volume_or_none(engine, name)
    if existing is not None:
        vp = volume_place(existing)
        raise UsageError(
            f"volume {name} already exists, {describe_place(vp)}; expected a new name; "
            f"pick another name, or `tamer volume move {name} --to PATH` to put it elsewhere"
        )
    all_labels = dict(labels or {})
    if at is None:
        return CreatePlan(name, None, {}, all_labels)
    check = check_place(at, data_root(engine))
    check_new_home(engine, check, allow_volatile=allow_volatile)
    notes: list[str] = []
    all_labels[PLACED_LABEL] = check.path
    return CreatePlan(name, check, bind_options(check.path), all_labels, tuple(notes))


def check_new_home(engine: Engine, check: PlaceCheck, *, allow_volatile: bool = False) -> None:
    """Refuse a folder for new volume data that holds data, that another volume or container uses (itself,
    a parent or a child), or (unless allow_volatile) that is on tmpfs/ramfs. Checked against the live
    engine; used when planning and again at the point of action."""
    if os.path.isdir(check.path) and any(os.scandir(check.path)):
        raise PlacementRefused(
            f"{check.path} is not empty ({len(os.listdir(check.path))} entries); expected a new "
            "or empty folder, so nothing there is mixed up or overwritten; pick another folder "
            "(or empty this one)"
        )
    users = guard.folder_users(engine, check.path)
    if users:
        raise PlacementRefused(
            f"{check.path} is used already: {'; '.join(u.describe() for u in users)}; expected "
            "a folder no other volume or container uses (two volumes on one folder mix their "
            "data); pick another folder"
        )
    volatile = guard.volatile_filesystem(check.path)
    if volatile and not allow_volatile:
        raise PlacementRefused(
            f"{check.path} is on a {volatile} filesystem, which lives in memory: its data is "
            "lost at the next reboot; expected a folder on a disk; pick one, or add "
            "--allow-tmpfs if losing the data at reboot is really what you want"
        )


def apply_create(engine: Engine, plan: CreatePlan, *, allow_volatile: bool = True) -> JSON:
    """Make the folder (when new) and the volume. Returns the volume's inspect JSON.

    Re-checked here, at the point of action: the name is still free (the engine's create is idempotent: an
    existing volume of that name would be silently reused and two data sets merged) and the folder is still
    new or empty and unused.
    """
    if inspect_volume_or_none(engine, plan.name) is not None:
        raise UsageError(
            f"volume {plan.name} exists now (it did not when planned); expected a new name, so no "
            "data of another volume is mixed in; nothing was changed; pick another name"
        )
    if plan.at is not None:
        check_new_home(engine, plan.at, allow_volatile=allow_volatile)
    made: list[str] = []
    try:
        if plan.at is not None:
            _make_folders(plan.at.path, made)
        engine.create_volume(plan.name, driver_opts=plan.driver_opts, labels=plan.labels)
    except BaseException:
        for folder in reversed(made):  # only what this call made, and only while empty: never data
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise
    return engine.inspect_volume(plan.name)


def hold_data_folder(vol: JSON) -> int:
    """An open fd on the data folder of the volume `vol` (inspect JSON) just created, or -1. While it is held
    the folder's inode cannot be reused, so `replaced_since` tells this volume from one of the same name
    that someone removed and created again meanwhile (a failed operation's cleanup must never remove that)."""
    try:
        return os.open(local_data_dir(volume_place(vol)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, TamerError):
        return -1


def replaced_since(engine: Engine, name: str, held: int) -> bool:
    """True when volume `name` is gone or is no longer the one whose folder `held` holds (False when
    nothing is held: unknown)."""
    if held < 0:
        return False
    try:
        vol = inspect_volume_or_none(engine, name)
        live = None if vol is None else os.stat(local_data_dir(volume_place(vol)))
        mine = os.fstat(held)
    except (OSError, TamerError):
        return True
    return live is None or (live.st_dev, live.st_ino) != (mine.st_dev, mine.st_ino)


def _make_folders(path: str, made: list[str]) -> None:
    """mkdir -p that records each folder it makes (so a failure removes exactly those) and turns a
    failure into a clear error instead of a traceback."""
    missing: list[str] = []
    probe = path
    while not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise PlacementRefused(
                    f"volume location {path} cannot be made: {folder} appeared as a file meanwhile; expected "
                    "folders all the way down; nothing else was changed"
                ) from None
            continue  # another process made it meanwhile: not ours to remove
        except OSError as exc:
            raise PlacementRefused(
                f"volume location {path} cannot be made: creating {folder} failed ({exc.strerror}); expected "
                "a folder tamer can create on a disk; pick another place; nothing was changed"
            ) from None
        made.append(folder)
