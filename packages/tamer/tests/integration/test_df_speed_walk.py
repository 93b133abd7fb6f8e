"""`tamer df`'s walk in two parts (issue 11): the volumes as soon as the engine lists them, the rest of
the data-root once its roots are known. The figures must be those of one walk of every root with every
folder it steps around, whatever the volumes' devices are: inside the data-root's layer folder, the
data-root itself, one inside another, a hard link across two volumes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from tamer.collect import read_raw_snapshot
from tamer.engine import connect
from tamer.sizes import Walker, measure_trees

BUSYBOX = "tamer-test/busybox:1"


def bind_volume(eng: Any, name: str, device: Path) -> None:
    eng.docker("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={device}", name)


def test_split_walk_gives_the_figures_of_one_walk(eng: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = Path(tempfile.mkdtemp(prefix="tamer-split-"))
    try:
        outer = elsewhere / "outer"
        inner = outer / "inner"
        inner.mkdir(parents=True)
        (outer / "o").write_bytes(b"o" * 30_000)
        (inner / "i").write_bytes(b"i" * 50_000)
        os.link(inner / "i", elsewhere / "linked-i")  # a hard link out of the volume
        bind_volume(eng, "split-outer", outer)
        bind_volume(eng, "split-inner", inner)  # inside the other one: walked once, in its own figure
        bind_volume(eng, "split-layers", eng.data_root / "overlay2")  # holds every layer folder
        bind_volume(eng, "split-root", eng.data_root)  # the data-root itself
        eng.docker("run", "-v", "split-plain:/v", BUSYBOX, "sh", "-c", "head -c 40000 /bin/busybox > /v/p")

        calls: list[tuple[dict[str, str], frozenset[str], dict[str, Any]]] = []
        original = Walker.start

        def start(walker: Walker, roots: Any, **kwargs: Any) -> Any:
            call: tuple[dict[str, str], frozenset[str], dict[str, Any]] = (
                dict(roots),
                frozenset(kwargs.get("skip", ())),
                {},
            )
            calls.append(call)
            pending = original(walker, roots, **kwargs)
            result = pending.result

            def keep() -> Any:
                out = result()
                call[2].update(out)
                return out

            pending.result = keep  # type: ignore[method-assign]
            return pending

        monkeypatch.setattr(Walker, "start", start)
        raw = read_raw_snapshot(connect(eng.host))
        monkeypatch.setattr(Walker, "start", original)
        assert raw.local is not None

        # two walks: the volumes first (those that cannot hold what the rest steps around), then the rest
        assert len(calls) == 2
        (early, _, early_out), (rest, rest_skip, rest_out) = calls
        assert {"vol:split-outer", "vol:split-inner", "vol:split-plain"} <= set(early)
        assert {"vol:split-layers", "vol:split-root", "rest"} <= set(rest)
        assert not set(early) & set(rest)
        # each root's figures are those of one walk of every root, stepping around everything
        together = measure_trees({**early, **rest}, skip=rest_skip)
        assert {**early_out, **rest_out} == together
        sizes = {k: v["size"] for k, v in raw.local["volumes"].items()}
        inner_usage = together["vol:split-inner"]
        assert inner_usage is not None and sizes["split-inner"][:3] == [50_000, inner_usage.allocated, 1]
    finally:
        for name in ("split-outer", "split-inner", "split-layers", "split-root"):
            eng.docker("volume", "rm", "-f", name, check=False)
        shutil.rmtree(elsewhere, ignore_errors=True)
