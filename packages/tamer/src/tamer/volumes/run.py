"""`tamer run IMAGE --name NAME ...`: a container whose data is in named volumes from the start.

The essay found by `docker inspect` that the mongo image declares two VOLUMEs
and that `docker run` without -v silently gives each an anonymous volume;
its own command line then had a typo (`-v mongo_config/data/configdb`, no
colon) that leaves data in one. plan_run reads the image's declared VOLUMEs,
gives each a named volume `NAME-<path>` (on DIR with --at), checks every -v
spec, and returns a RunPlan; apply_run creates the volumes and the container
(explicit name, a restart policy, log rotation) and starts it.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from tamer.engine import Engine
from tamer.errors import EngineUnreachable, ObjectNotFound, TamerError, UsageError
from tamer.operation import faults
from tamer.volumes.place import (
    CreatePlan,
    apply_create,
    check_place,
    check_volume_name,
    data_root,
    hold_data_folder,
    inspect_volume_or_none,
    plan_create,
    replaced_since,
)

JSON = dict[str, Any]
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_MODES = {
    "ro",
    "rw",
    "z",
    "Z",
    "nocopy",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "consistent",
    "cached",
    "delegated",
}
_PORT = re.compile(
    r"^(?:(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(?P<host>\d*(?:-\d+)?):)?"
    r"(?P<cport>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$"
)
DEFAULT_RESTART = "unless-stopped"
DEFAULT_LOG = {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
FOR_LABEL = "io.tamer.for-container"
PATH_LABEL = "io.tamer.container-path"


@dataclass(frozen=True)
class VolumeSpec:
    """One -v SOURCE:TARGET[:MODE]: kind is "named" (a volume), "bind" (a host folder)."""

    source: str
    target: str
    mode: str
    kind: str


def volume_name_for(container: str, path: str) -> str:
    """The named volume `tamer run`/`adopt` give to `path` of container `container`: mongo + /data/db -> mongo-data-db."""
    slug = re.sub(r"[^a-zA-Z0-9_.-]+", "-", path.strip("/")).strip("-.") or "root"
    return f"{container}-{slug}"


def parse_name_for(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """--name-for PATH=NAME options -> {normalized container path: volume name}; UsageError when malformed."""
    out: dict[str, str] = {}
    for pair in pairs:
        path, sep, name = pair.partition("=")
        if not sep or not path.startswith("/") or not name:
            raise UsageError(
                f"--name-for {pair}: expected /container/path=VOLUME_NAME, e.g. "
                "--name-for /data-db=mongo-data-db2"
            )
        check_volume_name(name)
        out[os.path.normpath(path)] = name
    return out


def assign_volume_names(
    container: str,
    paths: list[str],
    overrides: dict[str, str] | None = None,
    taken: dict[str, str] | None = None,
) -> dict[str, str]:
    """Name a volume for each container path: CONTAINER-<path> unless overridden; never two paths one name.

    `taken`: names already used by other mounts of the container {name: path}. The readable slug maps
    `/data/db` and `/data-db` both to `data-db`: instead of merging their data, refuse and say how to name
    one (--name-for PATH=NAME). Example: assign_volume_names("m", ["/data/db"]) == {"/data/db": "m-data-db"}.
    """
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(paths))
    if unknown:
        raise UsageError(
            f"--name-for {unknown[0]}: the container has no such volume path; expected one of "
            f"{', '.join(paths) or '(none)'}"
        )
    owner: dict[str, str] = dict(taken or {})
    out: dict[str, str] = {}
    for path in paths:
        name = overrides.get(path) or volume_name_for(container, path)
        if name in owner:
            raise UsageError(
                f"container paths {owner[name]} and {path} would both get the volume name {name}, "
                "merging their data; expected one volume per path; name one of them with "
                f"--name-for {path}=NAME (e.g. --name-for {path}={name}-2)"
            )
        owner[name] = path
        out[path] = name
    return out


def parse_volume_spec(spec: str, container: str) -> tuple[VolumeSpec, str | None]:
    """Check one -v spec; return it (and a note) or raise UsageError saying what is wrong and the fix.

    Catches what `docker run` silently accepts and that leaves data in an
    anonymous volume: a missing colon (`-v mongo_config/data/configdb`), a
    bare container path (`-v /data/db`, named here instead).
    """
    parts = spec.split(":")
    if len(parts) == 1:
        if spec.startswith("/"):
            name = volume_name_for(container, spec)
            return (
                VolumeSpec(name, os.path.normpath(spec), "", "named"),
                f"-v {spec} alone makes an anonymous volume; named it {name}",
            )
        head, slash, rest = spec.partition("/")
        if slash and re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$", head):
            raise UsageError(
                f"-v {spec}: no colon between the volume and the container path, so the data would "
                f"land in an anonymous volume; expected SOURCE:TARGET; did you mean "
                f"-v {head}:/{rest}?"
            )
        raise UsageError(f"-v {spec}: expected NAME:/container/path or /host/path:/container/path")
    if len(parts) > 3:
        raise UsageError(
            f"-v {spec}: too many colons; expected SOURCE:TARGET[:MODE], e.g. mongo_data:/data/db:ro"
        )
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    bad_modes = [m for m in mode.split(",") if m and m not in _MODES]
    if bad_modes:
        raise UsageError(f"-v {spec}: unknown mode {bad_modes[0]!r}; expected one of ro, rw, z, Z, nocopy")
    if not target.startswith("/"):
        raise UsageError(
            f"-v {spec}: the container path {target!r} is not absolute; expected e.g. "
            f"{source}:/{target.lstrip('./')}"
        )
    if os.path.normpath(target) == "/":
        raise UsageError(f"-v {spec}: cannot mount over the container's `/`; expected a folder such as /data")
    if not source:
        raise UsageError(f"-v {spec}: empty source; expected a volume name or an absolute host path")
    if source.startswith("/"):
        return VolumeSpec(source, os.path.normpath(target), mode, "bind"), None
    if source.startswith(".") or "/" in source:
        raise UsageError(
            f"-v {spec}: {source!r} is a relative host path; expected an absolute one such as "
            f"{os.path.abspath(source)}, or a volume name"
        )
    check_volume_name(source)
    return VolumeSpec(source, os.path.normpath(target), mode, "named"), None


def parse_port(spec: str) -> tuple[str, list[JSON]]:
    """-p [IP:][HOSTPORT:]CONTAINERPORT[/PROTO] -> ("27017/tcp", [{"HostIp": "", "HostPort": "27017"}])."""
    m = _PORT.match(spec)
    if not m:
        raise UsageError(f"-p {spec}: expected [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], e.g. -p 27017:27017")
    if "-" in m["cport"]:
        raise UsageError(f"-p {spec}: port ranges are not supported by tamer run; give one -p per port")
    key = f"{m['cport']}/{m['proto'] or 'tcp'}"
    return key, [{"HostIp": (m["ip"] or "").strip("[]"), "HostPort": m["host"] or ""}]


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for, parsed but not checked against the engine."""

    image: str
    name: str
    command: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    at: str | None = None
    restart: str = DEFAULT_RESTART
    log_rotation: bool = True
    network: str | None = None
    workdir: str | None = None
    user: str | None = None
    entrypoint: str | None = None
    hostname: str | None = None
    name_for: tuple[str, ...] = ()  # PATH=NAME: the volume name for a declared path
    allow_volatile: bool = False


