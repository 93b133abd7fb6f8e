"""A snapshot of a Docker host as frozen dataclasses, built purely from raw JSON.

`build_inventory(raw)` takes a RawSnapshot (inspect JSON from the engine plus
the sizes measured on disk, as plain data) and returns an Inventory. It does no
I/O, so it is unit-tested on captured JSON; `collect.read_raw_snapshot` is the
effectful half that gathers a RawSnapshot. The values themselves (Inventory, Container,
Image, Volume, ...) are tamer.inventory_model's, imported from here.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from tamer.facts import (
    COMPOSE_PROJECT,
    container_summary,
    engine_labels_anonymous,
    is_anonymous_volume,
    is_bind,
    is_dangling,
    parse_time,
)
from tamer.inventory_model import (
    BuildCache,
    Container,
    Image,
    ImageVolumeOrigin,
    Inventory,
    LogFile,
    Mount,
    Volume,
    engine_identity,
)
from tamer.names import is_generated_name
from tamer.sizes import DiskUsage

__all__ = [
    "BuildCache",
    "Container",
    "Image",
    "ImageVolumeOrigin",
    "Inventory",
    "LogFile",
    "Mount",
    "PreparedContainers",
    "PreparedInventory",
    "RawSnapshot",
    "Volume",
    "build_inventory",
    "engine_identity",
    "prepare_containers",
    "prepare_inventory",
]

JSON = dict[str, Any]
T = TypeVar("T")


# -- raw input ------------------------------------------------------------------
@dataclass(frozen=True)
class RawSnapshot:
    """Everything read from a host, as JSON-serialisable data.

    containers: container inspect JSON. images: {"list": image list entry,
    "inspect": image inspect JSON}. volumes: volume list entries. build_cache:
    build cache records. engine_df: the engine's /system/df answer when its
    figures were used. local: sizes measured on disk (see collect.py) or None.
    """

    taken_at: float
    host: str
    api_version: str
    info: JSON
    containers: list[JSON]
    images: list[JSON]
    volumes: list[JSON]
    build_cache: list[JSON] = field(default_factory=list)
    engine_df: JSON | None = None
    local: JSON | None = None
    warnings: list[str] = field(default_factory=list)
    # False: the container list was not read (a lean `tamer ls`): who uses each image or volume is
    # unknown, and `dangling_volumes` (the engine's own "no container refers to it" list) says which
    # volumes are orphaned. Images may then come without an inspect ("inspect": None).
    users_read: bool = True
    dangling_volumes: list[str] | None = None
    # where local volumes' data lives when it was read without sizing (name -> {"placement", "data_path"})
    placements: dict[str, JSON] | None = None
    # prepare_inventory(...) of these values, made while the workers walked (build_inventory's work that
    # needs no size, done ahead); build_inventory makes the same inventory with it or without it
    prepared: PreparedInventory | PreparedContainers | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> JSON:
        return {k: v for k, v in self.__dict__.items() if k != "prepared"}

    @classmethod
    def from_json(cls, data: JSON) -> RawSnapshot:
        return cls(**data)


# -- parsing helpers -----------------------------------------------------------
def _usage(value: Any) -> DiskUsage | None:
    if value is None:
        return None
    if isinstance(value, DiskUsage):
        return value
    return DiskUsage(*value)


def _labels(obj: JSON | None) -> dict[str, str]:
    return dict((obj or {}).get("Labels") or {})


# -- the builder ---------------------------------------------------------------
# build_inventory in two parts: what the records alone fix (every field of every container, image and
# volume but the sizes, the logs' files and where volumes' data lives), and what the sizes fix. `tamer df`
# does the first while its workers walk (prepare_inventory), when the main process's CPU costs about
# half a millisecond of wall per millisecond (the workers want both cores), and only the second after the
# walk's last answer, when one core is idle and every millisecond is a millisecond of wall.
_set = object.__setattr__  # fills in a size of an object this build made and no one else has seen yet


class _Parts:
    """The objects of one inventory, made from the records, their sizes not yet filled in (None, 0, no
    log files, the volumes' placement as their options say). Owned by exactly one build_inventory."""

    __slots__ = ("containers", "images", "layer_users", "volumes")

    def __init__(
        self,
        containers: list[Container],
        images: list[Image],
        volumes: list[Volume],
        layer_users: dict[str, int],
    ) -> None:
        self.containers = containers
        self.images = images
        self.volumes = volumes
        self.layer_users = layer_users  # chain id -> how many images have it


def _container(cj: JSON) -> Container:
    """A container as its record says, without its sizes (None) or its log's files and size."""
    host = cj.get("HostConfig") or {}
    log_cfg = host.get("LogConfig") or {}
    summary = container_summary(cj)
    cid = cj["Id"]
    name = summary["name"]
    log_driver = str(log_cfg.get("Type") or "")
    return Container(
        id=cid,
        name=name,
        name_generated=is_generated_name(name),
        image=summary["image"],
        image_id=summary["image_id"],
        state=summary["state"],
        created=summary["created"],
        started=summary["started"],
        finished=summary["finished"],
        exit_code=summary["exit_code"],
        restart_policy=summary["restart_policy"],
        auto_remove=summary["auto_remove"],
        writable_size=None,
        writable_allocated=None,
        log_driver=log_driver,
        log_options={str(k): str(v) for k, v in (log_cfg.get("Config") or {}).items()},
        log=LogFile(container_id=cid, driver=log_driver, path=cj.get("LogPath") or None, files=(), size=None),
        mounts=tuple(
            Mount(
                type=str(m.get("Type", "")),
                name=m.get("Name"),
                source=str(m.get("Source", "")),
                destination=str(m.get("Destination", "")),
                rw=bool(m.get("RW", True)),
            )
            for m in cj.get("Mounts") or []
        ),
        labels=summary["labels"],
        compose_project=summary["compose_project"],
        owner=summary["owner"],
    )


def _parts(
    containers: list[Container],
    images_json: list[JSON],
    volumes_json: list[JSON],
    api_version: str,
    users_read: bool,
    dangling_volumes: list[str] | None,
) -> _Parts:
    """Everything of an inventory that needs no size: `containers` (each _container of its record), then
    the images and volumes made from their records and from who uses them."""
    by_id = {c.id: c for c in containers}

    images_by_id = {(i.get("inspect") or i["list"])["Id"]: i for i in images_json}
    users_of_image: dict[str, list[str]] = defaultdict(list)
    for c in containers:
        users_of_image[c.image_id].append(c.id)
    layer_users: dict[str, int] = defaultdict(int)
    for entry in images_json:
        for chain in entry.get("chain_ids", ()):
            layer_users[chain] += 1
    images: list[Image] = []
    for entry in images_json:
        listed = entry["list"]
        inspect = entry.get("inspect") or {}  # None in a lean listing: the list entry says enough
        iid = str(inspect.get("Id") or listed["Id"])
        users = tuple(users_of_image.get(iid, ()))
        owners = {by_id[u].owner for u in users}
        tags = [t for t in (listed.get("RepoTags") or inspect.get("RepoTags") or []) if t != "<none>:<none>"]
        images.append(
            Image(
                id=iid,
                tags=tuple(tags),
                created=parse_time(inspect.get("Created") or listed.get("Created")),
                size=int(listed.get("Size") or inspect.get("Size") or 0),
                shared_size=0,  # see _fill_images
                dangling=is_dangling(tags),
                containers=users,
                volume_paths=tuple(sorted(((inspect.get("Config") or {}).get("Volumes") or {}).keys())),
                labels=_labels(inspect.get("Config")) if inspect else _labels(listed),
                layers=tuple(entry.get("chain_ids", ())),
                owner=""
                if not users_read
                else owners.pop()
                if len(owners) == 1
                else ("shared" if owners else "unused"),
                users_read=users_read,
            )
        )

    # volumes: users, origin, owner
    users_of_volume: dict[str, list[tuple[Container, Mount]]] = defaultdict(list)
    for c in containers:
        for m in c.mounts:
            if m.type == "volume" and m.name:
                users_of_volume[m.name].append((c, m))
    volumes: list[Volume] = []
    dangling = None if dangling_volumes is None else set(dangling_volumes)
    engine_labels_them = engine_labels_anonymous(api_version)
    for v in volumes_json:
        name = v["Name"]
        labels = dict(v.get("Labels") or {})
        options = {str(k): str(val) for k, val in (v.get("Options") or {}).items()}
        anonymous = is_anonymous_volume(name, labels, engine_labels_them=engine_labels_them)
        vol_users = users_of_volume.get(name, [])
        origin = None
        if anonymous:
            for c, m in vol_users:
                img = images_by_id.get(c.image_id)
                declared = ((img or {}).get("inspect", {}).get("Config") or {}).get("Volumes") or {}
                if m.destination in declared:
                    origin = ImageVolumeOrigin(image=c.image, path=m.destination)
                    break
        project = labels.get(COMPOSE_PROJECT)
        user_owners = {c.owner for c, _ in vol_users}
        if project:
            owner = f"project:{project}"
        elif not users_read:
            owner = ""
        elif len(user_owners) == 1:
            owner = user_owners.pop()
        else:
            owner = "shared" if user_owners else "unowned"
        bound = is_bind(options)
        volumes.append(
            Volume(
                name=name,
                anonymous=anonymous,
                driver=str(v.get("Driver", "")),
                options=options,
                mountpoint=str(v.get("Mountpoint", "")),
                # where its data lives as its options say; _fill_volumes puts what was found on disk
                data_path=str((options.get("device") if bound else None) or v.get("Mountpoint", "")),
                placement="bind" if bound else "default",
                size=None,
                created=parse_time(v.get("CreatedAt")),
                users_running=tuple(sorted({c.name for c, _ in vol_users if c.running})),
                users_stopped=tuple(sorted({c.name for c, _ in vol_users if not c.running})),
                origin=origin,
                labels=labels,
                owner=owner,
                users_read=users_read,
                referenced=None if dangling is None else name not in dangling,
            )
        )
    return _Parts(containers, images, volumes, layer_users)


class PreparedInventory:
    """The part of build_inventory that needs no size, done ahead (prepare_inventory): `tamer df` makes it
    while its workers walk.

    build_inventory finishes it once, for a snapshot read from the very same records (the same objects,
    checked one by one, and the same time, engine and API version); for any other snapshot, or a second
    time, it builds afresh, so the inventory is the same with it or without it, and objects one
    inventory returned are never touched again.
    """

    __slots__ = ("_key", "_made", "_sources")

    def __init__(self, key: tuple[Any, ...], sources: tuple[tuple[JSON, ...], ...], made: _Parts) -> None:
        self._key = key
        self._sources = sources
        self._made = [made]  # emptied by the one build_inventory that takes it

    def _take(self, raw: RawSnapshot) -> _Parts | None:
        if _key(raw) != self._key or not all(
            map(_same_items, (raw.containers, raw.images, raw.volumes), self._sources)
        ):
            return None
        return _pop(self._made)


class PreparedContainers:
    """prepare_containers: the containers alone made ahead (build_inventory makes the images and volumes);
    taken once, for a snapshot holding the very same records, as PreparedInventory."""

    __slots__ = ("_made", "_sources")

    def __init__(self, sources: tuple[JSON, ...], made: list[Container]) -> None:
        self._sources = sources
        self._made = [made]

    def _take(self, raw: RawSnapshot) -> list[Container] | None:
        return _pop(self._made) if _same_items(raw.containers, self._sources) else None


def _same_items(now: list[JSON], then: tuple[JSON, ...]) -> bool:
    return len(now) == len(then) and all(map(operator.is_, now, then))


def _pop(made: list[T]) -> T | None:
    try:
        return made.pop()  # atomic: of two builds at once, one takes it
    except IndexError:  # taken already
        return None


def _key(raw: RawSnapshot) -> tuple[Any, ...]:
    return (
        raw.taken_at,
        raw.host,
        engine_identity(raw.info),
        raw.api_version,
        raw.users_read,
        raw.dangling_volumes,
    )


def prepare_inventory(
    *,
    taken_at: float,
    host: str,
    api_version: str,
    info: Mapping[str, Any],
    containers: list[JSON],
    images: list[JSON],
    volumes: list[JSON],
    users_read: bool = True,
    dangling_volumes: list[str] | None = None,
) -> PreparedInventory:
    """build_inventory's work that needs no size, for the RawSnapshot that will hold these values (put it
    in its `prepared`). `tamer df` does it while its workers walk: some 15 ms at 1,003 containers that
    were on the critical path after the walk."""
    key = (taken_at, host, engine_identity(info), api_version, users_read, dangling_volumes)
    sources = (tuple(containers), tuple(images), tuple(volumes))
    made = _parts(
        [_container(cj) for cj in containers], images, volumes, api_version, users_read, dangling_volumes
    )
    return PreparedInventory(key, sources, made)


def prepare_containers(containers: list[JSON]) -> PreparedContainers:
    """The containers' part of prepare_inventory alone (for a reader that has only the records at hand)."""
    return PreparedContainers(tuple(containers), [_container(cj) for cj in containers])


def build_inventory(raw: RawSnapshot) -> Inventory:
    """Turn a RawSnapshot into an Inventory. Pure: same input, same output (raw.prepared, when there,
    is that input's own prepare_inventory, so it changes nothing but the time)."""
    ahead = raw.prepared._take(raw) if raw.prepared is not None else None
    if isinstance(ahead, _Parts):
        parts = ahead
    else:
        parts = _parts(
            ahead if ahead is not None else [_container(cj) for cj in raw.containers],
            raw.images,
            raw.volumes,
            raw.api_version,
            raw.users_read,
            raw.dangling_volumes,
        )
    local = raw.local or {}
    df = raw.engine_df or {}
    containers, images, volumes = parts.containers, parts.images, parts.volumes
    _fill_containers(containers, local, df)
    local_layers: dict[str, int] = local.get("layers", {})
    _fill_images(images, parts.layer_users, local_layers, df)
    if local_layers:
        layers_size = sum(local_layers.values())
    elif df:
        layers_size = int(df.get("LayersSize") or 0)
    else:
        layers_size = sum(i.size for i in images)
    _fill_volumes(volumes, local.get("volumes", {}), raw.placements or {}, df)

    cache = tuple(
        BuildCache(
            id=str(b.get("ID", "")),
            type=str(b.get("Type", "")),
            size=int(b.get("Size") or 0),
            created=parse_time(b.get("CreatedAt")),
            last_used=parse_time(b.get("LastUsedAt")),
            in_use=bool(b.get("InUse")),
            shared=bool(b.get("Shared")),
            description=str(b.get("Description", "")),
        )
        for b in raw.build_cache
    )

    data_root_usage = _usage(local.get("data_root"))
    attributed = local.get("attributed_allocated")
    info = raw.info
    return Inventory(
        taken_at=datetime.fromtimestamp(raw.taken_at, tz=UTC),
        host=raw.host,
        engine_id=engine_identity(info),
        api_version=raw.api_version,
        server_version=str(info.get("ServerVersion", "")),
        data_root=str(info.get("DockerRootDir", "")),
        storage_driver=str(info.get("Driver", "")),
        sizing="local" if raw.local else "engine",
        images=tuple(images),
        containers=tuple(containers),
        volumes=tuple(volumes),
        build_cache=cache,
        layers_size=layers_size,
        data_root_usage=data_root_usage,
        attributed_allocated=int(attributed) if attributed is not None else None,
        warnings=tuple(raw.warnings),
        users_read=raw.users_read,
    )


def _fill_containers(containers: list[Container], local: JSON, df: JSON) -> None:
    """Each container's writable layer's size and its log's files and size: measured here, else the
    engine's figure (the writable layer's), else unknown (None)."""
    local_rw: dict[str, Any] = local.get("containers", {})
    local_logs: dict[str, Any] = local.get("logs", {})
    df_containers = {c["Id"]: c for c in df.get("Containers") or []}
    for c in containers:
        cid = c.id
        if cid in local_rw:
            rw_usage = _usage(local_rw[cid])
            if rw_usage is not None:
                _set(c, "writable_size", rw_usage.apparent)
                _set(c, "writable_allocated", rw_usage.allocated)
        elif cid in df_containers:
            rw = df_containers[cid].get("SizeRw")
            # -1: the engine could not size it (its layer is gone: a removal cut short by an engine killed
            # midway leaves such a container, dead) -- unknown, never a negative number of bytes
            _set(c, "writable_size", rw if isinstance(rw, int) and rw >= 0 else None)
        log_entry = local_logs.get(cid)
        if log_entry:
            _set(c.log, "files", tuple(log_entry.get("files", ())))
            _set(c.log, "size", _usage(log_entry.get("size")))


def _fill_images(
    images: list[Image], layer_users: dict[str, int], local_layers: dict[str, int], df: JSON
) -> None:
    """Each image's bytes in layers other images use too: from the layers measured here when every one of
    its layers was, else the engine's figure, else 0."""
    df_images = {i["Id"]: i for i in df.get("Images") or []}
    for img in images:
        chains = img.layers
        if chains and all(ch in local_layers for ch in chains):
            _set(img, "shared_size", sum(local_layers[ch] for ch in chains if layer_users[ch] > 1))
        elif img.id in df_images and (df_images[img.id].get("SharedSize") or -1) >= 0:
            _set(img, "shared_size", int(df_images[img.id]["SharedSize"]))


def _fill_volumes(volumes: list[Volume], local_vols: JSON, placements: dict[str, JSON], df: JSON) -> None:
    """Each volume's size (measured here, else the engine's figure, else unknown) and where its data lives
    when that was found on disk (a bind device, a symlink's target)."""
    df_volumes = {v["Name"]: v for v in df.get("Volumes") or []}
    for v in volumes:
        name = v.name
        found = local_vols.get(name) or placements.get(name)
        if found:
            if found.get("placement"):
                _set(v, "placement", found["placement"])
            if found.get("data_path"):
                _set(v, "data_path", str(found["data_path"]))
        if name in local_vols:
            _set(v, "size", _usage(local_vols[name].get("size")))
        elif name in df_volumes and (df_volumes[name].get("UsageData") or {}).get("Size", -1) >= 0:
            _set(v, "size", DiskUsage(apparent=int(df_volumes[name]["UsageData"]["Size"])))
