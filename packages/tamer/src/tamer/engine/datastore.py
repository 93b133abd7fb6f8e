"""The fast local path: container details from the engine's own records on disk.

Inspecting 1,000 containers costs 1,000 API round trips; when the data-root is
readable here, the same details are in two small JSON files per container
(config.v2.json, hostconfig.json) plus the layer store's mount-id. We combine
them with the container *list* (authoritative for state, names, mounts) into
inspect-shaped dicts. Anything missing or unexpected (another engine version,
a container being removed) returns None for that container, and the caller
inspects it through the API instead: this path may be fast, never wrong.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # not typing's (some 3 ms): imported before the walk's workers are forked
if TYPE_CHECKING:
    from typing import Any

    JSON = dict[str, Any]
    Records = dict[str, tuple[JSON | None, JSON | None]]


_CHUNK = 1 << 16


def read_small(path: str) -> bytes | None:
    """A small file's bytes, or None when it cannot be read. Three system calls (open, read, close):
    Python's open() adds a stat, an ioctl and a seek, a fifth of reading 3,000 records."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _CHUNK)
        if len(data) == _CHUNK:  # a larger file: the rest of it
            parts = [data]
            while more := os.read(fd, _CHUNK):
                parts.append(more)
            data = b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data


def _read_json(path: str) -> JSON | None:
    raw = read_small(path)
    return None if raw is None else _parse_json(raw)


def _parse_json(raw: bytes) -> JSON | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# What tamer reads of a container's records; the rest (environment, networks, devices, ...) is
# dropped as soon as a file is parsed: at 10,000 containers it was most of a listing's memory.
HOST_KEYS = ("RestartPolicy", "AutoRemove", "LogConfig")


def _slim_config(config: JSON | None) -> JSON | None:
    if config is None:
        return None
    inner = config.get("Config")
    return {
        "ID": config.get("ID"),
        "Name": config.get("Name"),
        "Created": config.get("Created"),
        "Image": config.get("Image"),
        "State": config.get("State"),
        "LogPath": config.get("LogPath"),
        "Config": {"Image": inner.get("Image"), "Labels": inner.get("Labels")}
        if isinstance(inner, dict)
        else {},
    }


def _slim_host(host: JSON | None) -> JSON | None:
    return None if host is None else {k: host[k] for k in HOST_KEYS if k in host}


def read_records(data_root: str) -> Records:
    """Every container folder's (config.v2.json, hostconfig.json), parsed; read ahead of the list.

    Meant to run on a thread while the engine assembles its container list (a wait on the
    socket), so the two overlap. Only the list says which containers exist: a record here
    is used only for a container the list names, and one the list names but this read
    missed (created meanwhile) is read again on its own.
    """
    folder = os.path.join(data_root, "containers")
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    return {
        cid: (
            _slim_config(_read_json(os.path.join(folder, cid, "config.v2.json"))),
            _slim_host(_read_json(os.path.join(folder, cid, "hostconfig.json"))),
        )
        for cid in names
    }


def read_mount_id(data_root: str, driver: str, cid: str) -> str | None:
    """The layer store's name for a container's writable layer (its folder under data-root/DRIVER), or
    None when it cannot be read (a container being created or removed, another store)."""
    raw = read_small(os.path.join(data_root, "image", driver, "layerdb", "mounts", cid, "mount-id"))
    if raw is None:
        return None
    try:
        return raw.decode().strip()
    except UnicodeDecodeError:
        return None


def read_mount_ids(data_root: str, driver: str) -> dict[str, str]:
    """read_mount_id of every container the layer store has, read ahead of the container list (as
    read_records is): only the list says which containers exist, and one it names that is missing
    here is read again on its own."""
    folder = os.path.join(data_root, "image", driver, "layerdb", "mounts")
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    found = {cid: read_mount_id(data_root, driver, cid) for cid in names}
    return {cid: mount for cid, mount in found.items() if mount is not None}


def upper_dir(data_root: str, driver: str, mount_id: str) -> str | None:
    """Where a writable layer's files are (overlay's upper folder), for the drivers tamer knows."""
    if mount_id and driver in ("overlay2", "overlay"):
        return os.path.join(data_root, driver, mount_id, "diff")
    return None


