"""`tamer ls images|volumes|containers` as a table, straight from the engine's answers: the lean default.

Without --users, --size or --json these views show only what the engine's lists say (for volumes
also its list of those no container refers to; for containers each one's record, from the engine's
files on disk when they are readable here): the same reads `docker images`, `docker volume ls` and
`docker ps -a` make. Building the inventory for them would cost more than the reads: importing the
model (tamer.inventory, accounting, views: some 20 dataclasses) takes about 40 ms, two `docker
images` whole, and building 2,000 containers' records another 70 ms. So this module renders rows
from the engine's JSON with the rules in tamer.facts that the inventory uses too, and imports
nothing else of the model. Tests render every filter both ways on one host and require the same
table as the inventory's, so the two cannot drift apart.

The `*_rows()` functions are pure; `run_quick_ls()` reads the engine.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tamer.facts import (
    RUNNING_STATES,
    container_summary,
    engine_labels_anonymous,
    is_anonymous_volume,
    is_bind,
    is_dangling,
    local_placement,
    parse_time,
    why_not_local,
)
from tamer.names import is_generated_name
from tamer.report.table import render_table
from tamer.report.units import human_age, human_bytes, parse_duration

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms, a fifth of a `docker images`
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from tamer.engine import Engine
    from tamer.listing import Filter

    JSON = dict[str, Any]
QUICK_KINDS = ("images", "volumes", "containers")
# filters these views answer from the lists alone; `unused` (an image's users) needs the container list
QUICK_FILTERS = {
    "images": ("dangling", "older-than", "label"),
    "volumes": ("orphaned", "older-than", "label", "anonymous", "named", "placement"),
    "containers": ("state", "older-than", "label", "generated-name"),
}
IMAGE_HEAD = ["IMAGE", "ID", "SIZE", "SHARED", "AGE", ""]
VOLUME_HEAD = ["VOLUME", "KIND", "STATUS", "SIZE", "PLACEMENT"]  # the --users view less USERS, CREATED BY
CONTAINER_HEAD = ["NAME", "ID", "IMAGE", "STATE", "WRITABLE", "LOGS", "AGE", "RESTART", "OWNER"]


def answers(kind: str, filters: Sequence[Filter], sort: str) -> bool:
    """Whether the lean table can answer this listing (else the inventory's path does)."""
    return (
        kind in QUICK_KINDS and sort in ("name", "age") and all(f.key in QUICK_FILTERS[kind] for f in filters)
    )


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _truthy(value: str) -> bool:
    return value in ("true", "1", "yes")


def _has_label(labels: dict[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _image_facts(entry: JSON) -> tuple[str, str, list[str], datetime | None, dict[str, str]]:
    iid = str(entry.get("Id") or "")
    tags = [t for t in (entry.get("RepoTags") or []) if t != "<none>:<none>"]
    short = iid.removeprefix("sha256:")[:12]
    name = tags[0] if tags else f"<none> {short}"
    return name, short, tags, parse_time(entry.get("Created")), dict(entry.get("Labels") or {})


def image_rows(
    listed: Sequence[JSON], filters: Sequence[Filter], sort: str, now: datetime
) -> list[list[str]]:
    chosen: list[tuple[str, datetime | None, list[str]]] = []
    for entry in listed:
        name, short, tags, created, labels = _image_facts(entry)
        keep = True
        for f in filters:
            if f.key == "dangling":
                keep = is_dangling(tags) == _truthy(f.value)
            elif f.key == "older-than":
                keep = created is not None and now - created > parse_duration(f.value)
            elif f.key == "label":
                keep = _has_label(labels, f.value)
            if not keep:
                break
        if keep:
            row = [
                _short(name, 40),
                short,
                human_bytes(int(entry.get("Size") or 0)),
                "?",
                human_age(created, now),
                "dangling" if is_dangling(tags) else "",
            ]
            chosen.append((name, created, row))
    _sort(chosen, sort, now)
    return [row for _, _, row in chosen]


def volume_rows(
    listed: Sequence[JSON],
    dangling: set[str],
    api_version: str,
    filters: Sequence[Filter],
    sort: str,
    now: datetime,
    *,
    local: bool = False,
) -> list[list[str]]:
    """`local`: the engine is on this machine, so a local-driver volume's placement is read here
    (facts.local_placement: the essay's symlink shows as such); else only its options say (bind)."""
    labelled = engine_labels_anonymous(api_version)
    dated = sort == "age" or any(f.key == "older-than" for f in filters)
    chosen: list[tuple[str, datetime | None, list[str]]] = []
    for v in listed:
        name = str(v.get("Name") or "")
        labels = dict(v.get("Labels") or {})
        options = {str(k): str(val) for k, val in (v.get("Options") or {}).items()}
        anonymous = is_anonymous_volume(name, labels, engine_labels_them=labelled)
        if local and v.get("Driver") == "local":
            placement, data_path = local_placement(options, str(v.get("Mountpoint") or ""))
        else:
            placement = "bind" if is_bind(options) else "default"
            data_path = options.get("device", "")
        orphaned = name in dangling
        # parsed only when a filter or the sort asks (1 ms a thousand volumes)
        created = parse_time(v.get("CreatedAt")) if dated else None
        keep = True
        for f in filters:
            if f.key == "orphaned":
                keep = orphaned == _truthy(f.value)
            elif f.key == "anonymous":
                keep = anonymous == _truthy(f.value)
            elif f.key == "named":
                keep = (not anonymous) == _truthy(f.value)
            elif f.key == "placement":
                keep = placement == f.value
            elif f.key == "older-than":
                keep = created is not None and now - created > parse_duration(f.value)
            elif f.key == "label":
                keep = _has_label(labels, f.value)
            if not keep:
                break
        if keep:
            where = data_path if placement != "default" else ""
            row = [
                _short(name, 40),
                "anonymous" if anonymous else "named",
                "orphaned" if orphaned else "used",
                "?",
                placement + (f" -> {where}" if where else ""),
            ]
            chosen.append((name, created, row))
    _sort(chosen, sort, now)
    return [row for _, _, row in chosen]


def container_rows(
    records: Sequence[JSON], filters: Sequence[Filter], sort: str, now: datetime
) -> list[list[str]]:
    """The `tamer ls containers` table (unsized: WRITABLE and LOGS are "?") from inspect-shaped records
    (the engine's files on disk, else its inspects), by facts.container_summary's rules."""
    chosen: list[tuple[str, datetime | None, list[str]]] = []
    for cj in records:
        c = container_summary(cj)
        name = c["name"]
        generated = is_generated_name(name)
        keep = True
        for f in filters:
            if f.key == "state":
                keep = c["state"] in f.value.split(",")
            elif f.key == "older-than":
                # a stopped container's age is how long it has been stopped
                stopped = c["finished"] is not None and c["state"] not in RUNNING_STATES
                when = c["finished"] if stopped else c["created"]
                keep = when is not None and now - when > parse_duration(f.value)
            elif f.key == "label":
                keep = _has_label(c["labels"], f.value)
            elif f.key == "generated-name":
                keep = generated == _truthy(f.value)
            if not keep:
                break
        if keep:
            row = [
                _short(name, 32) + (" (auto)" if generated else ""),
                str(cj.get("Id", ""))[:12],
                _short(c["image"], 28),
                c["state"] + (f" ({c['exit_code']})" if c["state"] == "exited" else ""),
                "?",
                "?",
                human_age(c["created"], now),
                c["restart_policy"] + (" --rm" if c["auto_remove"] else ""),
                c["owner"],
            ]
            chosen.append((name, c["created"], row))
    _sort(chosen, sort, now)
    return [row for _, _, row in chosen]


def _sort(chosen: list[tuple[str, datetime | None, list[str]]], sort: str, now: datetime) -> None:
    if sort == "age":
        chosen.sort(key=lambda c: (c[1] or now, c[0]))
    else:
        chosen.sort(key=lambda c: c[0])


def render(kind: str, rows: list[list[str]]) -> str:
    if kind == "images":
        return render_table(IMAGE_HEAD, rows, right=(2, 3, 4))
    if kind == "containers":
        return render_table(CONTAINER_HEAD, rows, right=(4, 5, 6))
    return render_table(VOLUME_HEAD, rows, right=(3,))


def run_quick_ls(host: str | None, kind: str, filters: Sequence[Filter], sort: str) -> str:
    """Read the lists `kind` needs and return the table."""
    from tamer.engine import connect

    engine = connect(host)
    now = datetime.now(UTC)
    if kind == "images":
        return render(kind, image_rows(engine.images(), filters, sort, now))
    if kind == "containers":
        return render(kind, container_rows(_container_records(engine), filters, sort, now))
    # both lists at once, on two connections (the engine answers them in parallel): each row says
    # what the engine said at its read. A volume made between the reads and missing from the full
    # list is not shown; one missing from the dangling list is shown "used" (the safe side)
    unreferenced = engine.ahead(engine.unreferenced_volumes)
    listed = engine.volumes()
    dangling = set(unreferenced())
    # a unix socket is this machine's engine: its volumes' folders are here to look at
    local = engine.where.startswith("unix://")
    return render(kind, volume_rows(listed, dangling, engine.api_version, filters, sort, now, local=local))


def _container_records(engine: Engine) -> list[JSON]:
    """Every container, inspect-shaped: from the engine's files on disk when its data-root is readable
    here (read while the engine builds its list, the slowest answer), else inspected. As
    tamer.collect reads them for the inventory (the same datastore reader), without its imports."""
    from tamer.engine.datastore import container_from_datastore, read_records

    listing = engine.ahead(engine.containers)
    info = engine.info()
    data_root, driver = str(info.get("DockerRootDir", "")), str(info.get("Driver", ""))
    local = why_not_local(engine.where, data_root) is None
    records = read_records(data_root) if local else {}
    out: list[JSON] = []
    to_inspect: list[str] = []
    for entry in listing():
        fast = (
            container_from_datastore(data_root, driver, entry, records=records, layer=False)
            if local
            else None
        )
        if fast is None:
            to_inspect.append(str(entry["Id"]))
        else:
            out.append(fast)
    # one removed meanwhile is gone from the table, as from the next `docker ps -a`
    out.extend(data for data in engine.inspect_many("container", to_inspect).values() if data is not None)
    return out
