"""What `tamer compose check` flags: the model and the engine's facts in, findings (codes + facts) out. Pure.

Findings (each counts; report.compose_view words them):
- anonymous-volume: an image VOLUME (or a `- /path` entry) that no named volume, bind or tmpfs
  covers at exactly that path; `docker compose up` gives it a fresh anonymous volume, and
  `down -v` or a prune deletes the data. A mount at a parent path does not count: the engine
  still makes an anonymous volume for the VOLUME below it.
- bind-into-data-root: a bind mount of the engine's data-root or a folder inside it (or a
  writable bind of a folder that contains it).
- undeclared-volume: a named volume missing from the top-level `volumes:` (Compose refuses the file).
- volume-taken: a (non-external) top-level volume whose engine name is already a volume that Compose
  did not make for this project's key (made by hand, or by another project): `up` would warn and
  mount it anyway, mixing this stack's data with someone else's.
- invalid-entry: an entry Compose would refuse.
- no-restart-policy, no-log-rotation, no-container-name: as named.
Notes (do not count, but the check is incomplete): image-not-on-engine, image-not-built,
volumes-from-container, extends-other-file, include-other-file, no-image.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tamer.compose.model import ComposeModel, Mount, Service, clean_path

FINDING_CODES = (
    "anonymous-volume",
    "bind-into-data-root",
    "undeclared-volume",
    "volume-taken",
    "invalid-entry",
    "no-restart-policy",
    "no-log-rotation",
    "no-container-name",
)
NOTE_CODES = (
    "image-not-on-engine",
    "image-not-built",
    "volumes-from-container",
    "extends-other-file",
    "include-other-file",
    "no-image",
)


@dataclass(frozen=True)
class EngineFacts:
    """What the checks need from the engine, read once (tamer.compose.facts)."""

    data_root: str
    logging_driver: str
    daemon_log_options: Mapping[str, str] | None  # None: not known (remote engine, unreadable daemon.json)
    images: Mapping[str, Mapping[str, Any] | None]  # reference -> {"id", "volumes": [...]}; None: not there
    volume_names: frozenset[str] = frozenset()
    # volumes Compose made: name -> (project, top-level key), from their com.docker.compose.* labels
    compose_volumes: Mapping[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    code: str
    service: str | None
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> bool:
        return self.code in FINDING_CODES

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "service": self.service, **self.facts}


def check(model: ComposeModel, facts: EngineFacts) -> list[Finding]:
    """Every finding and note for `model`, service by service, in file order."""
    out: list[Finding] = [
        Finding("invalid-entry", _service_of(inv.where), {"entry": inv.entry, "why": inv.why})
        for inv in model.invalid
    ]
    out += [Finding("include-other-file", None, {"file": path}) for path in model.includes]
    for key, vol in model.volumes.items():
        if vol.bind_device and _inside_data_root(vol.bind_device, model.project_dir, facts.data_root):
            out.append(
                Finding(
                    "bind-into-data-root",
                    None,
                    {
                        "volume": key,
                        "source": vol.bind_device,
                        "target": None,
                        "data_root": facts.data_root,
                        "read_only": False,
                        "contains": False,
                    },
                )
            )
    for key, vol in model.volumes.items():
        if vol.external or vol.engine_name not in facts.volume_names:
            continue
        owner = facts.compose_volumes.get(vol.engine_name)
        if owner != (model.project, key):
            out.append(
                Finding(
                    "volume-taken",
                    None,
                    {
                        "volume": key,
                        "engine_name": vol.engine_name,
                        "owner_project": owner[0] if owner else None,
                        "owner_key": owner[1] if owner else None,
                    },
                )
            )
    for svc in model.services:
        out += _volumes(svc, model, facts)
        out += _binds(svc, model, facts)
        out += _settings(svc, facts)
    return out


def _service_of(where: str) -> str | None:
    return where.removeprefix("service ").strip("'\"") if where.startswith("service ") else None


def image_volumes(svc: Service, facts: EngineFacts) -> tuple[list[str] | None, Finding | None]:
    """The VOLUMEs the service's image declares, or None and the note that says why they are unknown."""
    if svc.image is None:
        return None, (None if svc.image_invalid else Finding("no-image", svc.name))
    info = facts.images.get(svc.image)
    if info is None:
        code = "image-not-built" if svc.builds else "image-not-on-engine"
        return None, Finding(code, svc.name, {"image": svc.image})
    return sorted({clean_path(str(v)) for v in info.get("volumes") or ()}), None


