"""What things cost, what could go, and who owns what. Pure functions of an Inventory.

Reclaimable space is split honestly:
- "safe": nothing anyone would miss: dangling images no container uses,
  orphaned anonymous volumes, exited/dead containers started with --rm
  (the engine was asked to remove them and did not);
- "needs a decision": orphaned named volumes, stopped containers kept on
  purpose (their writable layer and logs may hold data), tagged images no
  container uses.
Anything running, or used by something that exists, is not reclaimable.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from tamer.inventory import Container, Image, Inventory, Volume

STOPPED_STATES = frozenset({"exited", "dead", "created"})


@dataclass(frozen=True)
class Item:
    """One object with its cost, for top-consumer and reclaimable listings."""

    kind: str  # image, container, volume, log, build-cache
    id: str
    name: str
    bytes: int
    owner: str
    why: str = ""


@dataclass(frozen=True)
class KindTotal:
    """One kind's row of the report: how many, how many in use, bytes, and what could go."""

    kind: str
    count: int
    active: int  # in use / running
    size: int
    safe: int
    needs_decision: int


@dataclass
class OwnerTotal:
    """What one owner holds (layers only it uses, volumes, logs) and how many objects."""

    owner: str
    layers: int = 0  # image bytes only this owner uses + writable layers
    volumes: int = 0
    logs: int = 0
    objects: int = 0

    @property
    def total(self) -> int:
        return self.layers + self.volumes + self.logs


@dataclass(frozen=True)
class DiskReport:
    """What `tamer df` reports: totals per kind, what could go (safe or needing a decision), the top
    consumers and the owners, largest first."""

    totals: tuple[KindTotal, ...]
    safe: tuple[Item, ...]
    needs_decision: tuple[Item, ...]
    top: tuple[Item, ...]
    owners: tuple[OwnerTotal, ...]
    unaccounted: int | None
    data_root_allocated: int | None
    sizing: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def safe_bytes(self) -> int:
        return sum(i.bytes for i in self.safe)

    @property
    def decision_bytes(self) -> int:
        return sum(i.bytes for i in self.needs_decision)


def container_bytes(c: Container) -> int:
    return (c.writable_size or 0) + (c.log.size.apparent if c.log.size else 0)


def volume_bytes(v: Volume) -> int:
    return v.size.apparent if v.size else 0


def container_freed_bytes(c: Container) -> int:
    """What removing the container frees: its writable layer and logs, allocated bytes where measured."""
    rw = c.writable_allocated if c.writable_allocated is not None else (c.writable_size or 0)
    log = c.log.size.allocated if c.log.size else 0
    return rw + log


def volume_freed_bytes(v: Volume) -> int:
    """What removing the volume frees: the allocated bytes (du, not apparent size: a sparse file counts its
    blocks) of data that actually goes. A volume with bind options only points at a folder that stays
    when the volume is removed: 0."""
    if v.placement == "bind" or v.size is None:
        return 0
    return v.size.allocated if v.size.allocated or not v.size.apparent else v.size.apparent


def distinct_volumes(volumes: tuple[Volume, ...]) -> list[Volume]:
    """One volume per data folder: several volumes bound to one folder hold its bytes once."""
    seen: set[str] = set()
    out: list[Volume] = []
    for v in volumes:
        key = v.data_path or f"volume:{v.name}"
        if key in seen:
            continue
        seen.add(key)
        out.append(v)
    return out


def docker_total(inv: Inventory) -> int:
    """Everything Docker holds that tamer can attribute: layers once, writable layers, volumes (each data
    folder once), logs, cache."""
    return (
        inv.layers_size
        + sum(c.writable_size or 0 for c in inv.containers)
        + sum(volume_bytes(v) for v in distinct_volumes(inv.volumes))
        + sum(c.log.size.apparent for c in inv.containers if c.log.size)
        + sum(b.size for b in inv.build_cache)
    )


def classify_image(img: Image) -> str | None:
    """ "safe", "decision" or None (kept: in use)."""
    if img.containers:
        return None
    return "safe" if img.dangling else "decision"


def classify_container(c: Container) -> str | None:
    if c.running or c.state not in STOPPED_STATES:
        return None
    if c.auto_remove and c.state in {"exited", "dead"}:
        return "safe"
    return "decision"


def classify_volume(v: Volume) -> str | None:
    if not v.orphaned:
        return None
    return "safe" if v.anonymous else "decision"


def _item(kind: str, id: str, name: str, bytes: int, owner: str, why: str) -> Item:
    """Item(kind, id, name, bytes, owner, why), made without the frozen dataclass's six guarded setattrs
    (a df makes one per object, some 1,400 at 1,003 containers, after the walk): the same value, its
    fields in its __dict__ in their order (as __init__ puts them: vars() of it is its JSON)."""
    item = object.__new__(Item)
    item.__dict__.update(kind=kind, id=id, name=name, bytes=bytes, owner=owner, why=why)
    return item


