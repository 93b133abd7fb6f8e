"""A snapshot of a Docker host as frozen dataclasses, built purely from raw JSON.

`build_inventory(raw)` takes a RawSnapshot (inspect JSON from the engine plus
the sizes measured on disk, as plain data) and returns an Inventory. It does no
I/O, so it is unit-tested on captured JSON; `collect.read_raw_snapshot` is the
effectful half that gathers a RawSnapshot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tamer.facts import (
    COMPOSE_PROJECT,
    RUNNING_STATES,
    container_summary,
    engine_labels_anonymous,
    is_anonymous_volume,
    is_bind,
    is_dangling,
    parse_time,
)
from tamer.names import is_generated_name
from tamer.sizes import DiskUsage

JSON = dict[str, Any]


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
    # prepare_containers(containers), made while the workers walked (build_inventory's own work on each
    # container record, done ahead); build_inventory makes the same inventory with it or without it
    prepared: PreparedContainers | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> JSON:
        return {k: v for k, v in self.__dict__.items() if k != "prepared"}

    @classmethod
    def from_json(cls, data: JSON) -> RawSnapshot:
        return cls(**data)


# -- the inventory -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mount:
    type: str  # volume, bind, tmpfs
    name: str | None  # volume name for type=volume
    source: str
    destination: str
    rw: bool


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    tags: tuple[str, ...]
    created: datetime | None
    size: int  # all layers, shared ones included (docker's SIZE)
    shared_size: int  # bytes in layers other images use too
    dangling: bool
    containers: tuple[str, ...]  # ids of containers using it, any state
    volume_paths: tuple[str, ...]  # VOLUME paths it declares
    labels: dict[str, str]
    layers: tuple[str, ...]  # chain ids, base first
    owner: str  # "" when users_read is False
    users_read: bool = True  # False: `containers` and `owner` were not read (empty, not "none")

    @property
    def unique_size(self) -> int:
        return self.size - self.shared_size

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def display_name(self) -> str:
        return self.tags[0] if self.tags else f"<none> {self.short_id}"


@dataclass(frozen=True, slots=True)
class LogFile:
    container_id: str
    driver: str
    path: str | None  # main log file, None for drivers that keep nothing on this host
    files: tuple[str, ...]  # the log file and its rotated siblings
    size: DiskUsage | None  # None when unknown (remote engine, unreadable)


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    name: str
    name_generated: bool
    image: str  # as the user gave it
    image_id: str
    state: str  # running, paused, restarting, created, exited, dead, removing
    created: datetime | None
    started: datetime | None
    finished: datetime | None
    exit_code: int | None
    restart_policy: str
    auto_remove: bool
    writable_size: int | None  # bytes in its writable layer (docker's SizeRw)
    writable_allocated: int | None  # blocks its writable layer holds on disk (du), when walked here
    log_driver: str
    log_options: dict[str, str]
    log: LogFile
    mounts: tuple[Mount, ...]
    labels: dict[str, str]
    compose_project: str | None
    owner: str

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


@dataclass(frozen=True, slots=True)
class ImageVolumeOrigin:
    """An anonymous volume created because the image declared `VOLUME path`."""

    image: str
    path: str


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    anonymous: bool
    driver: str
    options: dict[str, str]
    mountpoint: str
    data_path: str  # where the data really lives (bind device, symlink target, or mountpoint)
    placement: str  # "default", "bind" (local driver bind options) or "symlink" (the essay's _data link)
    size: DiskUsage | None  # None when unknown
    created: datetime | None
    users_running: tuple[str, ...]  # container names
    users_stopped: tuple[str, ...]
    origin: ImageVolumeOrigin | None
    labels: dict[str, str]
    owner: str  # "" when users_read is False and no compose project labels it
    # False (a lean `tamer ls volumes`): the users were not read; `referenced` is the engine's own
    # answer (does any container, in any state, refer to it), which is all `orphaned` needs
    users_read: bool = True
    referenced: bool | None = None

    @property
    def orphaned(self) -> bool:
        if not self.users_read:
            return self.referenced is False  # unknown is never called orphaned
        return not self.users_running and not self.users_stopped

    @property
    def in_use(self) -> bool:
        """Has a running user. When the users were not read, any reference counts (the safe side)."""
        if not self.users_read:
            return self.referenced is not False
        return bool(self.users_running)

    @property
    def kind(self) -> str:
        return "anonymous" if self.anonymous else "named"


@dataclass(frozen=True, slots=True)
class BuildCache:
    id: str
    type: str
    size: int
    created: datetime | None
    last_used: datetime | None
    in_use: bool
    shared: bool
    description: str


def engine_identity(info: Mapping[str, Any]) -> str:
    """Which engine `docker info` describes, whatever address reached it: its ID and its data root.

    The ID alone is not enough: engine 20.10 derives it from the host's /etc/docker/key.json, so every
    engine on one host (a second dockerd, a sandbox) shares it; two engines never share a data root.
    Returns "" when the engine reports no ID.
    """
    ident = str(info.get("ID") or "")
    root = str(info.get("DockerRootDir") or "")
    return f"{ident}@{root}" if ident and root else ident


@dataclass(frozen=True)
class Inventory:
    """What is on one Docker host, and what it costs."""

    taken_at: datetime
    host: str
    engine_id: str  # engine_identity(): which engine this is, whatever address reached it
    api_version: str
    server_version: str
    data_root: str
    storage_driver: str
    sizing: str  # "local" (walked the data-root) or "engine" (the engine's own figures)
    images: tuple[Image, ...]
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...]
    build_cache: tuple[BuildCache, ...]
    layers_size: int  # every distinct image layer once (docker df's image total)
    data_root_usage: DiskUsage | None  # the whole data-root, when walked
    attributed_allocated: int | None  # allocated bytes of the data-root we could attribute
    warnings: tuple[str, ...]
    users_read: bool = True  # False: a lean listing; who uses each image or volume was not read

    @property
    def logs(self) -> tuple[LogFile, ...]:
        return tuple(c.log for c in self.containers)

    @property
    def unaccounted(self) -> int | None:
        """Allocated bytes in the data-root that no image, container, volume, log or cache explains."""
        if self.data_root_usage is None or self.attributed_allocated is None:
            return None
        return max(0, self.data_root_usage.allocated - self.attributed_allocated)


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
# id(record) -> (the record, the values of its Container's RECORD_FIELDS)
PreparedContainers = dict[int, tuple[JSON, tuple[Any, ...]]]
# the fields of a Container that its record alone fixes: all but its sizes and its log
RECORD_FIELDS = (
    "id",
    "name",
    "name_generated",
    "image",
    "image_id",
    "state",
    "created",
    "started",
    "finished",
    "exit_code",
    "restart_policy",
    "auto_remove",
    "log_driver",
    "log_options",
    "mounts",
    "labels",
    "compose_project",
    "owner",
)


def _container_fields(cj: JSON) -> tuple[Any, ...]:
    """The values of RECORD_FIELDS for a container's record (a tuple: held by the snapshot until the
    inventory is built, a dict of them was a third of what reading a host holds per container)."""
    host = cj.get("HostConfig") or {}
    log_cfg = host.get("LogConfig") or {}
    summary = container_summary(cj)
    name = summary["name"]
    return (
        cj["Id"],
        name,
        is_generated_name(name),
        summary["image"],
        summary["image_id"],
        summary["state"],
        summary["created"],
        summary["started"],
        summary["finished"],
        summary["exit_code"],
        summary["restart_policy"],
        summary["auto_remove"],
        str(log_cfg.get("Type") or ""),
        {str(k): str(v) for k, v in (log_cfg.get("Config") or {}).items()},
        tuple(
            Mount(
                type=str(m.get("Type", "")),
                name=m.get("Name"),
                source=str(m.get("Source", "")),
                destination=str(m.get("Destination", "")),
                rw=bool(m.get("RW", True)),
            )
            for m in cj.get("Mounts") or []
        ),
        summary["labels"],
        summary["compose_project"],
        summary["owner"],
    )


def prepare_containers(containers: list[JSON]) -> PreparedContainers:
    """build_inventory's work on each container record that needs no size, done ahead (`tamer df` does it
    while its workers walk: about two thirds of build_inventory at 1,003 containers, 15-20 ms, that were
    on the critical path after the walk). Each entry holds its record: it is used only for that very
    record (an `is` test), so it can never stand for another."""
    return {id(cj): (cj, _container_fields(cj)) for cj in containers}


def build_inventory(raw: RawSnapshot) -> Inventory:
    """Turn a RawSnapshot into an Inventory. Pure: same input, same output (raw.prepared, when there,
    is that input's own prepare_containers, so it changes nothing but the time)."""
    local = raw.local or {}
    df = raw.engine_df or {}
    warnings = list(raw.warnings)

    df_containers = {c["Id"]: c for c in df.get("Containers") or []}
    df_volumes = {v["Name"]: v for v in df.get("Volumes") or []}
    df_images = {i["Id"]: i for i in df.get("Images") or []}
    local_rw: dict[str, Any] = local.get("containers", {})
    local_vols: dict[str, Any] = local.get("volumes", {})
    local_logs: dict[str, Any] = local.get("logs", {})
    local_layers: dict[str, int] = local.get("layers", {})

    # containers first: images and volumes refer to them
    images_by_id = {(i.get("inspect") or i["list"])["Id"]: i for i in raw.images}
    containers: list[Container] = []
    prepared = raw.prepared or {}
    for cj in raw.containers:
        cid = cj["Id"]
        ready = prepared.get(id(cj))
        fields = dict(
            zip(
                RECORD_FIELDS,
                ready[1] if ready is not None and ready[0] is cj else _container_fields(cj),
                strict=True,
            )
        )
        rw: int | None
        rw_allocated: int | None = None
        if cid in local_rw:
            rw_usage = _usage(local_rw[cid])
            rw = rw_usage.apparent if rw_usage else None
            rw_allocated = rw_usage.allocated if rw_usage else None
        elif cid in df_containers:
            rw = df_containers[cid].get("SizeRw")
        else:
            rw = None
        log_entry = local_logs.get(cid) or {}
        log = LogFile(
            container_id=cid,
            driver=fields["log_driver"],
            path=cj.get("LogPath") or None,
            files=tuple(log_entry.get("files", ())),
            size=_usage(log_entry.get("size")) if log_entry else None,
        )
        containers.append(Container(**fields, writable_size=rw, writable_allocated=rw_allocated, log=log))
    by_id = {c.id: c for c in containers}

    # images: sizes from the local layer store when we read it, else the engine's df
    users_of_image: dict[str, list[str]] = defaultdict(list)
    for c in containers:
        users_of_image[c.image_id].append(c.id)
    layer_users: dict[str, int] = defaultdict(int)
    for entry in raw.images:
        for chain in entry.get("chain_ids", ()):
            layer_users[chain] += 1
    images: list[Image] = []
    for entry in raw.images:
        listed = entry["list"]
        inspect = entry.get("inspect") or {}  # None in a lean listing: the list entry says enough
        iid = str(inspect.get("Id") or listed["Id"])
        chains = tuple(entry.get("chain_ids", ()))
        size = int(listed.get("Size") or inspect.get("Size") or 0)
        if chains and all(ch in local_layers for ch in chains):
            shared = sum(local_layers[ch] for ch in chains if layer_users[ch] > 1)
        elif iid in df_images and (df_images[iid].get("SharedSize") or -1) >= 0:
            shared = int(df_images[iid]["SharedSize"])
        else:
            shared = 0
        users = tuple(users_of_image.get(iid, ()))
        owners = {by_id[u].owner for u in users}
        tags = [t for t in (listed.get("RepoTags") or inspect.get("RepoTags") or []) if t != "<none>:<none>"]
        images.append(
            Image(
                id=iid,
                tags=tuple(tags),
                created=parse_time(inspect.get("Created") or listed.get("Created")),
                size=size,
                shared_size=shared,
                dangling=is_dangling(tags),
                containers=users,
                volume_paths=tuple(sorted(((inspect.get("Config") or {}).get("Volumes") or {}).keys())),
                labels=_labels(inspect.get("Config")) if inspect else _labels(listed),
                layers=chains,
                owner=""
                if not raw.users_read
                else owners.pop()
                if len(owners) == 1
                else ("shared" if owners else "unused"),
                users_read=raw.users_read,
            )
        )
    if local_layers:
        layers_size = sum(local_layers.values())
    elif df:
        layers_size = int(df.get("LayersSize") or 0)
    else:
        layers_size = sum(i.size for i in images)

    # volumes: users, origin, real location, size
    users_of_volume: dict[str, list[tuple[Container, Mount]]] = defaultdict(list)
    for c in containers:
        for m in c.mounts:
            if m.type == "volume" and m.name:
                users_of_volume[m.name].append((c, m))
    volumes: list[Volume] = []
    dangling = None if raw.dangling_volumes is None else set(raw.dangling_volumes)
    for v in raw.volumes:
        name = v["Name"]
        labels = dict(v.get("Labels") or {})
        options = {str(k): str(val) for k, val in (v.get("Options") or {}).items()}
        anonymous = is_anonymous_volume(
            name, labels, engine_labels_them=engine_labels_anonymous(raw.api_version)
        )
        placement_info = local_vols.get(name) or (raw.placements or {}).get(name) or {}
        placement = placement_info.get("placement") or ("bind" if is_bind(options) else "default")
        data_path = (
            placement_info.get("data_path")
            or (options.get("device") if is_bind(options) else None)
            or v.get("Mountpoint", "")
        )
        vol_size: DiskUsage | None
        if name in local_vols:
            vol_size = _usage(local_vols[name].get("size"))
        elif name in df_volumes and (df_volumes[name].get("UsageData") or {}).get("Size", -1) >= 0:
            vol_size = DiskUsage(apparent=int(df_volumes[name]["UsageData"]["Size"]))
        else:
            vol_size = None
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
        elif not raw.users_read:
            owner = ""
        elif len(user_owners) == 1:
            owner = user_owners.pop()
        else:
            owner = "shared" if user_owners else "unowned"
        volumes.append(
            Volume(
                name=name,
                anonymous=anonymous,
                driver=str(v.get("Driver", "")),
                options=options,
                mountpoint=str(v.get("Mountpoint", "")),
                data_path=str(data_path),
                placement=placement,
                size=vol_size,
                created=parse_time(v.get("CreatedAt")),
                users_running=tuple(sorted({c.name for c, _ in vol_users if c.running})),
                users_stopped=tuple(sorted({c.name for c, _ in vol_users if not c.running})),
                origin=origin,
                labels=labels,
                owner=owner,
                users_read=raw.users_read,
                referenced=None if dangling is None else name not in dangling,
            )
        )

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
        warnings=tuple(warnings),
        users_read=raw.users_read,
    )
