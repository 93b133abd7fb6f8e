"""Property: no archive, however hostile, makes a restore change anything outside the new volume, and a refused
restore leaves nothing behind (issue 10, failure 8 and "Done when").

Hypothesis builds archives from random mixes of `..`, absolute paths, symlink chains and links through
symlinked folders, hard links (forward, backward, outside), duplicate entries, manifest xattrs (on entries, on
paths outside, in privileged namespaces), fifos, device nodes and huge declared sizes. Around the target folder
sits a sentinel tree; its sha256, modes, owners, xattrs and mtimes must be unchanged after every restore.

The default size keeps `make test` short; TAMER_ATTACK_EXAMPLES=2000 (read by this test only) runs a bigger one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tamer.errors import TamerError
from tamer.volumes.restore import restore_into

EXAMPLES = int(os.environ.get("TAMER_ATTACK_EXAMPLES", "200"))
WORLD = Path(tempfile.mkdtemp(prefix="tamer-attack-"))
OUTSIDE = WORLD / "outside"
VICTIM = OUTSIDE / "victim"

COMPONENTS = ["a", "b", "s", "..", ".", "", "outside", "victim", "data"]
LINK_TARGETS = [
    "..",
    "../..",
    "../../..",
    "/",
    str(OUTSIDE),
    str(VICTIM),
    "a",
    "a/b",
    "s",
    ".",
    "../outside",
    "s/..",
    "../../outside/victim",
    "/tmp",
]
XATTR_KEYS = ["user.attack", "security.capability", "trusted.attack", "system.posix_acl_access", "weird.ns"]


@pytest.fixture(scope="module", autouse=True)
def _remove_world() -> Iterator[None]:
    yield
    shutil.rmtree(WORLD, ignore_errors=True)


def _setup_world() -> None:
    shutil.rmtree(WORLD, ignore_errors=True)
    OUTSIDE.mkdir(parents=True)
    VICTIM.write_bytes(b"do not touch")
    os.setxattr(VICTIM, "user.sentinel", b"1")
    (OUTSIDE / "dir").mkdir()
    (OUTSIDE / "dir" / "file").write_bytes(b"also not")
    os.chmod(VICTIM, 0o640)
    for p in (VICTIM, OUTSIDE / "dir" / "file", OUTSIDE / "dir", OUTSIDE):
        os.utime(p, (1_500_000_000, 1_500_000_000))


def snapshot(root: Path, skip: Path) -> dict[str, Any]:
    """sha256, mode, owner, mtime, xattrs, link target of everything under `root` except below `skip`."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip:
            dirnames[:] = []
            continue
        for name in [".", *dirnames, *filenames]:
            p = here / name if name != "." else here
            if p == skip:
                continue
            s = p.lstat()
            e: dict[str, Any] = {
                "mode": s.st_mode,
                "uid": s.st_uid,
                "gid": s.st_gid,
                "mtime": s.st_mtime_ns,
                "xattrs": sorted(os.listxattr(p, follow_symlinks=False)),
            }
            if stat.S_ISREG(s.st_mode):
                e["sha"] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISLNK(s.st_mode):
                e["target"] = os.readlink(p)
            out[str(p.relative_to(root))] = e
    for probe in ("/tmp/tamer-attack-escape", "/tamer-attack-escape"):
        out[probe] = os.path.lexists(probe)
    return out


names = st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4).map("/".join)
PLAIN = ["data/a", "data/b", "data/s", "data/a/b", "data/a/c", "data/s/victim", "data/a/b/c", "data/s/s"]
entry_names = st.one_of(
    st.sampled_from(PLAIN),
    st.sampled_from(PLAIN),
    st.sampled_from(PLAIN),
    st.sampled_from(PLAIN),
    names.map(lambda n: f"data/{n}"),
    st.sampled_from(
        [
            "data",
            "data/",
            "/tmp/tamer-attack-escape",
            "../tamer-attack-escape",
            f"{VICTIM}",
            "outside/victim",
            "data/../outside/victim",
        ]
    ),
)
entries = st.lists(
    st.tuples(
        st.sampled_from(
            ["file"] * 4 + ["dir"] * 6 + ["symlink"] * 3 + ["hardlink"] * 2 + ["fifo", "chr", "blk", "huge"]
        ),
        entry_names,
        st.sampled_from(
            [*LINK_TARGETS, "data/a", "data/a/b", "data/s", "data/s/victim", "data/../outside/victim"]
        ),
        st.sampled_from([0o644, 0o755, 0o4755, 0o2755, 0o777, 0o000]),
    ),
    min_size=0,
    max_size=10,
)
xattrs = st.one_of(
    st.just({}),
    st.dictionaries(
        st.sampled_from(
            ["", "a", "a/b", "s", "s/victim", "../outside/victim", str(VICTIM), "nothere", "victim"]
        ),
        st.dictionaries(
            st.sampled_from(XATTR_KEYS), st.sampled_from(["YQ==", "AAAA", "not base64!"]), max_size=2
        ),
        max_size=3,
    ),
)


