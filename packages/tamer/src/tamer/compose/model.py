"""A compose file as Compose reads it: interpolated, extended, volume entries parsed. Pure.

Input: the file's data as plain Python (mappings, lists, scalars; YAML anchors and merge keys
already resolved by the YAML library), the environment for `${VAR}` and the project folder.
Output: a ComposeModel: each service's image, mounts (short and long syntax, tmpfs:,
volumes_from: another service), restart, logging and scale settings, and the top-level volumes.

What Compose rejects outright (not a mapping, a service that is not a mapping, a required
variable unset, an `extends` loop) is a UsageError; an entry Compose would reject inside an
otherwise good file (a volume entry without a target) is kept as an `invalid` item, so the
rest of the file is still checked.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tamer.errors import UsageError

# ---------------------------------------------------------------------------------------------
# interpolation (the compose spec's ${VAR}, ${VAR:-default}, ${VAR:?error}, $$)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# What one value may grow to once its variables are put in: `.env` lines that each use the one before
# twice (B2=${B1}${B1}, ...) double it per line, and a file of "${BIG}" repeated multiplies it: tamer
# would fill memory where it should say the file is not one it can read.
MAX_INTERPOLATED = 16 * 1024 * 1024


def interpolate(text: str, env: Mapping[str, str], where: str = "", limit: int = MAX_INTERPOLATED) -> str:
    """Replace $VAR / ${VAR...} as Compose does; `$$` is a literal `$`. UsageError past `limit` characters.

    >>> interpolate("${DATA:-./data}:/data/db", {})
    './data:/data/db'
    >>> interpolate("$$HOME/${USER}", {"USER": "ann"})
    '$HOME/ann'
    """
    out: list[str] = []
    size = 0  # of what `out` holds from variables (the text's own characters are bounded by the text)
    i = 0
    while i < len(text):
        if size > limit:
            raise UsageError(
                f"{where}: a value grows past {limit} characters once its variables are put in "
                "(a variable used many times, or .env lines that each double the one before); "
                "expected a compose file's settings (nothing was changed)"
            )
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            if end < 0:
                raise UsageError(
                    f"{where}: unclosed ${{ in {text!r}; expected ${{NAME}} or ${{NAME:-default}}"
                )
            out.append(_braced(text[i + 2 : end], env, where))
            size += len(out[-1])
            i = end + 1
        else:
            match = _NAME.match(text, i + 1)
            if match is None:
                out.append("$")  # a lone `$` stays (Compose warns; the value is used as written)
                i += 1
            else:
                out.append(env.get(match.group(0), ""))
                size += len(out[-1])
                i = match.end()
    if size > limit:
        raise UsageError(
            f"{where}: a value grows past {limit} characters once its variables are put in "
            "(a variable used many times, or .env lines that each double the one before); "
            "expected a compose file's settings (nothing was changed)"
        )
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for j in range(start, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _braced(inner: str, env: Mapping[str, str], where: str) -> str:
    match = _NAME.match(inner)
    if match is None:
        raise UsageError(f"{where}: bad variable ${{{inner}}}; expected ${{NAME}} with a letter or _ first")
    name, rest = match.group(0), inner[match.end() :]
    value = env.get(name)
    if not rest:
        return value or ""
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            arg = rest[len(op) :]
            unset = value is None or (op.startswith(":") and value == "")
            if op.endswith("-"):
                return interpolate(arg, env, where) if unset else str(value)
            if op.endswith("+"):
                return "" if unset else interpolate(arg, env, where)
            if unset:
                raise UsageError(
                    f"{where}: required variable {name} is not set ({interpolate(arg, env, where) or 'no message'}); "
                    "set it in the environment or the .env file next to the compose file"
                )
            return str(value)
    raise UsageError(
        f"{where}: bad variable ${{{inner}}}; expected ${{NAME}}, ${{NAME:-default}} or ${{NAME:?error}}"
    )


# ---------------------------------------------------------------------------------------------
# the model


@dataclass(frozen=True)
class Mount:
    """One mount of a service. kind: volume (named), anonymous, bind, tmpfs, or other (npipe, image...)."""

    kind: str
    target: str  # normalised absolute container path
    source: str | None = None  # volume key (kind volume), host path as written (bind)
    read_only: bool = False
    index: int | None = None  # position in the service's own `volumes:` list (None: tmpfs:, inherited)
    via: str = "volumes"  # volumes, tmpfs, volumes_from:SERVICE, extends:SERVICE
    long: bool = False  # written in the long syntax (a mapping)


@dataclass(frozen=True)
class Invalid:
    """An entry Compose would refuse; kept so the rest of the file is still checked."""

    where: str
    entry: str
    why: str


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None  # the reference to inspect (built images: <project>-<service>)
    builds: bool  # has build: (the image may not exist yet)
    mounts: tuple[Mount, ...]
    has_restart: bool
    logging_driver: str | None
    logging_options: Mapping[str, str]
    container_name: str | None
    replicas: int | None  # deploy.replicas or scale
    global_mode: bool
    unknown_volumes_from: tuple[str, ...] = ()  # container:NAME (its mounts are not in this file)
    extends_file: str | None = None
    image_invalid: bool = False  # image: is not a reference (reported as invalid-entry; not inspected)


@dataclass(frozen=True)
class TopVolume:
    key: str
    engine_name: str  # the volume's name on the engine
    external: bool
    bind_device: str | None = None  # driver_opts {type: none, o: bind, device: PATH}


@dataclass(frozen=True)
class ComposeModel:
    project: str
    project_dir: str
    services: tuple[Service, ...]
    volumes: Mapping[str, TopVolume]
    invalid: tuple[Invalid, ...] = field(default=())
    includes: tuple[str, ...] = ()  # `include:` files: their services are not read


def normalize_project_name(raw: str) -> str:
    """Compose's normalisation: lowercase, keep [a-z0-9_-], strip leading _ and -."""
    return re.sub(r"[^a-z0-9_-]", "", raw.lower()).lstrip("_-")


