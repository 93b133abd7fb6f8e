"""Sizing directory trees: apparent and allocated bytes, hard links counted once.

The fast local path walks the engine's data-root directly, split into many
subtrees measured by a pool of worker processes (the walk is syscall-bound and
Python's per-entry overhead holds the GIL, so threads would not scale). When
the data-root is not readable (a remote engine, no permission) callers fall
back to the engine's own figures; `inventory` records which was used.

"Apparent" follows docker's own definition (sum of st_size of every non-directory
entry, symlinks included, each inode once), so our numbers can be checked against
`docker system df -v`; "allocated" is st_blocks * 512 of everything, directories
included, which is what `du -sB1` reports.

The walk's inner loop is C (tamer/_cwalk.c, an optional extension: built where a C compiler
and Python's headers are, as on Debian with gcc), with _walk_python as the reference and the
fallback; every walker test runs both, and a differential test compares them entry for entry.
Measured on the df bench's host (1,003 containers, 275 volumes, 300,000 files, 2 cores): a warm
`tamer plan` went from 1.54 s to 0.87 s against `docker system df -v`'s 1.26-1.53 s; per file
the C walk costs about what `du` does, the Python one about twice that.
Why not a library: scandir-rs (measured on the same warm trees, 2 cores) was slower, not faster:
its Scandir with full stat fields took 0.37-0.50 s where the Python walk took 0.21-0.25 s on a
90,000-file volume tree (building a Python object per entry costs more than the stat), and its
Count, though compiled end to end, has no one-file-system switch, no way to skip given folders
and no per-inode hard-link accounting, so its figures cannot be made equal to these. (dirsize,
another du-like package, could not be installed from the package index here.)
"""

from __future__ import annotations

import _thread
import bisect
import errno
import os
import stat
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from tamer.forkpool import ForkPool
    from tamer.usage import DiskUsage as DiskUsage

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
# O_NOFOLLOW: a folder swapped for a symlink between listing and opening is not followed out of the tree
_TOP_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _TOP_FLAGS | os.O_NOFOLLOW

# Below this many subtrees a worker pool costs more (fork, pickling) than it saves.
MIN_TASKS_FOR_POOL = 64
CHUNKS_PER_WORKER = 16


def __getattr__(name: str) -> Any:
    # DiskUsage is tamer.usage's, handed out here too; imported when first asked for, not with this module:
    # its dataclass costs `dataclasses` and `inspect` (some 8 ms) before the workers could be forked
    if name == "DiskUsage":
        from tamer.usage import DiskUsage

        return DiskUsage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Partial:
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
        if not isinstance(other, _Partial):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it was

    def __repr__(self) -> str:
        return "_Partial(apparent={}, allocated={}, files={}, vanished={}, unreadable={}, links={!r})".format(
            *self._fields()
        )

    def _fields(self) -> tuple[int, int, int, int, int, dict[tuple[int, int], tuple[int, int]] | None]:
        return (self.apparent, self.allocated, self.files, self.vanished, self.unreadable, self.links)


def _compiled_walker() -> (
    Callable[[str, bool, int, frozenset[str], bool, bool], tuple[int, int, int, int, int, list[Any], Any]]
    | None
):
    """tamer._cwalk.walk when it was built and TAMER_PURE_WALK does not force Python (the rule: tamer.compiled),
    else None."""
    from tamer.compiled import load

    native = load("tamer._cwalk", "TAMER_PURE_WALK")
    if native is None:  # built without a C compiler: the Python walk gives the same figures
        return None
    walk: Callable[
        [str, bool, int, frozenset[str], bool, bool], tuple[int, int, int, int, int, list[Any], Any]
    ] = native.walk
    return walk


_CWALK = _compiled_walker()


