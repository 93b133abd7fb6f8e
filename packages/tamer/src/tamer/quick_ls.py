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

The `*_rows()` functions and VolumeLayout are pure but for a local volume's placement (`local=True`:
read off this machine's filesystem, LocalPlacements); `run_quick_ls()` reads the engine.
"""

from __future__ import annotations

import os
from posixpath import realpath
from stat import S_ISLNK

from tamer.datetimes import UTC, datetime
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
from tamer.report.table import render_table, safe_cell
from tamer.report.units import human_age, human_bytes, parse_duration

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms, a fifth of a `docker images`
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
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
_NOT_NORMAL_ENDS = ("/", "/.", "/..")
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)  # a descriptor to look up names from, not to read
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
    facts = volume_facts(listed, api_version, dated=_dated(filters, sort), local=local)
    return finish_volume_rows(facts, dangling, filters, sort, now)


def _dated(filters: Sequence[Filter], sort: str) -> bool:
    return sort == "age" or any(f.key == "older-than" for f in filters)


if TYPE_CHECKING:
    # name, anonymous, labels, placement, data path, created (when dated)
    VolumeFacts = tuple[str, bool, dict[str, str], str, str, datetime | None]


def volume_facts(
    listed: Sequence[JSON], api_version: str, *, dated: bool, local: bool = False
) -> list[VolumeFacts]:
    """What each listed volume's row needs but whether it is orphaned: read while the engine still
    answers that (finish_volume_rows adds it). `dated`: parse the creation times (a filter or the sort
    needs them; 1 ms a thousand volumes)."""
    labelled = engine_labels_anonymous(api_version)
    placer = LocalPlacements() if local else None
    out: list[VolumeFacts] = []
    try:
        for v in listed:
            name = str(v.get("Name") or "")
            labels = dict(v.get("Labels") or {})
            options = {str(k): str(val) for k, val in (v.get("Options") or {}).items()}
            if placer is not None and v.get("Driver") == "local":
                placement, data_path = placer.placement(options, str(v.get("Mountpoint") or ""))
            else:
                placement = "bind" if is_bind(options) else "default"
                data_path = options.get("device", "")
            created = parse_time(v.get("CreatedAt")) if dated else None
            anonymous = is_anonymous_volume(name, labels, engine_labels_them=labelled)
            out.append((name, anonymous, labels, placement, data_path, created))
    finally:
        if placer is not None:
            placer.close()  # its descriptors, also when a mountpoint made lstat raise
    return out


def finish_volume_rows(
    facts: Sequence[VolumeFacts], dangling: set[str], filters: Sequence[Filter], sort: str, now: datetime
) -> list[list[str]]:
    """The `tamer ls volumes` rows of volume_facts' volumes, `dangling` naming those no container uses."""
    return [row for _, row in _chosen_volumes(facts, dangling, filters, sort, now)]


def _chosen_volumes(
    facts: Sequence[VolumeFacts], dangling: set[str], filters: Sequence[Filter], sort: str, now: datetime
) -> list[tuple[str, list[str]]]:
    """(name, row) of each volume the filters keep, in the sort's order."""
    chosen: list[tuple[str, datetime | None, list[str]]] = []
    for name, anonymous, labels, placement, data_path, created in facts:
        orphaned = name in dangling
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
    return [(name, row) for name, _, row in chosen]


def volume_table(
    facts: Sequence[VolumeFacts],
    unreferenced: Callable[[], Iterable[str]],
    filters: Sequence[Filter],
    sort: str,
    now: datetime,
) -> str:
    """render("volumes", finish_volume_rows(facts, set(unreferenced()), ...)), with all but the STATUS
    column laid out (VolumeLayout) before `unreferenced()` is waited for."""
    return VolumeLayout(facts, filters, sort, now).finish(set(unreferenced()))


class VolumeLayout:
    """The `tamer ls volumes` table but its STATUS column, laid out before the engine says which volumes
    no container uses: that answer is the slowest, and what follows it is the command's own time
    (laying out 1,333 rows: ~2 ms). Only an `orphaned` filter needs it to know which rows there are;
    then finish() does it all."""

    def __init__(
        self, facts: Sequence[VolumeFacts], filters: Sequence[Filter], sort: str, now: datetime
    ) -> None:
        self._facts, self._filters, self._sort, self._now = facts, filters, sort, now
        self._laid_out = not any(f.key == "orphaned" for f in filters)
        if not self._laid_out:
            return
        chosen = _chosen_volumes(facts, set(), filters, sort, now)
        self._names = [name for name, _ in chosen]
        head = [safe_cell(h) for h in VOLUME_HEAD]
        rows = [[safe_cell(cell) for cell in row] for _, row in chosen]
        width = [max([len(head[i]), *(len(row[i]) for row in rows)]) for i in range(len(head))]
        # render_table's line is "  ".join(cells).rstrip(): the part after STATUS is stripped on its own,
        # which is the same while it keeps something to strip back to (SIZE is "?"); else render_table
        self._lefts = [f"{row[0].ljust(width[0])}  {row[1].ljust(width[1])}  " for row in rows]
        self._rights = [f"  {row[3].rjust(width[3])}  {row[4].ljust(width[4])}".rstrip() for row in rows]
        self._laid_out = all(right.strip() for right in self._rights)
        self._head = (
            f"{head[0].ljust(width[0])}  {head[1].ljust(width[1])}  ",
            head[2],
            f"  {head[3].rjust(width[3])}  {head[4].ljust(width[4])}".rstrip(),
        )

    def finish(self, dangling: set[str]) -> str:
        """The table, `dangling` naming the volumes no container uses."""
        if not self._laid_out:
            return render(
                "volumes", finish_volume_rows(self._facts, dangling, self._filters, self._sort, self._now)
            )
        status = ["orphaned" if name in dangling else "used" for name in self._names]
        head_left, title, head_right = self._head
        status_width = max([len(title), *(len(s) for s in status)])
        lines = [head_left + title.ljust(status_width) + head_right]
        lines += [
            left + s.ljust(status_width) + right
            for left, s, right in zip(self._lefts, status, self._rights, strict=True)
        ]
        return "\n".join(lines)