class Shared:
    """Equal parts of many containers' records, held once: the host settings tamer reads (most
    containers of a host share them), the state's zero times, image ids and references, states.
    At 10,000 containers each held its own copy, some 10 MB. The parts handed out are shared between
    containers, so the records built with one are read-only (as every reader of a record treats it).

    Example:
        >>> shared = Shared()
        >>> a, b = shared.part({"Type": "json-file"}), shared.part({"Type": "json-file"})
        >>> a is b
        True
    """

    # a file's bytes -> its host settings, for the first few distinct files (most containers of a host
    # were created alike, so their hostconfig.json files are byte for byte equal): parsing one was some
    # 7 us of a container's read; bounded, so a host of all-different settings holds no more than this
    HOSTS_REMEMBERED = 64

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}
        self._parts: dict[str, Any] = {}
        self._hosts: dict[bytes, JSON] = {}

    def host(self, raw: bytes | None) -> JSON | None:
        """_slim_host of the JSON in `raw` (None when unreadable), parsed once for equal bytes."""
        if raw is None:
            return None
        known = self._hosts.get(raw)
        if known is not None:
            return known
        host = _slim_host(_parse_json(raw))
        if host is not None and len(self._hosts) < self.HOSTS_REMEMBERED:
            self._hosts[raw] = host
        return host

    def part(self, value: Any) -> Any:
        """`value`, or one handed out before that prints the same as JSON (so True and 1, 1 and 1.0, or
        dicts with their keys in another order, are told apart)."""
        if isinstance(value, str):
            return self._strings.setdefault(value, value)
        return self._parts.setdefault(_as_json(value), value)


# the key of a part: its JSON text (json's C encoder, a couple of microseconds for a container's settings)
_as_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def container_from_datastore(
    data_root: str,
    driver: str,
    listed: JSON,
    *,
    records: Records | None = None,
    layer: bool = True,
    mount_ids: dict[str, str] | None = None,
    shared: Shared | None = None,
) -> JSON | None:
    """An inspect-shaped dict for one listed container, or None to fall back to the API.

    `records`: what read_records found (read again here if it lacks this container).
    `layer` False: skip the writable layer's location (GraphDriver), which only sizing uses.
    `mount_ids`: what read_mount_ids found (read again here if it lacks this container).
    `shared`: the parts equal to another container's are taken from it (see Shared); the record is
    then read-only.
    """
    cid = listed.get("Id")
    if not isinstance(cid, str):
        return None
    config, host = (records or {}).get(cid) or (None, None)
    if config is None or host is None or config.get("ID") != cid:
        folder = os.path.join(data_root, "containers", cid)
        config = _slim_config(_read_json(os.path.join(folder, "config.v2.json")))
        host_file = os.path.join(folder, "hostconfig.json")
        host = shared.host(read_small(host_file)) if shared is not None else _slim_host(_read_json(host_file))
    if config is None or host is None or config.get("ID") != cid:
        return None
    state = config.get("State")
    if not isinstance(state, dict) or "ExitCode" not in state:
        return None
    upper = None
    if layer:
        mount_id = (mount_ids or {}).get(cid) or read_mount_id(data_root, driver, cid)
        if mount_id is None:
            return None
        upper = upper_dir(data_root, driver, mount_id)
    names = listed.get("Names") or [config.get("Name", "")]
    share = shared.part if shared is not None else _itself
    return {
        "Id": cid,
        "Name": names[0] if names else "",
        "Created": config.get("Created") or listed.get("Created"),
        "Image": share(listed.get("ImageID") or config.get("Image")),
        "State": {
            "Status": share(listed.get("State")),
            "ExitCode": state.get("ExitCode"),
            "StartedAt": share(state.get("StartedAt")),
            "FinishedAt": share(state.get("FinishedAt")),
        },
        "HostConfig": share(host),
        "Config": {
            "Image": share((config.get("Config") or {}).get("Image") or listed.get("Image")),
            "Labels": listed.get("Labels") or (config.get("Config") or {}).get("Labels") or {},
        },
        "LogPath": config.get("LogPath", ""),
        "Mounts": listed.get("Mounts") or [],
        "GraphDriver": {"Name": driver, "Data": {"UpperDir": upper}}
        if upper
        else share({"Name": driver, "Data": {}}),
        "_source": "datastore",
    }


def _itself(value: Any) -> Any:
    return value