@dataclass(frozen=True)
class RunPlan:
    name: str
    image: str
    mounts: tuple[VolumeSpec, ...]  # every mount, declared VOLUMEs first
    create: tuple[CreatePlan, ...]  # volumes to make
    reuse: tuple[str, ...]  # named volumes that exist already (data kept from an earlier container)
    body: JSON  # POST /containers/create
    notes: tuple[str, ...] = field(default_factory=tuple)


def _restart_policy(text: str) -> JSON:
    name, _, count = text.partition(":")
    if (
        name not in ("no", "always", "unless-stopped", "on-failure")
        or (count and name != "on-failure")
        or (count and not count.isdigit())
    ):
        raise UsageError(f"--restart {text}: expected no, always, unless-stopped or on-failure[:N]")
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": int(count or 0)}


def plan_run(engine: Engine, req: RunRequest) -> RunPlan:
    """Check everything and decide the volumes; changes nothing. Raises UsageError with the fix."""
    if not _CONTAINER_NAME.match(req.name):
        raise UsageError(
            f"--name {req.name!r}: expected letters, digits, '_', '.', '-' (2 or more, starting with "
            "a letter or digit), e.g. --name mongo_container"
        )
    restart = _restart_policy(req.restart)
    env = list(req.env)
    for e in env:
        if "=" not in e or e.startswith("="):
            raise UsageError(
                f"-e {e}: expected KEY=VALUE (tamer run does not copy variables from its own environment)"
            )
    labels: dict[str, str] = {}
    for lab in req.labels:
        k, sep, v = lab.partition("=")
        if not k:
            raise UsageError(f"--label {lab}: expected KEY=VALUE")
        labels[k] = v if sep else ""
    exposed: JSON = {}
    bindings: JSON = {}
    for p in req.ports:
        key, binding = parse_port(p)
        exposed[key] = {}
        bindings.setdefault(key, []).extend(binding)
    notes: list[str] = []
    explicit: dict[str, VolumeSpec] = {}
    auto_named: set[str] = set()  # names tamer made up (bare -v /path): never let two paths share one
    for spec in req.volumes:
        vs, note = parse_volume_spec(spec, req.name)
        if note:
            auto_named.add(vs.target)
        if vs.target in explicit:
            raise UsageError(
                f"-v {spec}: {vs.target} is mounted twice; expected one source per container path"
            )
        explicit[vs.target] = vs
        if note:
            notes.append(note)
    if req.at is not None:
        check_place(req.at, data_root(engine))  # refuse early, before any volume is planned
    try:
        image = engine.inspect_image(req.image)
    except ObjectNotFound:
        raise UsageError(
            f"image {req.image} is not on this engine; expected a local image; pull or build it first "
            f"(`docker pull {req.image}`)"
        ) from None
    declared = sorted(os.path.normpath(p) for p in ((image.get("Config") or {}).get("Volumes") or {}))
    for vs in explicit.values():
        if vs.target not in declared and declared:
            close = difflib.get_close_matches(vs.target, declared, n=1, cutoff=0.8)
            if close:
                notes.append(
                    f"-v ...:{vs.target}: the image declares {close[0]}, not {vs.target}; a typo? "
                    f"{close[0]} gets its own named volume anyway"
                )
    implicit = [p for p in declared if p not in explicit]
    names = assign_volume_names(
        req.name,
        implicit,
        parse_name_for(req.name_for),
        taken={vs.source: t for t, vs in explicit.items() if vs.kind == "named"},
    )
    mounts = [explicit.get(p) or VolumeSpec(names[p], p, "", "named") for p in declared]
    mounts += [vs for t, vs in explicit.items() if t not in declared]
    auto_named |= set(implicit)
    for vs in mounts:
        same = [o.target for o in mounts if o.kind == "named" and o.source == vs.source]
        if vs.kind == "named" and len(same) > 1 and auto_named.intersection(same):
            raise UsageError(
                f"container paths {' and '.join(same)} would all get the volume {vs.source}, merging "
                "their data; expected one volume per path; name them yourself with -v NAME:PATH or "
                "--name-for PATH=NAME"
            )
    creates: list[CreatePlan] = []
    reuse: list[str] = []
    for vs in mounts:
        if vs.kind != "named":
            continue
        existing = inspect_volume_or_none(engine, vs.source)
        if existing is not None:
            labels_of = existing.get("Labels") or {}
            ours = labels_of.get(FOR_LABEL) == req.name and labels_of.get(PATH_LABEL) == vs.target
            if vs.target not in explicit and not ours:
                owner = (
                    f"made for container {labels_of[FOR_LABEL]}:{labels_of.get(PATH_LABEL, '?')}"
                    if labels_of.get(FOR_LABEL)
                    else "not made by tamer run for this container"
                )
                raise UsageError(
                    f"volume {vs.source} exists already ({owner}); expected a new name for "
                    f"{vs.target}, so no other data is mixed in; reuse it knowingly with -v "
                    f"{vs.source}:{vs.target}, or name another with --name-for {vs.target}=NAME"
                )
            reuse.append(vs.source)
            continue
        at = os.path.join(req.at, vs.source) if req.at else None
        creates.append(
            plan_create(
                engine,
                vs.source,
                at,
                {FOR_LABEL: req.name, PATH_LABEL: vs.target},
                allow_volatile=req.allow_volatile,
            )
        )
    if reuse:
        notes.append(f"reusing existing volume(s) {', '.join(reuse)}: their data is kept")
    binds = [f"{vs.source}:{vs.target}" + (f":{vs.mode}" if vs.mode else "") for vs in mounts]
    host: JSON = {"Binds": binds, "RestartPolicy": restart}
    if bindings:
        host["PortBindings"] = bindings
    if req.log_rotation:
        host["LogConfig"] = DEFAULT_LOG
    if req.network:
        host["NetworkMode"] = req.network
    body: JSON = {"Image": req.image, "Labels": labels, "Env": env, "HostConfig": host}
    if req.command:
        body["Cmd"] = list(req.command)
    if exposed:
        body["ExposedPorts"] = exposed
    for key, value in (("WorkingDir", req.workdir), ("User", req.user), ("Hostname", req.hostname)):
        if value:
            body[key] = value
    if req.entrypoint is not None:
        body["Entrypoint"] = [req.entrypoint] if req.entrypoint else [""]
    return RunPlan(req.name, req.image, tuple(mounts), tuple(creates), tuple(reuse), body, tuple(notes))


