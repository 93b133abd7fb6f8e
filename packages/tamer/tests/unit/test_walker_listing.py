"""The walker where a folder's listing is not the common case, C walk and Python walk alike.

tamer/_cwalk.c lists folders with getdents64 into one buffer, a batch at a time, and stats every entry
of a batch before it counts them; the Python walk (the reference) uses scandir. These trees are the
listings that part must get right: a filesystem that gives no entry types (DT_UNKNOWN), names of 255
bytes filling many batches (hard links, the skip list and folders split across them), a folder of
100,000 subfolders under a small open-file limit, folders and files that go away between the listing
and the stat, between the listing and the open, and after the open (getdents64 then says ENOENT, which
readdir takes for the end), and two walks at once on two threads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tamer import treewalk
from tamer.sizes import measure_tree

sys.path.insert(0, str(Path(__file__).parent))
from test_walker import FEW_FILES_WALK, du, folder_sizes, reference, walker

__all__ = ["walker"]  # the autouse fixture: every test here runs with the C walk and the Python walk

# a folder of this many subfolders (100,000 by default: the brief's hostile case; smaller for a quick run)
WIDE_FOLDERS = int(os.environ.get("TAMER_TEST_WIDE_FOLDERS", "100000"))


def walked(root: str, skip: frozenset[str] = frozenset()) -> list[int]:
    """One recursive walk's figures with the root's own blocks and its hard links added in once, as
    measure_tree adds them (comparable with `reference`)."""
    top = os.stat(root)
    part = treewalk.walk(root, True, skip, top.st_dev)
    links = part.links or {}
    return [
        part.apparent + sum(size for size, _ in links.values()),
        top.st_blocks * 512 + part.allocated + sum(blocks for _, blocks in links.values()),
        part.files + len(links),
        part.vanished,
        part.unreadable,
    ]


def fill(root: Path) -> frozenset[str]:
    """Every kind of entry a data-root holds, at two levels; returns a skip list naming one folder."""
    raw = os.fsencode(str(root))
    for level in (raw, os.path.join(raw, b"sub")):
        os.makedirs(os.path.join(level, b"empty"), exist_ok=True)
        for i, name in enumerate([b"\xff\xfe-not-utf8", b"n" * 255, "ünï".encode(), b"new\nline"]):
            with open(os.path.join(level, name), "wb") as fh:
                fh.write(b"d" * (i * 1000 + 1))
        os.link(os.path.join(level, b"n" * 255), os.path.join(level, b"hard-" + b"h" * 250))
        with open(os.path.join(level, b"sparse"), "wb") as fh:
            fh.seek(20_000_000)
            fh.write(b"end")
        os.symlink(b"sub", os.path.join(level, b"to-dir"))
        os.symlink(b"/nowhere", os.path.join(level, b"dangling"))
        os.mkdir(os.path.join(level, b"skipped"))
        with open(os.path.join(level, b"skipped", b"hidden"), "wb") as fh:
            fh.write(b"s" * 7000)
    return frozenset({str(root / "sub" / "skipped")})


@pytest.fixture
def no_types_fs(tmp_path: Path) -> Iterator[Path]:
    """An ext2 filesystem made without the `filetype` feature, loop-mounted: its listings give every
    entry the type DT_UNKNOWN, as some filesystems do (old XFS, some FUSE and network filesystems)."""
    if os.geteuid() != 0 or shutil.which("mke2fs") is None:
        pytest.skip("needs root and mke2fs to mount a filesystem whose listings carry no entry types")
    image, mount = tmp_path / "image", tmp_path / "mnt"
    with open(image, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-O", "^filetype", str(image)], check=True)
    features = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in features.splitlines() if x.startswith("Filesystem features:"))
    assert "filetype" not in line.split(), line  # the listings will say DT_UNKNOWN
    mount.mkdir()
    if subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=False).returncode != 0:
        pytest.skip("cannot loop-mount a filesystem image here: the DT_UNKNOWN case needs one")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_filesystem_without_entry_types_walks_the_same(no_types_fs: Path) -> None:
    root = no_types_fs / "tree"
    root.mkdir()
    skip = fill(root)
    assert walked(str(root), skip)[:3] == list(reference(str(root), skip))
    usage = measure_tree(str(root), workers=1, skip=sorted(skip))
    assert usage is not None
    assert (usage.apparent, usage.allocated, usage.files) == reference(str(root), skip)
    whole = measure_tree(str(root), workers=1)  # du has no skip list
    assert whole is not None and whole.vanished == 0 and whole.unreadable == 0
    assert whole.allocated == du(str(root), "-B1")
    assert whole.apparent == du(str(root), "-b") - folder_sizes(str(root))
    assert whole.apparent > 40_000_000  # the sparse files count their length


def long_name(i: int) -> bytes:
    """255 bytes, every seventh not UTF-8."""
    return (b"\xff" if i % 7 == 0 else b"n") + f"{i:05d}".encode() + b"x" * 249


def test_names_of_255_bytes_over_many_listing_batches(tmp_path: Path, walker: str) -> None:
    """1,500 entries of 255-byte names list into some 400 KiB, a dozen getdents64 batches: files, hard links
    whose other names fall in other batches, folders (some skipped) and names that are not UTF-8, with the
    same figures, links and folders found as the Python walk and the reference."""
    root = tmp_path / "long"
    raw = os.fsencode(str(root))
    os.mkdir(raw)
    skip = set()
    for i in range(1500):
        path = os.path.join(raw, long_name(i))
        if i % 10 == 0:
            os.mkdir(path)
            with open(os.path.join(path, b"in"), "wb") as fh:
                fh.write(b"i" * i)
            if i % 30 == 0:
                skip.add(os.fsdecode(path))
        elif i % 10 == 5:  # another name of the file made 4 entries ago (likely in another batch)
            os.link(os.path.join(raw, long_name(i - 4)), path)
        else:
            with open(path, "wb") as fh:
                fh.write(b"f" * i)
    frozen = frozenset(skip)
    assert sum(len(n) + 20 for n in os.listdir(raw)) > 12 * 32 * 1024  # a dozen 32 KiB batches and more
    assert walked(str(root), frozen)[:3] == list(reference(str(root), frozen))
    assert walked(str(root), frozen)[3:] == [0, 0]
    for recurse in (False, True):
        found_c: list[str] = []
        found_py: list[str] = []
        got = treewalk.walk(str(root), recurse, frozen, None, found_c)
        assert got == treewalk.walk_python(str(root), recurse, frozen, None, found_py), recurse
        assert sorted(found_c) == sorted(found_py)
        if not recurse:
            assert len(found_c) == 150 - len(frozen)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, tuple[int, int, int]]]:
    """A tree whose folder a/b/many holds WIDE_FOLDERS subfolders (one in 1,000 holding a file), and the
    tree's reference figures. Three levels down: measure_trees splits a root's children and grandchildren
    into tasks of their own, so the walk of a/b holds all of many's subfolders waiting at once.

    On a tmpfs of its own where one can be mounted: on this ext4 100,000 mkdirs took 21 s and their removal
    38 s, on tmpfs well under a second each. Elsewhere (not root) 5,000 folders on disk still make the case
    (78 times the open-file limit of 64)."""
    top = tmp_path_factory.mktemp("wide")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(top)], check=False)
    count = WIDE_FOLDERS if mounted.returncode == 0 else min(WIDE_FOLDERS, 5000)
    many = top / "a" / "b" / "many"
    try:
        many.mkdir(parents=True)
        for i in range(count):
            os.mkdir(many / f"s{i}")
            if i % 1000 == 0:
                (many / f"s{i}" / "f").write_bytes(b"w" * (i // 1000 + 1))
        expected = reference(str(top))
        assert expected[2] == (count + 999) // 1000
        yield str(top), expected
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(top)], check=False)


def test_a_folder_of_100000_folders_within_a_small_open_file_limit(
    wide: tuple[str, tuple[int, int, int]], walker: str
) -> None:
    """Every subfolder waits on its one parent, which alone stays open: 64 open files are plenty."""
    top, expected = wide
    proc = subprocess.run(
        [sys.executable, "-c", FEW_FILES_WALK, json.dumps({"wide": top}), "1"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),  # TAMER_PURE_WALK as the fixture set it
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["wide"] == [*expected, 0, 0]


# An LD_PRELOAD shim: the first time a walk stats or opens a name starting with "gone", every name listed in
# TAMER_SHIM_GONE (under TAMER_SHIM_DIR) is removed, before or after that call as TAMER_SHIM_WHEN says.
# Both walks call the C library's fstatat64 and openat64 (the C walk lists with a raw system call).
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int done;

static void remove_gone(void) {
    done = 1;
    char list[4096], path[4096];
    snprintf(list, sizeof list, "%s", getenv("TAMER_SHIM_GONE"));
    for (char *name = strtok(list, ":"); name != NULL; name = strtok(NULL, ":")) {
        snprintf(path, sizeof path, "%s/%s/f", getenv("TAMER_SHIM_DIR"), name);
        unlink(path);
        snprintf(path, sizeof path, "%s/%s", getenv("TAMER_SHIM_DIR"), name);
        if (rmdir(path) != 0) unlink(path);
    }
}

static int hit(const char *name, const char *when) {
    const char *now = getenv("TAMER_SHIM_WHEN");
    return !done && now != NULL && strcmp(now, when) == 0 && strncmp(name, "gone", 4) == 0;
}

#define STAT(fn, type) \
    int fn(int fd, const char *name, type *sb, int flags) { \
        int (*real)(int, const char *, type *, int) = dlsym(RTLD_NEXT, #fn); \
        if (hit(name, "before-stat")) remove_gone(); \
        return real(fd, name, sb, flags); \
    }
STAT(fstatat, struct stat)
STAT(fstatat64, struct stat64)

#define OPEN(fn) \
    int fn(int fd, const char *name, int flags, ...) { \
        int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, #fn); \
        mode_t mode = 0; \
        if (flags & (O_CREAT | O_TMPFILE)) { \
            va_list ap; \
            va_start(ap, flags); \
            mode = va_arg(ap, int); \
            va_end(ap); \
        } \
        if (hit(name, "before-open")) remove_gone(); \
        int got = real(fd, name, flags, mode); \
        if (got >= 0 && hit(name, "after-open")) remove_gone(); \
        return got; \
    }
OPEN(openat)
OPEN(openat64)
"""

