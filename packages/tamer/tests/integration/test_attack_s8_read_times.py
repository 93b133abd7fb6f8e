"""Images whose creation time Python's datetime cannot hold, loaded into the private engine (session 8).

An image's `created` is whatever its config says: Go reads and writes years 0 to 9999, and the engine
lists an image made "0000-01-01T00:00:00Z" (a hand-made or tool-made tarball, `docker load`) as Created
-62167219200. datetime stops at year 1: parse_time raised ValueError, so one such image ended
`tamer ls images`, df, plan and clean with an internal error. An unknown time is what it is: no age,
never "older than" anything (the safe side for a clean), every other row and figure as before.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"


def _load_with_created(eng: Any, created: str, tag: str) -> str:
    """Load BUSYBOX again with its config's times set to `created`, tagged `tag`; the new image's id."""
    saved = eng.docker_bytes("save", BUSYBOX)
    members: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(saved)) as src:
        for m in src.getmembers():
            fh = src.extractfile(m) if m.isfile() else None
            members[m.name] = (m, fh.read() if fh is not None else None)
    manifest = json.loads(members["manifest.json"][1] or b"")
    old_config = manifest[0]["Config"]
    config = json.loads(members[old_config][1] or b"")
    config["created"] = created
    for step in config.get("history") or []:
        step["created"] = created
    body = json.dumps(config).encode()
    digest = hashlib.sha256(body).hexdigest()
    manifest[0]["Config"] = f"{digest}.json"
    manifest[0]["RepoTags"] = [tag]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for name, (member, data) in members.items():
            if name in (old_config, "manifest.json", "repositories"):
                continue
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
        for name, data in ((f"{digest}.json", body), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    eng.docker("load", input=out.getvalue())
    return f"sha256:{digest}"


@pytest.fixture
def docker_bytes(eng: Any) -> Any:
    import subprocess

    def run(*args: str) -> bytes:
        return subprocess.run(
            ["docker", "-H", eng.host, *args], capture_output=True, check=True, timeout=120
        ).stdout

    eng.docker_bytes = run
    return eng


@pytest.mark.parametrize("created", ["0000-01-01T00:00:00Z", "0000-06-15T12:00:00.5+14:00"])
def test_an_image_from_year_zero_breaks_no_read(eng: Any, docker_bytes: Any, created: str) -> None:
    iid = _load_with_created(eng, created, "s8/year-zero:1")
    listed = eng.docker("images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
    assert f"{iid} s8/year-zero:1" in listed, listed  # the engine lists it (the oracle)
    for argv in (
        ["ls", "images"],  # the lean table
        ["ls", "images", "--sort", "age"],
        ["ls", "images", "--filter", "older-than=1d"],
        ["ls", "images", "--sort", "size"],  # the inventory's table
        ["--json", "ls", "images"],
        ["--json", "df"],
        ["--json", "plan"],
    ):
        proc = eng.tamer(*argv)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        if argv[-1] == "older-than=1d":  # no known age is older than anything
            assert "s8/year-zero:1" not in proc.stdout, proc.stdout
        elif argv[0] == "ls":
            row = next(line for line in proc.stdout.splitlines() if line.startswith("s8/year-zero:1"))
            assert iid[7:19] in row, row
    doc = json.loads(eng.tamer("--json", "ls", "images").stdout)
    mine = [i for i in doc["data"]["items"] if i["id"] == iid]
    assert mine and mine[0]["created"] is None, mine
