"""build_inventory's work that needs no size, done ahead (prepare_inventory while `tamer df`'s workers walk,
or prepare_containers for the containers alone), gives the inventory built without it; it serves only the
snapshot of its very own records, and only once, so an inventory once returned never changes."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from tamer.inventory import (
    Inventory,
    RawSnapshot,
    build_inventory,
    prepare_containers,
    prepare_inventory,
)

DATA = Path(__file__).parent / "data" / "snapshot.json"


def raw_snapshot() -> RawSnapshot:
    return RawSnapshot.from_json(json.loads(DATA.read_text()))


def ahead_of(raw: RawSnapshot, **changed: Any) -> RawSnapshot:
    """`raw` with its prepare_inventory (made from `changed` values where given) in `prepared`."""
    values: dict[str, Any] = {
        "taken_at": raw.taken_at,
        "host": raw.host,
        "api_version": raw.api_version,
        "info": raw.info,
        "containers": raw.containers,
        "images": raw.images,
        "volumes": raw.volumes,
        "users_read": raw.users_read,
        "dangling_volumes": raw.dangling_volumes,
    }
    return dataclasses.replace(raw, prepared=prepare_inventory(**{**values, **changed}))


def frozen(inv: Inventory) -> str:
    """Every value of the inventory, nested ones included: changes if any object in it changes."""
    return repr(dataclasses.asdict(inv))


def test_prepared_ahead_builds_the_same_inventory() -> None:
    raw = raw_snapshot()
    assert raw.containers and raw.images and raw.volumes  # the captured host has some of each
    plain = build_inventory(raw)
    for ahead in (ahead_of(raw), dataclasses.replace(raw, prepared=prepare_containers(raw.containers))):
        assert ahead == raw  # the prepared parts are no part of the input's value
        assert json.dumps(ahead.to_json(), sort_keys=True) == json.dumps(raw.to_json(), sort_keys=True)
        assert frozen(build_inventory(ahead)) == frozen(plain)


def test_the_engines_figures_and_a_lean_listing_fill_in_the_same() -> None:
    """Sizes from the engine's df instead of a walk, and a listing without users: same with or without."""
    raw = raw_snapshot()
    df = {
        "LayersSize": 12345,
        "Images": [{"Id": i["inspect"]["Id"], "SharedSize": 7 * n} for n, i in enumerate(raw.images)],
        "Containers": [{"Id": c["Id"], "SizeRw": 11 * n} for n, c in enumerate(raw.containers)],
        "Volumes": [{"Name": v["Name"], "UsageData": {"Size": 13 * n}} for n, v in enumerate(raw.volumes)],
    }
    engine = dataclasses.replace(raw, local=None, engine_df=df)
    lean = dataclasses.replace(
        raw, users_read=False, dangling_volumes=[raw.volumes[0]["Name"]], local=None, placements={}
    )
    for other in (engine, lean):
        assert frozen(build_inventory(ahead_of(other))) == frozen(build_inventory(other))
    assert build_inventory(ahead_of(engine)).layers_size == 12345
    assert [c.writable_size for c in build_inventory(ahead_of(engine)).containers] == [
        11 * n for n in range(len(raw.containers))
    ]


def test_a_prepared_inventory_serves_only_its_own_records() -> None:
    """Prepared from records that then changed (or from other records), at another time, for another
    engine or API version: each inventory is built from what its snapshot holds."""
    raw = raw_snapshot()
    plain = frozen(build_inventory(raw))
    stale = copy.deepcopy(raw.containers)
    for cj in stale:
        cj["Name"] = "/stale-" + str(cj.get("Name", "")).lstrip("/")
        cj["Mounts"] = []
    other_volumes = [{**v, "Labels": {"com.docker.compose.project": "stale"}} for v in raw.volumes]
    for changed in (
        {"containers": stale},
        {"containers": raw.containers[:-1]},
        {"images": raw.images[1:]},
        {"volumes": other_volumes},
        {"taken_at": raw.taken_at + 1},
        {"api_version": "1.43"},  # an engine that labels its anonymous volumes: other rules
        {"info": {**raw.info, "ID": "OTHER"}},
        {"users_read": False},
    ):
        built = build_inventory(ahead_of(raw, **changed))
        assert frozen(built) == plain, changed
    forged = dataclasses.replace(raw, prepared=prepare_containers(stale))
    assert frozen(build_inventory(forged)) == plain


@pytest.mark.parametrize("first", ["sized", "other sizes"])
def test_a_prepared_inventory_is_taken_once_and_never_changes_an_inventory_returned(first: str) -> None:
    """Two snapshots share one prepared value (dataclasses.replace keeps it): the first build takes it and
    fills in its sizes; the second builds afresh and leaves the first inventory as it was returned."""
    raw = ahead_of(raw_snapshot())
    assert raw.local is not None
    local = copy.deepcopy(raw.local)
    for cid in local["containers"]:
        local["containers"][cid] = [999, 4096, 1, 0]
    other = dataclasses.replace(raw, local=local)
    assert other.prepared is raw.prepared
    order = (raw, other) if first == "sized" else (other, raw)
    inv1 = build_inventory(order[0])
    seen = frozen(inv1)
    inv2 = build_inventory(order[1])
    assert frozen(inv1) == seen  # untouched by the second build
    assert not set(map(id, inv1.containers)) & set(map(id, inv2.containers))
    assert frozen(build_inventory(dataclasses.replace(order[1], prepared=None))) == frozen(inv2)
    assert {c.writable_size for c in build_inventory(other).containers} == {999}
