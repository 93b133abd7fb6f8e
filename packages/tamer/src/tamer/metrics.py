"""The Prometheus text exposition format (version 0.0.4) of a host snapshot. Pure: no I/O.

`render_metrics(snapshot, clean, ...)` turns one `tamer.snapshots.Snapshot` and what the clean journal
says (`CleanFacts`) into the text `/metrics` serves, `tamer metrics` prints and node_exporter's textfile
collector reads. Every figure is a gauge in bytes or seconds (Prometheus base units):

    tamer_volume_bytes{volume,placement,kind}   apparent bytes (docker's count: file sizes, links once)
    tamer_volume_allocated_bytes{...}           disk blocks (du -sB1 of the volume's folder)
    tamer_container_log_bytes{container}        apparent bytes of the container's log files
    tamer_owner_bytes{owner,kind}               bytes per owner; kind is layers, volumes or logs
    tamer_reclaimable_bytes{kind,class}         class is "safe" or "needs_decision" (see tamer.accounting)
    tamer_kind_bytes{kind}, tamer_kind_objects{kind}   tamer df's totals
    tamer_data_root_bytes, tamer_data_root_free_bytes, tamer_data_root_filesystem_size_bytes
    tamer_last_clean_timestamp_seconds, tamer_last_clean_freed_bytes   (0 when no clean has finished)
    tamer_journal_unfinished{operation}         cleans and volume operations that did not finish
    tamer_snapshot_timestamp_seconds, tamer_snapshot_age_seconds, tamer_series_folded{metric}, tamer_info

Bounded cardinality: per-object families (volumes, container logs, owners) keep the series of their `limit`
largest objects (ties broken by name, so the choice is stable); the rest are summed into series whose object
label is "__other__" (one per value of the family's other labels, so `sum by (kind)` stays exact), and
`tamer_series_folded{metric=...}` says how many were folded. Docker names must start with a letter or
digit, so "__other__" never names a real volume or container; an owner literally called "__other__" is
folded too (summed, never a duplicate series).

Label values are escaped as the format requires (backslash, double quote, line feed); text that is not
valid UTF-8 (surrogate escapes from odd bytes in a name) is replaced, never allowed to break the output.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tamer.snapshots import Snapshot, VolumeSize

OTHER = "__other__"
DEFAULT_SERIES_LIMIT = 500  # per per-object family; documented in the README and `--help`
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float


@dataclass(frozen=True)
class Family:
    """One metric: its name, HELP text, TYPE and samples (each label set at most once)."""

    name: str
    help: str
    samples: tuple[Sample, ...]
    type: str = "gauge"


@dataclass(frozen=True)
class CleanFacts:
    """What the clean journal and the volume operations' journals say, for one engine.

    readable: False when the journal could not be read; the clean and journal families then have no
    samples (absent means unknown, which is not the same as 0).
    """

    last_clean_at: float | None = None  # unix seconds the latest finished clean ended
    last_clean_freed: int = 0  # bytes that clean removed (its steps marked done)
    unfinished: Mapping[str, int] = field(default_factory=dict)  # operation -> runs that did not finish
    readable: bool = True


@dataclass(frozen=True)
class Freshness:
    """How old the snapshot is, as the server measures it (a monotonic clock, immune to clock shifts)."""

    age_seconds: float
    refresh_ok: bool | None = None  # the last background refresh worked (None: not serving)
    refresh_failures: int = 0


# -- text format ------------------------------------------------------------------------------
def valid_utf8(text: str) -> str:
    """`text` as valid UTF-8: a byte os.fsdecode kept as a surrogate escape becomes U+FFFD."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def escape_label_value(text: str) -> str:
    r"""A label value as the text format wants it: \ -> \\, " -> \", line feed -> \n.

    >>> escape_label_value('a"b\\c\nd')
    'a\\"b\\\\c\\nd'
    """
    return valid_utf8(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    r"""HELP text: \ -> \\ and line feed -> \n (quotes stay)."""
    return valid_utf8(text).replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers exactly (a byte count past 2**53 keeps every digit), floats shortest round-trip, NaN/±Inf."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render(families: Iterable[Family]) -> str:
    """The exposition text: HELP, TYPE, then the samples of each family, a line feed after each line."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for s in fam.samples:
            if s.labels:
                inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in s.labels)
                lines.append(f"{fam.name}{{{inner}}} {format_value(s.value)}")
            else:
                lines.append(f"{fam.name} {format_value(s.value)}")
    return "\n".join(lines) + "\n"


# -- bounded cardinality ----------------------------------------------------------------------
def merge(rows: Iterable[tuple[Labels, int]]) -> dict[Labels, int]:
    """Sum rows with equal label sets: a label set may appear once in a scrape."""
    out: dict[Labels, int] = {}
    for labels, value in rows:
        out[labels] = out.get(labels, 0) + value
    return out


def fold(
    rows: Iterable[tuple[Labels, int]],
    object_label: str,
    limit: int,
    rank: Mapping[str, int] | None = None,
) -> tuple[list[Sample], int]:
    """Keep the series of the `limit` largest objects; sum the rest into `object_label="__other__"`.

    An object is one value of `object_label` (a volume, a container, an owner) with all its series;
    objects are ranked by `rank` (object -> weight; default: the sum of the object's rows), largest
    first, ties by name, so the choice is stable from scrape to scrape. The folded series keep their
    other labels (one "__other__" series per combination of them), so sums over those labels stay
    exact. An object already called "__other__" is always folded. Returns (samples, objects folded).
    """
    merged = merge(rows)
    weight: dict[str, int] = {}
    for labels, value in merged.items():
        name = dict(labels)[object_label]
        weight[name] = weight.get(name, 0) + value
    if rank is not None:
        weight = {name: rank.get(name, 0) for name in weight}
    order = sorted((n for n in weight if n != OTHER), key=lambda n: (-weight[n], n))
    kept_names = set(order[:limit])
    kept: list[Sample] = []
    others: dict[Labels, int] = {}
    for labels, value in sorted(merged.items(), key=lambda kv: (-weight[dict(kv[0])[object_label]], kv[0])):
        if dict(labels)[object_label] in kept_names:
            kept.append(Sample(labels, value))
        else:
            key = tuple((k, OTHER if k == object_label else v) for k, v in labels)
            others[key] = others.get(key, 0) + value
    kept.extend(Sample(k, v) for k, v in sorted(others.items()))
    return kept, len(weight) - len(kept_names)


# -- from a snapshot to families -------------------------------------------------------------------
def _labels(**pairs: str) -> Labels:
    return tuple(pairs.items())


def _gauge(name: str, help: str, value: float | None) -> Family:
    return Family(name, help, () if value is None else (Sample((), value),))


def build_families(
    snapshot: Snapshot,
    clean: CleanFacts,
    *,
    now: float,
    limit: int = DEFAULT_SERIES_LIMIT,
    freshness: Freshness | None = None,
    version: str = "",
) -> list[Family]:
    """The families for one snapshot; see the module docstring.

    now: unix seconds, for the snapshot's age when `freshness` is not given (tamer metrics);
    limit: objects kept per per-object family (>= 0). A figure the snapshot does not have (a remote
    engine: no logs, no data-root) gives a family with no samples, never a made-up 0.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    folded: dict[str, int] = {}
    past = f'past {limit} {{what}} the rest are summed into {{label}}="{OTHER}"'

    def vol(v: VolumeSize) -> Labels:
        return _labels(volume=v.name, placement=v.placement, kind=v.kind)

    apparent = {v.name: v.bytes for v in snapshot.volumes if v.bytes is not None}
    volumes, folded["tamer_volume_bytes"] = fold(
        ((vol(v), v.bytes) for v in snapshot.volumes if v.bytes is not None), "volume", limit
    )
    allocated, folded["tamer_volume_allocated_bytes"] = fold(
        ((vol(v), v.allocated) for v in snapshot.volumes if v.allocated is not None),
        "volume",
        limit,
        rank=apparent,  # the same volumes kept in both families
    )
    logs, folded["tamer_container_log_bytes"] = fold(
        ((_labels(container=c.container), c.bytes) for c in snapshot.logs if c.bytes is not None),
        "container",
        limit,
    )
    owners, folded["tamer_owner_bytes"] = fold(
        (
            (_labels(owner=o.owner, kind=kind), value)
            for o in snapshot.owners
            for kind, value in (("layers", o.layers), ("volumes", o.volumes), ("logs", o.logs))
        ),
        "owner",
        limit,
    )
    reclaim = merge(
        (_labels(kind=k.kind, **{"class": cls}), value)
        for k in snapshot.kinds
        for cls, value in (("safe", k.safe), ("needs_decision", k.needs_decision))
    )
    fams = [
        Family(
            "tamer_volume_bytes",
            "Apparent bytes of a volume's data as docker counts them (file sizes, hard links once, "
            "directories not counted); placement is default, bind or symlink, kind is named or "
            f"anonymous; {past.format(what='volumes', label='volume')}.",
            tuple(volumes),
        ),
        Family(
            "tamer_volume_allocated_bytes",
            "Bytes of disk blocks a volume's data uses (du -sB1 of its folder: sparse files count "
            "their blocks, directories included); the same volumes as tamer_volume_bytes.",
            tuple(allocated),
        ),
        Family(
            "tamer_container_log_bytes",
            "Apparent bytes of a container's log files (json-file/local drivers); "
            f"{past.format(what='containers', label='container')}.",
            tuple(logs),
        ),
        Family(
            "tamer_owner_bytes",
            "Bytes per owner (project:NAME, container:NAME, unowned, shared); kind is layers (image "
            "bytes only this owner uses and its writable layers), volumes or logs; "
            f"{past.format(what='owners', label='owner')}.",
            tuple(owners),
        ),
        Family(
            "tamer_reclaimable_bytes",
            'Bytes a clean could free per kind: class="safe" (nothing anyone would miss) or '
            'class="needs_decision" (named volumes, kept containers, tagged images).',
            tuple(Sample(k, v) for k, v in sorted(reclaim.items())),
        ),
        Family(
            "tamer_kind_bytes",
            "Bytes Docker holds per kind, as tamer df totals them (image layers once, container "
            "writable layers, volumes (each folder once), logs, build cache).",
            tuple(
                Sample(k, v)
                for k, v in sorted(merge((_labels(kind=k.kind), k.bytes) for k in snapshot.kinds).items())
            ),
        ),
        Family(
            "tamer_kind_objects",
            "How many objects of each kind the engine has.",
            tuple(
                Sample(k, v)
                for k, v in sorted(merge((_labels(kind=k.kind), k.count) for k in snapshot.kinds).items())
            ),
        ),
        _gauge(
            "tamer_data_root_bytes",
            "Allocated bytes under the engine's data-root (du -sB1; absent when it was not walked here).",
            snapshot.data_root_bytes,
        ),
        _gauge(
            "tamer_data_root_free_bytes",
            "Bytes available to unprivileged users on the data-root's filesystem (df's Avail; absent "
            "when the data-root is not on this machine).",
            snapshot.fs_free_bytes,
        ),
        _gauge(
            "tamer_data_root_filesystem_size_bytes",
            "Size of the data-root's filesystem (df's Size; absent when not on this machine).",
            snapshot.fs_size_bytes,
        ),
        *_clean_families(clean),
    ]
    age = freshness.age_seconds if freshness is not None else now - snapshot.taken_at
    fams.append(
        _gauge(
            "tamer_snapshot_timestamp_seconds",
            "When the snapshot these figures come from was taken (unix seconds, the host's clock).",
            snapshot.taken_at,
        )
    )
    fams.append(
        _gauge(
            "tamer_snapshot_age_seconds",
            "How old that snapshot was when this was rendered (scrapes never walk the disk).",
            round(age, 3),
        )
    )
    if freshness is not None and freshness.refresh_ok is not None:
        fams.append(
            _gauge(
                "tamer_snapshot_refresh_ok",
                "1 if the latest background refresh worked, 0 if it failed (the previous snapshot is served).",
                1 if freshness.refresh_ok else 0,
            )
        )
        fams.append(
            Family(
                "tamer_snapshot_refresh_failures_total",
                "Background refreshes that failed since tamer serve started.",
                (Sample((), freshness.refresh_failures),),
                type="counter",
            )
        )
    fams.append(
        Family(
            "tamer_series_folded",
            f'Objects (volumes, containers, owners) summed into "{OTHER}" series because a family '
            f"had more than {limit}.",
            tuple(Sample(_labels(metric=name), n) for name, n in sorted(folded.items())),
        )
    )
    fams.append(
        Family(
            "tamer_info",
            "Always 1; the labels say which tamer, which engine (ID@data-root) and how it was sized.",
            (Sample(_labels(version=version, engine=snapshot.engine, sizing=snapshot.sizing), 1),),
        )
    )
    return fams


def _clean_families(clean: CleanFacts) -> list[Family]:
    unfinished: tuple[Sample, ...] = ()
    if clean.readable:
        unfinished = tuple(Sample(_labels(operation=op), n) for op, n in sorted(clean.unfinished.items()))
    at = (clean.last_clean_at or 0) if clean.readable else None
    freed = (clean.last_clean_freed if clean.last_clean_at is not None else 0) if clean.readable else None
    return [
        _gauge(
            "tamer_last_clean_timestamp_seconds",
            "When the latest finished tamer clean --apply against this engine ended (unix seconds; 0 if "
            "none has; absent if the journal cannot be read).",
            at,
        ),
        _gauge(
            "tamer_last_clean_freed_bytes",
            "Bytes the latest finished clean removed (its steps marked done; 0 if none has).",
            freed,
        ),
        Family(
            "tamer_journal_unfinished",
            "Operations (clean, move, adopt) that began and did not finish (killed, interrupted): "
            "rerun or roll back as tamer clean / tamer volume say.",
            unfinished,
        ),
    ]


def render_metrics(
    snapshot: Snapshot,
    clean: CleanFacts,
    *,
    now: float,
    limit: int = DEFAULT_SERIES_LIMIT,
    freshness: Freshness | None = None,
    version: str = "",
) -> str:
    """The whole exposition text for one snapshot (see build_families for the parameters).

    >>> text = render_metrics(snapshots.latest(), CleanFacts(), now=time.time())  # doctest: +SKIP
    >>> text.splitlines()[1]                                                        # doctest: +SKIP
    '# TYPE tamer_volume_bytes gauge'
    """
    return render(build_families(snapshot, clean, now=now, limit=limit, freshness=freshness, version=version))
