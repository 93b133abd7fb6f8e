"""Attacks on this session's restore and engine changes (issue 11, review s6).

The lean transport now creates and removes volumes (POST with a JSON body, DELETE with force): on the
private engine every outcome (the volume made, the refusal's type and words) must equal docker-py's,
for hostile names and bodies too. The C BLAKE3 digests of a restore are checked end to end elsewhere
(test_restore_c.py); here, the edges that test does not walk."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import docker
import pytest
from tamer.engine.client import Engine, connect
from tamer.errors import ObjectNotFound, TamerError
from tamer.volumes import archive as archive_mod

sys.path.insert(0, str(Path(__file__).parent))
from test_restore_c import both, compress, entry, tar_bytes


def _engines(eng: Any) -> tuple[Engine, Engine]:
    """(lean, docker-py) engines on the same private engine."""
    lean = connect(eng.host)
    assert lean._lean is not None  # the unix socket: the lean transport serves volumes
    api = docker.APIClient(base_url=eng.host, version=lean.api_version, timeout=60)
    return lean, Engine(api, eng.host)


def _outcome(fn: Any) -> tuple[str, str]:
    try:
        got = fn()
    except TamerError as exc:
        return type(exc).__name__, str(exc)
    return "ok", repr(sorted(got)) if isinstance(got, dict) else repr(got)


ODD_NAMES = [
    "a b",
    "é",
    "x?y",
    "x#y",
    "x%2Fy",
    "%2e%2e",
    "..",
    "a/..",
    "nope-missing",
    "a@b",
    "a:b",
    "x" * 300,
    "",
    "a/b",
    "/x",
    "x/",
    "a\\b",
    "a\nb",
]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_remove_odd_names_same_as_docker_py(eng: Any, name: str) -> None:
    """A name the engine has no volume for: the same refusal, word for word, lean and docker-py; with
    force the engine ignores a missing volume on both (force=1 reaches it)."""
    lean, sdk = _engines(eng)
    before = eng.docker("volume", "ls", "-q").split()
    for force in (False, True):
        ours = _outcome(lambda f=force: lean.remove_volume(name, force=f))
        theirs = _outcome(lambda f=force: sdk.remove_volume(name, force=f))
        assert ours == theirs, (name, force)
    assert eng.docker("volume", "ls", "-q").split() == before


@pytest.mark.parametrize("name", ["a/b", "-x", "é", "a b", "x" * 300, "..", "ok_name-1.2"])
def test_create_odd_names_same_as_docker_py(eng: Any, name: str) -> None:
    lean, sdk = _engines(eng)
    ours = _outcome(lambda: lean.create_volume(name))
    if ours[0] == "ok":
        lean.remove_volume(name)
    theirs = _outcome(lambda: sdk.create_volume(name))
    if theirs[0] == "ok":
        sdk.remove_volume(name)
    assert ours == theirs, name


def test_create_with_odd_options_same_as_docker_py(eng: Any) -> None:
    lean, sdk = _engines(eng)
    # (an unknown driver is left out: the engine looks for its plugin for 15 s on each path)
    for kwargs in (
        {"driver_opts": {"type": "nosuchfs", "device": "x"}},
        {"driver_opts": {"bogus": "1"}},
    ):
        ours = _outcome(lambda k=kwargs: lean.create_volume("s6bad", **k))
        theirs = _outcome(lambda k=kwargs: sdk.create_volume("s6bad", **k))
        for e in (lean, sdk):
            e.remove_volume("s6bad", force=True)
        assert ours == theirs, kwargs


def test_force_removes_an_unused_volume_and_never_one_in_use(eng: Any) -> None:
    """force=1 reaches the engine on both paths (docker-py's own remove_volume dropped it: the engine
    then said 'no such volume' to a forced removal of a missing one), and never removes one in use."""
    lean, sdk = _engines(eng)
    for e in (lean, sdk):
        with pytest.raises(ObjectNotFound):
            e.remove_volume("s6-missing")
        e.remove_volume("s6-missing", force=True)  # the engine ignores a missing volume when forced
    lean.create_volume("s6force")
    cid = eng.docker("create", "-v", "s6force:/data", "tamer-test/busybox:1", "true").strip()
    try:
        with pytest.raises(TamerError, match="in use"):
            lean.remove_volume("s6force", force=True)
        assert "s6force" in eng.docker("volume", "ls", "-q").split()
    finally:
        eng.docker("rm", cid)
    lean.remove_volume("s6force", force=True)
    assert "s6force" not in eng.docker("volume", "ls", "-q").split()


def test_a_body_past_64k_with_non_ascii_labels(eng: Any) -> None:
    """Thousands of labels (a JSON body of some 200 KB, past any one socket write), non-ASCII keys and
    values, control characters: the volume has exactly these labels, as docker-py would make it."""
    lean, sdk = _engines(eng)
    labels = {f"k{i}-é\u2603\t": f'v{i} ü \u0000 "q" \\ {"x" * 40}' for i in range(3000)}
    made = lean.create_volume("s6labels", labels=labels)
    theirs = sdk.create_volume("s6labels_sdk", labels=labels)
    try:
        assert made["Labels"] == labels == theirs["Labels"]
        assert lean.inspect_volume("s6labels")["Labels"] == labels
    finally:
        lean.remove_volume("s6labels")
        sdk.remove_volume("s6labels_sdk")


def test_create_after_the_engine_closed_the_idle_connection(eng: Any) -> None:
    """The pooled connection the engine closed while idle (here: every pooled one closed under the
    transport) is retried once on a fresh one, and the volume is made."""
    lean, _sdk = _engines(eng)
    lean.version()  # one kept-alive connection now in the pool
    transport = lean._lean
    assert transport is not None and transport._idle
    for conn in transport._idle:
        assert conn.sock is not None
        conn.sock.shutdown(2)  # as if the engine had closed it: the next send or read fails
    made = lean.create_volume("s6idle")
    try:
        assert made["Name"] == "s6idle"
    finally:
        lean.remove_volume("s6idle")


def test_restore_of_a_blake3_archive_into_a_new_volume(eng: Any, tmp_path: Path) -> None:
    """`tamer volume restore` of a BLAKE3 archive into a volume it creates on the unix socket (the lean
    transport's POST): the C digests check the files, and every byte lands."""
    rnd = hashlib.shake_256(b"s6").digest(300_000)
    files = {b"f%04d" % i: rnd[i * 97 : i * 97 + (i * 131) % 70_000] for i in range(400)}
    members = [entry(b"data/" + rel, data) for rel, data in files.items()]
    arc = compress(tar_bytes(members, files), tmp_path / "s6.tar.zst")
    r = eng.tamer("volume", "restore", str(arc), "s6restored")
    assert r.returncode == 0, r.stderr
    root = eng.data_root / "volumes" / "s6restored" / "_data"
    for rel, data in files.items():
        assert (root / rel.decode()).read_bytes() == data
    assert archive_mod.compiled_restore() is not None


def test_large_and_tiny_files_tampered_refused_same(tmp_path: Path) -> None:
    """A changed byte in a file of each size where BLAKE3 or the batch changes shape (1023-1025,
    2048, 64 KiB +-1, 1 MiB + 1: larger than the reader's buffer, so the Python path) beside 600 tiny
    files in one buffer: the same BackupCorrupt on the C and the Python path, naming that file."""
    rnd = hashlib.shake_256(b"t").digest(3 << 20)
    sizes = [1, 1023, 1024, 1025, 2048, 65535, 65536, 65537, (1 << 20) + 1]
    files: dict[bytes, bytes] = {}
    off = 0
    for s in sizes:
        files[b"s%d" % s] = rnd[off : off + s]
        off += s
    files.update({b"m%04d" % i: rnd[i * 3 : i * 3 + i % 50] for i in range(600)})
    raw = tar_bytes([entry(b"data/" + k, v) for k, v in files.items()], files)
    c, py = both(compress(raw, tmp_path / "ok.tar.zst"), tmp_path / "t")
    assert "error" not in c and c == py
    for s in (1024, 65537, (1 << 20) + 1):
        bad = bytearray(raw)
        at = bad.index(entry(b"data/s%d" % s, files[b"s%d" % s])) + 512 + s - 1
        bad[at] ^= 0x80
        c, py = both(compress(bytes(bad), tmp_path / f"bad{s}.tar.zst"), tmp_path / "t")
        assert c == py
        assert c["error"] == "BackupCorrupt" and f"data/s{s} failed its checksum" in c["message"], c
