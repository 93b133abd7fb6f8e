"""tamer plan / clean --apply on the private engine: policies, the same-plan
guarantee, and the faults the cleanup must survive without losing data."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"
MONGO = "tamer-test/mongo-standin:1"
# the session's base images stay, whatever a test's policy says
KEEP_BASE = '[images]\nkeep_tags = ["tamer-test/*"]\n'
FAULTY = Path(__file__).parents[1] / "faulty_tamer.py"
# the CLI with a one-second pause before each clean step, installed through the fault seam
SLOW_STEPS = (
    "import sys, time\nfrom tamer.operation import faults\nfrom tamer.cli import main\n"
    "faults.install(lambda p, ctx: time.sleep(1.0) if p.endswith('.before') else None)\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def tamer(
    eng: Any, state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return eng.tamer(*args, env={"TAMER_STATE_DIR": str(state), **(env or {})})


def tamer_json(
    eng: Any, state: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    proc = tamer(eng, state, *args, "--json", env=env)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}") from None


def volume_digest(eng: Any, name: str) -> str:
    """Every byte, name and mode in a volume, hashed: 'no test loses a byte'."""
    mountpoint = Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip())
    h = hashlib.sha256()
    for root, dirs, files in os.walk(mountpoint):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            h.update(str(p.relative_to(mountpoint)).encode())
            h.update(oct(p.stat().st_mode).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def make_named_data(eng: Any, name: str, kb: int = 300) -> str:
    eng.docker("volume", "create", name)
    eng.docker(
        "run",
        "--rm",
        "-v",
        f"{name}:/d",
        BUSYBOX,
        "sh",
        "-c",
        f"dd if=/dev/urandom of=/d/data bs=1k count={kb} 2>/dev/null; mkdir /d/sub; echo hi > /d/sub/f",
    )
    return volume_digest(eng, name)


def clutter(eng: Any) -> dict[str, str]:
    """Stopped containers, dangling images, a running container, named volumes with data."""
    from tamer.sandbox import build_busybox_image

    build_busybox_image(eng.engine, "tamer-test/rebuilt:1", extra_files={"/v": b"1" * 50_000})
    build_busybox_image(
        eng.engine, "tamer-test/rebuilt:1", extra_files={"/v": b"2" * 50_000}
    )  # first dangles
    digests = {"precious": make_named_data(eng, "precious")}
    eng.docker("run", "--name", "stopped-with-named", "-v", "precious:/p", BUSYBOX, "true")
    eng.docker(
        "run", "--name", "one-off", BUSYBOX, "sh", "-c", "dd if=/dev/zero of=/x bs=1k count=200 2>/dev/null"
    )
    eng.docker("run", "-d", "--name", "alive", BUSYBOX, "sleep", "600")
    eng.docker("run", "--name", "kept-by-label", "--label", "keep=yes", BUSYBOX, "true")
    return digests


def names(eng: Any) -> set[str]:
    return set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())


def test_default_policy_plan_then_apply(eng: Any, tmp_path: Path) -> None:
    digests = clutter(eng)
    dangling = set(eng.docker("images", "-q", "--no-trunc", "--filter", "dangling=true").split())
    assert dangling
    rc, plan = tamer_json(eng, tmp_path, "plan")
    assert rc == 0
    removing = {(a["kind"], a["name"]) for a in plan["data"]["actions"]}
    assert {("container", "one-off"), ("container", "stopped-with-named")} <= removing
    assert ("container", "alive") not in removing and ("container", "kept-by-label") not in removing
    assert not any(k == "volume" and n == "precious" for k, n in removing)
    keep = {r["name"]: r["why"] for r in plan["data"]["refusals"]}
    assert "running" in keep["alive"] and "protected by label keep" in keep["kept-by-label"]
    # its only user goes in this run: a volume never goes with its container (its orphan clock starts then)
    codes = {r["name"]: r["code"] for r in plan["data"]["refusals"]}
    assert codes["precious"] == "volume-users-go-this-run" and "removed in this run" in keep["precious"]
    assert plan["data"]["total_bytes"] == sum(a["bytes"] for a in plan["data"]["actions"]) > 200_000

    human = tamer(eng, tmp_path, "clean")  # preview by default
    assert human.returncode == 0 and "nothing was removed" in human.stdout and "one-off" in names(eng)
    refused = tamer(eng, tmp_path, "clean", "--apply")  # no terminal, no --yes
    assert refused.returncode == 2 and "--yes" in refused.stderr and "one-off" in names(eng)

    rc, result = tamer_json(eng, tmp_path, "clean", "--apply", "--yes")
    assert rc == 0, result
    assert {s["status"] for s in result["data"]["steps"]} == {"done"}
    left = names(eng)
    assert {"one-off", "stopped-with-named"}.isdisjoint(left) and {"alive", "kept-by-label"} <= left
    assert dangling.isdisjoint(eng.docker("images", "-aq", "--no-trunc").split())
    assert volume_digest(eng, "precious") == digests["precious"]
    # and a second run has nothing to do
    rc, again = tamer_json(eng, tmp_path, "plan")
    assert rc == 0 and not again["data"]["actions"]


def test_custom_policy(eng: Any, tmp_path: Path) -> None:
    digests = clutter(eng)
    eng.docker("run", "--name", "nostalgic_hopper", BUSYBOX, "true")  # an auto-style name
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[containers]\ngenerated_names_only = true\n[images]\ndangling = false\n"
        'keep_tags = ["tamer-test/*"]\n'
        '[volumes]\norphaned_anonymous_older_than = "0s"\n'
        '[[volumes.named]]\nnames = ["nothing-here-*"]\n'
    )
    check = tamer(eng, tmp_path, "policy", "check", str(policy))
    assert check.returncode == 0 and "valid" in check.stdout
    rc, plan = tamer_json(eng, tmp_path, "plan", "--policy", str(policy))
    acted = {(a["kind"], a["name"]) for a in plan["data"]["actions"]}
    assert ("container", "nostalgic_hopper") in acted
    assert ("container", "one-off") not in acted  # named on purpose
    assert not any(k == "image" for k, _ in acted)  # dangling kept by this policy
    rc, _ = tamer_json(eng, tmp_path, "clean", "--policy", str(policy), "--apply", "--yes")
    assert rc == 0
    left = names(eng)
    assert "nostalgic_hopper" not in left and "one-off" in left
    assert volume_digest(eng, "precious") == digests["precious"]


def test_preview_and_apply_are_the_same_plan(eng: Any, tmp_path: Path) -> None:
    clutter(eng)
    saved = tmp_path / "plan.json"
    out = tamer(eng, tmp_path, "plan", "-o", str(saved))
    assert out.returncode == 0
    plan = json.loads(saved.read_text())["plan"]
    # the host changes after the preview: a new stopped container appears
    eng.docker("run", "--name", "after-the-plan", BUSYBOX, "true")
    rc, result = tamer_json(eng, tmp_path, "clean", "--plan", str(saved), "--apply", "--yes")
    assert rc == 0
    assert result["data"]["plan_id"] == plan["plan_id"]
    executed = [(s["kind"], s["id"]) for s in result["data"]["steps"]]
    assert executed == [(a["kind"], a["id"]) for a in plan["actions"]]
    assert "after-the-plan" in names(eng)  # not in the plan: untouched
    # an edited plan is refused, nothing removed
    sealed = json.loads(saved.read_text())
    sealed["plan"]["actions"].append({**plan["actions"][0], "id": "deadbeef"})
    saved.write_text(json.dumps(sealed))
    bad = tamer(eng, tmp_path, "clean", "--plan", str(saved), "--apply", "--yes")
    assert bad.returncode == 2 and "edited" in bad.stderr and "after-the-plan" in names(eng)


@pytest.mark.parametrize("crash_at", [0, 2, "last"])
def test_killed_mid_apply_then_rerun_finishes(eng: Any, tmp_path: Path, crash_at: int | str) -> None:
    digests = clutter(eng)
    for i in range(3):
        eng.docker("run", "--name", f"extra-{i}", BUSYBOX, "true")
    saved = tmp_path / "plan.json"
    tamer(eng, tmp_path, "plan", "-o", str(saved))
    plan = json.loads(saved.read_text())["plan"]
    n = len(plan["actions"])
    assert n >= 5
    at = n - 1 if crash_at == "last" else int(crash_at)
    eng.docker("run", "--name", "made-after-plan", BUSYBOX, "true")
    # killed between a removal and its journal entry, through the fault seam (no test switch in tamer)
    killed = subprocess.run(
        [sys.executable, str(FAULTY), f"clean.{at}.after", "clean", "--plan", str(saved), "--apply", "--yes"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path)},
    )
    assert killed.returncode == 137, killed.stderr
    # the rerun shows the journal first...
    show = tamer(eng, tmp_path, "clean")
    assert show.returncode == 0 and "did not finish" in show.stdout and "pending" in show.stdout
    # ...and finishes the same plan
    rc, result = tamer_json(eng, tmp_path, "clean", "--apply", "--yes")
    assert rc == 0, [(s["status"], s["name"], s["detail"]) for s in result["data"]["steps"]]
    assert result["data"]["resumed"] is True and result["data"]["plan_id"] == plan["plan_id"]
    statuses = [s["status"] for s in result["data"]["steps"]]
    assert all(s in ("done", "gone") for s in statuses)
    assert statuses[at] == "gone"  # removed just before the kill, journaled as already gone on resume
    left = names(eng)
    assert "made-after-plan" in left and "alive" in left and "kept-by-label" in left
    assert all(f"extra-{i}" not in left for i in range(3))
    assert volume_digest(eng, "precious") == digests["precious"]
    # nothing left to resume
    after = tamer(eng, tmp_path, "clean")
    assert "did not finish" not in after.stdout


def test_volume_used_between_plan_and_apply_stays(eng: Any, tmp_path: Path) -> None:
    eng.docker("run", "--name", "leaker", MONGO, "true")
    vols = [m["Name"] for m in json.loads(eng.docker("inspect", "leaker"))[0]["Mounts"]]
    eng.docker("rm", "leaker")  # its anonymous volumes are orphaned now
    policy = tmp_path / "p.toml"
    policy.write_text(KEEP_BASE + '[volumes]\norphaned_anonymous_older_than = "0s"\n')
    saved = tmp_path / "plan.json"
    tamer(eng, tmp_path, "plan", "--policy", str(policy), "-o", str(saved))
    planned = {a["id"] for a in json.loads(saved.read_text())["plan"]["actions"] if a["kind"] == "volume"}
    assert set(vols) <= planned
    # someone starts using one of them before the apply
    eng.docker("run", "-d", "--name", "late-user", "-v", f"{vols[0]}:/data", BUSYBOX, "sleep", "600")
    rc, result = tamer_json(eng, tmp_path, "clean", "--plan", str(saved), "--apply", "--yes")
    assert rc == 3 and result["status"] == "partial"
    steps = {s["id"]: s for s in result["data"]["steps"]}
    assert steps[vols[0]]["status"] == "skipped" and "late-user" in steps[vols[0]]["detail"]
    assert steps[vols[1]]["status"] == "done"
    assert vols[0] in eng.docker("volume", "ls", "-q").split()


def test_engine_restart_during_apply(eng: Any, tmp_path: Path) -> None:
    if eng.private is None:
        pytest.skip(
            "restarts the engine: only on the private one"
        )  # TAMER_TEST_DOCKER_HOST engines are not ours
    digests = clutter(eng)
    for i in range(4):
        eng.docker("run", "--name", f"slow-{i}", BUSYBOX, "true")
    saved = tmp_path / "plan.json"
    tamer(eng, tmp_path, "plan", "-o", str(saved))
    n = len(json.loads(saved.read_text())["plan"]["actions"])
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_STEPS, "clean", "--plan", str(saved), "--apply", "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = tmp_path / "journal.sqlite"
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and done < 2:
        time.sleep(0.2)
        if journal.exists():
            with sqlite3.connect(journal) as db:
                done = db.execute("SELECT count(*) FROM steps WHERE status != 'pending'").fetchone()[0]
    assert done >= 2
    eng.private.process.send_signal(signal.SIGTERM)  # the engine goes away mid-apply
    eng.private.process.wait(timeout=60)
    out, err = proc.communicate(timeout=120)
    try:
        assert proc.returncode == 1, (out, err)
        assert "run `tamer clean --apply` again" in err
    finally:
        eng.private.start()
    rc, result = tamer_json(eng, tmp_path, "clean", "--apply", "--yes")
    assert rc == 0, result
    assert result["data"]["resumed"] and len(result["data"]["steps"]) == n
    assert all(s["status"] in ("done", "gone") for s in result["data"]["steps"])
    assert volume_digest(eng, "precious") == digests["precious"]
    assert all(f"slow-{i}" not in names(eng) for i in range(4))


@pytest.mark.parametrize(
    "text,line,fragment",
    [
        ('[containers]\nstates = ["exited"\n', 2, "not valid TOML"),
        ("[containers]\nolder_than = 7d\n", 2, "not valid TOML"),
        ('version = 1\n[containers]\ncolour = "red"\n', 3, "unknown key 'colour'"),
        ("[images]\nkeep_newest = -1\n", 2, "whole number >= 0"),
        ('[budget]\nmax_size = "lots"\n', 2, "positive size"),
        ('[containers]\nstates = ["running"]\n', 2, "never removed"),
        ('\n\n[[volumes.named]]\nolder_than = "1d"\n', 3, "must name its volumes"),
        ("[wat]\n", 1, "unknown section [wat]"),
    ],
)
def test_malformed_policy_is_refused_line_precisely_and_nothing_is_removed(
    eng: Any, tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    eng.docker("run", "--name", "must-survive", BUSYBOX, "true")
    policy = tmp_path / "bad.toml"
    policy.write_text(text)
    for args in (
        ("policy", "check", str(policy)),
        ("plan", "--policy", str(policy)),
        ("clean", "--policy", str(policy), "--apply", "--yes"),
    ):
        proc = tamer(eng, tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert fragment in proc.stderr
        assert f"bad.toml:{line}:" in proc.stderr
    assert "must-survive" in names(eng)
    missing = tamer(eng, tmp_path, "plan", "--policy", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_watch_records_last_use_and_budget_evicts_lru(eng: Any, tmp_path: Path) -> None:
    from tamer.sandbox import build_busybox_image

    for tag, fill in (("a", b"a"), ("b", b"b"), ("c", b"c")):
        build_busybox_image(eng.engine, f"lru/{tag}:1", extra_files={"/pad": fill * 400_000})
    # used in the order b, a, c: b is least recently used, then a
    for tag in ("b", "a", "c"):
        eng.docker("run", "--rm", f"lru/{tag}:1", "true")
        time.sleep(1.1)
    rc, watched = tamer_json(eng, tmp_path, "watch", "--once", "--since", "10m")
    assert rc == 0 and watched["data"]["recorded"] >= 6
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        rows = dict(db.execute("SELECT id, at FROM last_used WHERE kind = 'image'").fetchall())
    assert rows["lru/b:1"] < rows["lru/a:1"] < rows["lru/c:1"]

    rc, df = tamer_json(eng, tmp_path, "df")
    total = sum(t["size"] for t in df["data"]["totals"])
    sizes = {
        i["tags"][0]: i["size"] - i["shared_size"]
        for i in tamer_json(eng, tmp_path, "ls", "images", "--size")[1]["data"]["items"]
        if i["tags"]
    }
    budget = total - sizes["lru/b:1"] - sizes["lru/a:1"] // 2  # b alone is not enough; b then a is
    policy = tmp_path / "budget.toml"
    policy.write_text(KEEP_BASE + f"[budget]\nmax_size = {budget}\n[volumes]\n")
    rc, plan = tamer_json(eng, tmp_path, "plan", "--policy", str(policy))
    evicted = [a["name"] for a in plan["data"]["actions"] if a["kind"] == "image"]
    assert evicted[:2] == ["lru/b:1", "lru/a:1"], evicted
    assert "lru/c:1" not in evicted
    assert all("least recently used" in a["reason"] for a in plan["data"]["actions"] if a["kind"] == "image")
    rc, _ = tamer_json(eng, tmp_path, "clean", "--policy", str(policy), "--apply", "--yes")
    assert rc == 0
    left = eng.docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert "lru/c:1" in left and "lru/b:1" not in left and "lru/a:1" not in left


def test_without_history_the_plan_says_it_falls_back(eng: Any, tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(KEEP_BASE.replace("[images]\n", '[images]\nunused_older_than = "30d"\n'))
    rc, plan = tamer_json(eng, tmp_path, "plan", "--policy", str(policy))
    assert rc == 0 and any("no usage history" in n["text"] for n in plan["data"]["notes"])


def test_named_volume_goes_only_by_rule_and_after_a_verified_backup(eng: Any, tmp_path: Path) -> None:
    digest = make_named_data(eng, "old-scratch", kb=500)
    eng.docker("volume", "create", "--label", "keep=1", "old-labelled-empty")
    other = make_named_data(eng, "unruled")
    policy = tmp_path / "named.toml"
    policy.write_text(KEEP_BASE + '[containers]\nremove = false\n[[volumes.named]]\nnames = ["old-*"]\n')
    rc, plan = tamer_json(eng, tmp_path, "plan", "--policy", str(policy))
    acts = {a["name"]: a for a in plan["data"]["actions"] if a["kind"] == "volume"}
    assert (
        acts["old-scratch"]["needs_backup"] is True
        and "proven to restore first" in acts["old-scratch"]["reason"]
    )
    keep = {r["name"]: r["why"] for r in plan["data"]["refusals"] if r["kind"] == "volume"}
    assert "protected by label keep" in keep["old-labelled-empty"]
    assert "no [[volumes.named]] rule" in keep["unruled"]
    rc, result = tamer_json(eng, tmp_path, "clean", "--policy", str(policy), "--apply", "--yes")
    assert rc == 0, result
    step = next(s for s in result["data"]["steps"] if s["name"] == "old-scratch")
    assert step["status"] == "done" and step["code"] == "backed-up-removed"
    assert step["detail"].startswith("backed up, verified and proven to restore: ")
    archive = Path(step["facts"]["archive"])
    assert archive.is_file() and (archive.stat().st_mode & 0o777) == 0o600
    left = eng.docker("volume", "ls", "-q").split()
    assert "old-scratch" not in left and {"unruled", "old-labelled-empty"} <= set(left)
    # the data is all in the backup: restore it and compare every byte
    restored = tamer(eng, tmp_path, "volume", "restore", str(archive), "old-scratch-restored")
    assert restored.returncode == 0, restored.stderr
    assert volume_digest(eng, "old-scratch-restored") == digest
    assert volume_digest(eng, "unruled") == other
