"""One process's walk of directory trees: what each of the walker's workers (tamer.sizes) runs.

`walk` measures one folder (its own entries, or the whole tree below it) with the compiled inner loop
(tamer/_cwalk.c) when it was built, else with `walk_python`, the reference: every walker test runs both,
and a differential test compares them entry for entry. `split` and `batch` are the two kinds of task the
workers are handed (a root's top two levels, which name the folders below them; then runs of those
folders), and `split_batch_wire` / `batch_wire` the same with their answers in the compact form that
crosses a worker's pipe. Figures: apparent bytes as docker counts them (st_size of every non-directory,
each inode once), allocated bytes as du does (st_blocks * 512 of everything, folders included); a file
with more than one link is handed back by (device, inode) and counted once by whoever adds the parts up.
"""

from __future__ import annotations

import bisect
import errno
import os
import stat

TYPE_CHECKING = False  # not typing's: imported before the walk's workers are forked (see tamer.sizes)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# O_NOFOLLOW: a folder swapped for a symlink between listing and opening is not followed out of the tree
_TOP_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _TOP_FLAGS | os.O_NOFOLLOW


class Partial:
    """A walk's figures for one root (or part of one) before they are added up into a DiskUsage."""

    __slots__ = ("allocated", "apparent", "files", "links", "unreadable", "vanished")

    def __init__(
        self,
        apparent: int = 0,
        allocated: int = 0,
        files: int = 0,
        vanished: int = 0,
        unreadable: int = 0,
        # (dev, ino) -> (apparent, allocated) of multiply-linked files, merged across subtrees
        links: dict[tuple[int, int], tuple[int, int]] | None = None,
    ) -> None:
        self.apparent = apparent
        self.allocated = allocated
        self.files = files
        self.vanished = vanished
        self.unreadable = unreadable
        self.links = links

    def __eq__(self, other: object) -> bool:  # the walker tests compare the C and Python walks' parts
        if not isinstance(other, Partial):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def __repr__(self) -> str:
        return "Partial(apparent={}, allocated={}, files={}, vanished={}, unreadable={}, links={!r})".format(
            *self._fields()
        )

    def _fields(self) -> tuple[int, int, int, int, int, dict[tuple[int, int], tuple[int, int]] | None]:
        return (self.apparent, self.allocated, self.files, self.vanished, self.unreadable, self.links)


def compiled_walker() -> (
    Callable[[str, bool, int, frozenset[str], bool, bool], tuple[int, int, int, int, int, list[Any], Any]]
    | None
):
    """tamer._cwalk.walk when it was built and TAMER_PURE_WALK does not force Python (the rule: tamer.compiled),
    else None."""
    from tamer.compiled import load

    native = load("tamer._cwalk", "TAMER_PURE_WALK")
    if native is None:  # built without a C compiler: the Python walk gives the same figures
        return None
    native_walk: Callable[
        [str, bool, int, frozenset[str], bool, bool], tuple[int, int, int, int, int, list[Any], Any]
    ] = native.walk
    return native_walk


CWALK = compiled_walker()


def walk(
    root: str,
    recurse: bool,
    skip: frozenset[str],
    root_dev: int | None,
    subdirs: list[str] | None = None,
    *,
    follow: bool = True,
) -> Partial:
    """Measure `root` itself (its own entries); recurse into subdirectories when asked.

    In C (tamer/_cwalk.c) when it was built: the same walk, entry for entry, at about du's cost
    per file instead of twice it; walk_python is the reference (a test requires equal figures).
    """
    if CWALK is None:
        return walk_python(root, recurse, skip, root_dev, subdirs, follow=follow)
    apparent, allocated, files, vanished, unreadable, linked, found = CWALK(
        root, recurse, -1 if root_dev is None else root_dev, skip, follow, subdirs is not None
    )
    if subdirs is not None and found:
        subdirs.extend(found)
    return Partial(
        apparent=apparent,
        allocated=allocated,
        files=files,
        vanished=vanished,
        unreadable=unreadable,
        links={(dev, ino): (size, blocks) for dev, ino, size, blocks in linked},
    )


