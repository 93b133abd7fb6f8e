"""What `tamer compose check` asks the engine: data-root, log driver, the images' VOLUMEs, volume names.

Images are inspected, never pulled: one that is not on the engine is reported as such.
The daemon's default log-opts are not in `docker info`; they are read from the daemon.json the
engine uses by default, and only when that file's log driver is the one `docker info` reports
(otherwise the engine is not using it, and they stay unknown).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tamer.compose.rules import EngineFacts
from tamer.errors import ObjectNotFound

if TYPE_CHECKING:
    from tamer.engine import Engine

DAEMON_JSON = "/etc/docker/daemon.json"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_VOLUME_LABEL = "com.docker.compose.volume"


def read_facts(engine: Engine, images: Iterable[str]) -> EngineFacts:
    info = engine.info()
    data_root = str(info.get("DockerRootDir") or "/var/lib/docker")
    driver = str(info.get("LoggingDriver") or "json-file")
    found: dict[str, dict[str, Any] | None] = {}
    for ref in dict.fromkeys(images):
        try:
            inspect = engine.inspect_image(ref)
        except ObjectNotFound:
            found[ref] = None
            continue
        found[ref] = image_facts(inspect)
    volumes = engine.volumes()
    names = frozenset(str(v.get("Name")) for v in volumes)
    return EngineFacts(
        data_root,
        driver,
        daemon_log_options(engine.where, info, driver),
        found,
        names,
        compose_owners(volumes),
    )


def compose_owners(volumes: Iterable[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Volume name -> (project, key) for the volumes Compose made (its labels say which project's
    top-level volume each is)."""
    owners = {}
    for v in volumes:
        labels = v.get("Labels") or {}
        project, key = labels.get(COMPOSE_PROJECT_LABEL), labels.get(COMPOSE_VOLUME_LABEL)
        if isinstance(project, str) and isinstance(key, str):
            owners[str(v.get("Name"))] = (project, key)
    return owners


def image_facts(inspect: dict[str, Any]) -> dict[str, Any]:
    """What the checks use of an image inspect: its id and the VOLUMEs it declares (Config.Volumes)."""
    config = inspect.get("Config") or {}
    return {"id": inspect.get("Id"), "volumes": sorted((config.get("Volumes") or {}).keys())}


def daemon_log_options(where: str, info: dict[str, Any], driver: str) -> dict[str, str] | None:
    """The engine's default log-opts, when they can be known from here; else None."""
    if not where.startswith("unix://"):
        return None
    rootless = any("rootless" in str(opt) for opt in info.get("SecurityOptions") or ())
    path = (
        os.path.join(
            os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "docker", "daemon.json"
        )
        if rootless
        else DAEMON_JSON
    )
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except FileNotFoundError:
        return {}  # no daemon.json: the engine's built-in defaults, which set no log options
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or str(config.get("log-driver") or "json-file") != driver:
        return None
    opts = config.get("log-opts") or {}
    return {str(k): str(v) for k, v in opts.items()} if isinstance(opts, dict) else None
