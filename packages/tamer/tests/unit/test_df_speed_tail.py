"""What `tamer df` does after its walk, made cheaper, gives the same values and the same bytes.

disk_report (one pass, rows made without the frozen dataclasses' guarded setattrs, the top consumers
picked without sorting all), snapshot_from_df and the text `record` stores are compared with their
plain definitions (written out here as the code read before) on inventories drawn at random from the
captured host: other states, sizes, logs, users, build cache, owners and ties.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tamer.accounting import (
    STOPPED_STATES,
    DiskReport,
    Item,
    KindTotal,
    OwnerTotal,
    classify_container,
    classify_image,
    classify_volume,
    disk_report,
    distinct_volumes,
    volume_bytes,
)
from tamer.inventory import BuildCache, Inventory, RawSnapshot, build_inventory
from tamer.report.envelope import envelope
from tamer.report.views import df_json, render_df
from tamer.sizes import DiskUsage
from tamer.snapshots import FsUsage, LogSize, OwnerSize, Snapshot, VolumeSize, record, snapshot_from_df

DATA = Path(__file__).parent / "data" / "snapshot.json"
BASE = build_inventory(RawSnapshot.from_json(json.loads(DATA.read_text())))


def plain_disk_report(inv: Inventory, *, top_n: int = 10) -> DiskReport:
    """disk_report as written before (each total its own pass, every list sorted whole)."""
    safe: list[Item] = []
    decision: list[Item] = []
    everything: list[Item] = []

    def file(item: Item, verdict: str | None) -> None:
        everything.append(item)
        if verdict == "safe":
            safe.append(item)
        elif verdict == "decision":
            decision.append(item)

    for img in inv.images:
        verdict = classify_image(img)
        why = "dangling, unused" if verdict == "safe" else ("tagged, unused" if verdict else "in use")
        file(Item("image", img.id, img.display_name, img.unique_size, img.owner, why), verdict)
    for c in inv.containers:
        verdict = classify_container(c)
        why = {"safe": f"{c.state}, started with --rm", "decision": f"{c.state}, kept"}.get(
            verdict or "", c.state
        )
        file(Item("container", c.id, c.name, c.writable_size or 0, c.owner, why), verdict)
        if c.log.size and c.log.size.apparent:
            file(Item("log", c.id, c.name, c.log.size.apparent, c.owner, f"{c.log_driver} log"), verdict)
    for v in inv.volumes:
        verdict = classify_volume(v)
        why = f"{v.kind}, {'orphaned' if v.orphaned else 'in use' if v.in_use else 'used by stopped containers'}"
        file(Item("volume", v.name, v.name, volume_bytes(v), v.owner, why), verdict)
    for b in inv.build_cache:
        verdict = None if b.in_use else "safe"
        name = b.description or b.id[:12]
        file(
            Item("build-cache", b.id, name, b.size, "build cache", "in use" if b.in_use else "unused"),
            verdict,
        )

    def total(kind: str, active: int, size: int) -> KindTotal:
        return KindTotal(
            kind,
            sum(1 for i in everything if i.kind == kind),
            active,
            size,
            sum(i.bytes for i in safe if i.kind == kind),
            sum(i.bytes for i in decision if i.kind == kind),
        )

    totals = (
        total("image", sum(1 for i in inv.images if i.containers), inv.layers_size),
        total(
            "container",
            sum(1 for c in inv.containers if c.running),
            sum(c.writable_size or 0 for c in inv.containers),
        ),
        total(
            "volume",
            sum(1 for v in inv.volumes if v.in_use),
            sum(volume_bytes(v) for v in distinct_volumes(inv.volumes)),
        ),
        total(
            "log",
            sum(1 for c in inv.containers if c.running and c.log.size and c.log.size.apparent),
            sum(c.log.size.apparent for c in inv.containers if c.log.size),
        ),
        total(
            "build-cache", sum(1 for b in inv.build_cache if b.in_use), sum(b.size for b in inv.build_cache)
        ),
    )
    owners: dict[str, OwnerTotal] = defaultdict(lambda: OwnerTotal(""))
    for img in inv.images:
        if img.owner not in ("shared", "unused"):
            owners[img.owner].layers += img.unique_size
    for c in inv.containers:
        o = owners[c.owner]
        o.layers += c.writable_size or 0
        o.logs += c.log.size.apparent if c.log.size else 0
        o.objects += 1
    for v in inv.volumes:
        o = owners[v.owner]
        o.volumes += volume_bytes(v)
        o.objects += 1
    for name, o in owners.items():
        o.owner = name
    notes = []
    if inv.sizing == "engine":
        notes.append(
            "sizes are the engine's own figures (data-root not readable here): logs and unaccounted "
            "space are unknown, and volumes placed elsewhere through symlinks show as 0"
        )
    return DiskReport(
        totals=totals,
        safe=tuple(sorted(safe, key=lambda i: (-i.bytes, i.kind, i.id))),
        needs_decision=tuple(sorted(decision, key=lambda i: (-i.bytes, i.kind, i.id))),
        top=tuple(sorted(everything, key=lambda i: (-i.bytes, i.kind, i.id))[:top_n]),
        owners=tuple(sorted(owners.values(), key=lambda o: (-o.total, o.owner))),
        unaccounted=inv.unaccounted,
        data_root_allocated=inv.data_root_usage.allocated if inv.data_root_usage else None,
        sizing=inv.sizing,
        notes=tuple(notes) + inv.warnings,
    )


def plain_snapshot(inv: Inventory, report: DiskReport, fs: FsUsage | None) -> Snapshot:
    """snapshot_from_df as written before (each row made by its dataclass's __init__)."""
    local = inv.sizing == "local"
    return Snapshot(
        taken_at=inv.taken_at.timestamp(),
        engine=inv.engine_id or inv.host,
        host=inv.host,
        sizing=inv.sizing,
        kinds=snapshot_from_df(inv, report, fs).kinds,
        reclaimable_safe=report.safe_bytes,
        reclaimable_decision=report.decision_bytes,
        owners=tuple(OwnerSize(o.owner, o.layers, o.volumes, o.logs) for o in report.owners),
        volumes=tuple(
            VolumeSize(
                name=v.name,
                placement=v.placement,
                kind=v.kind,
                owner=v.owner,
                bytes=v.size.apparent if v.size else None,
                allocated=v.size.allocated if v.size and local else None,
                in_use=v.in_use,
            )
            for v in inv.volumes
        ),
        logs=tuple(
            LogSize(
                container=c.name,
                container_id=c.id,
                owner=c.owner,
                bytes=c.log.size.apparent if c.log.size else None,
                allocated=c.log.size.allocated if c.log.size and local else None,
            )
            for c in inv.containers
            if c.log.size is not None or c.log.path
        ),
        data_root=inv.data_root,
        data_root_bytes=report.data_root_allocated,
        fs_size_bytes=fs.size if fs else None,
        fs_free_bytes=fs.free if fs else None,
    )


SIZES = st.one_of(st.none(), st.sampled_from([0, 1, 4096, 10**6]), st.integers(0, 10**12))
USAGE = st.one_of(st.none(), st.builds(DiskUsage, st.sampled_from([0, 7, 4096]), st.integers(0, 10**9)))
STATES = st.sampled_from(sorted(STOPPED_STATES | {"running", "paused", "restarting", "removing"}))
OWNERS = st.sampled_from(["container:a", "container:b", "project:shop", "unowned", "shared"])


@st.composite
def inventories(draw: Any) -> Inventory:
    """The captured host with other states, sizes, logs, owners and users; some build cache."""
    containers = tuple(
        dataclasses.replace(
            c,
            state=draw(STATES),
            auto_remove=draw(st.booleans()),
            writable_size=draw(SIZES),
            owner=draw(st.one_of(st.just(c.owner), OWNERS)),
            log=dataclasses.replace(c.log, size=draw(USAGE)),
        )
        for c in BASE.containers
    )
    names = [c.name for c in containers]
    volumes = tuple(
        dataclasses.replace(
            v,
            size=draw(USAGE),
            owner=draw(st.one_of(st.just(v.owner), OWNERS)),
            users_running=tuple(draw(st.lists(st.sampled_from(names), max_size=2, unique=True))),
            users_stopped=tuple(draw(st.lists(st.sampled_from(names), max_size=2, unique=True))),
            placement=draw(st.sampled_from(["default", "bind", "symlink"])),
        )
        for v in BASE.volumes
    )
    images = tuple(
        dataclasses.replace(
            i,
            containers=() if draw(st.booleans()) else i.containers,
            tags=() if draw(st.booleans()) else i.tags,
            shared_size=draw(st.integers(0, i.size)),
            owner=draw(st.one_of(st.just(i.owner), OWNERS, st.just("unused"))),
        )
        for i in BASE.images
    )
    cache = tuple(
        BuildCache(
            id=draw(st.sampled_from(["a" * 20, "b" * 20, "c" * 5])),  # ties on size, kind and id too
            type="regular",
            size=draw(st.sampled_from([0, 10, 10**6])),
            created=None,
            last_used=None,
            in_use=draw(st.booleans()),
            shared=False,
            description=draw(st.sampled_from(["", "RUN make"])),
        )
        for _ in range(draw(st.integers(0, 4)))
    )
    return dataclasses.replace(
        BASE,
        containers=containers,
        volumes=volumes,
        images=images,
        build_cache=cache,
        sizing=draw(st.sampled_from(["local", "engine"])),
        warnings=tuple(draw(st.lists(st.sampled_from(["w1", "w2"]), max_size=2))),
    )


@settings(max_examples=150, deadline=None)
@given(inventories(), st.sampled_from([0, 1, 2, 5, 10, 10**6, -1, -3]))
def test_disk_report_is_the_plain_report(inv: Inventory, top_n: int) -> None:
    fast = disk_report(inv, top_n=top_n)
    plain = plain_disk_report(inv, top_n=top_n)
    assert repr(fast) == repr(plain)
    assert fast == plain
    for a, b in zip(
        fast.safe + fast.needs_decision + fast.top, plain.safe + plain.needs_decision + plain.top, strict=True
    ):
        assert list(vars(a).items()) == list(vars(b).items())  # the same fields, in the same order
    assert envelope("df", 0, df_json(fast, inv), [], pretty=False) == envelope(
        "df", 0, df_json(plain, inv), [], pretty=False
    )
    assert render_df(fast, inv, verbose=True) == render_df(plain, inv, verbose=True)


@settings(max_examples=60, deadline=None)
@given(inventories(), st.sampled_from([None, FsUsage(10**12, 10**9)]))
def test_snapshot_rows_are_those_init_makes(inv: Inventory, fs: FsUsage | None) -> None:
    report = disk_report(inv)
    fast = snapshot_from_df(inv, report, fs)
    plain = plain_snapshot(inv, report, fs)
    assert fast == plain and repr(fast) == repr(plain)
    rows: list[tuple[Any, Any]] = []
    for key in ("owners", "volumes", "logs"):
        rows += zip(getattr(fast, key), getattr(plain, key), strict=True)
    for a, b in rows:
        assert list(vars(a).items()) == list(vars(b).items())
    assert json.dumps(fast.to_json()) == json.dumps(plain.to_json())
    assert Snapshot.from_json(json.loads(json.dumps(fast.to_json()))) == fast


def test_record_stores_the_text_of_to_json(tmp_path: Path) -> None:
    """record writes json.dumps(to_json()) (without copying the rows) and to_json still hands out copies."""
    report = disk_report(BASE)
    snap = snapshot_from_df(BASE, report, FsUsage(100, 10))
    assert snap.logs and snap.volumes and snap.owners
    store = tmp_path / "snapshots.sqlite"
    record(snap, path=store)
    with sqlite3.connect(store) as db:
        (data,) = db.execute("SELECT data FROM snapshots").fetchone()
    assert data == json.dumps(plain_snapshot(BASE, report, FsUsage(100, 10)).to_json(), separators=(",", ":"))
    copied = snap.to_json()
    copied["logs"][0]["bytes"] = -1
    assert snap.logs[0].bytes != -1 and snap.to_json() != copied
