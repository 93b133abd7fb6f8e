"""`tamer volume create --at` and `tamer volume ls` on the private engine; the docker CLI as oracle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"


def test_create_at_puts_the_data_where_asked(eng: Any, tmp_path: Path) -> None:
    where = tmp_path / "disk2" / "vol_1"
    r = eng.tamer("volume", "create", "vol_1", "--at", str(where), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)["data"]
    assert data["placement"] == "bind" and data["data_path"] == str(where) and data["free_bytes"] > 0
    vol = json.loads(eng.docker("volume", "inspect", "vol_1"))[0]
    assert vol["Options"] == {"type": "none", "o": "bind", "device": str(where)}
    eng.docker("run", "--rm", "-v", "vol_1:/d", BUSYBOX, "sh", "-c", "echo hello > /d/greeting")
    assert (where / "greeting").read_text() == "hello\n"
    human = eng.tamer("volume", "create", "vol_2", "--at", str(tmp_path / "disk2" / "vol_2"))
    assert "free on that drive" in human.stdout


def test_symlink_trick_is_recognised(eng: Any, tmp_path: Path) -> None:
    """The essay's way: a link named like the volume in the volumes folder, then `docker volume create`."""
    hdd = tmp_path / "HDD" / "docker_volumes" / "vol_link"
    hdd.mkdir(parents=True)
    link = eng.data_root / "volumes" / "vol_link"
    os.symlink(hdd, link)
    try:
        eng.docker("volume", "create", "vol_link")
        eng.docker("run", "--rm", "-v", "vol_link:/d", BUSYBOX, "sh", "-c", "echo x > /d/f")
        assert (hdd / "_data" / "f").exists()
        r = eng.tamer("volume", "ls", "--json")
        assert r.returncode == 0, r.stderr
        found = {v["name"]: v for v in json.loads(r.stdout)["data"]["volumes"]}["vol_link"]
        assert found["placement"] == "symlink" and found["data_path"] == str(hdd / "_data")
        assert "symlink" in eng.tamer("volume", "ls").stdout
        r = eng.tamer("volume", "create", "vol_link", "--at", str(tmp_path / "x"))
        assert r.returncode == 2 and "symlink" in r.stderr and "tamer volume move" in r.stderr
    finally:
        eng.docker("volume", "rm", "-f", "vol_link", check=False)
        if link.is_symlink():
            link.unlink()


@pytest.mark.parametrize(
    ("at", "says"),
    [
        ("relative/place", "relative"),
        ("/", "`/` refused"),
        ("DATAROOT/volumes/sneaky", "inside the engine's data-root"),
        ("FILE", "is a file"),
        ("FILE/below", "cannot be made"),
    ],
    ids=["relative", "root", "inside-data-root", "a-file", "below-a-file"],
)
def test_create_at_refuses_bad_places(eng: Any, tmp_path: Path, at: str, says: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    at = at.replace("DATAROOT", str(eng.data_root)).replace("FILE", str(afile))
    before = eng.docker("volume", "ls", "-q").split()
    r = eng.tamer("volume", "create", "vol_bad", "--at", at)
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in r.stderr and "expected" in r.stderr, r.stderr
    assert eng.docker("volume", "ls", "-q").split() == before


def test_create_refuses_bad_name_and_existing(eng: Any, tmp_path: Path) -> None:
    r = eng.tamer("volume", "create", "-bad", "--at", str(tmp_path / "x"))
    assert r.returncode == 2
    r = eng.tamer("volume", "create", "b@d", "--at", str(tmp_path / "x"))
    assert r.returncode == 2 and "not valid" in r.stderr
    eng.docker("volume", "create", "vol_exists")
    r = eng.tamer("volume", "create", "vol_exists", "--json")
    assert r.returncode == 2 and "already exists" in json.loads(r.stdout)["errors"][0]


def test_every_volume_listing_says_symlink_for_the_essays_trick(eng: Any, tmp_path: Path) -> None:
    """`tamer ls volumes` (lean table, lean --json, --users, --size) and its placement filter see the essay's
    symlink without sizing anything: it used to show "default" unless sizes were asked for, and
    `--filter placement=symlink` found nothing."""
    hdd = tmp_path / "HDD2" / "docker_volumes" / "vol_sym"
    hdd.mkdir(parents=True)
    link = eng.data_root / "volumes" / "vol_sym"
    os.symlink(hdd, link)
    try:
        eng.docker("volume", "create", "vol_sym")
        eng.docker("volume", "create", "vol_plain")
        real = str(hdd / "_data")
        table = eng.tamer("ls", "volumes")
        assert table.returncode == 0, table.stderr
        row = next(line for line in table.stdout.splitlines() if line.startswith("vol_sym "))
        assert f"symlink -> {real}" in row, row
        plain = next(line for line in table.stdout.splitlines() if line.startswith("vol_plain "))
        assert "default" in plain and "symlink" not in plain
        for extra in ([], ["--users"], ["--size"]):
            got = eng.tamer("ls", "volumes", "--json", *extra)
            assert got.returncode == 0, got.stderr
            items = {v["name"]: v for v in json.loads(got.stdout)["data"]["items"]}
            assert items["vol_sym"]["placement"] == "symlink" and items["vol_sym"]["data_path"] == real, extra
            assert items["vol_plain"]["placement"] == "default", extra
            only = eng.tamer("ls", "volumes", "--json", "--filter", "placement=symlink", *extra)
            assert [v["name"] for v in json.loads(only.stdout)["data"]["items"]] == ["vol_sym"], extra
        only = eng.tamer("ls", "volumes", "--filter", "placement=symlink")
        assert [line.split()[0] for line in only.stdout.splitlines()[1:]] == ["vol_sym"]
    finally:
        eng.docker("volume", "rm", "-f", "vol_sym", check=False)
        if link.is_symlink():
            link.unlink()
