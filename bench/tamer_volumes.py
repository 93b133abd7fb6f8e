"""Benchmark (issue 11): `tamer volume backup/restore` against `tar | zstd` of the same folder, in the same run.

Fills a volume on a private sandbox engine with 1 GB in 100,000 files (half
of each file random, half repetitive, so zstd has work of both kinds), then
times, alternating anchor, floors and tamer in each of --repeat rounds (medians):
    backup:  tamer's backup_volume (its auto writer, printed: the compiled writer reading the files in
             its own process, else GNU tar through the tap; zstd + a BLAKE3 digest of every file +
             manifest + the archive's sha256) vs `tar -cf - . | zstd -3` (two processes, a pipe)
    restore: tamer's restore into a new volume (every checksum verified, escapes refused, staged,
             moved into place) vs `zstd -dc | tar -xf -`
and prints throughput and the ratio anchor/tamer with its target (backup >= 0.8, restore >= 0.7) and
whether it holds. The floor line is the anchor plus hashing the same bytes in C (`tee >(sha256sum)` in
the pipe): what any tool that checksums its data costs on this host, against the same anchor.
The machine's load average is printed: on a shared host the ratios are noisy, so each op also gets
the median of the rounds' own ratios and the ratio of CPU seconds (this process and its children, as
getrusage counts them). tamer compresses with libzstd's 2 workers where the anchor's `zstd -3` runs one
thread: the backup's line also says the ratio to `zstd -3 -T2`, for comparison (the target is the
issue's anchor).

    .venv/bin/python bench/tamer_volumes.py [--files 100000] [--mb 1024] [--repeat 3]
Needs root (it starts its own dockerd), bash, tar, zstd and sha256sum; never touches the default engine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tamer.sandbox import PrivateEngine, why_no_private_engine
from tamer.volumes.backup import apply_restore, backup_volume, plan_restore


def fill(root: Path, files: int, total: int) -> int:
    size = total // files
    text = b"".join(b"record %06d; " % i for i in range(size // 14 + 1))
    written = 0
    per_dir = 1000
    for i in range(files):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir()
        data = (os.urandom(size // 2) + text)[:size]  # every file different: half noise, half text
        (d / f"f{i:06d}.dat").write_bytes(data)
        written += len(data)
    return written


# BLAKE3 of stdin, in C (the blake3 package tamer hashes with), for the floor lines
B3SUM = (
    f"{sys.executable} -c 'import sys, blake3; h = blake3.blake3(); "
    '[h.update(b) for b in iter(lambda: sys.stdin.buffer.read(1 << 20), b"")]\' '
)


def _cpu() -> float:
    """CPU seconds of this process and of every child it has waited for (the pipelines, tar)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


CPU: dict[str, list[float]] = {}


def timed(fn: object, key: str = "") -> float:
    # what the runs before wrote is flushed first: whoever ran last would otherwise pay for their writeback
    subprocess.run(["sync"], check=True)
    c0 = _cpu()
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    wall = time.perf_counter() - t0
    CPU.setdefault(key, []).append(_cpu() - c0)
    return wall


def rotated(rep: int, *runs: tuple[str, Callable[[], object]]) -> list[tuple[str, Callable[[], object]]]:
    """The runs of round `rep`, each round starting one later: no contender always runs first or last.
    On a virtual machine the first touch of memory the host has taken back (free page reporting) costs
    several microseconds a page, and which run meets such pages depends on its place in the round: with
    a fixed order the restore figures swung 0.3-0.9 between sessions with the machine's memory state.
    Each run's output is also removed before the next one starts, so that every run begins with about
    the same memory just freed."""
    k = rep % len(runs)
    return [*runs[k:], *runs[:k]]


