"""quick_ls.LocalPlacements (one listing of the volumes' folder, lstat of `_data` from a descriptor) says
exactly what facts.local_placement (a realpath per volume) says, on hostile trees: the essay's symlink,
a symlinked `_data`, dangling links, loops, `..` in a link, the data-root behind a symlink, odd
mountpoint strings, names made after the listing, and a user that may search the folder but not list it."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tamer.facts import local_placement
from tamer.quick_ls import LocalPlacements


def _tree(base: Path) -> list[str]:
    """A volumes folder with every shape a `<top>/<name>/_data` can take; the mountpoints to ask about."""
    top = base / "root" / "volumes"
    top.mkdir(parents=True)
    away = base / "hdd"
    (away / "real" / "_data").mkdir(parents=True)
    (away / "leafdir").mkdir()
    names = ["plain", "with space", "uni-\u00e9\u4e2d", "new\nline", "a" * 64]
    for name in names:
        (top / name / "_data").mkdir(parents=True)
    (top / "essay").symlink_to(away / "real")  # the essay's link, at the name
    (top / "essay-rel").symlink_to("../../hdd/real")  # relative, with '..'
    (top / "leaflink").mkdir()
    (top / "leaflink" / "_data").symlink_to(away / "leafdir")  # a link at `_data`
    (top / "leafrel").mkdir()
    (top / "leafrel" / "_data").symlink_to("../../../hdd/leafdir")
    (top / "dangling").symlink_to(base / "nowhere")
    (top / "loop").symlink_to("loop")
    (top / "loop-a").symlink_to("loop-b")
    (top / "loop-b").symlink_to("loop-a")
    (top / "dot").symlink_to(".")
    (top / "up").symlink_to("..")
    (top / "noleaf").mkdir()
    (top / "fileleaf").mkdir()
    (top / "fileleaf" / "_data").write_text("x")
    (top / "filename").write_text("not a folder")
    (top / "chain").symlink_to(top / "essay")  # a link to a link
    (base / "root-link").symlink_to(base / "root")  # the data-root reached through a symlink
    asked = [*names, "essay", "essay-rel", "leaflink", "leafrel", "dangling", "loop", "loop-a", "dot", "up"]
    asked += ["noleaf", "fileleaf", "filename", "chain", "missing"]
    mountpoints = [f"{top}/{name}/_data" for name in asked]
    mountpoints += [f"{base}/root-link/volumes/{name}/_data" for name in ("plain", "essay", "leaflink")]
    mountpoints += [f"{top}/{name}/other" for name in ("plain", "essay", "noleaf")]  # another leaf
    odd = [
        "",
        "/",
        "relative/x/_data",
        "_data",
        f"/{top.name}/_data",
        f"/{top}/plain/_data",  # '//' at the start
        f"{top}//plain/_data",
        f"{top}/plain/_data/",
        f"{top}/./plain/_data",
        f"{top}/essay/../plain/_data",  # '..' after a link: realpath and abspath read it differently
        f"{top}/up/volumes/plain/_data",
        f"{top}/plain/.",
        f"{top}/plain/..",
        f"{base}/root-link",
        "/_data",
        "/x/_data",
    ]
    return mountpoints + odd


@pytest.fixture
def tree(tmp_path: Path) -> list[str]:
    return _tree(tmp_path)


def _expected(mountpoints: list[str], options: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return [local_placement(options or {}, m) for m in mountpoints]


def _batched(mountpoints: list[str], options: dict[str, str] | None = None) -> list[tuple[str, str]]:
    placer = LocalPlacements()
    try:
        return [placer.placement(options or {}, m) for m in mountpoints]
    finally:
        placer.close()


def test_same_answers_as_realpath_on_a_hostile_tree(tree: list[str]) -> None:
    want = _expected(tree)
    assert _batched(tree) == want
    # one at a time, each in a fresh batch (a folder first seen for that volume)
    assert [_batched([m])[0] for m in tree] == want
    # in reverse order (the folder first met through another volume)
    assert _batched(tree[::-1]) == want[::-1]
    # the cases mean something: each placement occurs, the essay's link resolves to the other drive
    kinds = {placement for placement, _ in want}
    assert kinds == {"default", "symlink"}
    by_mount = dict(zip(tree, want, strict=True))
    essay = next(m for m in tree if m.endswith("/volumes/essay/_data"))
    assert by_mount[essay] == ("symlink", str(Path(essay).parents[3] / "hdd" / "real" / "_data"))


def test_bind_options_are_bind_whatever_the_mountpoint(tree: list[str]) -> None:
    options = {"type": "none", "o": "bind", "device": "/srv/data"}
    assert _batched(tree[:5], options) == [("bind", "/srv/data")] * 5 == _expected(tree[:5], options)


def test_names_made_or_removed_after_the_listing(tmp_path: Path) -> None:
    top = tmp_path / "volumes"
    (top / "before" / "_data").mkdir(parents=True)
    (top / "gone" / "_data").mkdir(parents=True)
    (tmp_path / "elsewhere" / "_data").mkdir(parents=True)
    placer = LocalPlacements()
    try:
        first = placer.placement({}, f"{top}/before/_data")  # the folder is listed now
        (top / "later").symlink_to(tmp_path / "elsewhere")
        (top / "later-dir" / "_data").mkdir(parents=True)
        shutil.rmtree(top / "gone")
        asked = [f"{top}/{n}/_data" for n in ("before", "later", "later-dir", "gone")]
        got = [placer.placement({}, m) for m in asked]
    finally:
        placer.close()
    assert first == local_placement({}, f"{top}/before/_data")
    assert got == _expected(asked)
    assert got[1] == ("symlink", str(tmp_path / "elsewhere" / "_data"))


def _random_tree(base: Path, rng: random.Random) -> list[str]:
    """Folders and links (absolute, relative, dangling, to links) mixed at random, three levels deep."""
    top = base / "v"
    top.mkdir()
    spots = [top]
    for i in range(40):
        parent = rng.choice(spots)
        path = parent / f"n{i}"
        what = rng.random()
        if what < 0.5:
            path.mkdir()
            spots.append(path)
        elif what < 0.8:
            target = rng.choice([*spots, base / "absent", top / f"n{rng.randrange(40)}"])
            path.symlink_to(os.path.relpath(target, parent) if rng.random() < 0.5 else target)
        else:
            path.write_text("f")
    mountpoints = []
    for spot in spots:
        for child in spot.iterdir() if spot.is_dir() and not spot.is_symlink() else []:
            for leaf in ("_data", "n1", "x"):
                mountpoints.append(f"{child}/{leaf}")
    return mountpoints


@pytest.mark.parametrize("seed", range(6))
def test_same_answers_on_random_trees(tmp_path: Path, seed: int) -> None:
    mountpoints = _random_tree(tmp_path, random.Random(seed))
    assert mountpoints
    assert _batched(mountpoints) == _expected(mountpoints)


@pytest.fixture
def open_tree() -> Iterator[Path]:
    """A tree a user other than root can walk (pytest's own tmp folders are root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="tamer-placements-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user in a child")
@pytest.mark.parametrize("mode", [0o311, 0o000, 0o755])
def test_same_answers_for_a_user_who_may_not_list_the_folder(open_tree: Path, mode: int) -> None:
    """As `nobody`: a volumes folder it may search but not list (0o311), nor search (0o000), or may."""
    mountpoints = _tree(open_tree)
    for path, _dirs, _files in os.walk(open_tree):  # os.walk does not enter the links
        os.chmod(path, 0o755)
    top = open_tree / "root" / "volumes"
    top.chmod(mode)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compare as nobody, report through the pipe
        code = 1
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            want = _expected(mountpoints)
            got = _batched(mountpoints)
            listable = os.access(top, os.R_OK)
            message = "same" if got == want else f"differ: {got!r} != {want!r}"
            os.write(write, f"{message} listable={listable}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    assert said.startswith("same"), said
    assert said.endswith(f"listable={mode == 0o755}"), said


def test_a_mountpoint_lstat_refuses_raises_as_realpath_does_and_leaves_no_descriptor(tmp_path: Path) -> None:
    """A NUL in a mountpoint (JSON can carry one) makes lstat raise ValueError: the same error as
    facts.local_placement's, and volume_facts closes the folder's descriptor all the same."""
    from tamer.quick_ls import volume_facts

    top = tmp_path / "volumes"
    (top / "ok" / "_data").mkdir(parents=True)
    bad = f"{top}/n\x00ul/_data"
    with pytest.raises(ValueError) as want:
        local_placement({}, bad)
    listed = [
        {"Name": n, "Driver": "local", "Mountpoint": m} for n, m in (("ok", f"{top}/ok/_data"), ("nul", bad))
    ]
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError) as got:
        volume_facts(listed, "1.41", dated=False, local=True)
    assert str(got.value) == str(want.value)
    assert set(os.listdir("/proc/self/fd")) == before, "a descriptor was left open"