class LocalPlacements:
    """facts.local_placement for many volumes: the same answers, at a fraction of the system calls.

    realpath() looks at every part of a path: six lstat() calls for each volume's
    `<data-root>/volumes/<name>/_data`, 8,000 at 1,333 volumes, 35-65 ms, the largest cost of a
    `tamer ls volumes` after the engine's answers. The folder holding the volumes' folders is the same
    for all of them, so it is resolved once; one listing of it says which `<name>` entries are symlinks
    (the essay's link lives there); and `_data` is looked at relative to an open descriptor of that
    folder. A volume whose `<name>` or `_data` is a symlink, or whose mountpoint is not a plain absolute
    path of that shape, is resolved by facts.local_placement itself. Call close() when done.
    """

    def __init__(self) -> None:
        self._folders: dict[str, _VolumesFolder] = {}

    def placement(self, options: dict[str, str], mountpoint: str) -> tuple[str, str]:
        """What facts.local_placement(options, mountpoint) says."""
        if is_bind(options):
            return "bind", options["device"]
        real = self._resolve(mountpoint)
        if real is None:
            return local_placement(options, mountpoint)
        return ("symlink" if real != mountpoint else "default"), real

    def _resolve(self, mountpoint: str) -> str | None:
        """realpath(mountpoint) when it is TOP/NAME/LEAF, absolute and normal (no '.', '..', '//' or
        trailing '/': realpath and abspath would read those differently) and neither NAME nor LEAF is a
        symlink; else None."""
        if (
            not mountpoint.startswith("/")
            or "//" in mountpoint
            or "/./" in mountpoint
            or "/../" in mountpoint
            or mountpoint.endswith(_NOT_NORMAL_ENDS)
        ):
            return None  # what normpath would change (substring tests: a fifth of normpath's cost)
        head, _, leaf = mountpoint.rpartition("/")
        top, _, name = head.rpartition("/")
        if not top or not name or not leaf:
            return None
        folder = self._folders.get(top)
        if folder is None:
            folder = self._folders[top] = _VolumesFolder(top)
        return folder.resolve(name, leaf)

    def close(self) -> None:
        for folder in self._folders.values():
            folder.close()
        self._folders.clear()


class _VolumesFolder:
    """One folder of volumes' folders: its realpath, which entries are symlinks, a descriptor on it."""

    def __init__(self, top: str) -> None:
        # realpath resolves TOP/NAME/LEAF part by part: after TOP's parts it stands where realpath(TOP) does
        self.real = realpath(top)
        self._base = self.real.rstrip("/")  # "/" for a top of "/" would give "//name"
        try:
            fd: int | None = os.open(self.real, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            fd = None  # each path is looked at whole
        self._fd = fd
        self._links: dict[str, bool] = {}
        self.listed = True
        try:
            with os.scandir(self.real) as entries:
                for entry in entries:
                    try:
                        link = entry.is_symlink()  # its d_type: no system call
                    except OSError:
                        continue  # looked at on its own in resolve(), as realpath would
                    self._links[entry.name] = link
        except OSError:
            self.listed = False  # searchable but not listable (or gone): each name is looked at on its own

    def _is_link(self, relative: str) -> bool:
        """Whether TOP/relative is a symlink; one that cannot be looked at is not (as realpath says)."""
        try:
            if self._fd is not None:
                return S_ISLNK(os.lstat(relative, dir_fd=self._fd).st_mode)
            return S_ISLNK(os.lstat(f"{self._base}/{relative}").st_mode)
        except OSError:
            return False

    def resolve(self, name: str, leaf: str) -> str | None:
        link = self._links.get(name)
        if link is None:  # made after the listing, or the folder cannot be listed
            link = self._is_link(name)
        if link or self._is_link(f"{name}/{leaf}"):
            return None
        return f"{self._base}/{name}/{leaf}"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


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
    # the engine's dangling list and then the containers that mount any volume on it (a chain of two
    # answers, the longest wait) are asked here at once; the full list is read on another connection
    # meanwhile, on a thread that also makes the table but its STATUS column (most of the CPU work:
    # placements, layout) before the chain answers. Each row says what the engine said at its read: a
    # volume made between the reads and missing from the full list is not shown; one missing from the
    # dangling list is shown "used" (the safe side)
    local = engine.where.startswith("unix://")  # this machine's engine: its volumes' folders are here

    def lay_out() -> VolumeLayout:
        facts = volume_facts(engine.volumes(), engine.api_version, dated=_dated(filters, sort), local=local)
        return VolumeLayout(facts, filters, sort, now)

    layout = engine.ahead(lay_out)
    dangling = set(engine.unreferenced_volumes())
    return layout().finish(dangling)


def _container_records(engine: Engine) -> list[JSON]:
    """Every container, inspect-shaped: from the engine's files on disk when its data-root is readable
    here (read while the engine builds its list, the slowest answer), else inspected. As
    tamer.collect reads them for the inventory (the same datastore reader), without its imports."""
    from tamer.engine.datastore import container_from_datastore, read_records

    listing = engine.ahead(engine.containers)
    info = engine.info()
    data_root, driver = str(info.get("DockerRootDir", "")), str(info.get("Driver", ""))
    local = why_not_local(engine.where, data_root, str(info.get("ID") or "")) is None
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
