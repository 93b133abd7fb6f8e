"""Reading a host: engine JSON plus sizes measured on disk -> RawSnapshot.

The effectful half of the inventory. When the engine's data-root is readable
here (a local engine, run as root), sizes come from a parallel walk of the
data-root; otherwise from the engine's own /system/df figures. The snapshot
says which, and why when it fell back. Image layers' walks and image inspects
come from the ledger (tamer.ledger) when it remembers them; everything that can
change is read or walked afresh on every run. The walk itself, and how it overlaps
with the reads here, is tamer.local_walk's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tamer.engine import Engine
from tamer.engine.datastore import (
    Shared,
    container_from_datastore,
    read_mount_id,
    read_mount_ids,
    read_records,
    upper_dir,
)
from tamer.facts import local_placement, why_not_local
from tamer.local_walk import finish_walk, progress_parts, start_volume_walk, start_walk
from tamer.sizes import Walker

TYPE_CHECKING = False  # not typing's (some 3 ms): imported before the walk's workers are forked
if TYPE_CHECKING:
    from typing import Any

    from tamer.early import EarlyReads
    from tamer.engine.datastore import Records
    from tamer.inventory import PreparedInventory, RawSnapshot
    from tamer.ledger import Ledger

    JSON = dict[str, Any]
SIZING_CHOICES = ("auto", "local", "engine")
# On API 1.41 the engine can't report build cache alone; ask for the (slow) full
# df only when buildkit's folder suggests there is cache worth listing.
BUILDKIT_LISTING_THRESHOLD = 4 * 1024 * 1024


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Layer chain ids from an image's RootFS diff ids (how the layer store names layers)."""
    import hashlib

    chains: list[str] = []
    for diff in diff_ids:
        if not chains:
            chains.append(diff)
        else:
            chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff}".encode()).hexdigest())
    return chains


def remote_engine_warning(host: str) -> str:
    """What a read through a remote address (-H ssh:// or tcp://) cannot know, and where to read it."""
    return (
        f"the engine at {host} is reached through a network address, so its volume data, container "
        "logs and data-root are not read from here (log sizes are not counted; volume sizes are the "
        "engine's own figures, when it gives them); to read them on the host where they are, run tamer "
        "there, e.g. `tamer fleet df --hosts FILE` (over ssh; FILE lists ssh://user@host)"
    )


# the parts of `docker info` a snapshot keeps (which engine, where its data lives)
INFO_KEYS = ("DockerRootDir", "Driver", "ServerVersion", "ID", "Name")


