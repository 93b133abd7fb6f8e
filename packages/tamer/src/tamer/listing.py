"""`tamer ls`: filtering and sorting inventory objects. Pure.

Filters are KEY=VALUE strings, as with `docker ps --filter`. Each kind accepts
the keys in FILTER_KEYS; anything else is a UsageError naming the valid keys.
"""

from __future__ import annotations

from tamer.datetimes import datetime
from tamer.errors import UsageError
from tamer.report.units import parse_duration

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms, a fifth of a `docker images`
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeAlias

    from tamer.inventory import BuildCache, Container, Image, Inventory, Volume

# The object types are imported where they are used, not here: the CLI reads KINDS, FILTER_KEYS
# and SORT_KEYS to build its parser, and `tamer ls --help` or a bad filter must not pay for the
# inventory's import.

KINDS = ("images", "containers", "volumes", "cache")
FILTER_KEYS: dict[str, tuple[str, ...]] = {
    "images": ("dangling", "older-than", "label", "unused"),
    "containers": ("state", "older-than", "label", "generated-name"),
    "volumes": ("orphaned", "older-than", "label", "anonymous", "named", "placement"),
    "cache": ("older-than", "in-use"),
}
SORT_KEYS = ("size", "age", "name")
CONTAINER_STATES = ("running", "paused", "restarting", "created", "exited", "dead", "removing")

Obj: TypeAlias = "Image | Container | Volume | BuildCache"


class Filter:
    """One KEY=VALUE filter, checked. A plain class: `tamer ls` must not pay for importing dataclasses."""

    __slots__ = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key = key
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and (self.key, self.value) == (other.key, other.value)

    def __hash__(self) -> int:
        return hash((self.key, self.value))

    def __repr__(self) -> str:
        return f"Filter({self.key!r}, {self.value!r})"


def parse_filters(kind: str, specs: Sequence[str]) -> list[Filter]:
    """Check "key=value" specs against `kind`; raise UsageError on anything unknown."""
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    out = []
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip()
        if key not in FILTER_KEYS[kind]:
            raise UsageError(
                f"unknown filter {key!r} for {kind}: expected one of "
                f"{', '.join(FILTER_KEYS[kind])} (as KEY=VALUE, e.g. --filter older-than=7d)"
            )
        if key in ("dangling", "orphaned", "unused", "anonymous", "named", "generated-name", "in-use"):
            value = value.strip().lower() if sep else "true"
            if value not in ("true", "false", "1", "0", "yes", "no"):
                raise UsageError(f"filter {key} takes true or false, got {value!r}")
        elif key == "state":
            bad = [s for s in value.split(",") if s not in CONTAINER_STATES]
            if not value or bad:
                raise UsageError(
                    f"unknown container state {','.join(bad) or value!r}: expected one or more of "
                    f"{', '.join(CONTAINER_STATES)}, comma-separated"
                )
        elif key == "older-than":
            parse_duration(value)
        elif key == "label" and not value:
            raise UsageError("filter label needs a value: label=KEY or label=KEY=VALUE")
        elif key == "placement" and value not in ("default", "bind", "symlink"):
            raise UsageError(f"filter placement takes default, bind or symlink, got {value!r}")
        out.append(Filter(key, value))
    return out


def _truthy(value: str) -> bool:
    return value in ("true", "1", "yes")


def _created(obj: Obj) -> datetime | None:
    return obj.created


def _labels(obj: Obj) -> dict[str, str]:
    return getattr(obj, "labels", {}) or {}


def size_of(obj: Obj) -> int:
    from tamer.accounting import container_bytes, volume_bytes
    from tamer.inventory import Container, Image, Volume

    if isinstance(obj, Image):
        return obj.size
    if isinstance(obj, Container):
        return container_bytes(obj)
    if isinstance(obj, Volume):
        return volume_bytes(obj)
    return obj.size


def name_of(obj: Obj) -> str:
    from tamer.inventory import Container, Image, Volume

    if isinstance(obj, Image):
        return obj.display_name
    if isinstance(obj, Container | Volume):
        return obj.name
    return obj.description or obj.id


def _matches(obj: Obj, f: Filter, now: datetime) -> bool:
    from tamer.inventory import BuildCache, Container, Image, Volume

    checks: dict[str, Callable[[], bool]] = {
        "dangling": lambda: isinstance(obj, Image) and obj.dangling == _truthy(f.value),
        "unused": lambda: isinstance(obj, Image) and (not obj.containers) == _truthy(f.value),
        "orphaned": lambda: isinstance(obj, Volume) and obj.orphaned == _truthy(f.value),
        "anonymous": lambda: isinstance(obj, Volume) and obj.anonymous == _truthy(f.value),
        "named": lambda: isinstance(obj, Volume) and (not obj.anonymous) == _truthy(f.value),
        "placement": lambda: isinstance(obj, Volume) and obj.placement == f.value,
        "generated-name": lambda: isinstance(obj, Container) and obj.name_generated == _truthy(f.value),
        "in-use": lambda: isinstance(obj, BuildCache) and obj.in_use == _truthy(f.value),
        "state": lambda: isinstance(obj, Container) and obj.state in f.value.split(","),
        "older-than": lambda: _older(obj, f.value, now),
        "label": lambda: _has_label(_labels(obj), f.value),
    }
    return checks[f.key]()


def _older(obj: Obj, value: str, now: datetime) -> bool:
    from tamer.inventory import BuildCache, Container

    when = obj.last_used if isinstance(obj, BuildCache) and obj.last_used else _created(obj)
    if isinstance(obj, Container) and obj.finished and not obj.running:
        when = obj.finished  # a stopped container's age is how long it has been stopped
    return when is not None and now - when > parse_duration(value)


def _has_label(labels: dict[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    return key in labels and (not sep or labels[key] == value)


def select(
    inv: Inventory, kind: str, filters: Sequence[str] = (), sort: str = "size", now: datetime | None = None
) -> list[Any]:
    """The objects of `kind` matching every filter, sorted (size: largest first; age: oldest first)."""
    parsed = parse_filters(kind, filters)
    if sort not in SORT_KEYS:
        raise UsageError(f"unknown sort key {sort!r}: expected one of {', '.join(SORT_KEYS)}")
    now = now or inv.taken_at
    by_kind: dict[str, Sequence[Obj]] = {
        "images": inv.images,
        "containers": inv.containers,
        "volumes": inv.volumes,
        "cache": inv.build_cache,
    }
    objs = by_kind[kind]
    chosen = [o for o in objs if all(_matches(o, f, now) for f in parsed)]
    if sort == "size":
        chosen.sort(key=lambda o: (-size_of(o), name_of(o)))
    elif sort == "age":
        chosen.sort(key=lambda o: (_created(o) or now, name_of(o)))
    else:
        chosen.sort(key=name_of)
    return chosen