def shell(cmd: str) -> None:
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"anchor pipeline failed: {cmd}: {proc.stderr[-500:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--tmpfs",
        action="store_true",
        help="put the engine, the archives and the restores on a tmpfs (needs ~8 GB of memory): takes the "
        "disk's writeback out of the restore figures, which on a busy disk swing tenfold between rounds",
    )
    args = ap.parse_args()
    reason = why_no_private_engine()
    tools = [t for t in ("zstd", "tar", "bash", "sha256sum") if not shutil.which(t)]
    if reason or tools:
        print(f"!!! skipping: {reason or ', '.join(tools) + ' needed for the anchor'}")
        return 0
    base = Path(tempfile.mkdtemp(prefix="tamer-bench-vol-"))
    if args.tmpfs:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12g", "tamer-bench", str(base)], check=True)
    work = base / "work"
    work.mkdir()
    try:
        run_rounds(args, base, work)
    finally:
        if args.tmpfs:
            subprocess.run(["umount", "-l", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    return 0


def auto_writer() -> str:
    """Which writer backup_volume's writer="auto" takes here (archive_write.write_archive's order)."""
    from tamer.volumes.archive import default_digest
    from tamer.volumes.archive_pack import packer_module
    from tamer.volumes.archive_tar import gnu_tar

    if packer_module("auto", default_digest()) is not None:
        return "compiled (tamer._cpack)"
    return "GNU tar through the tap" if gnu_tar("auto") is not None else "pure Python"


def run_rounds(args: argparse.Namespace, base: Path, work: Path) -> None:
    print(f"where: {'a tmpfs' if args.tmpfs else 'the disk under ' + str(base)}")
    print(f"tamer's writer (auto): {auto_writer()}")
    with PrivateEngine.create(base / "engine") as sandbox:
        engine = sandbox.engine
        engine.create_volume("bench_vol")
        src = Path(engine.inspect_volume("bench_vol")["Mountpoint"])
        t0 = time.perf_counter()
        nbytes = fill(src, args.files, args.mb << 20)
        print(
            f"filled volume bench_vol: {args.files} files, {nbytes / 1e6:.0f} MB in {time.perf_counter() - t0:.0f}s"
        )
        mb = nbytes / 1e6
        runs: dict[str, list[float]] = {}
        ours, theirs, floor_out = work / "ours.tar.zst", work / "theirs.tar.zst", work / "floor.tar.zst"
        anchor_dir, floor_dir, b3_dir = work / "anchor-restore", work / "floor-restore", work / "b3-restore"

        def clear(*folders: Path) -> None:
            for d in folders:
                subprocess.run(["rm", "-rf", str(d)], check=True)
                d.mkdir()

        for rep in range(args.repeat):
            for p in (ours, theirs, floor_out):
                p.unlink(missing_ok=True)
            for key, fn in rotated(
                rep,
                ("anchor backup", lambda: shell(f"tar -C {src} -cf - . | zstd -3 -q -o {theirs}")),
                # for comparison only: tamer's compressor runs libzstd's 2 workers, the anchor's zstd one thread
                (
                    "anchorT2 backup",
                    lambda: shell(f"tar -C {src} -cf - . | zstd -3 -T2 -q -f -o {floor_out}"),
                ),
                (
                    "floor backup",
                    lambda: shell(
                        f"tar -C {src} -cf - . | tee >(sha256sum > /dev/null) | zstd -3 -q -f -o {floor_out}"
                    ),
                ),
                (
                    "b3floor backup",
                    lambda: shell(f"tar -C {src} -cf - . | tee >({B3SUM}) | zstd -3 -q -f -o {floor_out}"),
                ),
                ("tamer backup", lambda: backup_volume(engine, "bench_vol", ours)),
            ):
                runs.setdefault(key, []).append(timed(fn, key))
                floor_out.unlink(missing_ok=True)  # each run starts with what the one before wrote freed
            name = f"bench_restored{rep}"
            clear(anchor_dir, floor_dir, b3_dir)

            def tamer_restored(n: str = name) -> None:
                # empty it first: the engine deleting 100,000 files itself outlasts its API timeout
                restored = Path(engine.inspect_volume(n)["Mountpoint"])
                clear(restored)
                engine.remove_volume(n)

            after = {
                "anchor restore": lambda: clear(anchor_dir),
                "floor restore": lambda: clear(floor_dir),
                "b3floor restore": lambda: clear(b3_dir),
                "tamer restore": tamer_restored,
            }
            for key, fn in rotated(
                rep,
                ("anchor restore", lambda: shell(f"zstd -dc {theirs} | tar -C {anchor_dir} -xf -")),
                (
                    "floor restore",
                    lambda: shell(
                        f"zstd -dc {theirs} | tee >(sha256sum > /dev/null) | tar -C {floor_dir} -xf -"
                    ),
                ),
                (
                    "b3floor restore",
                    lambda: shell(f"zstd -dc {theirs} | tee >({B3SUM}) | tar -C {b3_dir} -xf -"),
                ),
                ("tamer restore", lambda n=name: apply_restore(engine, plan_restore(engine, ours, n))),
            ):
                runs.setdefault(key, []).append(timed(fn, key))
                after[key]()  # what it wrote is removed before the next run, outside the timing
            print(
                f"  round {rep + 1} (load {os.getloadavg()[0]:.1f}): "
                + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in runs.items())
                + f"; archives: tamer {ours.stat().st_size / 1e6:.0f} MB, tar|zstd {theirs.stat().st_size / 1e6:.0f} MB",
                flush=True,
            )
        clear(anchor_dir, floor_dir, b3_dir)
        print(
            f"\n{mb:.0f} MB in {args.files} files, medians of {args.repeat} alternating rounds (same folder):"
        )
        for op, target in (("backup", 0.8), ("restore", 0.7)):
            t, a, f, b3 = (
                statistics.median(runs[f"{who} {op}"]) for who in ("tamer", "anchor", "floor", "b3floor")
            )
            ratio = a / t
            per_round = statistics.median(
                x / y for x, y in zip(runs[f"anchor {op}"], runs[f"tamer {op}"], strict=True)
            )
            cpu = statistics.median(CPU[f"anchor {op}"]) / statistics.median(CPU[f"tamer {op}"])
            print(
                f"  {op:<8} tamer {mb / t:7.1f} MB/s ({t:5.2f}s)   tar|zstd {mb / a:7.1f} MB/s ({a:5.2f}s)   "
                f"ratio {ratio:.2f} (target >= {target})  {'held' if ratio >= target else 'MISSED'}"
            )
            print(
                f"           median of the rounds' ratios {per_round:.2f}; CPU seconds anchor/tamer {cpu:.2f} "
                f"(tamer {statistics.median(CPU[f'tamer {op}']):.2f}s, anchor {statistics.median(CPU[f'anchor {op}']):.2f}s)"
            )
            print(
                f"           floor: the anchor plus sha256 of the same bytes in C {f:5.2f}s, ratio {a / f:.2f}; "
                f"plus BLAKE3 (tamer's digest) {b3:5.2f}s, ratio {a / b3:.2f}"
            )
            if op == "backup":
                t2 = statistics.median(runs["anchorT2 backup"])
                print(
                    f"           with `zstd -3 -T2` (two compressing threads, as tamer's libzstd workers) the "
                    f"anchor takes {t2:5.2f}s: tamer's ratio to it {t2 / t:.2f}"
                )


if __name__ == "__main__":
    sys.exit(main())