def project_name(doc: Mapping[str, Any], env: Mapping[str, str], project_dir: str) -> str:
    """The project name as Compose picks it: COMPOSE_PROJECT_NAME (environment or .env) first, taken
    as written and refused when it is not a valid name; else `name:` (interpolated, normalised) when
    that leaves something; else the folder's name, normalised. UsageError when none gives a name."""
    from_env = env.get("COMPOSE_PROJECT_NAME") or ""
    if from_env:
        if normalize_project_name(from_env) != from_env:
            raise UsageError(
                f"COMPOSE_PROJECT_NAME={from_env!r} is not a valid project name (Compose refuses it): expected "
                "lowercase letters, digits, - and _, starting with a letter or digit; set it to "
                f"{normalize_project_name(from_env) or 'such a name'!r} (nothing was changed)"
            )
        return from_env
    from_file = normalize_project_name(_text(doc.get("name"))) if doc.get("name") else ""
    if from_file:
        return from_file
    folder = posixpath.basename(project_dir.rstrip("/"))
    name = normalize_project_name(folder)
    if not name:
        raise UsageError(
            f"the project has no name: the folder name {folder!r} leaves nothing once normalised as Compose "
            "does (lowercase letters, digits, - and _, starting with a letter or digit), and neither `name:` "
            "nor COMPOSE_PROJECT_NAME gives one (Compose refuses it); add `name: myproject` to the file "
            "(nothing was changed)"
        )
    return name


# the compose spec's pattern for service, volume and network keys
_KEY = re.compile(r"[a-zA-Z0-9._-]+")


def build_model(
    doc: Any, env: Mapping[str, str], project_dir: str, source: str = "compose file"
) -> ComposeModel:
    """The model of an (already interpolated) compose document; UsageError for what Compose refuses."""
    try:
        return _build_model(doc, env, project_dir, source)
    except RecursionError:  # `extends` or `volumes_from` chained past Python's stack (1000 deep)
        raise UsageError(
            f"{source}: its `extends` or `volumes_from` chain goes too deep to be a compose file "
            "(a service resting on hundreds of others); nothing was changed"
        ) from None


