"""A root walked whole (Walker.start(whole=...): one task, as `tamer df` walks containers' init layers)
gives the figures a split walk gives: entries, hard links, skipped folders, a symlinked root."""

from __future__ import annotations

import os
from pathlib import Path

from tamer.sizes import Walker


def tree(base: Path) -> dict[str, str]:
    roots = {}
    for i in range(80):  # enough roots for the pool's first round
        root = base / f"r{i}"
        for d in ("a/b/c", "a/d", "e", "skipme/x"):
            (root / d).mkdir(parents=True)
        (root / "a/b/c/f").write_bytes(b"x" * (i * 100 + 1))
        (root / "e/g").write_bytes(b"y" * 5000)
        (root / "skipme/x/h").write_bytes(b"z" * 7000)
        os.link(root / "e/g", root / "a/d/g-link")
        (root / "a/sparse").open("wb").truncate(10_000_000)
        roots[f"r{i}"] = str(root)
    (base / "link").symlink_to(base / "r0")
    roots["link"] = str(base / "link")
    return roots


def test_whole_equals_split(tmp_path: Path) -> None:
    roots = tree(tmp_path)
    skip = [os.path.join(p, "skipme") for p in roots.values()]
    for workers in (1, 2):
        split = Walker(workers).start(roots, skip=skip, last=True).result()
        whole = Walker(workers).start(roots, skip=skip, last=True, whole=set(roots)).result()
        some = Walker(workers).start(roots, skip=skip, last=True, whole={"r1", "link"}).result()
        assert split == whole == some
        r1 = split["r1"]
        assert r1 is not None and r1.apparent == 101 + 5000 + 10_000_000 and r1.files == 3