def build(
    path: Path, spec: list[tuple[str, str, str, int]], manifest_xattrs: dict[str, Any], honest_manifest: bool
) -> None:
    buf = io.BytesIO()
    files: dict[str, Any] = {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        head = json.dumps({"format": 1, "volume": "attack"}).encode()
        info = tarfile.TarInfo("tamer-backup.json")
        info.size = len(head)
        tar.addfile(info, io.BytesIO(head))
        root = tarfile.TarInfo("data")
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(root)
        for kind, name, target, mode in spec:
            e = tarfile.TarInfo(name)
            e.mode, e.mtime = mode, 1_600_000_000
            payload = b""
            if kind == "file":
                payload = b"payload " + name.encode()
                e.size = len(payload)
                files[name.removeprefix("data/")] = [len(payload), hashlib.sha256(payload).hexdigest()]
            elif kind == "huge":
                e.size = 1 << 50  # declared, never there: the stream that follows is read as its data
            elif kind == "dir":
                e.type = tarfile.DIRTYPE
            elif kind == "symlink":
                e.type, e.linkname = tarfile.SYMTYPE, target
            elif kind == "hardlink":
                e.type, e.linkname = tarfile.LNKTYPE, target
            elif kind == "fifo":
                e.type = tarfile.FIFOTYPE
            else:
                e.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
                e.devmajor, e.devminor = 1, 3
            tar.addfile(e, io.BytesIO(payload) if payload else None)
        manifest = json.dumps(
            {
                "format": 1,
                "files": files if honest_manifest else {"victim": [1, "0" * 64]},
                "xattrs": manifest_xattrs,
            }
        ).encode()
        info = tarfile.TarInfo("tamer-manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=entries, manifest_xattrs=xattrs, honest=st.booleans(), privileged=st.booleans(), tidy=st.booleans()
)
def test_no_archive_changes_anything_outside_the_new_volume(
    spec: list[tuple[str, str, str, int]],
    manifest_xattrs: dict[str, Any],
    honest: bool,
    privileged: bool,
    tidy: bool,
) -> None:
    if tidy:  # each name once, folders before what they hold: more archives get past the first checks
        firsts = {
            name: (kind, name, target, mode)
            for kind, name, target, mode in reversed(spec)
            if name.startswith("data/") and ".." not in name.split("/") and name.strip("/") != "data"
        }
        for name in list(firsts):
            parts = name.split("/")
            for i in range(2, len(parts)):
                firsts.setdefault("/".join(parts[:i]), ("dir", "/".join(parts[:i]), "", 0o755))
        spec = sorted(firsts.values(), key=lambda e: (e[1].count("/"), e[1]))
    _setup_world()
    target = WORLD / "vol"
    target.mkdir()
    arc = WORLD.parent / f"{WORLD.name}.tar.zst"
    build(arc, spec, manifest_xattrs, honest or not spec)
    before = snapshot(WORLD, target)
    try:
        restore_into(str(arc), str(target), privileged=privileged)
        refused = False
        event("restored")
    except TamerError as exc:
        refused = True  # any other exception is a bug ("internal error") and fails the test
        event(f"refused: {type(exc).__name__}: {str(exc).split('refused: ')[-1][:60]}")
    finally:
        arc.unlink()
    assert snapshot(WORLD, target) == before, "a restore changed something outside the new volume"
    if refused:
        assert os.listdir(target) == [], "a refused restore left something behind"
    else:
        for dirpath, dirnames, filenames in os.walk(target):
            for n in dirnames + filenames:
                s = (Path(dirpath) / n).lstat()
                assert not (stat.S_ISCHR(s.st_mode) or stat.S_ISBLK(s.st_mode)), "a device node was created"
                assert privileged or not s.st_mode & (stat.S_ISUID | stat.S_ISGID) or stat.S_ISLNK(s.st_mode)