def _build_model(doc: Any, env: Mapping[str, str], project_dir: str, source: str) -> ComposeModel:
    if not isinstance(doc, Mapping):
        raise UsageError(
            f"{source} is not a compose file: its top level is {_kind(doc) if doc is not None else 'an empty document'}, expected a mapping with "
            "`services:` (nothing was changed)"
        )
    includes = tuple(_include_paths(doc.get("include")))
    services_raw = doc.get("services")
    if includes and services_raw is None:
        services_raw = {}  # a file of includes only is a compose file; what it includes is a note
    if not isinstance(services_raw, Mapping) or not (services_raw or includes):
        raise UsageError(
            f"{source} has no `services:` mapping; expected `services:` with at least one service (nothing was changed)"
        )
    for name, svc in services_raw.items():
        if not _KEY.fullmatch(str(name)):
            raise UsageError(
                f"{source}: service name {_show(name, 60)!r} is not one Compose accepts: expected letters, digits, "
                ". _ and - only (it becomes part of container and volume names); rename it (nothing was changed)"
            )
        if not isinstance(svc, Mapping):
            raise UsageError(
                f"{source}: service {name!r} is {_kind(svc)}, expected a mapping (nothing was changed)"
            )
    project = project_name(doc, env, project_dir)
    volumes = _top_volumes(doc.get("volumes"), project, source)
    invalid: list[Invalid] = []
    resolved = {str(n): _resolve_extends(str(n), services_raw, source, ()) for n in services_raw}
    own_mounts = {n: _own_mounts(n, cfg, invalid) for n, cfg in resolved.items()}
    services = []
    for name, cfg in resolved.items():
        mounts = list(own_mounts[name])
        unknown: list[str] = []
        for base, ro in _volumes_from(name, resolved, unknown, invalid):
            taken = {m.target for m in mounts}
            for m in own_mounts[base]:
                if m.target not in taken:
                    mounts.append(
                        Mount(m.kind, m.target, m.source, m.read_only or ro, None, f"volumes_from:{base}")
                    )
        services.append(_service(name, cfg, project, tuple(mounts), tuple(unknown), invalid))
    return ComposeModel(project, project_dir, tuple(services), volumes, tuple(invalid), includes)


def _include_paths(raw: Any) -> list[str]:
    """The files an `include:` names (short: a path; long: `path:` a path or a list of them)."""
    out: list[str] = []
    for entry in _as_list(raw):
        path = entry.get("path") if isinstance(entry, Mapping) else entry
        out += [_text(p) for p in _as_list(path)]
    return out


def _kind(value: Any) -> str:
    """What a value is, with its article: 'a list', 'an empty value'."""
    if value is None:
        return "an empty value"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _top_volumes(raw: Any, project: str, source: str) -> dict[str, TopVolume]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise UsageError(
            f"{source}: top-level `volumes:` is {_kind(raw)}, expected a mapping of volume names"
        )
    out = {}
    for key, spec in raw.items():
        if not _KEY.fullmatch(str(key)):
            raise UsageError(
                f"{source}: volume name {_show(key, 60)!r} under the top-level `volumes:` is not one Compose "
                "accepts: expected letters, digits, . _ and - only; rename it (nothing was changed)"
            )
        spec = spec if isinstance(spec, Mapping) else {}
        external = spec.get("external")
        is_external = bool(external) if not isinstance(external, Mapping) else True
        name = spec.get("name") or (external.get("name") if isinstance(external, Mapping) else None)
        engine_name = _text(name) if name else (_text(key) if is_external else f"{project}_{key}")
        opts = _mapping(spec.get("driver_opts"))
        device = None
        if _text(opts.get("o", "")).split(",").count("bind") and opts.get("device"):
            device = _text(opts["device"])
        out[str(key)] = TopVolume(str(key), engine_name, is_external, device)
    return out


_MERGED_BY_TARGET = ("volumes",)
_APPENDED = ("tmpfs", "volumes_from")


