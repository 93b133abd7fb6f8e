"""The ledger: figures that cannot change, remembered between runs so a warm `tamer df` skips them.

Three kinds of entries, each keyed by an id that names immutable content:

- image layers, by the layer's folder (its cache id) and chain id: what the walker measured
  in the folder (apparent, allocated, files). A committed layer is never written again;
- containers' init layers (`inits`), by the folder's name (the container's mount id + "-init")
  and the container's id: what the walker measured there. The engine writes an init layer once,
  when it creates the container (the placeholders /etc/hosts, /etc/resolv.conf, /dev/console ...
  that the container's own files are later mounted over), and from then on it is a read-only
  lower layer of the container's root: overlayfs writes only to the upper (writable) layer,
  `docker cp` and `docker commit` go through the container's mount or read its upper layer, and a
  restart mounts the same layers again. It goes with the container. On a host of many small
  containers it is about half of what a walk would list;
- image inspects, by image id (the digest of the image's config): the fields of the inspect
  that tamer reads (created, size, declared volumes, labels, layers), never tags, which move.

Nothing else is kept: a volume's folder mtime does not move when a file in it grows, and
`docker cp` writes into a stopped container's layer, so volumes and writable layers are walked
on every run. The ledger is a cache: deleting it changes no figure, only the time.

Limits on what is reused (checked every time an entry is read; a failed check re-measures):
- an entry is at most MAX_AGE_S old (and never from the future: a clock set back re-measures);
- a layer entry is used only when its folder still has the inode and ctime it had when it was
  measured (a folder replaced, or whose entries were added or removed, is measured again), and
  only for the same chain id (an init layer: the same container id);
- an image entry is used only for the same image id on the same engine.
One file per engine (its ID and data-root) in the state dir, `ledger/<hash>.json`, written whole
to a temporary file and renamed, so a reader never sees half of it. A damaged, foreign or newer
file is ignored with a warning (every figure is then measured afresh) and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tamer.regular_files import read_regular
from tamer.sizes import DiskUsage

JSON = dict[str, Any]
LEDGER_VERSION = 1
# The longest a remembered figure is reused before it is measured again (one day): the content is
# immutable, so this only bounds how long a change made behind the engine's back could go unseen.
MAX_AGE_S = 24 * 3600.0
TMP_PREFIX = ".ledger-"
STALE_TMP_S = 600.0  # a save takes milliseconds: a temporary file this old was left by a killed run


def ledger_path(engine_id: str, state: Path) -> Path:
    """Where the ledger of the engine `engine_id` (inventory.engine_identity) lives under `state`."""
    digest = hashlib.sha256(engine_id.encode()).hexdigest()[:24]
    return state / "ledger" / f"{digest}.json"


def lasting_inspect(inspect: JSON) -> JSON:
    """The part of an image inspect that its id fixes for good: what tamer reads, without tags.

    Used for every image, fresh or remembered, so a warm run and a cold one build the same inventory.
    """
    config = inspect.get("Config") or {}
    return {
        "Id": inspect.get("Id"),
        "Created": inspect.get("Created"),
        "Size": inspect.get("Size"),
        "Config": {"Volumes": config.get("Volumes"), "Labels": config.get("Labels")},
        "RootFS": {"Layers": list((inspect.get("RootFS") or {}).get("Layers") or [])},
    }


@dataclass
class Ledger:
    """The remembered figures of one engine; `path` None: nothing is read or saved (no state dir).

    Read entries with `layer()`, `init_layer()` and `image()`, add new ones with `remember_layer()`,
    `remember_init_layer()` and `remember_image()`, then `save()`; entries not touched since
    `open_ledger` are dropped on save for the kinds the caller says it saw in full (init layers go
    with image layers: `saw_all_layers`).
    """

    path: Path | None
    engine: str
    now: float
    layers: dict[str, JSON] = field(default_factory=dict)
    images: dict[str, JSON] = field(default_factory=dict)
    inits: dict[str, JSON] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _used_layers: set[str] = field(default_factory=set)
    _used_images: set[str] = field(default_factory=set)
    _used_inits: set[str] = field(default_factory=set)
    _dirty: bool = False
    _bad_entries: int = 0

    def _fresh(self, at: float) -> bool:
        return 0 <= self.now - at <= MAX_AGE_S

    def layer(self, cache_id: str, chain: str, folder: str) -> DiskUsage | None:
        """The remembered usage of a layer folder, or None when it must be measured."""
        return self._usage(self.layers, self._used_layers, cache_id, chain, folder)

    def init_layer(self, name: str, container_id: str, folder: str) -> DiskUsage | None:
        """The remembered usage of a container's init layer (folder `name`, "MOUNTID-init"), or None."""
        return self._usage(self.inits, self._used_inits, name, container_id, folder)

    def _usage(
        self, table: dict[str, JSON], used: set[str], key: str, chain: str, folder: str
    ) -> DiskUsage | None:
        entry = table.get(key)
        if entry is None:
            return None
        usage = entry.get("usage") if isinstance(entry, dict) else None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("chain"), str)
            and _is_time(entry.get("at"))
            and isinstance(usage, list)
            and len(usage) == 3
            and _is_count(usage[0])  # not all() over a generator: checked for every entry of a warm df
            and _is_count(usage[1])
            and _is_count(usage[2])
            and isinstance(entry.get("dir"), list)
        ):
            self._bad_entries += 1
            return None
        assert isinstance(usage, list)
        if entry["chain"] != chain or not self._fresh(entry["at"]):
            return None
        if self.folder_stamp(folder) != entry["dir"]:
            return None
        used.add(key)
        return DiskUsage(apparent=usage[0], allocated=usage[1], files=usage[2])

    def folder_stamp(self, folder: str) -> list[int] | None:
        """What `layer()` checks a folder against; take it before measuring the folder."""
        try:
            st = os.stat(folder)
        except OSError:
            return None
        return [st.st_ino, st.st_ctime_ns]

    def remember_layer(
        self, cache_id: str, chain: str, folder: str, stamp: list[int] | None, usage: DiskUsage
    ) -> None:
        """Keep a layer's measured usage. `stamp`: folder_stamp() taken before the walk; only a complete
        measurement of a folder that stayed put meanwhile is kept."""
        self._remember(self.layers, self._used_layers, cache_id, chain, folder, stamp, usage)

    def remember_init_layer(
        self, name: str, container_id: str, folder: str, stamp: list[int] | None, usage: DiskUsage
    ) -> None:
        """Keep a container's init layer's measured usage (as remember_layer)."""
        self._remember(self.inits, self._used_inits, name, container_id, folder, stamp, usage)

    def _remember(
        self,
        table: dict[str, JSON],
        used: set[str],
        key: str,
        chain: str,
        folder: str,
        stamp: list[int] | None,
        usage: DiskUsage,
    ) -> None:
        if stamp is None or usage.vanished or usage.unreadable or self.folder_stamp(folder) != stamp:
            return
        table[key] = {
            "chain": chain,
            "at": self.now,
            "dir": stamp,
            "usage": [usage.apparent, usage.allocated, usage.files],
        }
        used.add(key)
        self._dirty = True

    def image(self, image_id: str) -> JSON | None:
        """The remembered lasting inspect of an image, or None when it must be inspected."""
        entry = self.images.get(image_id)
        if entry is None:
            return None
        inspect = entry.get("inspect") if isinstance(entry, dict) else None
        if not (isinstance(inspect, dict) and _is_time(entry.get("at")) and inspect.get("Id") == image_id):
            self._bad_entries += 1
            return None
        if not self._fresh(entry["at"]):
            return None
        self._used_images.add(image_id)
        return dict(inspect)

    def remember_image(self, image_id: str, inspect: JSON) -> None:
        if inspect.get("Id") != image_id:
            return
        self.images[image_id] = {"at": self.now, "inspect": inspect}
        self._used_images.add(image_id)
        self._dirty = True

    def save(self, *, saw_all_layers: bool = False, saw_all_images: bool = False) -> None:
        """Write the ledger when it changed; failures become a warning (the figures stay right)."""
        if saw_all_layers and set(self.layers) - self._used_layers:
            self.layers = {k: v for k, v in self.layers.items() if k in self._used_layers}
            self._dirty = True
        if saw_all_layers and set(self.inits) - self._used_inits:
            self.inits = {k: v for k, v in self.inits.items() if k in self._used_inits}
            self._dirty = True
        if saw_all_images and set(self.images) - self._used_images:
            self.images = {k: v for k, v in self.images.items() if k in self._used_images}
            self._dirty = True
        if self._bad_entries:
            self.warnings.append(
                f"tamer's ledger {self.path} had {self._bad_entries} damaged entries; they were ignored "
                "and measured afresh (the ledger is only a cache: no figure came from them)"
            )
            self._bad_entries = 0
            self._dirty = True
        if self.path is None or not self._dirty:
            return
        body = {
            "version": LEDGER_VERSION,
            "engine": self.engine,
            "layers": self.layers,
            "images": self.images,
            "inits": self.inits,
        }
        import tempfile  # only when saving: it imports random, which a warm read never needs

        folder = self.path.parent
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(body, fh, separators=(",", ":"))
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            self.warnings.append(
                f"tamer's ledger could not be saved in {folder} ({exc.strerror or exc}); the "
                "figures are right, the next run measures image layers again; check that folder"
            )
            return
        self._dirty = False
        _remove_stale_temporaries(folder, self.now)


