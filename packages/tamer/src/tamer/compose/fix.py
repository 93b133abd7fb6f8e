"""--fix: name every anonymous volume in the round-trip document. Pure (text in, text out).

Each VOLUME (or `- /path` entry) that would get an anonymous volume gets a named volume
`<service>_<path-slug>` (Compose prefixes the project: on the engine it is
`<project>_<service>_<path-slug>`), declared in the top-level `volumes:`. A name already used
in the file or already on the engine gets _2, _3... (an existing volume holds someone's data;
the fix never points a service at it). An anonymous entry is rewritten in place (`- /data/db`
becomes `- mongo_data_db:/data/db`); an uncovered VOLUME gets a new entry in the style the list
already uses. A list shared with other services (an anchor, a `<<` merge) is copied first, so no
other service changes. Comments, key order, quotes and anchors stay as they were.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import io
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tamer.compose.model import ComposeModel
from tamer.compose.rules import Finding

_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NAME = 200  # volume names are folder names on the engine (255 bytes); leave room for suffixes


@dataclass(frozen=True)
class NewVolume:
    service: str
    path: str  # the container path it is mounted at
    key: str  # its name in the file's top-level volumes:
    engine_name: str  # its name on the engine
    replaces: int | None  # the anonymous entry (index in the service's volumes:) it replaces, if any
    existing: bool = False  # already on the engine, made by Compose for this project's key: reused


def path_slug(path: str) -> str:
    """/data/db -> data_db; / -> root."""
    slug = _BAD.sub("_", path.strip("/").replace("/", "_")).strip("_.-")
    return slug or "root"


def _valid_key(text: str) -> str:
    key = _BAD.sub("_", text)
    if not key[:1].isalnum():
        key = "v" + key
    if len(key) > MAX_NAME:
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        key = key[: MAX_NAME - 9] + "_" + digest
    return key


def plan_names(
    model: ComposeModel,
    findings: Iterable[Finding],
    engine_volumes: Iterable[str],
    compose_volumes: Mapping[str, tuple[str, str]] | None = None,
) -> list[NewVolume]:
    """A collision-free named volume for every anonymous-volume finding.

    A name the file uses, or that is on the engine, is skipped (_2, _3...): an existing volume holds
    someone's data. Except one Compose itself made for this project under exactly that key
    (`compose_volumes`: its com.docker.compose.project/volume labels): that is where an earlier
    --fix copy, once `up`, keeps this service's data, and Compose mounts it for that key anyway.
    Naming past it would point the service at an empty volume on the next `up`.
    """
    owners = compose_volumes or {}
    taken_keys = set(model.volumes)
    in_file = {v.engine_name for v in model.volumes.values()}
    taken_engine = in_file | set(engine_volumes)
    planned: list[NewVolume] = []
    for f in findings:
        if f.code != "anonymous-volume" or f.service is None:
            continue
        path = str(f.facts["path"])
        base = _valid_key(f"{f.service}_{path_slug(path)}")
        key, n = base, 1
        while True:
            engine_name = f"{model.project}_{key}"
            if key not in taken_keys:
                if engine_name not in taken_engine:
                    existing = False
                    break
                if engine_name not in in_file and owners.get(engine_name) == (model.project, key):
                    existing = True
                    break
            n += 1
            key = f"{base}_{n}"
        taken_keys.add(key)
        in_file.add(engine_name)
        taken_engine.add(engine_name)
        entry = f.facts.get("entry")
        planned.append(
            NewVolume(f.service, path, key, engine_name, entry if isinstance(entry, int) else None, existing)
        )
    return planned


def _own(mapping: Any, key: str) -> bool:
    """True when `key` is written in this mapping itself (not brought in by a `<<` merge)."""
    own = getattr(mapping, "_ok", None)
    return key in own if own is not None else key in mapping


def _shared(node: Any) -> bool:
    anchor = getattr(node, "anchor", None)
    return getattr(anchor, "value", None) is not None


def apply_fix(document: Any, planned: list[NewVolume]) -> None:
    """Add `planned` to the round-trip `document` (a ruamel CommentedMap), in place."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    services = document["services"]
    for service in dict.fromkeys(p.service for p in planned):
        svc = services[service]
        mine = [p for p in planned if p.service == service]
        current = svc.get("volumes") if "volumes" in svc else None
        if current is None:
            seq: Any = CommentedSeq()
            keys = list(svc.keys())
            at = next(
                (keys.index(k) + 1 for k in ("image", "build") if k in keys and _own(svc, k)), len(keys)
            )
            if "volumes" in svc and _own(svc, "volumes"):
                svc["volumes"] = seq
            else:
                svc.insert(min(at, len(getattr(svc, "_ok", keys))), "volumes", seq)
        elif not _own(svc, "volumes") or _shared(current):
            seq = CommentedSeq(list(current))  # a list other services use too: this service gets its own
            svc["volumes"] = seq
        else:
            seq = current
        long_style = any(isinstance(e, Mapping) for e in seq)
        for p in mine:
            if p.replaces is not None and p.replaces < len(seq):
                old = seq[p.replaces]
                if isinstance(old, str):
                    seq[p.replaces] = (
                        type(old)(f"{p.key}:{old}") if type(old) is not str else f"{p.key}:{old}"
                    )
                    continue
                if isinstance(old, Mapping):
                    # always a copy: the entry may be reached from elsewhere (a list copied above, an
                    # anchor, an x- template), and naming it in place would name it there too
                    entry: Any = _unanchored_copy(old)
                    keys = list(entry.keys())
                    entry.insert(keys.index("type") + 1 if "type" in keys else 0, "source", p.key)
                    seq[p.replaces] = entry
                    continue
            target = p.path.replace("$", "$$")  # Compose interpolates it; a VOLUME path is literal
            if long_style or ":" in p.path:  # a `:` would split the short syntax
                seq.append(CommentedMap([("type", "volume"), ("source", p.key), ("target", target)]))
            else:
                seq.append(f"{p.key}:{target}")
    top = document.get("volumes") if "volumes" in document else None
    if top is None:
        top = CommentedMap()
        if "volumes" in document:
            document["volumes"] = top
        else:
            document.insert(len(document), "volumes", top)
    for p in planned:
        top[p.key] = None