def _resolve_extends(
    name: str, services: Mapping[str, Any], source: str, seen: tuple[str, ...]
) -> dict[str, Any]:
    """The service's settings with a same-file `extends:` applied (child wins; volumes merged by target)."""
    cfg = dict(services[name])
    ext = cfg.pop("extends", None)
    if ext is None:
        return cfg
    base_name = ext if isinstance(ext, str) else (ext.get("service") if isinstance(ext, Mapping) else None)
    if isinstance(ext, Mapping) and ext.get("file"):
        cfg["__extends_file__"] = _text(ext["file"])
        return cfg
    if base_name not in services:
        raise UsageError(
            f"{source}: service {name!r} extends {base_name!r}, which is not a service in this file"
        )
    if base_name in (*seen, name):
        raise UsageError(
            f"{source}: `extends` goes round in a circle: {' -> '.join((*seen, name, _text(base_name)))}"
        )
    base = _resolve_extends(str(base_name), services, source, (*seen, name))
    merged = {**base, **cfg}
    for key in _MERGED_BY_TARGET:
        if key in base and key in cfg and isinstance(base[key], list) and isinstance(cfg[key], list):
            mine = {_entry_target(e) for e in cfg[key]}
            inherited = [e for e in base[key] if _entry_target(e) not in mine]
            merged[key] = cfg[key]
            merged["__inherited_" + key] = inherited
        elif key in base and key not in cfg:
            merged[key] = []
            merged["__inherited_" + key] = base[key]
    for key in _APPENDED:
        if key in base and key in cfg:
            merged[key] = [*_as_list(base[key]), *_as_list(cfg[key])]
    for key in ("logging", "deploy"):
        if isinstance(base.get(key), Mapping) and isinstance(cfg.get(key), Mapping):
            merged[key] = {**base[key], **cfg[key]}
    return merged


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _entry_target(entry: Any) -> str | None:
    if isinstance(entry, Mapping):
        t = entry.get("target")
        return _norm(_text(t)) if t else None
    if isinstance(entry, str):
        parts = entry.split(":")
        return _norm(parts[0] if len(parts) == 1 else parts[1])
    return None


def clean_path(path: str) -> str:
    """A container path as the engine compares them (Go's path.Clean): /data/, //data and /x/../data
    are all /data. (posixpath.normpath keeps a leading `//`, which POSIX allows and Go does not.)"""
    if not path:
        return path
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


_norm = clean_path


def parse_volume_entry(
    entry: Any, index: int | None, where: str, invalid: list[Invalid], via: str = "volumes"
) -> Mount | None:
    """One `volumes:` entry, short ("SRC:DST[:MODE]", "DST") or long syntax, as a Mount (None when invalid)."""
    if isinstance(entry, str):
        parts = entry.split(":")
        if len(parts) > 3 or not all(parts[: min(len(parts), 2)]):
            invalid.append(Invalid(where, entry, "expected [SOURCE:]TARGET[:MODE]"))
            return None
        if len(parts) == 1:
            source, target, mode = None, parts[0], ""
        else:
            source, target = parts[0], parts[1]
            mode = parts[2] if len(parts) == 3 else ""
        if not target.startswith("/"):
            invalid.append(Invalid(where, entry, f"the container path {target!r} is not absolute"))
            return None
        read_only = "ro" in mode.split(",")
        if source is None:
            return Mount("anonymous", _norm(target), None, read_only, index, via)
        kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        return Mount(kind, _norm(target), source, read_only, index, via)
    if isinstance(entry, Mapping):
        long_target = entry.get("target")
        kind = _text(entry.get("type") or "volume")
        if not isinstance(long_target, str) or not long_target.startswith("/"):
            invalid.append(Invalid(where, _show(entry), "a long-syntax volume needs an absolute `target:`"))
            return None
        long_source = entry.get("source")
        read_only = entry.get("read_only") is True or _text(entry.get("read_only")).lower() == "true"
        if kind == "volume":
            kind = "volume" if long_source else "anonymous"
        elif kind not in ("bind", "tmpfs"):
            kind = "other"
        src = _text(long_source) if long_source else None
        return Mount(kind, _norm(long_target), src, read_only, index, via, long=True)
    invalid.append(Invalid(where, _show(entry), "expected a string or a mapping"))
    return None


def _own_mounts(name: str, cfg: Mapping[str, Any], invalid: list[Invalid]) -> tuple[Mount, ...]:
    where = f"service {name!r}"
    mounts: list[Mount] = []
    raw = cfg.get("volumes")
    if raw is not None and not isinstance(raw, list):
        invalid.append(Invalid(where, _show(raw), "`volumes:` must be a list"))
        raw = []
    for i, entry in enumerate(raw or []):
        m = parse_volume_entry(entry, i, where, invalid)
        if m is not None:
            mounts.append(m)
    for entry in cfg.get("__inherited_volumes") or []:
        m = parse_volume_entry(entry, None, where, invalid, via="extends")
        if m is not None:
            mounts.append(m)
    for entry in _as_list(cfg.get("tmpfs")):
        path = _text(entry).split(":", 1)[0]
        if path.startswith("/"):
            mounts.append(Mount("tmpfs", _norm(path), None, False, None, "tmpfs"))
    return tuple(mounts)


