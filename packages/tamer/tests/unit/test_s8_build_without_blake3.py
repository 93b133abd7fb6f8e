"""setup.py builds each optional extension on its own, and the vendored BLAKE3 degrades on its own: with a
C compiler that refuses BLAKE3's sources (a wrapper, in a copy of the package), _ctap and _crestore are
still built, without native BLAKE3 (their native_blake3 is 0); with one that refuses only its SIMD parts,
with BLAKE3's portable code. Either way tamer.compiled loads all three, and a backup written with them,
verified and restored, is the archive the normal build writes (same bytes) and restores the same files.
Before, a failed BLAKE3 compile dropped _crestore and _ctap whole.

Each build compiles in a temporary copy (some 10-20 s of CPU); the checkout's .so files are not touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2]
ROOT_RUN = os.geteuid() == 0

_CC = """#!/bin/sh
# a C compiler that refuses the sources whose path holds $REFUSE
for a in "$@"; do
  case "$a" in
    *"$REFUSE"*) echo "refusing $a" >&2; exit 1 ;;
  esac
done
exec "${REAL_CC:-cc}" "$@"
"""

_BACKUP = """
import json, os, sys
from tamer.compiled import load
from tamer.volumes.archive import read_archive
from tamer.volumes.archive_write import write_archive
from tamer.volumes.restore import restore_into

src, arc, out = sys.argv[1:4]
modules = {}
for name in ("tamer._cwalk", "tamer._ctap", "tamer._crestore"):
    m = load(name, None)
    modules[name] = None if m is None else [m.__file__, getattr(m, "native_blake3", None)]
with open(arc, "wb") as f:
    stats, sha, size = write_archive(src, f, {"volume": "s8", "created": "fixed"}, writer="tar", digest="blake3")
verified = read_archive(arc)
restore_into(arc, out, privileged=True)
print(json.dumps({"modules": modules, "sha": sha, "verified": verified.sha256, "files": stats.files}))
"""


def _tree(root: Path) -> None:
    root.mkdir()
    (root / "empty").write_bytes(b"")
    for i, size in enumerate((1, 1023, 1024, 1025, 64 * 1024, 64 * 1024 + 1, 300_000, 3 << 20)):
        (root / f"f{i}").write_bytes(os.urandom(size))
    (root / "d").mkdir()
    for i in range(50):
        (root / "d" / f"small{i}").write_bytes(os.urandom(i * 37))
    os.symlink("f1", root / "link")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _build(tmp: Path, refuse: str) -> Path:
    """A copy of the package built with a compiler that refuses `refuse`; its src folder."""
    copy = tmp / "pkg"
    copy.mkdir()
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(PACKAGE / name, copy / name)
    shutil.copytree(PACKAGE / "src", copy / "src", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    cc = tmp / "cc"
    cc.write_text(_CC)
    cc.chmod(0o755)
    env = {**os.environ, "CC": str(cc), "REFUSE": refuse, "REAL_CC": os.environ.get("CC", "cc")}
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return copy / "src"


def _backup(src_path: Path | None, tree: Path, tmp: Path, tag: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMER_PURE_")}
    if src_path is not None:
        env["PYTHONPATH"] = str(src_path)
    out = tmp / f"restored-{tag}"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _BACKUP, str(tree), str(tmp / f"{tag}.tar.zst"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got: dict[str, object] = json.loads(done.stdout)
    assert _files(out) == _files(tree), f"{tag}: the restored files differ from the source"
    return got


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize(
    ("refuse", "native"),
    [("/_blake3/", 0), ("/_blake3/x86_", 1)],
    ids=["no-blake3", "no-blake3-simd"],
)
def test_extensions_build_without_blake3_and_back_up_the_same(
    tmp_path: Path, refuse: str, native: int
) -> None:
    pytest.importorskip("blake3")
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    src = _build(tmp_path, refuse)
    tree = tmp_path / "tree"
    _tree(tree)
    degraded = _backup(src, tree, tmp_path, "degraded")
    normal = _backup(None, tree, tmp_path, "normal")
    modules = degraded["modules"]
    assert isinstance(modules, dict)
    for name in ("tamer._cwalk", "tamer._ctap", "tamer._crestore"):
        assert modules[name] is not None, f"{name} was not built or did not load"
        assert modules[name][0].startswith(str(src)), modules[name]
    assert modules["tamer._ctap"][1] == native and modules["tamer._crestore"][1] == native
    normal_modules = normal["modules"]
    assert isinstance(normal_modules, dict)
    assert normal_modules["tamer._ctap"] is not None and normal_modules["tamer._ctap"][1] == 1
    assert degraded["sha"] == degraded["verified"]
    # the same archive, byte for byte (its sha256), as the normal build writes
    assert (degraded["sha"], degraded["files"]) == (normal["sha"], normal["files"])


def test_the_checkouts_build_says_it_has_native_blake3() -> None:
    from tamer.compiled import load, native_blake3

    for name in ("tamer._ctap", "tamer._crestore"):
        module = load(name, None)
        if module is None:
            pytest.skip(f"{name} was not built here")
        assert native_blake3(module), f"{name} was built without the vendored BLAKE3"
    assert not native_blake3(None)
