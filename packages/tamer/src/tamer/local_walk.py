"""Sizing a Docker host's data-root here: the walk of `tamer df` (and `tamer plan`, `tamer record`).

The walk is most of a run, and Python's part of it little, so it is split to start early: the workers
are forked before anything else (collect.read_raw_snapshot), the local volumes (most of what is walked)
are walked as soon as the engine lists them (start_volume_walk), the rest of the data-root once its
roots are known (start_walk: image layers the ledger does not remember, the containers' writable and
init layers, buildkit's cache, what is left), and the containers' records are read and their logs
sized while the workers walk (finish_walk). Every root's figures are those one walk of every root,
stepping around every other root, would give (a test compares them).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from tamer.quick_ls import LocalPlacements
from tamer.sizes import PendingMeasure, Walker

TYPE_CHECKING = False  # not typing's: this module is imported before the walk's workers are forked
if TYPE_CHECKING:
    from typing import Any

    from tamer.ledger import Ledger  # imported by collect while the engine answers (see read_raw_snapshot)
    from tamer.usage import DiskUsage

    JSON = dict[str, Any]


class VolumeWalk:
    """The local volumes' walk, started as soon as the engine listed them (see start_volume_walk).

    Plain classes here, not dataclasses: this module is imported before the walk's workers are forked,
    and `dataclasses` (with `inspect`) is some 8 ms of a warm df's start."""

    __slots__ = ("data_root", "later", "pending", "placements", "roots", "skip")

    def __init__(
        self,
        pending: PendingMeasure[str] | None,
        data_root: str,  # its real path
        roots: dict[str, str],  # vol:NAME -> data folder, every local volume's
        later: dict[str, str],  # those left to the data-root's walk (see walked_early)
        skip: set[str],  # mount points of bind volumes (when mounted, _data *is* the device)
        placements: dict[str, JSON],  # local volume name -> {"placement", "data_path"}
    ) -> None:
        self.pending = pending
        self.data_root = data_root
        self.roots = roots
        self.later = later
        self.skip = skip
        self.placements = placements


class Walk:
    """A data-root walk under way (see start_walk), and what finish_walk needs to add it up."""

    __slots__ = (
        "data_root",
        "init_stamps",
        "inside",
        "layer_dirs",
        "layers",
        "needs_engine_df",
        "pending",
        "placements",
        "remembered",
        "remembered_init",
        "roots",
        "stamps",
        "volumes",
    )

    def __init__(
        self,
        pending: PendingMeasure[str],
        volumes: VolumeWalk,
        data_root: str,  # its real path
        roots: dict[str, str],  # key (layer:CHAIN, rw:ID, init:ID, vol:NAME, ...) -> folder walked
        layers: dict[str, int],  # chain -> size, as the layer store records it
        layer_dirs: dict[str, tuple[str, str]],  # chain -> (cache id, folder)
        stamps: dict[str, list[int] | None],  # chain -> ledger.folder_stamp of a layer being measured
        remembered: DiskUsage,  # the image layers the ledger remembered, together
        remembered_init: DiskUsage,  # the containers' init layers the ledger remembered, together
        init_stamps: dict[str, tuple[str, str, list[int]]],  # container id -> init layer being measured
        placements: dict[str, JSON],  # local volume name -> {"placement", "data_path"}
        needs_engine_df: bool,
        inside: set[str],  # keys of the roots inside the data-root
    ) -> None:
        self.pending = pending
        self.volumes = volumes
        self.data_root = data_root
        self.roots = roots
        self.layers = layers
        self.layer_dirs = layer_dirs
        self.stamps = stamps
        self.remembered = remembered
        self.remembered_init = remembered_init
        self.init_stamps = init_stamps
        self.placements = placements
        self.needs_engine_df = needs_engine_df
        self.inside = inside