def _volumes_from(
    name: str,
    services: Mapping[str, Mapping[str, Any]],
    unknown: list[str],
    invalid: list[Invalid],
    seen: set[str] | None = None,
) -> list[tuple[str, bool]]:
    """The services whose mounts `name` inherits through volumes_from (transitively), with :ro.

    Each service once, where a depth-first walk first meets it (that meeting decides its :ro, as
    the first mount at a target wins): `seen` is shared by the whole walk, not the path, so a file
    where each service takes volumes from all those before it (2^n paths) costs n visits, not 2^n."""
    seen = {name} if seen is None else seen
    found: list[tuple[str, bool]] = []
    for entry in _as_list(services[name].get("volumes_from")):
        text = _text(entry)
        ro = text.endswith(":ro")
        ref = text.removesuffix(":ro").removesuffix(":rw")
        if ref.startswith("container:"):
            unknown.append(ref.removeprefix("container:"))
            continue
        ref = ref.removeprefix("service:")
        if ref not in services:
            invalid.append(Invalid(f"service {name!r}", text, "volumes_from names no service of this file"))
            continue
        if ref in seen:
            continue
        seen.add(ref)
        found.append((ref, ro))
        found += [(b, r or ro) for b, r in _volumes_from(ref, services, unknown, invalid, seen)]
    return found


def _text(value: Any) -> str:
    """A scalar as text; a list or mapping only by its kind (str() of an alias bomb would expand it)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return str(value)
    return f"<{_kind(value)}>"


def _show(value: Any, limit: int = 120) -> str:
    """A value for a message: scalars as written (clipped), mappings by their scalar keys only."""
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_text(k)}: {_text(v)}" for k, v in list(value.items())[:8])
        text = "{" + inner + "}"
    else:
        text = _text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# docker's reference grammar (distribution/reference): [domain/]path[:tag][@digest]
_ALNUM = r"[a-z0-9]+"
_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def valid_reference(ref: str) -> bool:
    """True when `ref` is an image reference the engine accepts the form of (mongo, mongo:7, host:5000/a/b@sha256:...).

    >>> valid_reference("mongo:7"), valid_reference("Mongo:7"), valid_reference("a b")
    (True, False, False)
    """
    return len(ref) <= 255 + 128 + 80 and _REFERENCE.fullmatch(ref) is not None


def _service(
    name: str,
    cfg: Mapping[str, Any],
    project: str,
    mounts: tuple[Mount, ...],
    unknown: tuple[str, ...],
    invalid: list[Invalid],
) -> Service:
    builds = cfg.get("build") is not None
    image = cfg.get("image")
    ref = _text(image) if image else (f"{project}-{name}" if builds else None)
    image_invalid = ref is not None and not valid_reference(ref)
    if image_invalid:
        invalid.append(Invalid(f"service {name!r}", f"image: {_show(ref)}", "not a valid image reference"))
        ref = None
    deploy = _mapping(cfg.get("deploy"))
    logging = _mapping(cfg.get("logging"))
    options = _mapping(logging.get("options"))
    replicas = _int_or_none(deploy.get("replicas"))
    scale = _int_or_none(cfg.get("scale"))
    return Service(
        name=name,
        image=ref,
        builds=builds,
        mounts=mounts,
        has_restart=cfg.get("restart") is not None or deploy.get("restart_policy") is not None,
        logging_driver=_text(logging["driver"]) if logging.get("driver") else None,
        logging_options={_text(k): _text(v) for k, v in options.items()},
        container_name=_text(cfg["container_name"]) if cfg.get("container_name") else None,
        replicas=max((x for x in (replicas, scale) if x is not None), default=None),
        global_mode=_text(deploy.get("mode", "")) == "global",
        unknown_volumes_from=unknown,
        extends_file=_text(cfg["__extends_file__"]) if cfg.get("__extends_file__") else None,
        image_invalid=image_invalid,
    )
