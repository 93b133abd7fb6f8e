"""Benchmark: `tamer volume backup/restore` against `tar | zstd` of the same folder, in the same run.

Fills a volume on a private sandbox engine with 1 GB in 100,000 files (half
of each file random, half repetitive, so zstd has work of both kinds), then
times, alternating and best of --repeat:
    backup:  tamer's backup_volume (tar + zstd + sha256 of every file + manifest)
             vs `tar -cf - . | zstd -3` (two processes, a pipe)
    restore: tamer's restore into a new volume (verify every checksum, refuse escapes)
             vs `zstd -dc | tar -xf -`
and prints throughput and the ratio tamer/anchor. Target: ratio >= 0.8.

    .venv/bin/python bench/tamer_volumes.py [--files 100000] [--mb 1024] [--repeat 2]
Needs root (it starts its own dockerd), tar and zstd; never touches the default engine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def pipe(first: list[str], second: list[str], **kw: object) -> None:
    a = subprocess.Popen(first, stdout=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    b = subprocess.Popen(second, stdin=a.stdout, **kw)  # type: ignore[call-overload]
    assert a.stdout is not None
    a.stdout.close()
    if b.wait() != 0 or a.wait() != 0:
        raise SystemExit(f"anchor pipeline failed: {first} | {second}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    reason = why_no_private_engine()
    if reason or not shutil.which("zstd") or not shutil.which("tar"):
        print(f"!!! skipping: {reason or 'tar and zstd are needed for the anchor'}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="tamer-bench-vol-"))
    with PrivateEngine.create() as sandbox:
        engine = sandbox.engine
        engine.create_volume("bench_vol")
        src = Path(engine.inspect_volume("bench_vol")["Mountpoint"])
        t0 = time.perf_counter()
        nbytes = fill(src, args.files, args.mb << 20)
        print(
            f"filled volume bench_vol: {args.files} files, {nbytes / 1e6:.0f} MB in {time.perf_counter() - t0:.0f}s"
        )
        mb = nbytes / 1e6
        best: dict[str, float] = {}

        def keep(key: str, seconds: float) -> None:
            best[key] = min(best.get(key, float("inf")), seconds)

        for rep in range(args.repeat):
            ours, theirs = work / "ours.tar.zst", work / "theirs.tar.zst"
            for p in (ours, theirs):
                p.unlink(missing_ok=True)
            keep(
                "anchor backup",
                timed(
                    lambda t=theirs: pipe(
                        ["tar", "-C", str(src), "-cf", "-", "."], ["zstd", "-3", "-q", "-o", str(t)]
                    )
                ),
            )
            keep("tamer backup", timed(lambda o=ours: backup_volume(engine, "bench_vol", o)))
            out_dir = work / "anchor-restore"
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir()
            keep(
                "anchor restore",
                timed(
                    lambda t=theirs, d=out_dir: pipe(
                        ["zstd", "-dc", str(t)], ["tar", "-C", str(d), "-xf", "-"]
                    )
                ),
            )
            name = f"bench_restored{rep}"
            keep(
                "tamer restore",
                timed(lambda o=ours, n=name: apply_restore(engine, plan_restore(engine, o, n))),
            )
            # empty it first: the engine deleting 100,000 files itself outlasts its API timeout
            restored = Path(engine.inspect_volume(name)["Mountpoint"])
            shutil.rmtree(restored)
            restored.mkdir()
            engine.remove_volume(name)
            shutil.rmtree(out_dir, ignore_errors=True)
            print(
                f"  round {rep + 1}: "
                + ", ".join(f"{k} {v:.2f}s" for k, v in best.items())
                + f"; archives: tamer {ours.stat().st_size / 1e6:.0f} MB, tar|zstd {theirs.stat().st_size / 1e6:.0f} MB",
                flush=True,
            )
        print(f"\n{mb:.0f} MB in {args.files} files, best of {args.repeat} (same run, same folder):")
        for op in ("backup", "restore"):
            t, a = best[f"tamer {op}"], best[f"anchor {op}"]
            print(
                f"  {op:<8} tamer {mb / t:7.1f} MB/s ({t:5.2f}s)   tar|zstd {mb / a:7.1f} MB/s ({a:5.2f}s)   "
                f"ratio {a / t:.2f} (target >= 0.8)"
            )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
