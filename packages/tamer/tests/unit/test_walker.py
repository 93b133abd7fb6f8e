"""The walker (tamer.sizes) against `du` and against a plain reference walk of the same tree.

The tree holds what real data-roots hold: hard links (inside the tree and to a file outside it),
sparse files, symlinks (to files, folders, nowhere), empty and deep folders, a nested mount on
another device (excluded, as `du -x` excludes it), a folder on the skip list, and, for a user
without root's powers, a folder it cannot read. The figures must be exact: allocated equal to
`du -sxB1`, apparent equal to `du -sxb` less the folders' own sizes (docker counts files only).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tamer import treewalk
from tamer.sizes import DiskUsage, measure_tree, measure_trees


@pytest.fixture(autouse=True, params=["compiled", "python"])
def walker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the C walk (tamer/_cwalk.c) and with the Python one it stands in for."""
    if request.param == "python":
        monkeypatch.setattr(treewalk, "CWALK", None)
        monkeypatch.setenv("TAMER_PURE_WALK", "1")  # and in the subprocesses a test starts
    else:
        monkeypatch.delenv("TAMER_PURE_WALK", raising=False)
        compiled = treewalk.compiled_walker()
        if compiled is None:
            message = "tamer._cwalk was not built (setup.py needs a C compiler and Python's headers)"
            if os.environ.get("CI"):
                pytest.fail(message)  # CI's machine has both: a missing build is a regression there
            pytest.skip(message)
        monkeypatch.setattr(treewalk, "CWALK", compiled)
    return str(request.param)


def reference(root: str, skip: frozenset[str] = frozenset()) -> tuple[int, int, int]:
    """(apparent, allocated, files) by the plainest walk there is: listdir + lstat, links once."""
    top = os.stat(root)
    apparent, allocated, files = 0, top.st_blocks * 512, 0
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != top.st_dev or path in skip:
                    continue
                allocated += st.st_blocks * 512
                stack.append(path)
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            apparent += st.st_size
            allocated += st.st_blocks * 512
            files += 1
    return apparent, allocated, files


def du(root: str, *flags: str) -> int:
    out = subprocess.run(["du", "-sx", *flags, root], capture_output=True, text=True, check=False)
    return int(out.stdout.split()[0])


def folder_sizes(root: str) -> int:
    """The st_size of every folder du -x visits (root included), to take out of `du -b`."""
    dev = os.stat(root).st_dev
    total = os.stat(root).st_size
    for folder, dirs, _ in os.walk(root):
        for d in list(dirs):
            st = os.lstat(os.path.join(folder, d))
            if not stat.S_ISDIR(st.st_mode) or st.st_dev != dev:
                dirs.remove(d)  # a symlink to a folder (os.walk lists it among folders), or a mount point
                continue
            total += st.st_size
    return total


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "tree"
    (root / "a" / "b" / "c" / "d").mkdir(parents=True)
    (root / "empty").mkdir()
    for i in range(80):  # enough folders (tasks) that the worker pool is used too (MIN_TASKS_FOR_POOL)
        sub = root / "many" / f"s{i}" / "t"
        sub.mkdir(parents=True)
        (sub / "f").write_bytes(b"m" * (i * 37 + 1))
    (root / "a" / "small").write_bytes(b"x" * 10)
    (root / "a" / "b" / "page").write_bytes(b"y" * 4096)
    (root / "a" / "b" / "c" / "d" / "deep").write_bytes(b"z" * 100_000)
    big = root / "a" / "big"
    big.write_bytes(os.urandom(300_000))
    os.link(big, root / "a" / "b" / "big-link")  # a hard link inside: counted once
    os.link(big, root / "big-link-2")
    outside = tmp_path / "outside"
    outside.write_bytes(b"o" * 50_000)
    os.link(outside, root / "link-to-outside")  # its other name is outside: still counted once here
    with open(root / "sparse", "wb") as fh:  # 1 GB apparent, a few blocks allocated
        fh.seek(500_000_000)
        fh.write(b"data")
        fh.truncate(1_000_000_000)
    os.symlink("a/small", root / "to-file")
    os.symlink("a", root / "to-dir")  # not followed
    os.symlink("/nowhere/at/all", root / "dangling")
    (root / "skipped").mkdir()
    (root / "skipped" / "hidden").write_bytes(b"s" * 7000)
    mount = root / "other-device"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?): the other-device case needs one")
    (mount / "elsewhere").write_bytes(b"e" * 1_000_000)
    try:
        yield root
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_walker_is_exact_against_du_and_a_reference_walk(tree: Path) -> None:
    root = str(tree)
    skip = str(tree / "skipped")
    expected = reference(root, frozenset({skip}))
    for workers in (1, 2):
        usage = measure_tree(root, workers=workers, skip=[skip])
        assert usage is not None
        assert (usage.apparent, usage.allocated, usage.files) == expected, workers
        assert usage.vanished == 0 and usage.unreadable == 0
    # the outside oracle, without the skip list (du has none): allocated exactly du's, apparent du -b's less folders
    whole = measure_tree(root, workers=1)
    assert whole is not None
    assert whole.allocated == du(root, "-B1")
    assert whole.apparent == du(root, "-b") - folder_sizes(root)
    assert whole.apparent > 1_000_000_000  # the sparse file counts its length ...
    assert whole.allocated < 10_000_000  # ... but not blocks it does not hold; the mount is not entered
    assert whole.apparent - usage.apparent == 7000  # the skipped folder held exactly its one file


