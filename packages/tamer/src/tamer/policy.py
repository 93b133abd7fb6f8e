"""Cleanup policy: a TOML file (or the safe built-in default) -> rules. Pure.

Every problem is reported with the line it is on: syntax errors (from
tomllib), unknown sections and keys (with the list of valid ones), and
impossible values ("older_than must be a duration like 7d, got 'soon'").

Example policy::

    version = 1

    [protect]
    labels = ["keep"]              # anything labelled keep (any value) is never removed

    [containers]
    states = ["exited", "dead", "created"]
    older_than = "2d"              # since they finished (created, if never started)
    keep_names = ["db-*"]          # glob patterns
    generated_names_only = false   # true: only containers docker named itself

    [images]
    dangling = true
    unused_older_than = "30d"      # tagged images no container uses, unused that long
    keep_tags = ["postgres:*"]
    keep_newest = 2                # per repository, never evict the newest N

    [volumes]
    orphaned_anonymous_older_than = "7d"

    [[volumes.named]]              # named volumes go only by an explicit rule, after a verified backup
    names = ["old-cache"]
    labels = []
    older_than = "30d"

    [build_cache]
    older_than = "14d"
    max_size = "10GB"

    [budget]
    max_size = "40GB"              # when Docker uses more, evict least-recently-used first
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from tamer.errors import UsageError

DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$")
SIZE_FACTORS = {
    None: 1,
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
STATES = ("exited", "dead", "created")


class PolicyError(UsageError):
    """A policy file that can't be used; the message names the file and line."""


@dataclass(frozen=True)
class NamedVolumeRule:
    names: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    older_than: timedelta = timedelta(0)


@dataclass(frozen=True)
class Policy:
    """Rules for what may go. Anything not allowed by a rule stays."""

    source: str = "built-in default"
    protect_labels: tuple[str, ...] = ("keep",)
    # containers
    remove_containers: bool = True
    container_states: tuple[str, ...] = STATES
    container_older_than: timedelta = timedelta(0)
    container_keep_names: tuple[str, ...] = ()
    container_names: tuple[str, ...] = ()
    container_labels: tuple[str, ...] = ()
    generated_names_only: bool = False
    # images
    dangling_images: bool = True
    images_unused_older_than: timedelta | None = None
    keep_tags: tuple[str, ...] = ()
    keep_newest: int = 0
    # volumes
    orphaned_anonymous_older_than: timedelta | None = timedelta(days=7)
    named_volume_rules: tuple[NamedVolumeRule, ...] = ()
    # build cache
    cache_older_than: timedelta | None = None
    cache_max_size: int | None = None
    # budget
    budget: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


DEFAULT_POLICY = Policy()

# section -> key -> (kind, field); kind drives validation
SCHEMA: dict[str, dict[str, str]] = {
    "": {"version": "int"},
    "protect": {"labels": "labels"},
    "containers": {
        "remove": "bool",
        "states": "states",
        "older_than": "duration",
        "keep_names": "strs",
        "names": "strs",
        "labels": "labels",
        "generated_names_only": "bool",
    },
    "images": {
        "dangling": "bool",
        "unused_older_than": "duration",
        "keep_tags": "strs",
        "keep_newest": "count",
    },
    "volumes": {"orphaned_anonymous_older_than": "duration", "named": "rules"},
    "volumes.named": {"names": "strs", "labels": "labels", "older_than": "duration"},
    "build_cache": {"older_than": "duration", "max_size": "size"},
    "budget": {"max_size": "size"},
}


# Limits past which a value is a typo, not a policy: a timedelta holds at most
# 999999999 days, and sizes must fit the journal's 64-bit integers.
MAX_DURATION = timedelta(days=100 * 366)
MAX_SIZE = 2**63 - 1


def parse_duration_value(text: str) -> timedelta | None:
    """ "7d" -> timedelta(days=7); None when malformed or past MAX_DURATION (a century)."""
    m = DURATION.match(text.strip())
    if not m:
        return None
    seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    if not seconds <= MAX_DURATION.total_seconds():  # also catches inf and nan from huge digit strings
        return None
    return timedelta(seconds=seconds)


def parse_size_value(text: str | int) -> int | None:
    """ "40GB" -> 40_000_000_000; None when malformed, negative or past MAX_SIZE."""
    if isinstance(text, int):
        return text if 0 <= text <= MAX_SIZE else None
    m = SIZE.match(text.strip())
    if not m:
        return None
    value = float(m.group(1)) * SIZE_FACTORS[m.group(2)]
    if not value <= MAX_SIZE:
        return None
    return int(value)