def _left_by_a_cut_run(plan: RunPlan, made: list[tuple[CreatePlan, int]]) -> str:
    volumes = " ".join(cp.name for cp, _ in made)
    rm_volumes = f"; docker volume rm {volumes}" if volumes else ""
    return (
        f"the engine went away while `tamer run` made {plan.name}, so nothing it made could be removed: "
        f"container {plan.name} may exist (created, perhaps started)"
        + (f" and the new volume(s) {volumes} (made by this run)" if volumes else "")
        + f"; once the engine is back, `docker start {plan.name}` if it is there, or remove what is there "
        f"(`docker rm -f {plan.name}{rm_volumes}`) and run this again"
    )


def apply_run(engine: Engine, plan: RunPlan) -> str:
    """Create the planned volumes and the container, start it; returns the container id.

    On failure, removes what this call created (container, new volumes) and re-raises.
    """
    made: list[tuple[CreatePlan, int]] = []
    cid: str | None = None
    try:
        for cp in plan.create:
            vol = apply_create(engine, cp)
            made.append((cp, hold_data_folder(vol)))
        cid = engine.create_container_raw(plan.body, name=plan.name)
        faults.hit("run.created", cid=cid)
        engine.start_container(cid)
        return cid
    except BaseException as exc:
        if cid is not None:
            with contextlib.suppress(TamerError):
                engine.remove_container(cid, force=True)
        for cp, held in reversed(made):
            if not replaced_since(engine, cp.name, held):  # never a volume of that name someone else made
                with contextlib.suppress(TamerError):
                    engine.remove_volume(cp.name)
            if cp.at is not None and not cp.at.exists:
                with contextlib.suppress(OSError):
                    os.rmdir(cp.at.path)
        if isinstance(exc, EngineUnreachable):
            # nothing could be undone without the engine: say what may be left, or the rerun meets it
            # ("name already in use") with no word on where it came from
            raise EngineUnreachable(f"{exc}; {_left_by_a_cut_run(plan, made)}") from exc
        raise
    finally:
        for _, held in made:
            if held >= 0:
                os.close(held)