def read_raw_snapshot(
    engine: Engine,
    *,
    sizing: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    meanwhile: Callable[[], None] | None = None,
    early: EarlyReads | None = None,
) -> RawSnapshot:
    """Read everything tamer knows about the host behind `engine`.

    Parameters: sizing "auto" (walk the data-root when readable, else the
    engine's figures), "local" (same, but say so loudly when it must fall
    back) or "engine"; progress(done, total) is called during the walk;
    meanwhile(), when given, is called once while the workers walk (the caller's own preparation,
    e.g. importing what it needs next), or at the end when nothing is walked. `early`: the workers and
    first reads tamer.early started for `engine` before the command line was parsed, taken up here.
    """
    taken_at = time.time()
    warnings: list[str] = []
    # The walk is most of a run, and Python's part of it little: its workers are forked first (before
    # any thread starts, as tamer.forkpool prefers), the volumes (most of what is walked) are walked as
    # soon as the engine lists them, the rest as soon as its roots are known (the container list, the
    # layer store's mount ids), and the containers' records are read and parsed, and their logs sized,
    # while the workers walk. An engine behind a unix socket may have its data-root here (the engine's
    # info says where; if it is not readable the workers go unused, a few ms); a remote one never does.
    if early is not None and sizing == "engine":
        early.drop()
        early = None
    if early is not None:
        walker: Walker | None = early.walker
    else:
        walker = Walker(fork_now=True) if sizing != "engine" and engine.where.startswith("unix://") else None
    try:
        # nothing is imported while the engine answers (the inventory's module, with `dataclasses`, is some
        # 18 ms, more than the info's answer: imported here, it held back the walk's start). The container
        # list, the slowest answer, is asked once the info has answered: asked together, the engine
        # answered the info only after the list (10-15 ms -> 200 ms and more, at 1,003 containers)
        if early is not None:
            info_answer, volume_list = early.info, early.volumes
        else:
            info_answer = engine.ahead(engine.info)
            volume_list = engine.ahead(engine.volumes)
        info = info_answer()
        listing = engine.ahead(engine.containers)  # the rest is read meanwhile
        # the volumes' walk tamer.early started on the same answers, if it did (joined before anything
        # else is asked of the workers)
        early_volumes = early.volume_walk() if early is not None and early.volume_walk is not None else None
    except BaseException:
        if walker is not None:
            walker.abandon()
        raise
    data_root = str(info.get("DockerRootDir", ""))
    driver = str(info.get("Driver", ""))
    reason = (
        why_not_local(engine.where, data_root, str(info.get("ID") or ""))
        if sizing != "engine"
        else "engine sizing was asked for"
    )
    if reason is not None and walker is not None:
        if early_volumes is not None:  # walked early, not local now: nobody will read that walk
            walker.abandon()
        else:
            walker.close()
        walker = None
    local: JSON | None = None
    prepared: list[PreparedInventory] = []  # see prepare() below
    if walker is not None:
        try:
            progress_of = progress_parts(progress)
            volumes = volume_list()
            volume_walk = (
                early_volumes
                if early_volumes is not None
                else start_volume_walk(walker, data_root, driver, volumes, progress_of("volumes"))
            )
            # the inventory and the ledger are imported (and the ledger read) once the workers walk: until the
            # first walk starts, one core is idle (their modules are some 10 and 11 ms)
            from tamer.inventory import RawSnapshot, engine_identity, prepare_inventory
            from tamer.ledger import open_ledger

            ledger = open_ledger(engine_identity(info))
            mount_ids = read_mount_ids(data_root, driver)  # while the engine builds its container list
            images = _image_records(engine, engine.images(), warnings, ledger)
            listed = slim_listing(listing())
            del listing  # it holds the list too
            uppers, inspected = _writable_layers(engine, data_root, driver, listed, mount_ids, warnings)
            walk = start_walk(walker, volume_walk, driver, uppers, images, progress_of("rest"), ledger)
            del uppers
            containers = _container_records(
                engine,
                data_root,
                driver,
                True,
                warnings,
                layer=False,  # the walk has each one's writable layer (uppers), from the same mount ids
                listed=listed,
                mount_ids=mount_ids,
                inspected=inspected,
            )
            del listed, mount_ids, inspected

            def prepare() -> None:  # while the workers walk: the inventory's work that needs no size
                prepared.append(
                    prepare_inventory(
                        taken_at=taken_at,
                        host=engine.where,
                        api_version=engine.api_version,
                        info=info,
                        containers=containers,
                        images=images,
                        volumes=volumes,
                    )
                )
                if meanwhile is not None:
                    meanwhile()

            local = finish_walk(walk, containers, volumes, warnings, ledger, prepare)
            meanwhile = None
        except BaseException:
            walker.abandon()
            raise
        walker.close()
    else:
        from tamer.inventory import RawSnapshot, engine_identity
        from tamer.ledger import open_ledger

        ledger = open_ledger(engine_identity(info))
        containers = _container_records(engine, data_root, driver, False, warnings, listing=listing)
        images = _image_records(engine, engine.images(), warnings, ledger)
        volumes = volume_list()
        if sizing == "local":
            warnings.append(f"could not size locally, used the engine's figures instead: {reason}")
    if not engine.where.startswith("unix://"):
        warnings.append(remote_engine_warning(engine.where))

    need_df = local is None or local.pop("needs_engine_df", False)
    engine_df: JSON | None = None
    build_cache: list[JSON] = []
    if need_df:
        engine_df = engine.system_df()
        build_cache = list(engine_df.get("BuildCache") or [])
        engine_df = {k: engine_df.get(k) for k in ("LayersSize", "Images", "Containers", "Volumes")}
    elif engine.supports("1.42"):
        build_cache = list(engine.system_df(["build-cache"]).get("BuildCache") or [])
    elif local is not None and local.get("buildkit_allocated", 0) > BUILDKIT_LISTING_THRESHOLD:
        build_cache = list(engine.system_df().get("BuildCache") or [])
    if local is not None:
        # build cache records are the cache's own accounting; attribute its folder to it
        local["attributed_allocated"] += local.pop("buildkit_allocated", 0)
    ledger.save(saw_all_layers=local is not None, saw_all_images=True)
    if meanwhile is not None:
        meanwhile()
    warnings.extend(ledger.warnings)
    return RawSnapshot(
        taken_at=taken_at,
        host=engine.where,
        api_version=engine.api_version,
        info={k: info.get(k) for k in INFO_KEYS},
        containers=containers,
        images=images,
        volumes=volumes,
        build_cache=build_cache,
        engine_df=engine_df,
        local=local,
        warnings=warnings,
        prepared=prepared[0] if prepared else None,
    )