class _Locator:
    """Finds the line of a section or key in the TOML text, for error messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line_of(self, section: str, key: str | None = None, nth: int = 0) -> int:
        current = ""
        seen = -1
        for i, raw in enumerate(self.lines, start=1):
            line = raw.split("#", 1)[0].strip()
            header = re.match(r"^\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?$", line)
            if header:
                current = header.group(1)
                if current == section:
                    seen += 1
                    if key is None and seen == nth:
                        return i
                continue
            in_place = key is not None and current == section and (seen == nth or section == "")
            if in_place and re.match(rf'^"?{re.escape(str(key))}"?\s*=', line):
                return i
        return 1


def load_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate a policy; raises PolicyError with "SOURCE:LINE: what, expected, fix".

    >>> load_policy('[images]\\nkeep_newest = 2\\n').keep_newest
    2
    """
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise PolicyError(
            f"{source}:1: not a usable policy: values are nested too deeply for a policy "
            "(expected flat sections of keys, lists of strings and [[volumes.named]] tables); "
            "see `tamer policy show` for the format"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            line = int(m.group(1))
            msg = msg[: m.start()].strip() + f" (column {m.group(2)})"
        else:  # "at end of document": the problem started somewhere before the end
            line = max(1, len(text.splitlines()))
            msg = msg.replace("(at end of document)", "").strip() + " (reached the end of the file)"
        raise PolicyError(
            f"{source}:{line}: not valid TOML: {msg}; see `tamer policy show` for the format"
        ) from None
    where = _Locator(text)
    errors: list[str] = []

    def err(line: int, msg: str) -> None:
        errors.append(f"{source}:{line}: {msg}")

    values: dict[str, Any] = {}
    named_rules: list[NamedVolumeRule] = []
    for section, body in data.items():
        if not isinstance(body, dict):
            if section in SCHEMA[""]:
                if section == "version" and body != 1:
                    err(where.line_of("", section), f"version must be 1, got {_clip(body)}")
                continue
            err(
                where.line_of("", section),
                f"unknown top-level key {section!r}: expected sections "
                f"{', '.join(s for s in SCHEMA if s and '.' not in s)}",
            )
            continue
        if section not in SCHEMA:
            err(
                where.line_of(section),
                f"unknown section [{section}]: expected one of "
                f"{', '.join(s for s in SCHEMA if s and '.' not in s)}",
            )
            continue
        for key, value in body.items():
            if key not in SCHEMA[section]:
                err(
                    where.line_of(section, key),
                    f"unknown key {key!r} in [{section}]: expected one of {', '.join(SCHEMA[section])}",
                )
                continue
            kind = SCHEMA[section][key]
            if kind == "rules":
                if not isinstance(value, list):
                    err(
                        where.line_of(section, key),
                        "volumes.named must be written as [[volumes.named]] tables",
                    )
                    continue
                for n, rule in enumerate(value):
                    named_rules.extend(_named_rule(rule, n, where, err))
                continue
            parsed = _check(kind, value, lambda msg, s=section, k=key: err(where.line_of(s, k), msg), key)
            if parsed is not _BAD:
                values[f"{section}.{key}"] = parsed
    if errors:
        raise PolicyError(
            "policy has errors:\n  " + "\n  ".join(errors) + "\nfix them and run `tamer policy check FILE`"
        )
    d = DEFAULT_POLICY
    return Policy(
        source=source,
        protect_labels=values.get("protect.labels", d.protect_labels),
        remove_containers=values.get("containers.remove", d.remove_containers),
        container_states=values.get("containers.states", d.container_states),
        container_older_than=values.get("containers.older_than", d.container_older_than),
        container_keep_names=values.get("containers.keep_names", d.container_keep_names),
        container_names=values.get("containers.names", d.container_names),
        container_labels=values.get("containers.labels", d.container_labels),
        generated_names_only=values.get("containers.generated_names_only", d.generated_names_only),
        dangling_images=values.get("images.dangling", d.dangling_images),
        images_unused_older_than=values.get("images.unused_older_than", d.images_unused_older_than),
        keep_tags=values.get("images.keep_tags", d.keep_tags),
        keep_newest=values.get("images.keep_newest", d.keep_newest),
        orphaned_anonymous_older_than=values.get(
            "volumes.orphaned_anonymous_older_than", d.orphaned_anonymous_older_than
        ),
        named_volume_rules=tuple(named_rules),
        cache_older_than=values.get("build_cache.older_than", d.cache_older_than),
        cache_max_size=values.get("build_cache.max_size", d.cache_max_size),
        budget=values.get("budget.max_size", d.budget),
    )


_BAD = object()


def _clip(value: Any) -> str:
    """repr of a bad value, cut short: a garbage file must not make a garbage-sized message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check(kind: str, value: Any, err: Any, key: str) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            err(f"{key} must be true or false, got {_clip(value)}")
            return _BAD
        return value
    if kind == "int":
        return value
    if kind == "count":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SIZE:
            err(f"{key} must be a whole number >= 0 (below 2^63), got {_clip(value)}")
            return _BAD
        return value
    if kind == "strs":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            err(f'{key} must be a list of non-empty strings, e.g. ["keep"], got {_clip(value)}')
            return _BAD
        return tuple(value)
    if kind == "labels":
        # a spec is KEY or KEY=VALUE; one with no key ("=keep") matches nothing, so a protect rule
        # written that way would protect nothing, silently
        if not isinstance(value, list) or not all(
            isinstance(v, str) and v.partition("=")[0].strip() for v in value
        ):
            err(f'{key} must be a list of labels, each KEY or KEY=VALUE, e.g. ["keep"], got {_clip(value)}')
            return _BAD
        return tuple(value)
    if kind == "states":
        if not isinstance(value, list) or not value or any(v not in STATES for v in value):
            err(
                f"{key} must be a list drawn from {list(STATES)} (running containers are never removed), "
                f"got {_clip(value)}"
            )
            return _BAD
        return tuple(value)
    if kind == "duration":
        parsed = parse_duration_value(value) if isinstance(value, str) else None
        if parsed is None:
            err(
                f'{key} must be a duration like "7d", "12h" or "2w", at most {MAX_DURATION.days}d, '
                f"got {_clip(value)}"
            )
            return _BAD
        return parsed
    if kind == "size":
        size = (
            parse_size_value(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        )
        if size is None or size <= 0:
            err(
                f'{key} must be a positive size like "40GB" or "500MiB", below 2^63 bytes, got {_clip(value)}'
            )
            return _BAD
        return size
    raise AssertionError(kind)


def _named_rule(rule: Any, n: int, where: _Locator, err: Any) -> list[NamedVolumeRule]:
    line = where.line_of("volumes.named", nth=n)
    if not isinstance(rule, dict):
        err(line, "each [[volumes.named]] must be a table")
        return []
    ok = True
    out: dict[str, Any] = {}
    for key, value in rule.items():
        if key not in SCHEMA["volumes.named"]:
            err(
                where.line_of("volumes.named", key, nth=n),
                f"unknown key {key!r} in [[volumes.named]]: "
                f"expected one of {', '.join(SCHEMA['volumes.named'])}",
            )
            ok = False
            continue
        parsed = _check(
            SCHEMA["volumes.named"][key],
            value,
            lambda msg, k=key: err(where.line_of("volumes.named", k, nth=n), msg),
            key,
        )
        if parsed is _BAD:
            ok = False
        else:
            out[key] = parsed
    if ok and not out.get("names") and not out.get("labels"):
        err(
            line,
            "a [[volumes.named]] rule must name its volumes (names = [...]) or their labels "
            "(labels = [...]): named volumes are never removed by a catch-all",
        )
        ok = False
    if not ok:
        return []
    return [
        NamedVolumeRule(
            names=out.get("names", ()),
            labels=out.get("labels", ()),
            older_than=out.get("older_than", timedelta(0)),
        )
    ]


def policy_to_json(policy: Policy) -> dict[str, Any]:
    """The rules as plain JSON (durations in seconds), recorded in every plan so apply can re-derive it."""
    out: dict[str, Any] = {}
    for f in fields(policy):
        value = getattr(policy, f.name)
        if f.name == "named_volume_rules":
            value = [
                {"names": list(r.names), "labels": list(r.labels), "older_than": r.older_than.total_seconds()}
                for r in value
            ]
        elif isinstance(value, timedelta):
            value = value.total_seconds()
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def policy_from_json(data: dict[str, Any]) -> Policy:
    """The inverse of policy_to_json; raises PolicyError when the record is not one."""
    try:
        kwargs: dict[str, Any] = {}
        for f in fields(Policy):
            if f.name not in data:
                continue
            value = data[f.name]
            default = getattr(DEFAULT_POLICY, f.name)
            if f.name == "named_volume_rules":
                value = tuple(
                    NamedVolumeRule(
                        tuple(r["names"]), tuple(r["labels"]), timedelta(seconds=float(r["older_than"]))
                    )
                    for r in value
                )
            elif f.name.endswith("older_than") and value is not None:
                value = timedelta(seconds=float(value))
            elif isinstance(default, tuple) or isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        return Policy(**kwargs)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise PolicyError(f"the policy recorded in the plan is not valid ({exc}); make a new plan") from None


MAX_POLICY_BYTES = 1 << 20
"""A policy is a few hundred bytes; past this it is not one (and is never read whole)."""


def read_policy_file(path: str) -> Policy:
    """Read and parse the policy at `path`. A FIFO, a device or a folder in its place is refused without
    reading it (a FIFO would hang a timed clean forever, /dev/zero fill its memory), as is a file past
    MAX_POLICY_BYTES."""
    from tamer.regular_files import NotARegularFile, read_regular

    try:
        raw = read_regular(path, MAX_POLICY_BYTES)
    except FileNotFoundError:
        raise PolicyError(
            f"policy file {path} does not exist; give the path of a TOML policy "
            "(see `tamer policy show` for the default)"
        ) from None
    except NotARegularFile:
        raise PolicyError(
            f"policy file {path} is not a regular file (a FIFO, a device or a folder); expected a TOML "
            "policy file (see `tamer policy show`); nothing was read or changed"
        ) from None
    except OSError as exc:
        raise PolicyError(f"policy file {path} could not be read: {exc.strerror or exc}") from None
    if raw is None:
        raise PolicyError(
            f"policy file {path} is over {MAX_POLICY_BYTES} bytes; a policy is far smaller: is it the "
            "right file? nothing was changed"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file {path} could not be read: {exc}") from None
    return load_policy(text, path)