def _by_size(i: Item) -> tuple[int, str, str]:
    return (-i.bytes, i.kind, i.id)  # largest first; ties in a fixed order


KINDS = ("image", "container", "volume", "log", "build-cache")


def disk_report(inv: Inventory, *, top_n: int = 10) -> DiskReport:
    """Totals per kind, reclaimable (safe / needs a decision), top consumers, per-owner roll-up."""
    safe: list[Item] = []
    decision: list[Item] = []
    everything: list[Item] = []
    # per kind: [objects, safe bytes, bytes needing a decision]
    per_kind = {kind: [0, 0, 0] for kind in KINDS}

    def file(item: Item, verdict: str | None) -> None:
        everything.append(item)
        counts = per_kind[item.kind]
        counts[0] += 1
        if verdict == "safe":
            safe.append(item)
            counts[1] += item.bytes
        elif verdict == "decision":
            decision.append(item)
            counts[2] += item.bytes

    for img in inv.images:
        verdict = classify_image(img)
        why = "dangling, unused" if verdict == "safe" else ("tagged, unused" if verdict else "in use")
        file(_item("image", img.id, img.display_name, img.unique_size, img.owner, why), verdict)
    for c in inv.containers:
        verdict = classify_container(c)
        why = (
            f"{c.state}, started with --rm"
            if verdict == "safe"
            else f"{c.state}, kept"
            if verdict
            else c.state
        )
        file(_item("container", c.id, c.name, c.writable_size or 0, c.owner, why), verdict)
        if c.log.size and c.log.size.apparent:
            # a log goes with its container; listed apart because logs are often the surprise
            file(_item("log", c.id, c.name, c.log.size.apparent, c.owner, f"{c.log_driver} log"), verdict)
    for v in inv.volumes:
        verdict = classify_volume(v)
        why = f"{v.kind}, {'orphaned' if v.orphaned else 'in use' if v.in_use else 'used by stopped containers'}"
        file(_item("volume", v.name, v.name, volume_bytes(v), v.owner, why), verdict)
    for b in inv.build_cache:
        verdict = None if b.in_use else "safe"
        file(
            _item(
                "build-cache",
                b.id,
                b.description or b.id[:12],
                b.size,
                "build cache",
                "in use" if b.in_use else "unused",
            ),
            verdict,
        )

    def total(kind: str, active: int, size: int) -> KindTotal:
        count, safe_bytes, decision_bytes = per_kind[kind]
        return KindTotal(kind, count, active, size, safe_bytes, decision_bytes)

    running_logs = container_layers = log_bytes = running = 0
    for c in inv.containers:
        container_layers += c.writable_size or 0
        if c.log.size:
            log_bytes += c.log.size.apparent
        if c.running:
            running += 1
            if c.log.size and c.log.size.apparent:
                running_logs += 1
    totals = (
        total("image", sum(1 for i in inv.images if i.containers), inv.layers_size),
        total("container", running, container_layers),
        total(
            "volume",
            sum(1 for v in inv.volumes if v.in_use),
            sum(volume_bytes(v) for v in distinct_volumes(inv.volumes)),
        ),
        total("log", running_logs, log_bytes),
        total(
            "build-cache", sum(1 for b in inv.build_cache if b.in_use), sum(b.size for b in inv.build_cache)
        ),
    )

    owners: dict[str, OwnerTotal] = {}
    for img in inv.images:
        if img.owner not in ("shared", "unused"):
            o = owners.get(img.owner) or owners.setdefault(img.owner, OwnerTotal(img.owner))
            o.layers += img.unique_size
    for c in inv.containers:
        o = owners.get(c.owner) or owners.setdefault(c.owner, OwnerTotal(c.owner))
        o.layers += c.writable_size or 0
        o.logs += c.log.size.apparent if c.log.size else 0
        o.objects += 1
    for v in inv.volumes:
        o = owners.get(v.owner) or owners.setdefault(v.owner, OwnerTotal(v.owner))
        o.volumes += volume_bytes(v)
        o.objects += 1
    notes = []
    if inv.sizing == "engine":
        notes.append(
            "sizes are the engine's own figures (data-root not readable here): logs and unaccounted "
            "space are unknown, and volumes placed elsewhere through symlinks show as 0"
        )
    return DiskReport(
        totals=totals,
        safe=tuple(sorted(safe, key=_by_size)),
        needs_decision=tuple(sorted(decision, key=_by_size)),
        # sorted(everything)[:top_n], without sorting all of them
        top=tuple(
            heapq.nsmallest(top_n, everything, key=_by_size)
            if top_n >= 0
            else sorted(everything, key=_by_size)[:top_n]
        ),
        owners=tuple(sorted(owners.values(), key=lambda o: (-o.total, o.owner))),
        unaccounted=inv.unaccounted,
        data_root_allocated=inv.data_root_usage.allocated if inv.data_root_usage else None,
        sizing=inv.sizing,
        notes=tuple(notes) + inv.warnings,
    )