def _volumes(svc: Service, model: ComposeModel, facts: EngineFacts) -> list[Finding]:
    out: list[Finding] = []
    declared, note = image_volumes(svc, facts)
    if note is not None:
        out.append(note)
    # a volumes_from mount shares the other container's volume, whatever it is: nothing new is made
    shared = {m.target: m for m in svc.mounts if m.via.startswith("volumes_from:")}
    covered = {m.target: m for m in svc.mounts if m.kind in ("volume", "bind", "tmpfs", "other")} | shared
    anonymous = {m.target: m for m in svc.mounts if m.kind == "anonymous" and m.target not in shared}
    for path in declared or []:
        if path not in covered:
            entry = anonymous.get(path)
            out.append(
                Finding(
                    "anonymous-volume",
                    svc.name,
                    {
                        "path": path,
                        "origin": "image",
                        "image": svc.image,
                        "entry": entry.index if entry else None,
                    },
                )
            )
    for path, mount in anonymous.items():
        if path not in covered and path not in (declared or []):
            out.append(
                Finding(
                    "anonymous-volume",
                    svc.name,
                    {"path": path, "origin": "file", "image": svc.image, "entry": mount.index},
                )
            )
    for mount in svc.mounts:
        if mount.kind == "volume" and mount.source not in model.volumes and mount.via == "volumes":
            out.append(Finding("undeclared-volume", svc.name, {"volume": mount.source, "path": mount.target}))
    for name in svc.unknown_volumes_from:
        out.append(Finding("volumes-from-container", svc.name, {"container": name}))
    if svc.extends_file:
        out.append(Finding("extends-other-file", svc.name, {"file": svc.extends_file}))
    return out


def host_path(source: str, project_dir: str) -> str:
    """A bind source as the host path Compose mounts: ~ expanded, relative to the project folder."""
    path = os.path.expanduser(source) if source.startswith("~") else source
    return clean_path(posixpath.join(project_dir, path))


def _inside_data_root(source: str, project_dir: str, data_root: str) -> bool:
    return any(p == r or p.startswith(r.rstrip("/") + "/") for p, r in _pairs(source, project_dir, data_root))


def _contains_data_root(source: str, project_dir: str, data_root: str) -> bool:
    return any(r.startswith(p.rstrip("/") + "/") for p, r in _pairs(source, project_dir, data_root))


def _pairs(source: str, project_dir: str, data_root: str) -> list[tuple[str, str]]:
    # as written and with symlinks resolved (/var/lib/docker -> /srv/docker); the real paths only
    # mean something when the engine is on this machine, and then they are what counts
    path = host_path(source, project_dir)
    root = clean_path(data_root)
    paths = {path, os.path.realpath(path)}
    roots = {root, os.path.realpath(root)}
    return [(p, r) for p in paths for r in roots]


def _binds(svc: Service, model: ComposeModel, facts: EngineFacts) -> list[Finding]:
    out = []
    for mount in svc.mounts:
        if mount.kind != "bind" or mount.source is None or mount.via != "volumes":
            continue
        inside = _inside_data_root(mount.source, model.project_dir, facts.data_root)
        contains = (
            not inside
            and not mount.read_only
            and _contains_data_root(mount.source, model.project_dir, facts.data_root)
        )
        if inside or contains:
            out.append(
                Finding(
                    "bind-into-data-root",
                    svc.name,
                    {
                        "source": mount.source,
                        "host_path": host_path(mount.source, model.project_dir),
                        "target": mount.target,
                        "data_root": facts.data_root,
                        "read_only": mount.read_only,
                        "contains": contains,
                    },
                )
            )
    return out


def effective_logging(svc: Service, facts: EngineFacts) -> tuple[str, dict[str, str], bool]:
    """The driver and options the engine will use, and whether the options are fully known.

    The daemon's default log-opts apply when the service's driver is the daemon's (as the engine
    merges them at create time).
    """
    driver = svc.logging_driver or facts.logging_driver
    options = dict(svc.logging_options)
    known = True
    if driver == facts.logging_driver:
        if facts.daemon_log_options is None:
            known = False
        else:
            options = {**facts.daemon_log_options, **options}
    return driver, options, known


def _settings(svc: Service, facts: EngineFacts) -> list[Finding]:
    out = []
    if not svc.has_restart:
        out.append(Finding("no-restart-policy", svc.name))
    driver, options, known = effective_logging(svc, facts)
    if driver == "json-file" and options.get("max-size", "-1") in ("-1", ""):
        out.append(
            Finding(
                "no-log-rotation",
                svc.name,
                {
                    "driver": driver,
                    "from": "service" if svc.logging_driver else "daemon",
                    "daemon_options_known": known,
                },
            )
        )
    singleton = not svc.global_mode and (svc.replicas is None or svc.replicas <= 1)
    if singleton and svc.container_name is None:
        out.append(Finding("no-container-name", svc.name))
    return out


def summary(findings: list[Finding]) -> dict[str, int]:
    """How many findings of each code (notes not included)."""
    counts: dict[str, int] = {}
    for f in findings:
        if f.counts:
            counts[f.code] = counts.get(f.code, 0) + 1
    return counts


def unnamed(findings: list[Finding]) -> list[Finding]:
    """The anonymous-volume findings: what --fix names."""
    return [f for f in findings if f.code == "anonymous-volume"]


__all__ = ["EngineFacts", "Finding", "Mount", "check", "effective_logging", "summary", "unnamed"]