def _walk(
    root: str,
    recurse: bool,
    skip: frozenset[str],
    root_dev: int | None,
    subdirs: list[str] | None = None,
    *,
    follow: bool = True,
) -> _Partial:
    """Measure `root` itself (its own entries); recurse into subdirectories when asked.

    In C (tamer/_cwalk.c) when it was built: the same walk, entry for entry, at about du's cost
    per file instead of twice it; _walk_python is the reference (a test requires equal figures).
    """
    if _CWALK is None:
        return _walk_python(root, recurse, skip, root_dev, subdirs, follow=follow)
    apparent, allocated, files, vanished, unreadable, linked, found = _CWALK(
        root, recurse, -1 if root_dev is None else root_dev, skip, follow, subdirs is not None
    )
    if subdirs is not None and found:
        subdirs.extend(found)
    return _Partial(
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


def _walk_python(
    root: str,
    recurse: bool,
    skip: frozenset[str],
    root_dev: int | None,
    subdirs: list[str] | None = None,
    *,
    follow: bool = True,
) -> _Partial:
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
    part = _Partial(links={})
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


class _SkipIndex:
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


def _task(args: tuple[str, bool, int | None, frozenset[str]]) -> _Partial:
    path, recurse, dev, skip = args
    return _walk(path, recurse, skip, dev, follow=False)  # a folder found by a split: never a symlink


def _split(root: str, dev: int | None, skip: frozenset[str]) -> tuple[_Partial, list[str]]:
    """A root's own entries and its children's, not recursing, and the grandchildren (the next tasks).

    Two levels: the data-root's overlay2/ alone would otherwise be one giant task. Done by the
    workers, not before them: listing the top of 1,300 roots serially was a fifth of a warm `df`.
    """
    children: list[str] = []
    part = _walk(root, False, skip, dev, children)
    families: list[list[str]] = []
    for child in children:
        family: list[str] = []
        _merge(part, _walk(child, False, skip, dev, family, follow=False))
        families.append(family)
    # the grandchildren of small families first: one of a folder's few subfolders tends to hold a whole
    # part of the tree (the data-root's image/overlay2, a volume's few top folders), one of thousands
    # little (a layer among all the containers'). Handed out in this order, the big tasks start first
    # and the walk ends on small ones: the workers ended 20-40 ms apart when image/overlay2 came last
    families.sort(key=len)  # stable: the walk's own order within a size
    return part, [g for family in families for g in family]


# (which root, folder, device, skip paths below it, split it or walk it whole)
Root = tuple[int, str, int | None, frozenset[str], bool]


def _split_batch(roots: list[Root]) -> list[tuple[int, _Partial, list[str]]]:
    return [
        (index, *_split(root, dev, skip)) if split else (index, _walk(root, True, skip, dev), [])
        for index, root, dev, skip, split in roots
    ]


# (which root, (folder, recurse, device, skip paths below it))
Task = tuple[int, tuple[str, bool, int | None, frozenset[str]]]


def _merge(acc: _Partial, part: _Partial) -> None:
    acc.apparent += part.apparent
    acc.allocated += part.allocated
    acc.files += part.files
    acc.vanished += part.vanished
    acc.unreadable += part.unreadable
    assert acc.links is not None and part.links is not None
    acc.links.update(part.links)


def _batch(tasks: list[Task]) -> dict[int, _Partial]:
    """Walk a run of tasks in a worker and add them up per root: one answer per root, not per folder
    (at 10,000 containers a walk is ~50,000 folders, and their messages cost more than their walk)."""
    out: dict[int, _Partial] = {}
    for index, args in tasks:
        part = _task(args)
        if index in out:
            _merge(out[index], part)
        else:
            out[index] = part
    return out


def measure_trees(
    roots: Mapping[K, str],
    *,
    skip: Iterable[str] = (),
    stay_on_device: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[K, DiskUsage | None]:
    """Measure many directory trees at once.

    Parameters:
        roots: key -> directory; a key whose directory does not exist maps to None.
        skip: absolute directory paths never entered (e.g. overlay `merged` dirs).
        stay_on_device: do not descend into directories on another device (mount points).
        workers: worker processes (default: CPU count); 1 walks in this process.
        progress: called as progress(done, total) as subtrees finish.

    Returns: key -> DiskUsage (or None when the root is missing or not a directory).

    Example:
        >>> measure_trees({"tmp": "/nonexistent"})
        {'tmp': None}
    """
    return start_measure_trees(
        roots, skip=skip, stay_on_device=stay_on_device, workers=workers, progress=progress
    ).result()


def start_measure_trees(
    roots: Mapping[K, str],
    *,
    skip: Iterable[str] = (),
    stay_on_device: bool = True,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PendingMeasure[K]:
    """Start measure_trees(...) (same parameters, same figures) and return while the workers walk;
    call `result()` (or `abandon()`) on what it returns. Its workers are its own (see Walker).

    Example:
        >>> pending = start_measure_trees({"tmp": "/nonexistent"})
        >>> pending.result()
        {'tmp': None}
    """
    walker = Walker(workers)
    return walker.start(roots, skip=skip, stay_on_device=stay_on_device, progress=progress, last=True)


class PendingMeasure(Generic[K]):
    """A walk under way (see Walker.start): `result()` waits for its figures; `abandon()` stops it.

    The workers walk while the caller does other work; the pool's thread hands them their second
    round as the first answers and adds up their answers (it holds the GIL only for that, a few ms).
    """

    def __init__(self, wait: Callable[[], dict[K, DiskUsage | None]], walker: Walker) -> None:
        self._walker = walker
        self._wait = wait

    def result(self) -> dict[K, DiskUsage | None]:
        """The figures, as measure_trees returns them; raises what the walk raised (WalkFailed when a
        worker failed or ended before answering)."""
        return self._wait()

    def abandon(self) -> None:
        """The caller gave up (an error elsewhere): let the workers go without waiting for the walk."""
        self._walker.abandon()


# what a task of the pool names (tamer.forkpool: an index into the handlers fixed at fork)
_SPLIT, _BATCH = 0, 1
# a _Partial as it crosses a pipe: (apparent, allocated, files, vanished, unreadable, links)
Wire = tuple[int, int, int, int, int, dict[tuple[int, int], tuple[int, int]]]


def _wire(part: _Partial) -> Wire:
    assert part.links is not None
    return (part.apparent, part.allocated, part.files, part.vanished, part.unreadable, part.links)


def _split_batch_wire(roots: list[Root]) -> list[tuple[int, Wire, list[str]]]:
    return [(index, _wire(part), found) for index, part, found in _split_batch(roots)]


def _batch_wire(tasks: list[Task]) -> list[tuple[int, Wire]]:
    return [(index, _wire(part)) for index, part in _batch(tasks).items()]


class Walker:
    """Worker processes that walk trees, shared by the walks started on it (each with its own roots and
    skip set: a task carries the skip paths below its folder).

    `fork_now`: fork the workers now, on the caller's thread, before it starts any other thread where it
    can (see tamer.forkpool for what a fork beside other threads may and may not do); else they are
    forked, on the caller's thread too, by the first walk with enough folders to split.
    Walks started with `last=True` close the walker when they end; else call `close()` after the last
    result (or `abandon()`).

    Example:
        >>> walker = Walker(workers=1)
        >>> walker.start({"tmp": "/nonexistent"}, last=True).result()
        {'tmp': None}
    """

    def __init__(self, workers: int | None = None, *, fork_now: bool = False) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ForkPool | None = None
        if fork_now and self.workers > 1:
            self._fork()

    def _fork(self) -> ForkPool:
        if self._pool is None:
            from tamer.forkpool import ForkPool

            self._pool = ForkPool(self.workers, (_split_batch_wire, _batch_wire))
        return self._pool

    def close(self) -> None:
        """Let the workers go and reap them (after the walks' results)."""
        if self._pool is not None:
            self._pool.close()

    def abandon(self) -> None:
        """End the workers now, without waiting for the walks under way (Ctrl-C, an error elsewhere): they
        only read, so nothing is lost, and one may be stuck in a stat of a dead network mount."""
        if self._pool is not None:
            self._pool.kill()

    def start(
        self,
        roots: Mapping[K, str],
        *,
        skip: Iterable[str] = (),
        stay_on_device: bool = True,
        progress: Callable[[int, int], None] | None = None,
        last: bool = False,
        whole: Collection[K] = (),
        stats: Mapping[K, os.stat_result] | None = None,
    ) -> PendingMeasure[K]:
        """Start measuring `roots` (the parameters and figures of measure_trees) and return while the
        workers walk; `progress` is then called from a thread. `last`: close the walker when it ends.
        `whole`: keys of roots known to be small, each walked in one task (a split, which balances the
        workers on big trees, made five tasks of each of 1,000 containers' init layers). `stats`: os.stat
        of roots the caller has just taken (each root is stat'ed here otherwise: 5-6 us each on overlayfs,
        twice for a thousand writable layers that df had checked already)."""
        skips = _SkipIndex(frozenset(os.path.normpath(s) for s in skip))
        keys: list[K] = []
        roots_todo: list[Root] = []
        own_blocks: list[int] = []  # each root folder's own blocks, as du counts them
        result: dict[K, DiskUsage | None] = {}
        known = stats or {}
        for key, root in roots.items():
            try:
                st = known.get(key) or os.stat(root)
            except OSError:
                result[key] = None
                continue
            if not stat.S_ISDIR(st.st_mode):
                result[key] = None
                continue
            dev = st.st_dev if stay_on_device else None
            roots_todo.append((len(keys), root, dev, skips.below(root), key not in whole))
            keys.append(key)
            own_blocks.append(st.st_blocks * 512)
        n_workers = self.workers
        gather = _Gather(len(roots_todo), progress)

        def chunks(items: list[T], per_worker: int) -> list[list[T]]:
            # a few dozen runs per worker keep the workers balanced (bigger tasks are unknown in advance),
            # and each run answers once per root it touched
            size = max(4, -(-len(items) // (n_workers * per_worker)))
            return [items[i : i + size] for i in range(0, len(items), size)]

        def second_round(found: list[tuple[int, list[str]]]) -> list[list[Task]]:
            tasks: list[Task] = []
            for index, grandchildren in found:
                dev = roots_todo[index][2]
                tasks.extend((index, (g, True, dev, skips.below(g))) for g in grandchildren)
            return chunks(tasks, CHUNKS_PER_WORKER) if tasks else []

        def batch_answer(n_tasks: int) -> Callable[[bool, Any], None]:
            def on_batch(ok: bool, answer: Any) -> None:
                if gather.failed(ok, answer):
                    return
                for index, part in answer:
                    gather.add_wire(index, part)
                gather.answered(n_tasks)

            return on_batch

        def on_split(ok: bool, answer: Any) -> None:
            # round 2 is handed out as each run of round 1 answers, not once all have: waiting for the
            # last one left both cores idle for 10-40 ms of a warm df
            if gather.failed(ok, answer):
                return
            for index, part, _ in answer:
                gather.add_wire(index, part)
            runs = second_round([(index, found) for index, _, found in answer])
            gather.expect(sum(len(run) for run in runs), len(runs))
            assert pool is not None
            for run in runs:
                pool.submit(_BATCH, run, batch_answer(len(run)))
            gather.answered(0)

        pool: ForkPool | None = None
        try:
            if n_workers > 1 and len(roots_todo) >= MIN_TASKS_FOR_POOL:
                # round 1: each root's top two levels (its own entries, its children's) and the folders
                # below them, in the workers when there are many roots (a host's volumes and writable layers)
                pool = self._fork()
                first = chunks(roots_todo, 4)
                gather.expect(0, len(first))
                for split in first:
                    pool.submit(_SPLIT, split, on_split)
                wait = gather.wait
            else:
                answers = _split_batch(roots_todo)  # here: too few roots to split among workers
                for index, part, _ in answers:
                    gather.add(index, part)
                runs = second_round([(index, found) for index, _, found in answers])
                n_tasks = sum(len(run) for run in runs)
                gather.expect(n_tasks, 0)
                gather.walked(0)  # the first round is done: said before the second starts
                if n_workers > 1 and n_tasks >= MIN_TASKS_FOR_POOL:
                    pool = self._fork()
                    gather.expect(0, len(runs))
                    for run in runs:
                        pool.submit(_BATCH, run, batch_answer(len(run)))
                    wait = gather.wait
                else:
                    from tamer.background import in_background

                    def walk_here() -> None:
                        for run in runs:
                            for index, args in run:
                                gather.add(index, _task(args))
                                gather.walked(1)

                    wait = in_background(walk_here)
        except BaseException:
            self.abandon()
            raise

        def finish() -> dict[K, DiskUsage | None]:
            from tamer.usage import DiskUsage

            try:
                wait()
            except BaseException:
                if last:
                    self.abandon()
                raise
            if last:
                self.close()
            for index, acc in gather.merged.items():
                links = acc.links
                if links:  # most roots have none: no generator to add up (2,300 roots after a df's walk)
                    apparent = acc.apparent + sum(a for a, _ in links.values())
                    allocated = acc.allocated + sum(b for _, b in links.values())
                else:
                    apparent, allocated = acc.apparent, acc.allocated
                result[keys[index]] = DiskUsage(
                    apparent,
                    allocated + own_blocks[index],
                    acc.files + len(links or ()),
                    acc.vanished,
                    acc.unreadable,
                )
            return result

        return PendingMeasure(finish, self)


class _Gather:
    """A walk's answers added up per root as they come (on the pool's thread), and when it is done."""

    def __init__(self, n_roots: int, progress: Callable[[int, int], None] | None) -> None:
        self.merged: dict[int, _Partial] = {}
        self._progress = progress
        self._runs = 0  # runs handed out and not answered
        self._done = n_roots  # folders walked (a root's split counts one), for progress
        self._total = n_roots
        self._error: str | None = None
        self._finished = _thread.allocate_lock()
        self._finished.acquire()  # released when the last run answers (or one fails)

    def expect(self, tasks: int, runs: int) -> None:
        self._total += tasks
        self._runs += runs

    def add(self, index: int, part: _Partial) -> None:
        if index in self.merged:
            _merge(self.merged[index], part)
        else:
            self.merged[index] = part

    def add_wire(self, index: int, wire: Wire) -> None:
        apparent, allocated, files, vanished, unreadable, links = wire
        acc = self.merged.get(index)
        if acc is None:
            self.merged[index] = _Partial(apparent, allocated, files, vanished, unreadable, links)
            return
        acc.apparent += apparent
        acc.allocated += allocated
        acc.files += files
        acc.vanished += vanished
        acc.unreadable += unreadable
        if links:
            assert acc.links is not None
            acc.links.update(links)

    def walked(self, tasks: int) -> None:
        """`tasks` more folders walked (for progress)."""
        self._done += tasks
        if self._progress:
            self._progress(self._done, self._total)

    def answered(self, tasks: int) -> None:
        """A run of the pool answered, having walked `tasks` folders (0: a split, whose own count was
        expected). Called on the pool's thread, as every method but wait()."""
        self.walked(tasks)
        self._runs -= 1
        if self._runs == 0 and self._error is None:
            self._finished.release()

    def failed(self, ok: bool, answer: Any) -> bool:
        """Whether a run failed (then the walk does, with its message)."""
        if ok:
            return False
        if self._error is None:
            self._error = str(answer)
            if self._runs > 0:  # else released already: the walk was done
                self._finished.release()
        return True

    def wait(self) -> None:
        with self._finished:  # Ctrl-C interrupts the wait
            pass
        if self._error is not None:
            from tamer.forkpool import WalkFailed

            raise WalkFailed(f"sizing the data-root failed: {self._error}")


def measure_tree(root: str, **kwargs: object) -> DiskUsage | None:
    """Measure one tree; see measure_trees for the keyword arguments."""
    return measure_trees({0: root}, **kwargs)[0]  # type: ignore[arg-type]


def file_size(path: str) -> DiskUsage | None:
    """Apparent and allocated size of one file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    from tamer.usage import DiskUsage

    return DiskUsage(st.st_size, st.st_blocks * 512, 1, 0)