LISTED_KINDS = ("images", "containers", "volumes", "cache")


def read_for_listing(engine: Engine, kind: str, *, users: bool = True) -> RawSnapshot:
    """What `tamer ls KIND` shows when no size was asked for: only the reads that kind needs, no walk.

    containers: the container list plus each one's record (the engine's files when the data-root
    is readable here, else an inspect). cache: the engine's build-cache records.

    images and volumes, `users` True: their list plus the container list (who uses what) and, for
    volumes, the inspects of the images whose declared VOLUMEs may have made an anonymous one.
    `users` False (the lean default): only the engine's list of that kind, as `docker images` and
    `docker volume ls` read it, and for volumes the engine's own list of those no container refers
    to (which is what "orphaned" means). The container list is the dominant cost on a big host
    (0.13 s at 2,000 containers on engine 20.10, against 2 ms for the image list), so who uses an
    image or volume is read only when asked; the snapshot then says `users_read=False`.

    Sizes stay unknown (None) except what the engine's lists carry (an image's SIZE); the
    snapshot has neither `local` nor `engine_df`.
    """
    if kind not in LISTED_KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    taken_at = time.time()
    warnings: list[str] = []
    containers: list[JSON] = []
    images: list[JSON] = []
    volumes: list[JSON] = []
    build_cache: list[JSON] = []
    dangling: list[str] | None = None
    placements: dict[str, JSON] | None = None  # read here, without sizing, when the engine is on this machine
    from tamer.inventory import RawSnapshot, engine_identity
    from tamer.ledger import open_ledger

    lean = not users and kind in ("images", "volumes")
    listing = engine.ahead(engine.containers) if kind == "containers" else None  # asked first: the slowest
    info: JSON = {} if lean else engine.info()  # lean: nothing of it is shown, and it costs a round trip
    if kind == "containers":
        data_root = str(info.get("DockerRootDir", ""))
        reason = why_not_local(engine.where, data_root, str(info.get("ID") or ""))
        containers = _container_records(
            engine, data_root, str(info.get("Driver", "")), reason is None, warnings, listing=listing
        )
    elif kind == "volumes" and lean:
        volumes = engine.volumes()
        # read after the full list: a volume created in between is absent from it and ignored here;
        # one whose last user went in between is orphaned by the time this answers
        dangling = engine.unreferenced_volumes()
    elif kind == "volumes":
        ledger = open_ledger(engine_identity(info))
        volumes = engine.volumes()
        containers = [_container_from_list(c) for c in engine.containers()]
        anonymous_users = {
            c["Image"]
            for c in containers
            if any(m.get("Type") == "volume" and m.get("Name") for m in c["Mounts"])
        }
        images = _image_records(engine, [{"Id": i} for i in sorted(anonymous_users) if i], warnings, ledger)
        ledger.save()
        warnings.extend(ledger.warnings)
    if kind == "volumes" and engine.where.startswith("unix://"):
        placements = {
            str(v["Name"]): dict(
                zip(
                    ("placement", "data_path"),
                    local_placement(_options(v), str(v.get("Mountpoint") or "")),
                    strict=True,
                )
            )
            for v in volumes
            if v.get("Driver") == "local"
        }
    if kind == "images" and lean:
        images = [{"list": entry, "inspect": None, "chain_ids": []} for entry in engine.images()]
    elif kind == "images":
        ledger = open_ledger(engine_identity(info))
        containers = [_container_from_list(c) for c in engine.containers()]
        images = _image_records(engine, engine.images(), warnings, ledger)
        ledger.save(saw_all_images=True)
        warnings.extend(ledger.warnings)
    elif kind == "cache" and engine.supports("1.42"):
        build_cache = list(engine.system_df(["build-cache"]).get("BuildCache") or [])
    elif kind == "cache":
        build_cache = list(engine.system_df().get("BuildCache") or [])
    return RawSnapshot(
        taken_at=taken_at,
        host=engine.where,
        api_version=engine.api_version,
        info={k: info.get(k) for k in INFO_KEYS},
        containers=containers,
        images=images,
        volumes=volumes,
        build_cache=build_cache,
        engine_df=None,
        local=None,
        warnings=warnings,
        users_read=not lean,
        dangling_volumes=dangling,
        placements=placements,
    )