def _remove_stale_temporaries(folder: Path, now: float) -> None:
    """Temporary files of saves killed midway (kill -9) would pile up; an old one is nobody's any more."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(TMP_PREFIX) and now - entry.stat().st_mtime > STALE_TMP_S:
                    os.unlink(entry.path)
    except OSError:
        pass  # tidying only


def open_ledger(engine_id: str, *, now: float | None = None, state: Path | None = None) -> Ledger:
    """The ledger of the engine `engine_id`, empty when there is none (or it cannot be used: then
    `warnings` says why and nothing is saved when the state dir itself is unusable).

    Example:
        >>> led = open_ledger("ID@/var/lib/docker", state=Path("/nonexistent/state"))  # doctest: +SKIP
        >>> led.image("sha256:...") is None  # doctest: +SKIP
        True
    """
    moment = time.time() if now is None else now
    if state is None:
        from tamer.state import StateDirUnusable, state_dir

        try:
            state = state_dir()
        except StateDirUnusable as exc:
            return Ledger(None, engine_id, moment, warnings=[f"no ledger: {exc}; every figure was measured"])
    path = ledger_path(engine_id, state)
    ledger = Ledger(path, engine_id, moment)
    try:
        data = json.loads(_read_regular(path))
    except (FileNotFoundError, NotADirectoryError):
        return ledger  # none yet (saving says so if the folder cannot be made)
    except (OSError, ValueError) as exc:
        ledger.warnings.append(_damaged(path, str(exc)))
        ledger._dirty = True
        return ledger
    problem = None
    if not isinstance(data, dict):
        problem = "not a JSON object"
    elif data.get("version") != LEDGER_VERSION:
        problem = f"version {data.get('version')!r}, this tamer reads version {LEDGER_VERSION}"
    elif data.get("engine") != engine_id:
        problem = "it belongs to another engine"
    elif not isinstance(data.get("layers"), dict) or not isinstance(data.get("images"), dict):
        problem = "its layers or images are missing"
    elif not isinstance(data.get("inits", {}), dict):  # absent in a ledger an older tamer wrote
        problem = "its init layers are not an object"
    if problem:
        ledger.warnings.append(_damaged(path, problem))
        ledger._dirty = True
        return ledger
    ledger.layers = data["layers"]
    ledger.images = data["images"]
    ledger.inits = data.get("inits", {})
    return ledger


def _is_count(x: Any) -> bool:
    # below 2**63: no file system counts more bytes or files; a bigger number is damage, not a figure
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < _COUNT_LIMIT


def _is_time(x: Any) -> bool:
    """A finite number of seconds: json reads NaN, Infinity and 400-digit integers, and `now - at` with
    such an integer raises OverflowError, which would end the command instead of ignoring the entry."""
    if not isinstance(x, _NUMBERS) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


_COUNT_LIMIT = 1 << 63


_NUMBERS = (int, float)


MAX_FILE_BYTES = 256 << 20  # some 100 times the ledger of a host of 10,000 containers and 1,000 images


def _read_regular(path: Path) -> bytes:
    """The bytes of the regular file at `path` (not through a symlink, at most MAX_FILE_BYTES), else OSError.

    Only this user can put something there (the state dir is checked), but what they put is not always a
    ledger: a FIFO would block the open (and the command) forever, /dev/zero or a symlink to it would be
    read until memory ran out. save() writes a regular file in its place."""
    raw = read_regular(path, MAX_FILE_BYTES, follow_links=False)
    if raw is None:
        raise OSError(f"more than the {MAX_FILE_BYTES} bytes a ledger may hold")
    return raw


def _damaged(path: Path, why: str) -> str:
    return (
        f"tamer's ledger {path} could not be used ({why}); it was ignored and every figure measured "
        "afresh (it is only a cache); it is rewritten now"
    )
