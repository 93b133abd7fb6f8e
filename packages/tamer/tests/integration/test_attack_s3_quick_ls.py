"""Hostile users against this session's lean `tamer ls images|volumes` (tamer.quick_ls): every view
(lean table, --users, --json, --users --json) says what the containers' inspects and `docker images`
say, and no view ever calls a volume some container refers to "orphaned" (the engine's dangling list
alone did: a container made with --volumes-from holds no reference until it starts)."""

from __future__ import annotations

import json
from typing import Any

BUSYBOX = "tamer-test/busybox:1"


def _table(eng: Any, *args: str) -> dict[str, list[str]]:
    proc = eng.tamer("ls", *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    return {line.split()[0]: line.split() for line in lines[1:] if line.strip()}


def _json_items(eng: Any, *args: str) -> list[dict[str, Any]]:
    proc = eng.tamer("ls", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") <= 1, "a pipe gets one line"
    doc = json.loads(proc.stdout)
    assert doc["status"] == "ok" and doc["exit_code"] == 0
    return list(doc["data"]["items"])


def test_no_view_calls_a_referenced_volume_orphaned(eng: Any) -> None:
    used = ["qa-created", "qa-stopped", "qa-running", "qa-paused", "qa-mount", "qa-from"]
    for name in [*used, "qa-orphan"]:
        eng.docker("volume", "create", name)
    eng.docker(
        "volume", "create", "--label", "qa.weird=a=b c\u00e9", "--label", "qa.empty=", "qa-weird-labels"
    )
    eng.docker("create", "--name", "qa-c", "-v", "qa-created:/c", BUSYBOX, "true")  # never started
    eng.docker("run", "--name", "qa-s", "-v", "qa-stopped:/s", BUSYBOX, "true")
    eng.docker("run", "-d", "--name", "qa-r", "-v", "qa-running:/r", BUSYBOX, "sleep", "600")
    eng.docker("run", "-d", "--name", "qa-p", "-v", "qa-paused:/p", BUSYBOX, "sleep", "600")
    eng.docker("pause", "qa-p")
    eng.docker(
        "create",
        "--name",
        "qa-m",
        "--mount",
        "type=volume,src=qa-mount,dst=/m,volume-nocopy",
        BUSYBOX,
        "true",
    )
    eng.docker("create", "--name", "qa-src", "-v", "qa-from:/f", BUSYBOX, "true")
    eng.docker("create", "--name", "qa-borrower", "--volumes-from", "qa-src", BUSYBOX, "true")
    eng.docker("rm", "qa-src")  # qa-from is now referenced only through --volumes-from
    try:
        # the oracle: what every container's inspect says it mounts (the engine's own dangling list
        # still names qa-from: a --volumes-from container takes no reference until it starts)
        ids = eng.docker("ps", "-aq", "--no-trunc").split()
        mounted = eng.docker("container", "inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", *ids)
        referenced = set(mounted.split())
        every = set(eng.docker("volume", "ls", "-q").split())
        dangling = every - referenced
        assert set(used) <= referenced and "qa-orphan" in dangling
        lean = _table(eng, "volumes")
        users = _table(eng, "volumes", "--users")
        lean_json = {v["name"]: v for v in _json_items(eng, "volumes")}
        users_json = {v["name"]: v for v in _json_items(eng, "volumes", "--users")}
        for view in (lean, users, lean_json, users_json):
            assert set(view) == every
        for name in every:
            orphaned = name in dangling
            assert (lean[name][2] == "orphaned") is orphaned, (name, lean[name])
            assert (users[name][2] == "orphaned") is orphaned, (name, users[name])
            assert lean_json[name]["orphaned"] is orphaned, name
            assert users_json[name]["orphaned"] is orphaned, name
            assert lean_json[name]["in_use"] is None and lean_json[name]["users_running"] is None
        for name in ("qa-running", "qa-paused"):
            assert users_json[name]["in_use"] is True, name
        assert users_json["qa-weird-labels"]["labels"] == lean_json["qa-weird-labels"]["labels"]
        assert lean_json["qa-weird-labels"]["labels"] == {"qa.weird": "a=b c\u00e9", "qa.empty": ""}
        # the label filter on a value holding '=' (split at the first '=' only), lean and not
        for extra in ((), ("--users",)):
            got = _table(eng, "volumes", "--filter", "label=qa.weird=a=b c\u00e9", *extra)
            assert set(got) == {"qa-weird-labels"}, (extra, got)
            got = _table(eng, "volumes", "--filter", "orphaned=true", *extra)
            assert set(got) == dangling, (extra, got)
    finally:
        eng.docker("unpause", "qa-p", check=False)


def test_images_many_tags_and_none_agree_with_docker_images(eng: Any) -> None:
    tags = ("qa/one:1", "qa/one:2", "qa/two:latest", "localhost:5000/qa/three:x")
    for tag in tags:
        eng.docker("tag", BUSYBOX, tag)
    try:
        # an untagged image: a tag moved away from it
        eng.docker("build", "-q", "-t", "qa/moved:1", "-", input=f"FROM {BUSYBOX}\nLABEL qa.v=1\n".encode())
        eng.docker("build", "-q", "-t", "qa/moved:1", "-", input=f"FROM {BUSYBOX}\nLABEL qa.v=2\n".encode())
        ids = set(eng.docker("images", "-q", "--no-trunc").split())
        none_ids = set(eng.docker("images", "-q", "--no-trunc", "-f", "dangling=true").split())
        assert none_ids, "the moved tag left an untagged image"
        for users in ((), ("--users",)):
            items = _json_items(eng, "images", *users)
            assert {i["id"] for i in items} == ids, users
            assert {i["id"] for i in items if i["dangling"]} == none_ids, users
            table = eng.tamer("ls", "images", *users).stdout.splitlines()[1:]
            assert len(table) == len(ids), (users, table)
            assert sum("dangling" in row.split() for row in table) == len(none_ids), users
            dangling_only = eng.tamer(
                "ls", "images", "--filter", "dangling=true", *users
            ).stdout.splitlines()[1:]
            assert len(dangling_only) == len(none_ids), (users, dangling_only)
            assert all(row.startswith("<none> ") for row in dangling_only), dangling_only
    finally:
        # tags are not new images: the fixture's cleanup (by image id) would leave them on the shared
        # busybox image, whose first tag later tests read as its name
        eng.docker("rmi", *tags, check=False)


def test_older_than_and_age_sort_agree_across_views_under_a_shifted_clock(eng: Any) -> None:
    """older-than is judged against tamer's clock (faketime moves it 10 days on): every view picks the
    same volumes and images, and a clock set back picks none of what was just made."""
    import shutil

    import pytest

    if shutil.which("faketime") is None:
        pytest.skip("faketime is not installed")
    eng.docker("volume", "create", "qa-aged")

    def names(kind: str, shift: str, *extra: str) -> list[str]:
        env = {"FAKETIME": shift, "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"}
        args = ("ls", kind, "--filter", "older-than=7d", "--sort", "age", *extra)
        proc = eng.tamer(*args, "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        got = [i.get("name") or i["id"] for i in json.loads(proc.stdout)["data"]["items"]]
        if kind == "volumes":  # the table (the lean one without --users) lists the same, in the same order
            table = eng.tamer(*args, env=env)
            assert [row.split()[0] for row in table.stdout.splitlines()[1:]] == got, (extra, table.stdout)
        return got

    for kind in ("volumes", "images"):
        ahead = names(kind, "+10d")
        assert ahead == names(kind, "+10d", "--users"), kind
        assert names(kind, "-1d") == [] and names(kind, "-1d", "--users") == [], kind
        if kind == "volumes":
            assert "qa-aged" in ahead
        else:
            assert ahead, "the test images are older than 7 days ten days from now"