# What tamer reads of an entry of the container list (container_from_datastore, _container_from_list, an
# inspect's id); the rest (networks, ports, the command) is dropped as soon as the list is read: parsed,
# the list of 10,000 containers is some 30 MB, most of it their network settings.
LISTED_KEYS = ("Id", "Names", "Image", "ImageID", "Created", "State", "Labels", "Mounts")


def slim_listing(listed: list[JSON]) -> list[JSON]:
    """The container list with only LISTED_KEYS of each entry, changed in place (so no copy of the whole
    list is alive at once, wherever else the list is held) and returned."""
    for i, entry in enumerate(listed):
        listed[i] = {k: entry[k] for k in LISTED_KEYS if k in entry}
    return listed


def _container_records(
    engine: Engine,
    data_root: str,
    driver: str,
    local: bool,
    warnings: list[str],
    *,
    layer: bool = False,
    listing: Callable[[], list[JSON]] | None = None,
    listed: list[JSON] | None = None,
    mount_ids: dict[str, str] | None = None,
    inspected: dict[str, JSON | None] | None = None,
) -> list[JSON]:
    """Every container, inspect-shaped: from the engine's records on disk when `local`, else inspected.
    `layer`: also where its writable layer is (for sizing). `listing`: the container list, already asked
    for; or `listed`: the list itself, already read. `mount_ids`: read_mount_ids, read ahead. `inspected`:
    containers already inspected (id -> inspect, None when it vanished), taken as they are."""
    containers: list[JSON] = []
    to_inspect = []
    records: Records = {}
    shared = Shared()
    inspected = inspected or {}
    if listed is None:
        listing = listing or engine.ahead(engine.containers)
        if local:
            # read the engine's files while the engine builds its list: the list is a wait on the socket
            records = read_records(data_root)
        listed = listing()
    # else each container's records are read as it comes: with the list already read, reading them all
    # first gains no overlap, and all of them parsed at once were some 20 MB at 10,000 containers
    for entry in listed:
        if entry["Id"] in inspected:
            to_inspect.append(entry["Id"])
            continue
        fast = (
            container_from_datastore(
                data_root, driver, entry, records=records, layer=layer, mount_ids=mount_ids, shared=shared
            )
            if local
            else None
        )
        if fast is None:
            to_inspect.append(entry["Id"])
        else:
            containers.append(fast)
    # what is kept of each is in `containers`; at 10,000 containers the rest is tens of MB
    del listed
    records.clear()
    answers = engine.inspect_many("container", [cid for cid in to_inspect if cid not in inspected])
    for cid in to_inspect:
        data = inspected[cid] if cid in inspected else answers.get(cid)
        if data is None:
            warnings.append(f"container {cid[:12]} vanished while being read; skipped")
        else:
            containers.append(data)
    return containers