def progress_parts(
    progress: Callable[[int, int], None] | None,
) -> Callable[[str], Callable[[int, int], None] | None]:
    """progress(done, total) of several walks at once: each reports its own, the sum is shown."""
    if progress is None:
        return lambda _: None
    import threading

    lock = threading.Lock()
    parts: dict[str, tuple[int, int]] = {}

    def part(name: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            with lock:  # the walks report from their own threads
                parts[name] = (done, total)
                progress(sum(d for d, _ in parts.values()), sum(t for _, t in parts.values()))

        return report

    return part


def walked_early(folder: str, held: tuple[str, ...]) -> bool:
    """Whether a volume's folder can be walked before the data-root's other roots are known: neither
    inside the folders those roots are in (`held`: held_folders()) nor holding them, so that no path
    the data-root's walk steps around can be below it (a bind volume's device could be anything, the
    data-root itself included)."""
    here = os.path.normpath(folder).rstrip("/") + "/"
    return not any(there.startswith(here) or here.startswith(there) for there in held)


def held_folders(data_root: str, driver: str) -> tuple[str, ...]:
    """The folders (each ending in "/") that hold the roots only known once the containers are read:
    the driver's layers and buildkit's cache, under the data-root as given and as resolved."""
    roots = {data_root, os.path.realpath(data_root)}
    return tuple(
        os.path.join(r, name).rstrip("/") + "/" for r in sorted(roots) for name in (driver, "buildkit")
    )


def start_volume_walk(
    walker: Walker,
    data_root: str,
    driver: str,
    volumes: list[JSON],
    progress: Callable[[int, int], None] | None,
) -> VolumeWalk:
    """Start walking the local volumes' folders: every one but those walked_early leaves to the rest."""
    dr = os.path.realpath(data_root)
    placements: dict[str, JSON] = {}
    roots: dict[str, str] = {}
    skip: set[str] = set()
    # facts.local_placement's answers at a fifth of its system calls (realpath() of every volume's
    # mountpoint was ~8 ms at 275 volumes, before the first volume could be walked)
    placer = LocalPlacements()
    try:
        for v in volumes:
            name = v["Name"]
            options = v.get("Options") or {}
            mountpoint = str(v.get("Mountpoint") or "")
            if v.get("Driver") != "local":
                continue  # data lives with a plugin; only the engine can say
            placement, data_path = placer.placement({str(k): str(o) for k, o in options.items()}, mountpoint)
            if placement == "bind":
                skip.add(mountpoint)  # when mounted, _data *is* the device: don't count it twice
            placements[name] = {"placement": placement, "data_path": data_path}
            roots[f"vol:{name}"] = data_path
    finally:
        placer.close()
    held = held_folders(data_root, driver)
    early = {k: p for k, p in roots.items() if walked_early(p, held)}
    later = {k: p for k, p in roots.items() if k not in early}
    # what the data-root's walk steps around and could be below a volume walked now: the other volumes
    steps_around = skip | {p for p in roots.values() if _is_inside(p, dr)} | {os.path.join(dr, "buildkit")}
    pending = walker.start(early, skip=steps_around, progress=progress) if early else None
    return VolumeWalk(pending, dr, roots, later, skip, placements)


def start_walk(
    walker: Walker,
    volumes: VolumeWalk,
    driver: str,
    uppers: dict[str, str | None],
    images: list[JSON],
    progress: Callable[[int, int], None] | None,
    ledger: Ledger,
) -> Walk:
    """Start walking the rest of the data-root (image layers the ledger does not remember, every listed
    container's writable and init layers in `uppers`, volumes not walked yet, buildkit's cache, what is
    left) and return while the workers walk."""
    needs_engine_df = False
    dr = volumes.data_root
    # image layers: the layer store records each layer's size (what docker df reports)
    layers: dict[str, int] = {}
    layer_dirs: dict[str, tuple[str, str]] = {}  # chain -> (cache id, folder)
    layerdb = os.path.join(dr, "image", driver, "layerdb", "sha256")
    for entry in images:
        for chain in entry["chain_ids"]:
            if chain in layers:
                continue
            folder = os.path.join(layerdb, chain.removeprefix("sha256:"))
            try:
                with open(os.path.join(folder, "size")) as fh:
                    layers[chain] = int(fh.read().strip() or 0)
                with open(os.path.join(folder, "cache-id")) as fh:
                    cache_id = fh.read().strip()
                if not cache_id or "/" in cache_id or cache_id in (".", ".."):
                    raise ValueError(f"unexpected cache id {cache_id!r}")
                layer_dirs[chain] = (cache_id, os.path.join(dr, driver, cache_id))
            except (OSError, ValueError):
                needs_engine_df = True  # e.g. the containerd image store (engines >= 24 may use it)
                break

    # the rest of the data-root first: its split (in the first run the workers take) finds most of the
    # folders walked next, which are then handed out while the other roots' splits run
    roots: dict[str, str] = {"rest": dr, "buildkit": os.path.join(dr, "buildkit")}
    # an image layer is measured once and remembered (see tamer.ledger); the rest of the data-root's
    # walk steps around a remembered one as around a measured one
    remembered_layers: list[DiskUsage] = []
    remembered_inits: list[DiskUsage] = []
    remembered_folders: list[str] = []
    stamps: dict[str, list[int] | None] = {}
    for chain, (cache_id, folder) in layer_dirs.items():
        usage = ledger.layer(cache_id, chain, folder)
        if usage is not None:
            remembered_layers.append(usage)
            remembered_folders.append(folder)
        else:
            stamps[chain] = ledger.folder_stamp(folder)
            roots[f"layer:{chain}"] = folder
    init_stamps: dict[str, tuple[str, str, list[int]]] = {}  # container id -> (name, folder, stamp)
    stats: dict[str, os.stat_result] = {}  # the writable layers' folders, stat'ed once (for the walker too)
    for cid, upper in uppers.items():
        st = _stat(upper) if upper else None
        if upper and st is not None and stat.S_ISDIR(st.st_mode):
            roots[f"rw:{cid}"] = upper  # one that is not: finish_walk asks the engine (if it still exists)
            stats[f"rw:{cid}"] = st
            # its init layer, beside it (see tamer.ledger): unattributed, as the rest of the data-root is,
            # but remembered
            base, tail = os.path.split(upper)
            init = base + "-init"
            if tail != "diff" or not _is_inside(init, dr):
                continue
            name = os.path.basename(init)
            usage = ledger.init_layer(name, cid, init)
            if usage is not None:
                remembered_inits.append(usage)
                remembered_folders.append(init)
                continue
            stamp = ledger.folder_stamp(init)
            if stamp is not None:  # None: no init layer there (the rest of the walk finds none either)
                init_stamps[cid] = (name, init, stamp)
                roots[f"init:{cid}"] = init
    roots.update(volumes.later)
    # the roots inside the data-root (its total counts them), known now rather than after the walk
    inside_keys = {k for k, p in {**volumes.roots, **roots}.items() if _is_inside(p, dr)}
    inside = [p for k, p in roots.items() if k not in ("rest", "buildkit") and k in inside_keys]
    inside += remembered_folders
    inside += [p for k, p in volumes.roots.items() if k in inside_keys]  # those walked already too
    pending = walker.start(
        roots,
        skip=volumes.skip | set(inside) | {roots["buildkit"]},
        progress=progress,
        whole={f"init:{cid}" for cid in init_stamps},  # a dozen entries each
        stats=stats,
    )
    return Walk(
        pending=pending,
        volumes=volumes,
        data_root=dr,
        roots={**volumes.roots, **roots},
        layers=layers,
        layer_dirs=layer_dirs,
        stamps=stamps,
        remembered=_sum(remembered_layers),
        remembered_init=_sum(remembered_inits),
        init_stamps=init_stamps,
        placements=volumes.placements,
        needs_engine_df=needs_engine_df,
        inside=inside_keys,
    )


def finish_walk(
    walk: Walk,
    containers: list[JSON],
    volumes: list[JSON],
    warnings: list[str],
    ledger: Ledger,
    meanwhile: Callable[[], None] | None = None,
) -> JSON:
    """The local figures: the containers' logs sized and `meanwhile()` called (while the workers still
    walk), then the walk's."""
    dr = walk.data_root
    logs: JSON = {}
    log_allocated = 0
    for c in containers:
        files = _log_files(c, dr)
        apparent = allocated = found = 0  # as file_size() of each, added up (without a DiskUsage each)
        for f in files:
            try:
                st = os.stat(f)
            except OSError:  # gone since it was listed: not counted, as file_size() says None
                continue
            apparent += st.st_size
            allocated += st.st_blocks * 512
            found += 1
        logs[c["Id"]] = {"files": files, "size": [apparent, allocated, found, 0]}
        log_allocated += allocated

    if meanwhile is not None:
        meanwhile()
    measured = walk.pending.result()
    if walk.volumes.pending is not None:
        measured.update(walk.volumes.pending.result())
    roots_all = walk.roots
    read = {c["Id"] for c in containers}
    for chain, stamp in walk.stamps.items():
        layer_usage = measured.get(f"layer:{chain}")
        if layer_usage is not None:
            cache_id, folder = walk.layer_dirs[chain]
            ledger.remember_layer(cache_id, chain, folder, stamp, layer_usage)
    for cid, (name, folder, init_stamp) in walk.init_stamps.items():
        init_usage = measured.get(f"init:{cid}")
        if init_usage is not None and cid in read:
            ledger.remember_init_layer(name, cid, folder, init_stamp, init_usage)

    placements = walk.placements
    needs_engine_df = walk.needs_engine_df
    # the writable layers of the containers read; one listed but gone by the time its record was read
    # is the rest of the data-root's (as when the walk began after it went)
    rw: JSON = {}
    for c in containers:
        key = f"rw:{c['Id']}"
        if key in roots_all:
            rw[c["Id"]] = _tuple(measured.get(key))  # None: the folder went while it was walked
        else:
            needs_engine_df = True  # no writable layer tamer can walk: the engine's figures are asked for
    volume_sizes: JSON = {}
    for v in volumes:
        name = v["Name"]
        if name not in placements:
            continue
        usage = measured.get(f"vol:{name}")
        if usage is None:
            warnings.append(
                f"volume {name}: its data folder {placements[name]['data_path']} is missing "
                "(removed meanwhile, or an unmounted drive)"
            )
        volume_sizes[name] = {**placements[name], "size": _tuple(usage)}

    counted = [walk.remembered, walk.remembered_init]  # the data-root's total: added up once, at the end
    attributed = log_allocated + walk.remembered.allocated
    for key, usage in measured.items():
        if usage is None or key == "buildkit":
            continue
        if key == "rest" or key in walk.inside:
            counted.append(usage)
            # what no object explains stays unaccounted: the rest, init layers, a gone container's layer
            if not (
                key == "rest" or key.startswith("init:") or (key.startswith("rw:") and key[3:] not in read)
            ):
                attributed += usage.allocated
    buildkit = measured.get("buildkit")
    if buildkit is not None:
        counted.append(buildkit)
    total = _sum(counted)
    vanished = sum(u.vanished for u in measured.values() if u is not None)
    if vanished:
        warnings.append(
            f"{vanished} files or folders vanished while being sized (objects removed meanwhile); skipped"
        )
    unreadable = sum(u.unreadable for u in measured.values() if u is not None)
    if unreadable:
        warnings.append(
            f"{unreadable} folders could not be read while sizing (no permission, or a mount point this "
            "user cannot see into); what they hold is not counted, so sizes are lower bounds; run as root "
            "for complete figures"
        )
    return {
        "layers": walk.layers,
        "containers": rw,
        "volumes": volume_sizes,
        "logs": logs,
        "data_root": _tuple(total),
        "attributed_allocated": attributed,
        "buildkit_allocated": buildkit.allocated if buildkit else 0,
        "needs_engine_df": needs_engine_df,
    }


def _log_files(container: JSON, data_root: str) -> list[str]:
    """The container's log file and its rotated siblings, for drivers that write here."""
    log_type = ((container.get("HostConfig") or {}).get("LogConfig") or {}).get("Type")
    if log_type == "local":
        import glob

        return sorted(glob.glob(os.path.join(data_root, "containers", container["Id"], "local-logs", "*")))
    path = container.get("LogPath")
    if not path:
        return []
    folder, base = os.path.split(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    # json-file rotates to NAME.1, NAME.2 (and .gz when compressed)
    return sorted(os.path.join(folder, n) for n in names if n.startswith(base))


def _sum(usages: list[DiskUsage]) -> DiskUsage:
    """DiskUsage() + each of `usages` (one DiskUsage made, not one per addition)."""
    from tamer.usage import DiskUsage

    return DiskUsage(
        sum(u.apparent for u in usages),
        sum(u.allocated for u in usages),
        sum(u.files for u in usages),
        sum(u.vanished for u in usages),
        sum(u.unreadable for u in usages),
    )


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in a path the engine gave (isdir said False)
        return None


def _is_inside(path: str, root: str) -> bool:
    path = os.path.abspath(path)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _tuple(usage: DiskUsage | None) -> list[int] | None:
    if usage is None:
        return None
    return [usage.apparent, usage.allocated, usage.files, usage.vanished]
