"""The containers' part of build_inventory done ahead (prepare_containers, while `tamer df`'s workers
walk) gives the inventory built without it, and a prepared entry only ever serves its own record."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

from tamer.inventory import RawSnapshot, build_inventory, prepare_containers

DATA = Path(__file__).parent / "data" / "snapshot.json"


def raw_snapshot() -> RawSnapshot:
    return RawSnapshot.from_json(json.loads(DATA.read_text()))


def test_prepared_ahead_builds_the_same_inventory() -> None:
    raw = raw_snapshot()
    assert raw.containers  # the captured host has some
    plain = build_inventory(raw)
    ahead = dataclasses.replace(raw, prepared=prepare_containers(raw.containers))
    assert ahead == raw  # the prepared parts are no part of the input's value
    assert build_inventory(ahead) == plain
    assert json.dumps(ahead.to_json(), sort_keys=True) == json.dumps(raw.to_json(), sort_keys=True)


def test_a_prepared_entry_never_stands_for_another_record() -> None:
    """Prepared from records that then changed (or from other records at the same addresses): each
    container is built from the record the snapshot holds."""
    raw = raw_snapshot()
    stale = copy.deepcopy(raw.containers)
    for cj in stale:
        cj["Name"] = "/stale-" + str(cj.get("Name", "")).lstrip("/")
        cj["Mounts"] = []
    prepared = prepare_containers(stale)
    # the stale entries, filed under the addresses of the snapshot's own records
    forged = {id(cj): entry for cj, entry in zip(raw.containers, prepared.values(), strict=True)}
    built = build_inventory(dataclasses.replace(raw, prepared=forged))
    assert built == build_inventory(raw)
    assert not any(c.name.startswith("stale-") for c in built.containers)
