"""The ledger (tamer.ledger) on the private engine: a cache that changes no figure.

- warm = cold: after the host changed between two runs (a new image sharing layers, an image
  removed, a stopped container written with `docker cp`, a volume's file appended to), the
  inventory read with the ledger equals the one read with none, and the warm read did reuse it
  (fewer inspects, the old layers not walked);
- a remembered figure is never older than MAX_AGE_S (checked with faketime, forwards and back);
- a damaged ledger is ignored with a warning, and the figures are still right.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tamer.collect import read_raw_snapshot
from tamer.engine import connect
from tamer.inventory import Inventory, build_inventory
from tamer.ledger import MAX_AGE_S
from tamer.sandbox import build_busybox_image
from tamer.sizes import Walker

BUSYBOX = "tamer-test/busybox:1"


def read(state: Path, monkeypatch: pytest.MonkeyPatch, host: str) -> tuple[Inventory, dict[str, Any]]:
    """The inventory read with `state` as the state dir, and what the read asked for."""
    monkeypatch.setenv("TAMER_STATE_DIR", str(state))
    asked: dict[str, Any] = {"inspected_images": [], "walked": []}
    engine = connect(host)
    original_inspect = engine.inspect_many
    original_measure = Walker.start

    def inspect_many(kind: str, ids: Any) -> Any:
        if kind == "image":
            asked["inspected_images"].extend(ids)
        return original_inspect(kind, ids)

    def start(walker: Walker, roots: Any, **kwargs: Any) -> Any:
        asked["walked"].extend(roots)
        return original_measure(walker, roots, **kwargs)

    engine.inspect_many = inspect_many  # type: ignore[method-assign]
    monkeypatch.setattr(Walker, "start", start)
    try:
        inv = build_inventory(read_raw_snapshot(engine))
    finally:
        monkeypatch.setattr(Walker, "start", original_measure)
    return inv, asked


def comparable(inv: Inventory) -> Inventory:
    """The inventory less the moment it was taken (and its warnings, checked apart), in one order
    (the engine lists images and volumes in no fixed order)."""
    return dataclasses.replace(
        inv,
        taken_at=datetime(2000, 1, 1, tzinfo=UTC),
        warnings=(),
        images=tuple(sorted(inv.images, key=lambda i: i.id)),
        containers=tuple(sorted(inv.containers, key=lambda c: c.id)),
        volumes=tuple(sorted(inv.volumes, key=lambda v: v.name)),
    )


def ledger_file(state: Path) -> Path:
    files = list((state / "ledger").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_warm_equals_cold_after_the_host_changed(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_busybox_image(eng.engine, "ledger/gone:1", extra_files={"/etc/gone": b"g" * 30_000})
    eng.docker("volume", "create", "ledger-vol")
    eng.docker(
        "run",
        "--name",
        "ledger-c",
        "-v",
        "ledger-vol:/v",
        BUSYBOX,
        "sh",
        "-c",
        "head -c 50000 /bin/busybox > /v/grows; head -c 20000 /bin/busybox > /rw",
    )
    warm_state = tmp_path / "warm"
    first, _ = read(warm_state, monkeypatch, eng.host)
    led = json.loads(ledger_file(warm_state).read_text())
    assert led["version"] == 1 and led["layers"] and led["images"]
    gone_id = next(i.id for i in first.images if "ledger/gone:1" in i.tags)
    assert gone_id in led["images"]

    # the host changes behind the ledger's back
    eng.docker("commit", "ledger-c", "ledger/committed:1")  # shares busybox's layers, adds one
    eng.docker("rmi", "ledger/gone:1")
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(70_000))
    eng.docker("cp", str(payload), "ledger-c:/copied-in")  # into a stopped container's writable layer
    volume = next(v for v in first.volumes if v.name == "ledger-vol")
    with open(os.path.join(volume.data_path, "grows"), "ab") as fh:  # the folder's mtime does not move
        fh.write(b"a" * 1_000_000)

    warm, warm_asked = read(warm_state, monkeypatch, eng.host)
    cold, cold_asked = read(tmp_path / "cold", monkeypatch, eng.host)
    assert comparable(warm) == comparable(cold)
    assert not [w for w in warm.warnings if "ledger" in w] and not [w for w in cold.warnings if "ledger" in w]

    # the changes are in the figures ...
    vol = next(v for v in warm.volumes if v.name == "ledger-vol")
    assert vol.size is not None and volume.size is not None
    assert vol.size.apparent - volume.size.apparent == 1_000_000
    c_now = next(c for c in warm.containers if c.name == "ledger-c")
    c_then = next(c for c in first.containers if c.name == "ledger-c")
    assert (c_now.writable_size or 0) - (c_then.writable_size or 0) == 70_000
    assert gone_id not in {i.id for i in warm.images}
    committed = next(i for i in warm.images if "ledger/committed:1" in i.tags)
    busybox = next(i for i in warm.images if BUSYBOX in i.tags)
    assert set(busybox.layers) < set(committed.layers) and committed.shared_size > 0

    # ... and the warm read reused what could not have changed: only the new image was inspected,
    # only the new layer walked; the removed image's entries left the ledger
    assert warm_asked["inspected_images"] == [committed.id]
    assert len(cold_asked["inspected_images"]) == len(cold.images)
    walked_layers = {k for k in warm_asked["walked"] if k.startswith("layer:")}
    assert walked_layers == {f"layer:{committed.layers[-1]}"}
    assert len({k for k in cold_asked["walked"] if k.startswith("layer:")}) > len(walked_layers)
    led = json.loads(ledger_file(warm_state).read_text())
    assert gone_id not in led["images"] and committed.id in led["images"]
    assert len(led["layers"]) == len({ch for i in warm.images for ch in i.layers})


needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")


def df(eng: Any, shift: str | None = None) -> dict[str, Any]:
    """`tamer df --json` run as a user would, optionally with the clock shifted (faketime -f)."""
    if shift is None:
        proc = eng.tamer("df", "--json")
    else:
        proc = subprocess.run(
            ["faketime", "-f", shift, sys.executable, "-m", "tamer", "df", "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_HOST": eng.host},
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def skew_one_layer(path: Path, by: int) -> tuple[str, float]:
    """Make one remembered layer figure wrong by `by` allocated bytes: visible if, and only if, it is reused."""
    led = json.loads(path.read_text())
    key = sorted(led["layers"])[0]
    led["layers"][key]["usage"][1] += by
    path.write_text(json.dumps(led))
    return key, float(led["layers"][key]["at"])


@needs_faketime
def test_a_remembered_figure_is_never_older_than_its_limit(eng: Any, private_state_dir: Path) -> None:
    assert MAX_AGE_S == 24 * 3600  # the documented limit this test walks up to
    base = df(eng)["data"]["data_root_allocated"]
    path = ledger_file(private_state_dir)
    skew = 7 * 4096
    skew_one_layer(path, skew)
    # within the limit the remembered figure is reused (the skew shows: the ledger is really read) ...
    assert df(eng)["data"]["data_root_allocated"] == base + skew
    assert df(eng, "+23h")["data"]["data_root_allocated"] == base + skew
    # ... past it, measured again (right again), and remembered anew
    assert df(eng, "+25h")["data"]["data_root_allocated"] == base
    # that entry is now dated 25 h ahead: with the clock back at now it is "from the future", so not reused
    _, at = skew_one_layer(path, skew)
    assert at > time.time() + 24 * 3600
    assert df(eng)["data"]["data_root_allocated"] == base
    # and a clock set back behind an entry's date does the same
    skew_one_layer(path, skew)
    assert df(eng, "-2h")["data"]["data_root_allocated"] == base


def test_damaged_ledger_is_ignored_with_a_warning(eng: Any, private_state_dir: Path) -> None:
    cold = df(eng)["data"]
    path = ledger_file(private_state_dir)
    good = path.read_text()
    for damage in (
        "{not json",
        json.dumps({"version": 99, "engine": "x", "layers": {}, "images": {}}),
        json.dumps([1, 2, 3]),
    ):
        path.write_text(damage)
        out = df(eng)
        assert out["data"]["totals"] == cold["totals"]
        assert out["data"]["data_root_allocated"] == cold["data_root_allocated"]
        assert any("ledger" in note for note in out["data"]["notes"]), out["data"]["notes"]
        assert json.loads(path.read_text())["version"] == 1  # rewritten whole
    # damaged entries inside a good file: each ignored, the figures still right
    led = json.loads(good)
    for entry in led["layers"].values():
        entry["usage"] = "lots"
    for entry in led["images"].values():
        entry["inspect"] = None
    for entry in led["inits"].values():  # containers' init layers (see tamer.ledger)
        entry["dir"] = None
    path.write_text(json.dumps(led))
    out = df(eng)
    assert any("damaged entries" in note for note in out["data"]["notes"]), out["data"]["notes"]
    assert out["data"]["data_root_allocated"] == cold["data_root_allocated"]
    assert out["data"]["totals"] == cold["totals"]
    # deleting it changes no figure either
    path.unlink()
    assert df(eng)["data"]["data_root_allocated"] == cold["data_root_allocated"]


def test_runs_at_once_and_a_killed_save_leave_a_good_ledger(eng: Any, private_state_dir: Path) -> None:
    cold = df(eng)["data"]
    path = ledger_file(private_state_dir)
    path.unlink()
    # a save killed midway left its temporary file behind, long ago
    leftover = path.parent / ".ledger-killed"
    leftover.write_text('{"version": 1, "layers": {')
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    env = {**os.environ, "DOCKER_HOST": eng.host}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "tamer", "df", "--json"], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(4)
    ]
    outs = [json.loads(p.communicate(timeout=300)[0]) for p in runs]
    assert all(p.returncode == 0 for p in runs)
    for out in outs:
        assert out["data"]["data_root_allocated"] == cold["data_root_allocated"]
        assert not [n for n in out["data"]["notes"] if "ledger" in n]
    assert json.loads(path.read_text())["version"] == 1
    assert not leftover.exists()
    assert df(eng)["data"]["data_root_allocated"] == cold["data_root_allocated"]