def _writable_layers(
    engine: Engine,
    data_root: str,
    driver: str,
    listed: list[JSON],
    mount_ids: dict[str, str],
    warnings: list[str],
) -> tuple[dict[str, str | None], dict[str, JSON | None]]:
    """Where each listed container's writable layer is (id -> folder, None when its driver keeps none
    tamer can walk), from the layer store; a container whose mount id cannot be read there is
    inspected now (the walk needs its folder before it starts), and its inspect is returned too."""
    uppers: dict[str, str | None] = {}
    unknown: list[str] = []
    for entry in listed:
        cid = entry["Id"]
        mount_id = mount_ids.get(cid)
        if mount_id is None:
            mount_id = read_mount_id(data_root, driver, cid)  # created since they were read ahead
        if mount_id is None:
            unknown.append(cid)
        else:
            uppers[cid] = upper_dir(data_root, driver, mount_id)
    inspected = engine.inspect_many("container", unknown) if unknown else {}
    for cid, data in inspected.items():
        if data is not None:
            uppers[cid] = ((data.get("GraphDriver") or {}).get("Data") or {}).get("UpperDir")
    return uppers, inspected


def _image_records(engine: Engine, image_list: list[JSON], warnings: list[str], ledger: Ledger) -> list[JSON]:
    """Each listed image with the lasting part of its inspect: remembered in the ledger, else asked for."""
    from tamer.ledger import lasting_inspect

    known: dict[str, JSON] = {}
    to_inspect = []
    for entry in image_list:
        remembered = ledger.image(entry["Id"])
        if remembered is None:
            to_inspect.append(entry["Id"])
        else:
            known[entry["Id"]] = remembered
    for iid, data in engine.inspect_many("image", to_inspect).items():
        if data is not None:
            known[iid] = lasting_inspect(data)
            ledger.remember_image(iid, known[iid])
    images = []
    for entry in image_list:
        inspect = known.get(entry["Id"])
        if inspect is None:
            warnings.append(f"image {entry['Id'][7:19]} vanished while being read; skipped")
            continue
        images.append(
            {
                "list": entry,
                "inspect": inspect,
                "chain_ids": chain_ids(list((inspect.get("RootFS") or {}).get("Layers") or [])),
            }
        )
    return images


def _container_from_list(listed: JSON) -> JSON:
    """The inspect-shaped part of a container that its list entry already holds (who it is, what it uses).

    Enough for the volume and image views (users, owners); the fields only an inspect has
    (exit code, restart policy, log settings) stay empty, and those views do not show them.
    """
    names = listed.get("Names") or [""]
    return {
        "Id": listed["Id"],
        "Name": names[0],
        "Created": listed.get("Created"),
        "Image": listed.get("ImageID") or "",
        "State": {"Status": listed.get("State")},
        "Config": {"Image": listed.get("Image"), "Labels": listed.get("Labels") or {}},
        "Mounts": listed.get("Mounts") or [],
        "HostConfig": {},
        "_source": "list",
    }


def _options(volume: JSON) -> dict[str, str]:
    return {str(k): str(v) for k, v in (volume.get("Options") or {}).items()}
