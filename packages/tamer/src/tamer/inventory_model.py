"""What an Inventory is made of: frozen dataclasses, one per kind of thing on a Docker host.

The values only; tamer.inventory builds them from what was read (build_inventory) and re-exports them,
so `from tamer.inventory import Container` is where callers find them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tamer.facts import RUNNING_STATES
from tamer.sizes import DiskUsage


# -- the inventory -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mount:
    """One mount of a container: a named or anonymous volume, a bind mount or a tmpfs."""

    type: str  # volume, bind, tmpfs
    name: str | None  # volume name for type=volume
    source: str
    destination: str
    rw: bool


@dataclass(frozen=True, slots=True)
class Image:
    """An image with its tags, what its layers cost and who uses it."""

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
    """A container's log as its driver keeps it on this host: the file, its rotated siblings, their size."""

    container_id: str
    driver: str
    path: str | None  # main log file, None for drivers that keep nothing on this host
    files: tuple[str, ...]  # the log file and its rotated siblings
    size: DiskUsage | None  # None when unknown (remote engine, unreadable)


@dataclass(frozen=True, slots=True)
class Container:
    """A container as its record says, with what its writable layer and log cost and who owns it."""

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
    """A volume: where its data lives, what it holds, who uses it and who owns it."""

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
    """One build cache record, as the engine accounts for it."""

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
