"""Pure logic on a captured snapshot of the demo clutter (scripts/capture_snapshot.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tamer.accounting import classify_container, classify_image, classify_volume, disk_report
from tamer.collect import chain_ids
from tamer.errors import UsageError
from tamer.facts import is_anonymous_volume, parse_time
from tamer.inventory import Inventory, RawSnapshot, build_inventory
from tamer.listing import parse_filters, select
from tamer.names import is_generated_name
from tamer.report.envelope import envelope
from tamer.report.units import human_bytes, parse_duration

DATA = Path(__file__).parent / "data" / "snapshot.json"


@pytest.fixture(scope="module")
def raw() -> RawSnapshot:
    return RawSnapshot.from_json(json.loads(DATA.read_text()))


@pytest.fixture(scope="module")
def inv(raw: RawSnapshot) -> Inventory:
    return build_inventory(raw)


def test_build_is_pure_and_deterministic(raw: RawSnapshot) -> None:
    before = json.dumps(raw.to_json(), sort_keys=True)
    assert build_inventory(raw) == build_inventory(raw)
    assert json.dumps(raw.to_json(), sort_keys=True) == before


def test_containers(inv: Inventory) -> None:
    by_name = {c.name: c for c in inv.containers}
    web = by_name["shop-web-1"]
    assert web.running and web.restart_policy == "unless-stopped" and web.owner == "project:shop"
    assert not web.name_generated
    chatty = by_name["chatty"]
    assert chatty.state == "exited" and chatty.exit_code == 0
    assert chatty.log.size is not None and chatty.log.size.apparent > 2_000_000
    generated = [c for c in inv.containers if c.name_generated]
    assert len(generated) >= 4 and all(c.owner.startswith("container:") for c in generated)
    # writable layers: the one-offs wrote 0, 200, 400, 600 KiB
    sizes = sorted(c.writable_size or 0 for c in inv.containers if c.image == "demo/app:latest")
    assert sizes[-1] >= 600 * 1024 and sizes[0] < 1024


def test_images(inv: Inventory) -> None:
    dangling = [i for i in inv.images if i.dangling]
    assert len(dangling) == 2 and all(not i.tags for i in dangling)
    busybox = next(i for i in inv.images if "demo/busybox:1" in i.tags)
    assert busybox.containers and busybox.owner == "shared"
    mongo = next(i for i in inv.images if "demo/mongo:7" in i.tags)
    assert mongo.volume_paths == ("/data/configdb", "/data/db")
    assert all(classify_image(i) == "safe" for i in dangling)
    # busybox and mongo are built from the same rootfs tarball: one layer, shared, stored once
    assert busybox.layers == mongo.layers and busybox.shared_size == busybox.size == mongo.shared_size
    assert inv.layers_size == sum(i.size for i in inv.images) - busybox.size


def test_volumes(inv: Inventory) -> None:
    vols = {v.name: v for v in inv.volumes}
    assert vols["shop_db"].owner == "project:shop" and not vols["shop_db"].anonymous
    assert vols["old-cache"].orphaned and classify_volume(vols["old-cache"]) == "decision"
    assert vols["old-cache"].size is not None and vols["old-cache"].size.apparent == 2500 * 1024
    anon = [v for v in inv.volumes if v.anonymous]
    assert len(anon) == 6
    orphaned = [v for v in anon if v.orphaned]
    assert len(orphaned) == 4 and all(classify_volume(v) == "safe" for v in orphaned)
    kept = [v for v in anon if not v.orphaned]
    assert {v.origin.path for v in kept if v.origin} == {"/data/db", "/data/configdb"}
    assert all(v.placement == "default" for v in inv.volumes)


def test_disk_report_split_and_owners(inv: Inventory) -> None:
    report = disk_report(inv)
    safe_kinds = {(i.kind, i.name) for i in report.safe}
    assert all(k in ("image", "volume", "container", "log", "build-cache") for k, _ in safe_kinds)
    decision_names = {i.name for i in report.needs_decision}
    assert "old-cache" in decision_names and "chatty" in decision_names
    assert "shop-web-1" not in decision_names | {n for _, n in safe_kinds}  # running: never reclaimable
    assert report.safe_bytes == sum(i.bytes for i in report.safe)
    owners = {o.owner: o for o in report.owners}
    shop = owners["project:shop"]
    assert shop.volumes == 3000 * 1024 and shop.total == shop.layers + shop.volumes + shop.logs
    totals = {t.kind: t for t in report.totals}
    assert totals["volume"].size == sum(v.size.apparent for v in inv.volumes if v.size)
    assert totals["log"].size == sum(c.log.size.apparent for c in inv.containers if c.log.size)
    assert report.unaccounted is not None and report.unaccounted >= 0


def test_running_and_in_use_are_never_reclaimable(inv: Inventory) -> None:
    for c in inv.containers:
        if c.running:
            assert classify_container(c) is None
    for v in inv.volumes:
        if not v.orphaned:
            assert classify_volume(v) is None
    for i in inv.images:
        if i.containers:
            assert classify_image(i) is None


def test_listing_filters_and_sorting(inv: Inventory) -> None:
    exited = select(inv, "containers", ["state=exited"])
    assert exited and all(c.state == "exited" for c in exited)
    from tamer.accounting import container_bytes

    sizes = [container_bytes(c) for c in select(inv, "containers", sort="size")]
    assert sizes == sorted(sizes, reverse=True)
    ages = [c.created for c in select(inv, "containers", sort="age")]
    assert ages == sorted(ages)
    by_size = select(inv, "volumes", sort="size")
    vs = [v.size.apparent for v in by_size if v.size]
    assert vs == sorted(vs, reverse=True)
    assert {v.name for v in select(inv, "volumes", ["orphaned=true", "named=true"])} == {"old-cache"}
    assert select(inv, "volumes", ["label=com.docker.compose.project=shop"])[0].name == "shop_db"
    future = inv.taken_at + timedelta(days=30)
    assert len(select(inv, "images", ["older-than=7d"], now=future)) == len(inv.images)
    assert select(inv, "images", ["older-than=7d"]) == []


@pytest.mark.parametrize(
    "kind,spec,fragment",
    [
        ("pods", "", "unknown kind"),
        ("volumes", "colour=red", "unknown filter 'colour'"),
        ("containers", "state=sleeping", "unknown container state"),
        ("images", "older-than=soon", "bad duration"),
        ("images", "dangling=maybe", "true or false"),
        ("volumes", "label=", "needs a value"),
    ],
)
def test_bad_filters(kind: str, spec: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_filters(kind, [spec] if spec else [])


def test_generated_names() -> None:
    assert is_generated_name("/nostalgic_hopper") and is_generated_name("zen_turing7")
    assert not is_generated_name("mongo_container") and not is_generated_name("shop-web-1")


def test_anonymous_detection() -> None:
    assert is_anonymous_volume("a" * 64, {})
    assert is_anonymous_volume("whatever", {"com.docker.volume.anonymous": ""})
    assert not is_anonymous_volume("mongo_data", {})
    assert not is_anonymous_volume("a" * 64, {"com.docker.compose.project": "x"})


def test_chain_ids_follow_the_layer_store_rule() -> None:
    import hashlib

    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b])[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()


def test_units_and_times() -> None:
    assert human_bytes(1982298) == "1.98MB" and human_bytes(999) == "999B" and human_bytes(None) == "?"
    assert human_bytes(12_300_000_000) == "12.3GB"
    assert parse_duration("2w") == timedelta(days=14)
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("2026-11-27T08:57:10.795126744Z") == datetime(
        2026, 11, 27, 8, 57, 10, 795126, tzinfo=UTC
    )
    assert parse_time(0) is None


def test_envelope_shape() -> None:
    doc = json.loads(envelope("df", 3, {"x": 1}, ["one failed"]))
    assert doc == {
        "version": 1,
        "command": "df",
        "status": "partial",
        "exit_code": 3,
        "data": {"x": 1},
        "errors": ["one failed"],
    }
