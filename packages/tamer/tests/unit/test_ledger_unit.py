"""tamer.ledger on its own: what is reused, what is not, and that it never fails a command."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tamer.ledger import MAX_AGE_S, lasting_inspect, ledger_path, open_ledger
from tamer.sizes import DiskUsage

ENGINE = "ABCD@/var/lib/docker"
INSPECT = {
    "Id": "sha256:aa",
    "RepoTags": ["web:1"],
    "Created": "2026-01-01T00:00:00Z",
    "Size": 10,
    "Config": {"Volumes": {"/data": {}}, "Labels": {"a": "b"}, "Env": ["X=1"]},
    "RootFS": {"Type": "layers", "Layers": ["sha256:l1"]},
}


def test_lasting_inspect_keeps_what_the_id_fixes_and_drops_tags() -> None:
    kept = lasting_inspect(INSPECT)
    assert "RepoTags" not in kept and "Env" not in kept["Config"]
    assert kept["RootFS"]["Layers"] == ["sha256:l1"] and kept["Config"]["Volumes"] == {"/data": {}}


def test_round_trip_and_limits(tmp_path: Path) -> None:
    layer = tmp_path / "overlay2" / "cacheid"
    layer.mkdir(parents=True)
    led = open_ledger(ENGINE, now=1000.0, state=tmp_path)
    stamp = led.folder_stamp(str(layer))
    led.remember_layer("cacheid", "sha256:chain", str(layer), stamp, DiskUsage(5, 4096, 1))
    led.remember_image("sha256:aa", lasting_inspect(INSPECT))
    led.remember_image("sha256:bb", {"Id": "sha256:other"})  # an inspect of another id is not kept
    led.save()
    assert not led.warnings
    assert ledger_path(ENGINE, tmp_path).exists()

    same = open_ledger(ENGINE, now=1000.0 + MAX_AGE_S, state=tmp_path)
    assert same.layer("cacheid", "sha256:chain", str(layer)) == DiskUsage(5, 4096, 1)
    assert same.image("sha256:aa") == lasting_inspect(INSPECT)
    assert same.image("sha256:bb") is None
    assert same.layer("cacheid", "sha256:another-chain", str(layer)) is None
    assert open_ledger(ENGINE, now=1000.0 + MAX_AGE_S + 1, state=tmp_path).image("sha256:aa") is None
    assert open_ledger(ENGINE, now=999.0, state=tmp_path).image("sha256:aa") is None  # from the future
    assert open_ledger("OTHER@/x", now=1000.0, state=tmp_path).image("sha256:aa") is None
    # the folder changed (an entry added): measured again
    (layer / "new").mkdir()
    assert (
        open_ledger(ENGINE, now=1000.0, state=tmp_path).layer("cacheid", "sha256:chain", str(layer)) is None
    )


def test_incomplete_measurements_are_not_remembered(tmp_path: Path) -> None:
    layer = tmp_path / "l"
    layer.mkdir()
    led = open_ledger(ENGINE, now=1.0, state=tmp_path)
    stamp = led.folder_stamp(str(layer))
    led.remember_layer("a", "c", str(layer), stamp, DiskUsage(1, 1, 1, vanished=1))
    led.remember_layer("b", "c", str(layer), stamp, DiskUsage(1, 1, 1, unreadable=1))
    led.remember_layer("d", "c", str(layer), None, DiskUsage(1, 1, 1))
    os.utime(layer)  # does not move ctime's inode: still the same folder
    (layer / "x").mkdir()  # changed during the walk: not kept
    led.remember_layer("e", "c", str(layer), stamp, DiskUsage(1, 1, 1))
    assert led.layers == {}


def test_pruned_only_for_what_was_seen_in_full(tmp_path: Path) -> None:
    led = open_ledger(ENGINE, now=1.0, state=tmp_path)
    led.remember_image("sha256:aa", lasting_inspect(INSPECT))
    led.save()
    partial = open_ledger(ENGINE, now=2.0, state=tmp_path)
    partial.save()  # saw nothing, claimed nothing: kept
    assert open_ledger(ENGINE, now=2.0, state=tmp_path).images
    full = open_ledger(ENGINE, now=2.0, state=tmp_path)
    full.save(saw_all_images=True)  # saw every image and not this one: it is gone
    assert not open_ledger(ENGINE, now=2.0, state=tmp_path).images


def test_save_failure_is_a_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "ledger").write_text("a file where the folder goes")
    led = open_ledger(ENGINE, now=1.0, state=tmp_path)
    led.remember_image("sha256:aa", lasting_inspect(INSPECT))
    led.save()
    assert len(led.warnings) == 1 and "could not be saved" in led.warnings[0]


def test_damaged_file_and_entries_are_ignored_with_a_warning(tmp_path: Path) -> None:
    path = ledger_path(ENGINE, tmp_path)
    path.parent.mkdir()
    path.write_text("{torn")
    led = open_ledger(ENGINE, now=1.0, state=tmp_path)
    assert led.images == {} and "could not be used" in led.warnings[0]
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "engine": ENGINE,
                "layers": {"x": {"usage": [-1, 2, 3], "chain": "c", "at": 1.0, "dir": [1, 2]}},
                "images": {"sha256:aa": {"at": "yesterday", "inspect": INSPECT}},
            }
        )
    )
    led = open_ledger(ENGINE, now=1.0, state=tmp_path)
    assert led.layer("x", "c", str(tmp_path)) is None and led.image("sha256:aa") is None
    led.save()
    assert "2 damaged entries" in led.warnings[0]