class _Held:
    """An open folder and how many readings of it (its own, its waiting subfolders') still need it."""

    __slots__ = ("fd", "waiting")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.waiting = 1  # the reading of the folder itself

    def release(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            os.close(self.fd)
            self.fd = -1


def walk_python(
    root: str,
    recurse: bool,
    skip: frozenset[str],
    root_dev: int | None,
    subdirs: list[str] | None = None,
    *,
    follow: bool = True,
) -> Partial:
    """Measure `root` itself (its own entries); recurse into subdirectories when asked.

    `subdirs`: when not recursing, the folders met (those a recursion would enter) are appended
    to it, so a split lists each folder once. `follow`: open `root` even through a symlink (a
    volume's bind device); a folder found by a walk is opened without following (swapped for a
    symlink since it was listed, it is not followed out of the tree).

    Folders are opened as file descriptors and their entries stat'ed relative to them
    (os.scandir on an fd uses fstatat): the kernel resolves one name per entry instead
    of the whole path, which measured 20-30% less time than path-based lstat on the
    same tree. Figures are the same: only how the kernel finds each entry changed.
    """
    part = Partial(links={})
    assert part.links is not None
    links = part.links
    try:
        top = os.open(root, _TOP_FLAGS if follow else _DIR_FLAGS)  # a root may be a symlink: followed
    except (FileNotFoundError, NotADirectoryError):
        part.vanished += 1
        return part
    except PermissionError:
        part.unreadable += 1
        return part
    except OSError as exc:
        if exc.errno != errno.ELOOP:  # ELOOP: O_NOFOLLOW met a symlink where a folder was listed
            raise
        part.vanished += 1
        return part
    # A folder stays open only while subfolders of it wait to be opened relative to it: at most one per
    # level of the tree, never one per waiting folder (a folder of 100,000 subfolders would otherwise
    # exhaust the default limit of 1,024 open files). tamer/_cwalk.c does the same.
    todo: list[tuple[_Held, str, str]] = []  # (the open parent, the name in it, the folder's path + "/")
    s_isdir = stat.S_ISDIR
    fd, path = top, root if root.endswith("/") else root + "/"
    try:
        while True:
            here = _Held(fd)
            fd = -1  # `here` owns it now
            try:
                try:
                    entries = os.scandir(here.fd)
                except PermissionError:
                    part.unreadable += 1
                    entries = None
                if entries is not None:
                    denied = False  # counted once per folder: one whose search bit is off fails on every name
                    with entries:
                        for entry in entries:
                            try:
                                st = entry.stat(follow_symlinks=False)
                            except FileNotFoundError:
                                part.vanished += 1
                                continue
                            except OSError:
                                # listed but not stat'able: a folder readable but not searchable (mode 644),
                                # a FUSE mount another user made, a dead network mount. Not measured, and
                                # not the end of the walk: du says so and goes on, and so does this
                                if not denied:
                                    part.unreadable += 1
                                    denied = True
                                continue
                            if s_isdir(st.st_mode):
                                child = path + entry.name
                                if child in skip or (root_dev is not None and st.st_dev != root_dev):
                                    continue  # a mount point (running container, bind volume) or excluded
                                part.allocated += st.st_blocks * 512
                                if subdirs is not None and not recurse:
                                    subdirs.append(child)
                                if recurse:
                                    here.waiting += 1
                                    todo.append((here, entry.name, child + "/"))
                                continue
                            if st.st_nlink > 1:
                                links[(st.st_dev, st.st_ino)] = (st.st_size, st.st_blocks * 512)
                                continue
                            part.apparent += st.st_size
                            part.allocated += st.st_blocks * 512
                            part.files += 1
            finally:
                here.release()  # closed now unless subfolders of it wait
            while todo:
                parent, name, child_path = todo.pop()
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
                except (FileNotFoundError, NotADirectoryError):
                    part.vanished += 1
                except PermissionError:
                    part.unreadable += 1
                except OSError as exc:
                    if exc.errno != errno.ELOOP:  # swapped for a symlink since it was listed
                        raise
                    part.vanished += 1
                finally:
                    parent.release()
                if fd >= 0:
                    path = child_path
                    break
            else:
                break
    finally:
        if fd >= 0:
            os.close(fd)
        for parent, _, _ in todo:  # an error left subfolders waiting: let their folders go
            parent.release()
    return part


_NO_SKIP: frozenset[str] = frozenset()


class SkipIndex:
    """A walk's skip set, sorted, so that each task carries only the paths below its own folder: most
    carry none, and one pool of workers can serve walks with different skip sets."""

    def __init__(self, skip: frozenset[str]) -> None:
        self._sorted = sorted(skip)

    def below(self, folder: str) -> frozenset[str]:
        if not self._sorted:
            return _NO_SKIP
        prefix = folder.rstrip("/") + "/"
        lo = bisect.bisect_left(self._sorted, prefix)
        hi = bisect.bisect_left(self._sorted, prefix[:-1] + "0")  # "0" sorts right after "/"
        return frozenset(self._sorted[lo:hi]) if hi > lo else _NO_SKIP


def task(args: tuple[str, bool, int | None, frozenset[str]]) -> Partial:
    path, recurse, dev, skip = args
    return walk(path, recurse, skip, dev, follow=False)  # a folder found by a split: never a symlink


def split(root: str, dev: int | None, skip: frozenset[str]) -> tuple[Partial, list[str]]:
    """A root's own entries and its children's, not recursing, and the grandchildren (the next tasks).

    Two levels: the data-root's overlay2/ alone would otherwise be one giant task. Done by the
    workers, not before them: listing the top of 1,300 roots serially was a fifth of a warm `df`.
    """
    children: list[str] = []
    part = walk(root, False, skip, dev, children)
    families: list[list[str]] = []
    for child in children:
        family: list[str] = []
        merge(part, walk(child, False, skip, dev, family, follow=False))
        families.append(family)
    # the grandchildren of small families first: one of a folder's few subfolders tends to hold a whole
    # part of the tree (the data-root's image/overlay2, a volume's few top folders), one of thousands
    # little (a layer among all the containers'). Handed out in this order, the big tasks start first
    # and the walk ends on small ones: the workers ended 20-40 ms apart when image/overlay2 came last
    families.sort(key=len)  # stable: the walk's own order within a size
    return part, [g for family in families for g in family]


# (which root, folder, device, skip paths below it, split it or walk it whole)
Root = tuple[int, str, int | None, frozenset[str], bool]


def split_batch(roots: list[Root]) -> list[tuple[int, Partial, list[str]]]:
    return [
        (index, *split(root, dev, skip)) if in_two else (index, walk(root, True, skip, dev), [])
        for index, root, dev, skip, in_two in roots
    ]


# (which root, (folder, recurse, device, skip paths below it))
Task = tuple[int, tuple[str, bool, int | None, frozenset[str]]]


def merge(acc: Partial, part: Partial) -> None:
    acc.apparent += part.apparent
    acc.allocated += part.allocated
    acc.files += part.files
    acc.vanished += part.vanished
    acc.unreadable += part.unreadable
    assert acc.links is not None and part.links is not None
    acc.links.update(part.links)


def batch(tasks: list[Task]) -> dict[int, Partial]:
    """Walk a run of tasks in a worker and add them up per root: one answer per root, not per folder
    (at 10,000 containers a walk is ~50,000 folders, and their messages cost more than their walk)."""
    out: dict[int, Partial] = {}
    for index, args in tasks:
        part = task(args)
        if index in out:
            merge(out[index], part)
        else:
            out[index] = part
    return out


# a Partial as it crosses a pipe: (apparent, allocated, files, vanished, unreadable, links)
Wire = tuple[int, int, int, int, int, dict[tuple[int, int], tuple[int, int]]]


def to_wire(part: Partial) -> Wire:
    assert part.links is not None
    return (part.apparent, part.allocated, part.files, part.vanished, part.unreadable, part.links)


def split_batch_wire(roots: list[Root]) -> list[tuple[int, Wire, list[str]]]:
    return [(index, to_wire(part), found) for index, part, found in split_batch(roots)]


def batch_wire(tasks: list[Task]) -> list[tuple[int, Wire]]:
    return [(index, to_wire(part)) for index, part in batch(tasks).items()]