SHIMMED_WALK = """
import json, os, sys
from tamer import treewalk
root = sys.argv[1]
p = treewalk.walk(root, True, frozenset(), os.stat(root).st_dev)
print(json.dumps([p.apparent, p.allocated, p.files, p.vanished, p.unreadable, treewalk.CWALK is not None]))
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler to build the LD_PRELOAD shim that removes folders mid-walk")
    folder = tmp_path_factory.mktemp("shim")
    (folder / "shim.c").write_text(SHIM)
    lib = folder / "shim.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(lib), str(folder / "shim.c"), "-ldl"], check=True
    )
    return lib


@pytest.mark.parametrize("when", ["before-stat", "before-open", "after-open"])
def test_folders_removed_mid_walk_are_vanished_not_errors(
    tmp_path: Path, walker: str, shim: Path, when: str
) -> None:
    """Five folders and a file go away at one moment of the walk: before their stat (each counts as vanished),
    between the listing and the open (the folders count as vanished, their own blocks were measured), or
    right after the first of them was opened (that one lists as empty: getdents64 says ENOENT, which
    readdir and scandir take for the end of the listing; the other four count as vanished)."""
    root = tmp_path / "root"
    (root / "keep" / "sub").mkdir(parents=True)
    (root / "keep" / "a").write_bytes(b"a" * 1000)
    (root / "keep" / "sub" / "b").write_bytes(b"b" * 2000)
    gone = [f"gone{i}" for i in range(5)]
    for name in gone:
        (root / name).mkdir()
        (root / name / "f").write_bytes(b"g" * 3000)
    (root / "gonefile").write_bytes(b"x" * 500)

    def blocks(*names: str) -> int:
        return sum(os.lstat(root / name).st_blocks * 512 for name in names)

    kept = blocks("keep", "keep/a", "keep/sub", "keep/sub/b")
    listed_only = blocks(*gone, "gonefile")  # measured at the listing, gone before the open
    proc = subprocess.run(
        [sys.executable, "-c", SHIMMED_WALK, str(root)],
        capture_output=True,
        text=True,
        env={
            **os.environ,  # TAMER_PURE_WALK as the fixture set it
            "LD_PRELOAD": str(shim),
            "TAMER_SHIM_DIR": str(root),
            "TAMER_SHIM_GONE": ":".join([*gone, "gonefile"]),
            "TAMER_SHIM_WHEN": when,
        },
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    apparent, allocated, files, vanished, unreadable, compiled = json.loads(proc.stdout)
    assert compiled == (walker == "compiled")
    assert not any((root / name).exists() for name in [*gone, "gonefile"])  # the shim did remove them
    if when == "before-stat":
        assert [apparent, allocated, files, vanished, unreadable] == [3000, kept, 2, 6, 0]
    else:
        assert [apparent, allocated, files, unreadable] == [3500, kept + listed_only, 3, 0]
        assert vanished == (5 if when == "before-open" else 4)


@pytest.mark.parametrize("walker", ["compiled"], indirect=True)
def test_two_walks_at_once_on_two_threads_say_what_one_says(tmp_path: Path, walker: str) -> None:
    """The C walk keeps one listing buffer between walks; a second walk at the same time gets its own."""
    root = tmp_path / "t"
    for i in range(40):
        sub = root / f"d{i}"
        sub.mkdir(parents=True)
        for j in range(100):
            (sub / f"{'n' * 200}{j}").write_bytes(b"z" * (i + j))
    alone = walked(str(root))
    results: list[list[int]] = []

    def run() -> None:
        for _ in range(5):
            results.append(walked(str(root)))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 15 and all(r == alone for r in results), (alone, results)
    assert alone[:3] == list(reference(str(root)))
