"""Facts read off the engine's JSON, shared by the inventory and the lean listings. Light to import.

`tamer ls` without --users or --size renders straight from the engine's answers (tamer.quick_ls)
without building the inventory; both must classify a container, an image or a volume the same
way, so the rules live here, once. All are pure but two, which look at this machine: where a
local volume's data lives (local_placement resolves symlinks) and whether the engine's data-root
can be read here (why_not_local).
"""

from __future__ import annotations

import os

from tamer.datetimes import UTC, datetime
from tamer.patterns import LazyPattern

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms, a fifth of a `docker images`
if TYPE_CHECKING:
    from typing import Any

COMPOSE_PROJECT = "com.docker.compose.project"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # set by engines >= 23 on anonymous volumes
RUNNING_STATES = frozenset({"running", "paused", "restarting"})
_HEX = frozenset("0123456789abcdef")
_ZERO_TIME = "0001-01-01T00:00:00Z"
_TIMESTAMP = LazyPattern(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def parse_time(value: Any) -> datetime | None:
    """Docker timestamps: RFC 3339 with nanoseconds, unix seconds, or the zero time. None when unknown:
    also a time datetime cannot hold (Go's years run from 0, datetime's from 1: an image whose config says
    year 0 is listed as Created -62167219200), which must not end the command that lists it."""
    if value in (None, "", 0, _ZERO_TIME) or isinstance(value, bool):
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, tz=UTC)
        text = str(value)
        if text.startswith("0001-01-01"):
            return None
        m = _TIMESTAMP.match(text)
        if not m:
            return None
        frac = (m.group(2) or ".0")[:7]
        tz = m.group(3) or "Z"
        return datetime.fromisoformat(m.group(1) + frac + ("+00:00" if tz == "Z" else tz))
    except (ValueError, OverflowError, OSError):  # out of datetime's range (or NaN): unknown
        return None


def is_dangling(tags: list[str] | None) -> bool:
    return not tags or all(t == "<none>:<none>" for t in tags)


def is_anonymous_volume(name: str, labels: dict[str, str], *, engine_labels_them: bool = False) -> bool:
    """Anonymous volumes carry the engine's label (>= 23) or, on older engines, a bare 64-hex name.

    engine_labels_them: the engine labels every anonymous volume it makes (API 1.42, engine 23, and later),
    so an unlabeled one was named by someone (`docker volume create $(sha256sum ...)`), whatever its name:
    named volumes never go without a rule and a backup. (One an older engine made before an upgrade then
    counts as named too: kept, the safe side.)
    """
    if ANONYMOUS_LABEL in labels:
        return True
    if engine_labels_them:
        return False
    # 64 lowercase hex digits (no `re`: it is the lean listings' one pattern per volume)
    return len(name) == 64 and _HEX.issuperset(name) and COMPOSE_PROJECT not in labels


def engine_labels_anonymous(api_version: str) -> bool:
    """Whether an engine speaking `api_version` labels the anonymous volumes it makes (API >= 1.42)."""
    try:
        major, minor = (int(x) for x in api_version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (1, 42)


def is_bind(options: dict[str, str]) -> bool:
    return "bind" in options.get("o", "").split(",") and bool(options.get("device"))


def local_placement(options: dict[str, str], mountpoint: str) -> tuple[str, str]:
    """Where a local-driver volume's data lives on this host: ("bind", its device), ("symlink", the
    real folder: the essay's link planted in the volumes folder) or ("default", the mountpoint).

    The one reading of it (sizing, `tamer ls volumes`, `tamer volume ls` and every volume operation
    use it); not pure: it resolves the mountpoint's symlinks on this host, so only a caller that
    reaches the engine on this machine may ask.
    """
    if is_bind(options):
        return "bind", options["device"]
    real = os.path.realpath(mountpoint)
    return ("symlink" if real != os.path.abspath(mountpoint) else "default"), real


def container_summary(cj: dict[str, Any]) -> dict[str, Any]:
    """What an inspect-shaped container record says of itself, by the rules the inventory and the lean
    `tamer ls containers` table share: name (no leading "/"), the image as the user gave it, state,
    times, exit code, restart policy, --rm, labels and owner (its compose project, else itself)."""
    state = cj.get("State") or {}
    host = cj.get("HostConfig") or {}
    labels = {str(k): str(v) for k, v in ((cj.get("Config") or {}).get("Labels") or {}).items()}
    project = labels.get(COMPOSE_PROJECT)
    name = str(cj.get("Name", "")).lstrip("/")
    exit_code = state.get("ExitCode")
    return {
        "name": name,
        "image": str((cj.get("Config") or {}).get("Image") or cj.get("Image", "")),
        "image_id": str(cj.get("Image", "")),
        "state": str(state.get("Status", "unknown")),
        "created": parse_time(cj.get("Created")),
        "started": parse_time(state.get("StartedAt")),
        "finished": parse_time(state.get("FinishedAt")),
        "exit_code": int(exit_code) if exit_code is not None else None,
        "restart_policy": str((host.get("RestartPolicy") or {}).get("Name") or "no"),
        "auto_remove": bool(host.get("AutoRemove")),
        "labels": labels,
        "compose_project": project,
        "owner": f"project:{project}" if project else f"container:{name}",
    }


def why_not_local(host: str, data_root: str, engine_id: str = "") -> str | None:
    """None when the data-root can be walked here; else why not (shown to the user).

    `engine_id`: the engine's ID (its info's "ID"). A unix socket does not make the engine's data-root
    this machine's folder of that name: Docker Desktop's engine runs in a VM behind a socket in the
    user's home and says /var/lib/docker, which here may be another engine's (docker-ce beside it). An
    engine since 23 keeps its ID in <data-root>/engine-id; one that names another engine is not walked."""
    if not host.startswith("unix://"):
        return f"the engine at {host} is remote, so its data-root is not on this machine"
    if not data_root:
        return "the engine did not say where its data-root is"
    try:
        os.listdir(data_root)
        os.listdir(os.path.join(data_root, "volumes"))
    except FileNotFoundError:
        return f"the engine's data-root {data_root} does not exist on this machine (engine in a VM or container?)"
    except PermissionError:
        return f"the engine's data-root {data_root} is not readable by this user (run as root for the fast, complete path)"
    except OSError as exc:
        return f"the engine's data-root {data_root} could not be read: {exc}"
    return another_engines_folder(host, data_root, engine_id)


def another_engines_folder(host: str, data_root: str, engine_id: str) -> str | None:
    """Why the folder `data_root` on this machine is not the data-root of the engine `engine_id` at `host`
    (its <data-root>/engine-id names another engine), else None (also when there is no such file)."""
    said = _engine_id_in(data_root)
    if said and engine_id and said != engine_id:
        return (
            f"the folder {data_root} on this machine belongs to another engine (its engine-id says {said}, "
            f"the engine at {host} is {engine_id}): that engine keeps its data elsewhere (in a VM, e.g. "
            "Docker Desktop, or another mount namespace)"
        )
    return None


def _engine_id_in(data_root: str) -> str:
    """What <data-root>/engine-id says ("" when there is none: engines before 23 keep none)."""
    try:
        with open(os.path.join(data_root, "engine-id"), "rb") as fh:
            return fh.read(256).decode("utf-8", "replace").strip()
    except OSError:
        return ""