def test_roots_measured_together_each_count_their_own_links(tree: Path) -> None:
    a, b = str(tree / "a"), str(tree)
    together = measure_trees({"a": a, "all": b, "gone": str(tree / "nope"), "file": str(tree / "sparse")})
    assert together["gone"] is None and together["file"] is None
    alone_a, alone_all = measure_tree(a, workers=1), measure_tree(b, workers=1)
    assert together["a"] == alone_a and together["all"] == alone_all
    assert alone_a is not None and (alone_a.apparent, alone_a.allocated, alone_a.files) == reference(a)


def test_many_roots_split_by_the_workers_say_what_one_process_says(tree: Path) -> None:
    """With 64 roots or more the workers split them (round 1) as well as walk below them: every root's
    figures equal a walk in one process and the reference walk, the skip list and other device included."""
    skip = str(tree / "skipped")
    roots = {f"s{i}": str(tree / "many" / f"s{i}") for i in range(80)}
    roots |= {"all": str(tree), "a": str(tree / "a"), "dev": str(tree / "other-device")}
    pooled = measure_trees(roots, workers=2, skip=[skip])
    alone = measure_trees(roots, workers=1, skip=[skip])
    assert pooled == alone
    for key, root in roots.items():
        usage = pooled[key]
        assert usage is not None
        assert (usage.apparent, usage.allocated, usage.files) == reference(root, frozenset({skip})), key


POWERLESS_WALK = """
import json, sys
from tamer.sizes import measure_tree
u = measure_tree(sys.argv[1], workers=1)
print(json.dumps([u.apparent, u.allocated, u.files, u.unreadable]))
"""


def test_unreadable_folder_counts_itself_not_its_content_like_du(tree: Path) -> None:
    locked = tree / "a" / "b" / "locked"
    locked.mkdir()
    (locked / "secret").write_bytes(b"q" * 20_000)
    locked.chmod(0)
    os.chmod(tree.parent, 0o755)
    try:
        # root without its capabilities: permissions apply to it as to any user
        powerless = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
        proc = subprocess.run(
            [*powerless, sys.executable, "-c", POWERLESS_WALK, str(tree)],
            capture_output=True,
            text=True,
            env=os.environ.copy(),  # TAMER_PURE_WALK as the fixture set it
        )
        assert proc.returncode == 0, proc.stderr
        apparent, allocated, files, unreadable = json.loads(proc.stdout)
        du_proc = subprocess.run([*powerless, "du", "-sxB1", str(tree)], capture_output=True, text=True)
        assert du_proc.returncode == 1 and "locked" in du_proc.stderr  # du could not read it either
        assert allocated == int(du_proc.stdout.split()[0])
        full = measure_tree(str(tree), workers=1)  # with root's powers: the locked file counts
        assert full is not None and unreadable == 1
        assert full.apparent - apparent == 20_000 and full.files - files == 1
    finally:
        locked.chmod(0o700)


def test_usage_adds_every_field() -> None:
    total = DiskUsage(1, 2, 3, 4, 5) + DiskUsage(10, 20, 30, 40, 50)
    assert total == DiskUsage(11, 22, 33, 44, 55)


