"""The walk's second round is handed out big folders first (so the workers end together): a split lists the
grandchildren of a folder's small families before those of its big ones, and the figures do not change."""

from __future__ import annotations

from pathlib import Path

from tamer.sizes import Walker
from tamer.treewalk import split


def test_grandchildren_of_small_families_come_first(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(40):  # a big family: many small siblings (as the containers' layers)
        (root / "crowd" / f"layer{i}" / "diff").mkdir(parents=True)
    (root / "image" / "store" / "deep" / "deeper").mkdir(parents=True)  # a family of one: a whole part
    (root / "pair" / "a").mkdir(parents=True)
    (root / "pair" / "b").mkdir(parents=True)
    _, grandchildren = split(str(root), None, frozenset())
    assert grandchildren[0] == str(root / "image" / "store")
    assert set(grandchildren[1:3]) == {str(root / "pair" / "a"), str(root / "pair" / "b")}
    assert sorted(grandchildren[3:]) == sorted(str(root / "crowd" / f"layer{i}") for i in range(40))


def test_the_order_changes_no_figure(tmp_path: Path) -> None:
    roots = {}
    for r in range(70):
        for i in range(r % 5 + 1):
            leaf = tmp_path / f"r{r}" / f"c{i}" / f"g{r % 3}" / "x"
            leaf.mkdir(parents=True)
            (leaf / "f").write_bytes(b"q" * (r * i + 1))
        roots[r] = str(tmp_path / f"r{r}")
    assert (
        Walker(workers=2).start(roots, last=True).result()
        == Walker(workers=1).start(roots, last=True).result()
    )