def _unanchored_copy(node: Any) -> Any:
    """A deep copy (comments kept) with no anchor of its own or below: the original keeps its anchors."""
    fresh = copy.deepcopy(node)  # its memo keeps shared nodes shared: an alias bomb stays its text's size
    todo = [fresh]
    seen: set[int] = set()  # and each shared node is visited once (a bomb of 10^9 paths, not 10^9 visits)
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        anchor: Any = getattr(item, "anchor", None)
        if anchor is not None and getattr(anchor, "value", None) is not None:
            anchor.value = None
            anchor.always_dump = False
        if isinstance(item, Mapping):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return fresh


def guess_indent(text: str) -> tuple[int, int]:
    """(mapping indent, sequence dash offset) as the file writes them (2 and 2 if it does not say)."""
    mapping = sequence = None
    lines = text.splitlines()
    for prev, line in itertools.pairwise(lines):
        p = prev.rstrip()
        if not p.endswith(":") or p.lstrip().startswith("#"):
            continue
        pi = len(prev) - len(prev.lstrip())
        stripped = line.lstrip()
        li = len(line) - len(stripped)
        if not stripped or stripped.startswith("#") or li < pi:
            continue
        if stripped.startswith("- "):
            sequence = li - pi if sequence is None else sequence
        elif li > pi:
            mapping = li - pi if mapping is None else mapping
        if mapping is not None and sequence is not None:
            break
    # no list to learn from: the dash two in, as Compose's own documentation writes them
    return mapping or 2, 2 if sequence is None else sequence


def render(document: Any, original_text: str) -> str:
    """The document as YAML, indented as the original is."""
    from tamer.compose.files import yaml_loader

    yaml = yaml_loader()
    mapping, offset = guess_indent(original_text)
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)  # the item text two after its dash
    yaml.width = 4096  # never fold a long line the user wrote on one
    first = next(
        (ln for ln in original_text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), ""
    )
    yaml.explicit_start = first.startswith("---")
    _keep_anchors(document)
    out = io.StringIO()
    yaml.dump(document, out)
    text = out.getvalue()
    return text.replace("\n", "\r\n") if "\r\n" in original_text else text


def _keep_anchors(node: Any) -> None:
    """Mark every anchor the file wrote to be written again (ruamel drops one that no alias uses)."""
    seen: set[int] = set()
    todo = [node]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        anchor: Any = getattr(item, "anchor", None)
        if anchor is not None and getattr(anchor, "value", None) is not None:
            anchor.always_dump = True
        if isinstance(item, Mapping):
            todo.extend(item.values())
            todo.extend(getattr(item, "merge", None) or ())
        elif isinstance(item, list | tuple):
            todo.extend(item)


def unified_diff(before: str, after: str, before_name: str, after_name: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=before_name,
            tofile=after_name,
        )
    )
