"""Containers' init layers in the ledger (tamer.ledger, issue 11's warm `tamer df`), on the private engine.

- what the ledger's rule rests on: nothing a container does through its root, `docker cp`, a restart
  or a commit changes its init layer (same figures, same folder stamp);
- warm = cold after containers came and went: the warm read walked only the new container's init
  layer, the gone one's entry left the ledger, and every figure equals the cold read's;
- an init entry is reused only within the ledger's age limit (faketime), like an image layer's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tamer.collect import read_raw_snapshot
from tamer.engine import connect
from tamer.inventory import Inventory, build_inventory
from tamer.ledger import Ledger
from tamer.sizes import Walker, measure_tree

BUSYBOX = "tamer-test/busybox:1"
# every path an init layer holds, written through the container's root
WRITE_INIT_PATHS = (
    "echo w >> /.dockerenv; echo w >> /etc/mtab; echo w >> /etc/hosts; echo w >> /etc/hostname; "
    "echo w >> /etc/resolv.conf; mkdir -p /dev/shm/x /proc/x /sys/x 2>/dev/null; touch /etc/new; true"
)


def init_folder(eng: Any, name: str) -> Path:
    cid = eng.docker("inspect", "-f", "{{.Id}}", name).strip()
    mount = (
        (eng.data_root / "image" / "overlay2" / "layerdb" / "mounts" / cid / "mount-id").read_text().strip()
    )
    return eng.data_root / "overlay2" / f"{mount}-init"


def read(state: Path, monkeypatch: pytest.MonkeyPatch, host: str) -> tuple[Inventory, list[str]]:
    """The inventory read with `state` as the state dir, and the roots its walk was given."""
    monkeypatch.setenv("TAMER_STATE_DIR", str(state))
    walked: list[str] = []
    original = Walker.start

    def start(walker: Walker, roots: Any, **kwargs: Any) -> Any:
        walked.extend(roots)
        return original(walker, roots, **kwargs)

    monkeypatch.setattr(Walker, "start", start)
    try:
        inv = build_inventory(read_raw_snapshot(connect(host)))
    finally:
        monkeypatch.setattr(Walker, "start", original)
    return inv, walked


def same(inv: Inventory) -> tuple[Any, ...]:
    """Every figure of an inventory, in one order (the engine lists in no fixed order)."""
    return (
        inv.data_root_usage,
        inv.attributed_allocated,
        inv.layers_size,
        sorted((c.id, c.writable_size, c.writable_allocated, c.log.size) for c in inv.containers),
        sorted((v.name, v.size) for v in inv.volumes),
        sorted((i.id, i.size, i.shared_size) for i in inv.images),
    )


def test_nothing_a_container_does_changes_its_init_layer(eng: Any, tmp_path: Path) -> None:
    eng.docker("create", "--name", "init-writer", BUSYBOX, "sh", "-c", WRITE_INIT_PATHS)
    folder = init_folder(eng, "init-writer")
    stamp = Ledger(None, "", 0).folder_stamp(str(folder))
    before = measure_tree(str(folder), workers=1)
    assert stamp is not None and before is not None and before.files > 0
    eng.docker("start", "-a", "init-writer")
    payload = tmp_path / "payload"
    payload.write_bytes(b"p" * 10_000)
    eng.docker("cp", str(payload), "init-writer:/etc/hosts-copy")
    eng.docker("cp", str(payload), "init-writer:/.dockerenv")
    eng.docker("start", "-a", "init-writer")  # a restart mounts the same layers again
    eng.docker("commit", "init-writer", "init-writer/committed:1")
    assert Ledger(None, "", 0).folder_stamp(str(folder)) == stamp
    assert measure_tree(str(folder), workers=1) == before


def test_init_layers_remembered_and_warm_equals_cold(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng.docker("create", "--name", "init-stays", BUSYBOX, "true")
    eng.docker("create", "--name", "init-goes", BUSYBOX, "true")
    warm_state = tmp_path / "warm"
    first, first_walked = read(warm_state, monkeypatch, eng.host)
    ids = {c.name.lstrip("/"): c.id for c in first.containers}
    assert f"init:{ids['init-stays']}" in first_walked and f"init:{ids['init-goes']}" in first_walked

    eng.docker("rm", "init-goes")
    eng.docker("run", "--name", "init-new", BUSYBOX, "sh", "-c", WRITE_INIT_PATHS)
    warm, warm_walked = read(warm_state, monkeypatch, eng.host)
    cold, cold_walked = read(tmp_path / "cold", monkeypatch, eng.host)
    assert same(warm) == same(cold)
    new_id = next(c.id for c in warm.containers if c.name.lstrip("/") == "init-new")
    # the warm read walked the new container's init layer and no other; the cold one walked them all
    assert [k for k in warm_walked if k.startswith("init:")] == [f"init:{new_id}"]
    assert {k for k in cold_walked if k.startswith("init:")} == {f"init:{c.id}" for c in cold.containers}
    led = json.loads(next((warm_state / "ledger").glob("*.json")).read_text())
    chains = {entry["chain"] for entry in led["inits"].values()}
    assert chains == {c.id for c in warm.containers}  # the gone one's entry left with it
    # deleting the ledger changes no figure
    shutil.rmtree(warm_state / "ledger")
    again, _ = read(warm_state, monkeypatch, eng.host)
    assert same(again) == same(cold)


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")
def test_an_init_entry_is_reused_only_within_the_age_limit(eng: Any, private_state_dir: Path) -> None:
    eng.docker("create", "--name", "init-aged", BUSYBOX, "true")
    env = {**os.environ, "DOCKER_HOST": eng.host}

    def allocated(shift: str | None = None) -> int:
        cmd = [sys.executable, "-m", "tamer", "df", "--json"]
        proc = subprocess.run(
            ["faketime", "-f", shift, *cmd] if shift else cmd,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return int(json.loads(proc.stdout)["data"]["data_root_allocated"])

    base = allocated()
    path = next((private_state_dir / "ledger").glob("*.json"))
    led = json.loads(path.read_text())
    skew = 5 * 4096
    for entry in led["inits"].values():
        entry["usage"][1] += skew
    path.write_text(json.dumps(led))
    n = len(led["inits"])
    assert n >= 1
    assert allocated() == base + n * skew  # within the limit: reused (the skew shows)
    assert allocated("+23h") == base + n * skew
    assert allocated("+25h") == base  # past it: measured again, right again