@pytest.mark.parametrize("walker", ["compiled"], indirect=True)  # it compares the two itself
def test_the_c_walk_and_the_python_walk_agree_entry_for_entry(tmp_path: Path, walker: str) -> None:
    """On a tree of hostile names (bytes that are not UTF-8, newlines, 255-byte names), deep folders,
    hard links, symlinks and a skip list, every folder's non-recursive and recursive walk gives the same
    figures, links and folders found in C as in Python."""
    root = tmp_path / "t"
    root.mkdir()
    raw = os.fsencode(str(root))
    names = [b"\xff\xfe-not-utf8", b"new\nline", b"x" * 255, b"sp ace", "ünï".encode(), b"-"]
    for i, name in enumerate(names):
        folder = os.path.join(raw, name)
        os.mkdir(folder)
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(b"d" * (i * 1000 + 1))
        os.link(os.path.join(folder, name), os.path.join(folder, b"hard-" + name[:200]))
        os.symlink(name, os.path.join(folder, b"sym"))
    deep = root / "deep"
    path = deep
    for i in range(120):
        path = path / f"{i}"
    path.mkdir(parents=True)
    (path / "bottom").write_bytes(b"b" * 12345)
    (root / "skipme").mkdir()
    (root / "skipme" / "f").write_bytes(b"s" * 999)
    skip = frozenset({str(root / "skipme")})
    dev = os.stat(root).st_dev
    compiled = treewalk.CWALK
    assert compiled is not None
    folders = [str(root)] + [os.fsdecode(os.path.join(raw, n)) for n in names] + [str(deep), str(path)]
    for folder in folders:
        for recurse in (False, True):
            for follow in (True, False):
                found_c: list[str] = []
                found_py: list[str] = []
                c = treewalk.walk(folder, recurse, skip, dev, found_c, follow=follow)
                py = treewalk.walk_python(folder, recurse, skip, dev, found_py, follow=follow)
                assert c == py, (folder, recurse)
                assert sorted(found_c) == sorted(found_py), folder
    # a symlink given as a root: followed only when asked, and then the same figures
    os.symlink(root / "deep", tmp_path / "link-to-deep")
    link = str(tmp_path / "link-to-deep")
    assert treewalk.walk(link, True, skip, None, follow=True) == treewalk.walk_python(link, True, skip, None)
    refused = treewalk.walk(link, True, skip, None, follow=False)
    assert refused.vanished == 1 and refused.files == 0
    assert refused == treewalk.walk_python(link, True, skip, None, follow=False)


@pytest.mark.parametrize("walker", ["compiled"], indirect=True)
def test_the_c_walk_lets_other_threads_run(tmp_path: Path, walker: str) -> None:
    """`tamer serve` answers scrapes on one thread while another refreshes (and walks): the C walk lets the
    GIL go around its system calls. With the switch interval at 100 s only a released GIL lets the
    watching thread run while the walk is under way."""
    import threading

    # thousands of system calls, each a chance for the waiting thread to take the GIL the walk lets go
    # (with no forced switch at a 100 s interval, one release can be taken back before it wakes)
    for i in range(3000):
        (tmp_path / f"f{i}").write_bytes(b"w")
    in_walk = threading.Event()
    seen_during_walk: list[bool] = []
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if in_walk.is_set():
                seen_during_walk.append(True)
                return
            time.sleep(0)

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.05)
        in_walk.set()
        usage = treewalk.walk(str(tmp_path), True, frozenset(), None)
        in_walk.clear()
        finished.set()
        watcher.join(10)
    finally:
        sys.setswitchinterval(old)
    assert usage.files == 3000
    assert seen_during_walk == [True]


FEW_FILES_WALK = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from tamer.sizes import measure_trees
roots = json.loads(sys.argv[1])
out = measure_trees(roots, workers=int(sys.argv[2]))
print(json.dumps({k: [u.apparent, u.allocated, u.files, u.vanished, u.unreadable] for k, u in out.items()}))
"""


def test_a_folder_of_many_folders_walks_within_a_small_open_file_limit(tmp_path: Path, walker: str) -> None:
    """Stock hosts allow 1,024 open files: a walk keeps open one folder per level of the tree, never one per
    folder waiting to be read (600 subfolders under a limit of 64 used to end the walk with EMFILE)."""
    wide = tmp_path / "wide"
    for i in range(600):  # three levels down: below what measure_trees splits into tasks of their own
        leaf = wide / "a" / "b" / "many" / f"s{i:03d}" / "inner"
        leaf.mkdir(parents=True)
        (leaf / "f").write_bytes(b"w" * (i + 1))
    deep = tmp_path / "deep"
    path = deep
    for i in range(40):  # deeper than a handful, well under the limit
        path = path / f"{i}"
    path.mkdir(parents=True)
    (path / "bottom").write_bytes(b"b" * 77)
    roots = {"wide": str(wide), "deep": str(deep), "many": str(wide / "a" / "b" / "many")}
    for workers in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-c", FEW_FILES_WALK, json.dumps(roots), workers],
            capture_output=True,
            text=True,
            env=os.environ.copy(),  # TAMER_PURE_WALK as the fixture set it
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout)
        for key, root in roots.items():
            assert got[key][:3] == list(reference(root)), (key, workers)
            assert got[key][3:] == [0, 0], (key, workers)
