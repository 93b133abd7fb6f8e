"""The walker hands out its second round as each run of the first answers (not once all have): the
figures stay those of a walk in one process, whichever run a big root's split lands in.

A warm `tamer df` puts the data-root's rest first among its roots, so the split that finds most of the
folders is the first run the workers take; these trees put the big root first, last and in the middle,
with hard links across roots and folders deep enough to need a second round.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tamer.sizes import DiskUsage, Walker


def make_tree(base: Path) -> dict[str, str]:
    """A big root (many grandchildren: the second round's tasks), 80 small ones, and hard links between
    the big one and some small ones (each linked file counted once per root that holds a link)."""
    big = base / "big"
    for i in range(40):
        for j in range(6):
            leaf = big / f"c{i}" / f"g{j}" / "deep"
            leaf.mkdir(parents=True)
            (leaf / "f").write_bytes(b"x" * (i * 7 + j))
            (leaf.parent / "h").write_bytes(b"y" * 5000)
    roots = {"big": str(big)}
    for k in range(80):
        small = base / f"s{k}" / "a" / "b"
        small.mkdir(parents=True)
        (small / "f").write_bytes(b"z" * k)
        if k % 9 == 0:
            os.link(big / "c3" / "g2" / "h", small / "link")
        roots[f"s{k}"] = str(base / f"s{k}")
    return roots


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_streamed_second_round_equals_one_process(tmp_path: Path, where: str) -> None:
    roots = make_tree(tmp_path)
    small = [k for k in roots if k != "big"]
    at = {"first": 0, "middle": len(small) // 2, "last": len(small)}[where]
    order = [*small[:at], "big", *small[at:]]
    ordered = {k: roots[k] for k in order}
    seen: list[tuple[int, int]] = []
    pooled = Walker(workers=2).start(ordered, progress=lambda d, t: seen.append((d, t)), last=True).result()
    serial = Walker(workers=1).start(ordered, last=True).result()
    assert pooled == serial
    for key in ("big", "s0", "s1"):  # du, one run per root, as each root is measured on its own
        usage = pooled[key]
        assert isinstance(usage, DiskUsage)
        inodes = {
            (st.st_dev, st.st_ino): st.st_size
            for folder, _, names in os.walk(roots[key])
            for st in (os.lstat(os.path.join(folder, n)) for n in names)
        }
        allocated = subprocess.run(["du", "-sxB1", roots[key]], capture_output=True, text=True, check=True)
        assert usage.apparent == sum(inodes.values())  # files' bytes (folders' own are not content)
        assert usage.allocated == int(allocated.stdout.split()[0])
    assert pooled["big"] is not None and pooled["big"].files == 40 * 6 * 2  # per child of a child: h, f
    assert seen and all(0 <= d <= t for d, t in seen)
    assert seen[-1][0] == seen[-1][1]  # the last report says all is done
