"""Issue 10, clean and plan: the orphan clock, sealed plans, invariants at the point of action, honest bytes.

Age rules are tested with `faketime` shifting the tamer process's clock (the
engine keeps the real time), as a user running tamer days later would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tamer.apply import Current, WrongEngine, apply_plan
from tamer.collect import read_raw_snapshot
from tamer.errors import TamerError
from tamer.inventory import build_inventory, engine_identity
from tamer.journal import Journal, StepStatus
from tamer.plan import Action, Plan, container_fingerprint, image_fingerprint, volume_fingerprint
from tamer.policy import load_policy, policy_to_json
from tamer.reasons import Reason
from tamer.sealing import plan_key, seal_plan

BUSYBOX = "tamer-test/busybox:1"
MONGO = "tamer-test/mongo-standin:1"
KEEP_BASE = '[images]\nkeep_tags = ["tamer-test/*"]\n'

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")


def tamer_at(
    eng: Any, state: Path, shift: str | None, *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The tamer CLI with its clock shifted by `shift` (faketime's "+8d"), against the test engine."""
    cmd = [*(("faketime", "-f", shift) if shift else ()), sys.executable, *(prefix or ("-m", "tamer")), *args]
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def tamer_json_at(eng: Any, state: Path, shift: str | None, *args: str) -> tuple[int, dict[str, Any]]:
    proc = tamer_at(eng, state, shift, *args, "--json")
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}") from None


def volumes(eng: Any) -> set[str]:
    return set(eng.docker("volume", "ls", "-q").split())


def mounts_of(eng: Any, container: str) -> list[str]:
    return sorted(m["Name"] for m in json.loads(eng.docker("inspect", container))[0]["Mounts"])


def refusal_codes(envelope: dict[str, Any]) -> dict[str, str]:
    data = envelope["data"]
    plan = data.get("plan", data)
    return {r["id"]: r["code"] for r in plan["refusals"]}


def mountpoint(eng: Any, name: str) -> Path:
    return Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip())


@pytest.fixture
def symlinked(eng: Any) -> Iterator[Callable[[str, Path], None]]:
    """Turn a volume into the essay's symlink trick (_data -> a folder elsewhere); undone afterwards, so
    the engine can remove the volume at cleanup (it refuses while _data is a link)."""
    made: list[Path] = []

    def link(name: str, target: Path) -> None:
        data = mountpoint(eng, name)
        data.rmdir()
        data.symlink_to(target)
        made.append(data)

    yield link
    for data in made:
        if data.is_symlink():
            data.unlink()
            data.mkdir()


# -- 1. the orphan clock ------------------------------------------------------------------------------
@needs_faketime
def test_mongo_case_volumes_never_go_with_their_container(eng: Any, tmp_path: Path) -> None:
    """The essay's Mongo case: a default clean 8 days later removed the container AND its anonymous volumes."""
    eng.docker(
        "run", "--name", "mongo", MONGO, "true"
    )  # no -v: VOLUME /data/db and /data/configdb, anonymous
    anon = mounts_of(eng, "mongo")
    assert len(anon) == 2
    rc, first = tamer_json_at(eng, tmp_path, "+8d", "clean", "--apply", "--yes")
    assert rc == 0, first
    assert "mongo" not in eng.docker("ps", "-a", "--format", "{{.Names}}").split()
    assert set(anon) <= volumes(eng), "the volumes went in the same run as their container"
    assert all(refusal_codes(first)[v] == "volume-users-go-this-run" for v in anon)
    # six days after the container went: still orphaned for less than the policy's 7 days
    rc, second = tamer_json_at(eng, tmp_path, "+14d", "clean", "--apply", "--yes")
    assert rc == 0 and set(anon) <= volumes(eng)
    assert all(refusal_codes(second)[v] == "orphan-too-recent" for v in anon)
    # eight days after: they go
    rc, third = tamer_json_at(eng, tmp_path, "+16d", "clean", "--apply", "--yes")
    assert rc == 0, third
    assert not set(anon) & volumes(eng)
    done = {s["id"]: s for s in third["data"]["steps"]}
    assert all(done[v]["status"] == "done" for v in anon)


@needs_faketime
def test_orphan_clock_starts_when_first_seen_and_restarts_on_reuse(eng: Any, tmp_path: Path) -> None:
    eng.docker("run", "--name", "gone-by-hand", MONGO, "true")
    reused, idle = mounts_of(eng, "gone-by-hand")
    eng.docker("rm", "gone-by-hand")  # orphaned by someone else: tamer never saw them used
    rc, seen = tamer_json_at(eng, tmp_path, None, "plan")
    assert rc == 0
    # created seconds ago or long ago, tamer has no time for them: the clock starts now
    assert refusal_codes(seen)[idle] == "orphan-too-recent"
    never_seen = next(r for r in seen["data"]["refusals"] if r["id"] == idle)
    assert never_seen["facts"]["since"] == "tamer" and never_seen["facts"]["orphaned_for"] < 120
    assert "first seen orphaned" in never_seen["why"]
    # day 4: a container uses one of them (tamer sees it in use), then goes
    eng.docker("create", "--name", "reuser", "-v", f"{reused}:/d", BUSYBOX, "true")
    rc, _ = tamer_json_at(eng, tmp_path, "+4d", "plan")
    assert rc == 0
    eng.docker("rm", "reuser")
    # day 8: the idle one has been orphaned 8 days, the re-used one 4
    rc, day8 = tamer_json_at(eng, tmp_path, "+8d", "clean", "--apply", "--yes")
    assert rc == 0, day8
    left = volumes(eng)
    assert idle not in left and reused in left
    assert refusal_codes(day8)[reused] == "orphan-too-recent"
    # day 12: its own 7 days have passed
    rc, _ = tamer_json_at(eng, tmp_path, "+12d", "clean", "--apply", "--yes")
    assert rc == 0 and reused not in volumes(eng)


@needs_faketime
def test_df_starts_the_clock_and_a_damaged_state_db_blocks_no_preview(eng: Any, tmp_path: Path) -> None:
    eng.docker("run", "--name", "df-sees", MONGO, "true")
    anon = mounts_of(eng, "df-sees")
    eng.docker("rm", "df-sees")
    assert tamer_at(eng, tmp_path, None, "df").returncode == 0  # first seen orphaned: now
    rc, day8 = tamer_json_at(eng, tmp_path, "+8d", "clean", "--apply", "--yes")
    assert rc == 0 and not set(anon) & volumes(eng), day8
    # a damaged state database: reading and planning go on, and say so; applying is a clear error
    (tmp_path / "journal.sqlite").write_bytes(b"this is not a database" * 100)
    for f in tmp_path.glob("journal.sqlite-*"):
        f.unlink()
    plan = tamer_at(eng, tmp_path, None, "plan")
    assert plan.returncode == 0 and "warning: the orphan clock could not be read" in plan.stdout, plan.stderr
    preview = tamer_at(eng, tmp_path, None, "clean")
    assert preview.returncode == 0 and "nothing was removed" in preview.stdout, preview.stderr
    assert tamer_at(eng, tmp_path, None, "df").returncode == 0
    applied = tamer_at(eng, tmp_path, None, "clean", "--apply", "--yes")
    assert (
        applied.returncode == 1
        and "move it aside" in applied.stderr
        and "internal error" not in applied.stderr
    )


# -- 2. sealed plans ---------------------------------------------------------------------------------
def test_edited_plan_is_refused_and_a_sealed_plan_cannot_widen(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "precious-db")
    eng.docker("run", "--rm", "-v", "precious-db:/d", BUSYBOX, "sh", "-c", "echo data > /d/f")
    eng.docker("run", "--name", "stopped-one", BUSYBOX, "true")
    saved = tmp_path / "plan.json"
    made = tamer_at(eng, tmp_path, None, "plan", "-o", str(saved))
    assert made.returncode == 0, made.stderr
    key_file = tmp_path / "plan.key"
    assert (key_file.stat().st_mode & 0o777) == 0o600
    original = json.loads(saved.read_text())
    # the essay's attack: plan_id removed, an action added that removes a named volume with no backup
    edited = json.loads(json.dumps(original))
    edited["plan"].pop("plan_id")
    edited["plan"]["actions"].append(
        {
            "kind": "volume",
            "id": "precious-db",
            "name": "precious-db",
            "bytes": 0,
            "code": "volume-orphaned",
            "facts": {},
            "fingerprint": {},
            "needs_backup": False,
        }
    )
    for variant, fragment in (
        (edited, "seal does not match"),
        ({**edited, "mac": ""}, "carries no seal"),
        ({k: v for k, v in edited.items() if k != "mac"}, "carries no seal"),
        (edited["plan"], "not a plan saved by"),
    ):
        saved.write_text(json.dumps(variant))
        bad = tamer_at(eng, tmp_path, None, "clean", "--plan", str(saved), "--apply", "--yes")
        assert bad.returncode == 2 and fragment in bad.stderr, bad.stderr
        assert "internal error" not in bad.stderr
        assert "precious-db" in volumes(eng) and "stopped-one" in eng.docker(
            "ps", "-a", "--format", "{{.Names}}"
        )
    # even a correctly sealed plan (someone holding the key) cannot remove what its policy would not
    forged = Plan.from_json(edited["plan"] | {"plan_id": ""})
    saved.write_text(json.dumps(seal_plan(forged, plan_key(tmp_path))))
    rc, result = tamer_json_at(eng, tmp_path, None, "clean", "--plan", str(saved), "--apply", "--yes")
    assert rc == 3, result
    step = next(s for s in result["data"]["steps"] if s["id"] == "precious-db")
    assert step["status"] == "skipped" and step["code"] == "not-eligible-now"
    assert step["facts"]["now_code"] == "named-no-rule"
    assert "precious-db" in volumes(eng)
    assert eng.docker("run", "--rm", "-v", "precious-db:/d", BUSYBOX, "cat", "/d/f").strip() == "data"
    assert (
        "stopped-one" not in eng.docker("ps", "-a", "--format", "{{.Names}}").split()
    )  # the honest part ran


def test_plan_key_readable_by_others_is_refused(eng: Any, tmp_path: Path) -> None:
    nowhere = tamer_at(eng, tmp_path, None, "plan", "-o", str(tmp_path / "no-such-dir" / "plan.json"))
    assert nowhere.returncode == 2 and "can't write the plan" in nowhere.stderr, nowhere.stderr
    plan_key(tmp_path)
    (tmp_path / "plan.key").chmod(0o644)
    saved = tmp_path / "plan.json"
    out = tamer_at(eng, tmp_path, None, "plan", "-o", str(saved))
    assert out.returncode == 1 and "mode 0644" in out.stderr and "chmod 600" in out.stderr
    assert not saved.exists()


# -- 3. invariants at the point of action, with plans that bypass the planner ---------------------------
def _snapshot(eng: Any) -> Current:
    return Current(build_inventory(read_raw_snapshot(eng.engine)))


def _hand_plan(eng: Any, actions: list[Action], policy_text: str, engine_id: str | None = None) -> Plan:
    policy = load_policy(policy_text)
    return Plan(
        host=eng.host,
        engine_id=engine_id or engine_identity(eng.engine.info()),
        policy="hand-built",
        rules=policy_to_json(policy),
        made_at="2026-01-01T00:00:00+00:00",
        actions=tuple(actions),
        refusals=(),
    )


def test_apply_refuses_what_changed_after_planning_whatever_the_plan_says(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path))
    from tamer.sandbox import build_busybox_image

    eng.docker("create", "--name", "starts-later", BUSYBOX, "sleep", "600")
    eng.docker("run", "--name", "vol-maker", MONGO, "true")
    anon = mounts_of(eng, "vol-maker")[0]
    eng.docker("rm", "vol-maker")
    build_busybox_image(eng.engine, "tamer-test/dangle:1", extra_files={"/v": b"1"})
    build_busybox_image(eng.engine, "tamer-test/dangle:1", extra_files={"/v": b"2"})
    eng.docker("volume", "create", "named-data")
    eng.docker("run", "--rm", "-v", "named-data:/d", BUSYBOX, "sh", "-c", "echo keep me > /d/f")
    stale = _snapshot(eng)  # the plan and its re-derivation see this host...
    inv = {**{c.name: c for c in stale.inventory.containers}, **{v.name: v for v in stale.inventory.volumes}}
    dangling = next(i for i in stale.inventory.images if i.dangling)
    # ...then, before the removals, it changes
    eng.docker("start", "starts-later")
    eng.docker("create", "--name", "mounts-it", "-v", f"{anon}:/d", BUSYBOX, "true")
    eng.docker("create", "--name", "uses-image", dangling.id, "true")
    c = inv["starts-later"]
    actions = [
        Action("container", c.id, c.name, 0, Reason.CONTAINER_STOPPED, {}, container_fingerprint(c)),
        Action("volume", anon, anon, 0, Reason.VOLUME_ORPHANED, {}, volume_fingerprint(inv[anon])),
        Action(
            "volume",
            "named-data",
            "named-data",
            0,
            Reason.VOLUME_ORPHANED,
            {},  # the plan lies:
            {**volume_fingerprint(inv["named-data"]), "anonymous": True},
            needs_backup=False,
        ),
        Action(
            "image",
            dangling.id,
            dangling.display_name,
            0,
            Reason.IMAGE_DANGLING,
            {},
            image_fingerprint(dangling),
        ),
    ]
    policy = (
        '[containers]\nstates = ["created", "exited"]\n[volumes]\norphaned_anonymous_older_than = "0s"\n'
        '[[volumes.named]]\nnames = ["named-*"]\n'
    )
    plan = _hand_plan(eng, actions, policy)

    def failing_backup(engine: Any, name: str) -> Path:
        raise TamerError(f"no backup of {name} in this test")

    result = apply_plan(
        eng.engine, plan, Journal(tmp_path / "j.sqlite"), read_current=lambda e: stale, backup=failing_backup
    )
    steps = {s.id: s for s in result.steps}
    assert steps[c.id].status is StepStatus.SKIPPED and steps[c.id].code == Reason.RUNNING_NOW
    assert steps[anon].code == Reason.IN_USE_NOW and "mounts-it" in steps[anon].facts["users"]
    assert (
        steps["named-data"].code == Reason.BACKUP_FAILED
    )  # named, as the engine says: backup first, or stay
    assert steps[dangling.id].code == Reason.IN_USE_NOW
    assert result.exit_code == 3 and result.reclaimed == 0
    assert "starts-later" in eng.docker("ps", "--format", "{{.Names}}").split()
    assert {anon, "named-data"} <= volumes(eng)
    assert dangling.id in eng.docker("images", "-aq", "--no-trunc")
    assert eng.docker("run", "--rm", "-v", "named-data:/d", BUSYBOX, "cat", "/d/f").strip() == "keep me"
    # and with no backup function at all, a named volume stays too
    result = apply_plan(
        eng.engine,
        _hand_plan(eng, [actions[2]], policy),
        Journal(tmp_path / "j.sqlite"),
        read_current=lambda e: stale,
        backup=None,
    )
    assert result.steps[0].status is StepStatus.SKIPPED and "named-data" in volumes(eng)


def test_apply_never_removes_a_volume_in_the_run_that_removed_its_container(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path))
    eng.docker("run", "--name", "holder", MONGO, "true")
    held = mounts_of(eng, "holder")
    now = _snapshot(eng)
    c = next(x for x in now.inventory.containers if x.name == "holder")
    # a view in which the volumes already look orphaned, so that only the point of action can refuse them
    blind = dataclasses.replace(
        now.inventory,
        containers=tuple(
            dataclasses.replace(x, mounts=()) if x.id == c.id else x for x in now.inventory.containers
        ),
    )
    vols = {v.name: v for v in now.inventory.volumes}
    actions = [
        Action("container", c.id, c.name, 0, Reason.CONTAINER_STOPPED, {}, container_fingerprint(c)),
        *(Action("volume", v, v, 0, Reason.VOLUME_ORPHANED, {}, volume_fingerprint(vols[v])) for v in held),
    ]
    plan = _hand_plan(eng, actions, KEEP_BASE + '[volumes]\norphaned_anonymous_older_than = "0s"\n')
    result = apply_plan(
        eng.engine, plan, Journal(tmp_path / "j.sqlite"), read_current=lambda e: Current(blind)
    )
    steps = {s.id: s for s in result.steps}
    assert steps[c.id].status is StepStatus.DONE
    for v in held:
        assert steps[v].status is StepStatus.SKIPPED and steps[v].code == Reason.VOLUME_USERS_GO_THIS_RUN
        assert steps[v].facts["users"] == ["holder"]
    assert set(held) <= volumes(eng)


def test_apply_refuses_another_engine(eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path))
    eng.docker("run", "--name", "elsewhere", BUSYBOX, "true")
    current = _snapshot(eng)
    c = next(x for x in current.inventory.containers if x.name == "elsewhere")
    action = Action("container", c.id, c.name, 0, Reason.CONTAINER_STOPPED, {}, container_fingerprint(c))
    journal = Journal(tmp_path / "j.sqlite")
    for engine_id in ("ABCD:OTHER:ENGINE", ""):
        plan = _hand_plan(eng, [action], "", engine_id=engine_id or "x")
        if not engine_id:
            plan = Plan(**{**plan.__dict__, "engine_id": ""})
        with pytest.raises(WrongEngine, match="nothing was removed"):
            apply_plan(eng.engine, plan, journal, read_current=lambda e: current)
    assert "elsewhere" in eng.docker("ps", "-a", "--format", "{{.Names}}").split()
    assert journal.recent() == []  # refused before a run was even journaled


def test_symlinked_volume_at_apply_is_neither_backed_up_nor_removed(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, symlinked: Callable[[str, Path], None]
) -> None:
    if eng.private is None:
        pytest.skip("edits a volume's folder in the data-root: only on the private engine")
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path))
    eng.docker("volume", "create", "named-linked")
    stale = _snapshot(eng)
    v = next(x for x in stale.inventory.volumes if x.name == "named-linked")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f").write_text("precious")
    symlinked("named-linked", elsewhere)
    called: list[str] = []

    def backup(engine: Any, name: str) -> Path:
        called.append(name)
        return tmp_path / "never"

    plan = _hand_plan(
        eng,
        [
            Action(
                "volume",
                v.name,
                v.name,
                0,
                Reason.VOLUME_NAMED_RULE,
                {},
                volume_fingerprint(v),
                needs_backup=True,
            )
        ],
        '[[volumes.named]]\nnames = ["named-*"]\n',
    )
    result = apply_plan(
        eng.engine, plan, Journal(tmp_path / "j.sqlite"), read_current=lambda e: stale, backup=backup
    )
    assert result.steps[0].code == Reason.SYMLINKED_NOW and not called
    assert (elsewhere / "f").read_text() == "precious" and "named-linked" in volumes(eng)


# -- 5. honest freed bytes ---------------------------------------------------------------------------
def _du(path: Path) -> int:
    return int(
        subprocess.run(["du", "-sB1", str(path)], capture_output=True, text=True, check=True).stdout.split()[
            0
        ]
    )


def test_freed_bytes_are_allocated_bytes_and_bind_folders_stay(eng: Any, tmp_path: Path) -> None:
    if eng.private is None:
        pytest.skip("writes into a volume's folder: only on the private engine")
    eng.docker("run", "--name", "sparse-maker", MONGO, "true")
    anon = mounts_of(eng, "sparse-maker")[0]
    eng.docker("rm", "sparse-maker")
    folder = mountpoint(eng, anon)
    with open(folder / "sparse", "wb") as fh:
        fh.truncate(10 * 1024**3)  # 10 GiB apparent, nothing allocated
    (folder / "real").write_bytes(os.urandom(1024 * 1024))
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_bytes(os.urandom(1024 * 1024))
    rc, before = tamer_json_at(eng, tmp_path, None, "df")
    for n in range(3):  # three volumes, one folder
        eng.docker(
            "volume",
            "create",
            "--label",
            "com.docker.volume.anonymous=",
            "-o",
            "type=none",
            "-o",
            "o=bind",
            "-o",
            f"device={shared}",
            f"bound-{n}",
        )
    policy = tmp_path / "p.toml"
    policy.write_text(
        KEEP_BASE + '[containers]\nremove = false\n[volumes]\norphaned_anonymous_older_than = "0s"\n'
    )
    rc, plan = tamer_json_at(eng, tmp_path, None, "plan", "--policy", str(policy))
    assert rc == 0, plan
    acts = {a["id"]: a for a in plan["data"]["actions"]}
    du = _du(folder)
    assert abs(acts[anon]["bytes"] - du) <= 8192, (acts[anon]["bytes"], du)
    assert acts[anon]["bytes"] < 2 * 1024 * 1024  # not 10.7 GB
    for n in range(3):
        a = acts[f"bound-{n}"]
        assert a["bytes"] == 0 and a["facts"]["folder_stays"] == str(shared) and "stays" in a["reason"]
    rc, after = tamer_json_at(eng, tmp_path, None, "df")
    vol_total = {t["kind"]: t["size"] for t in after["data"]["totals"]}["volume"] - {
        t["kind"]: t["size"] for t in before["data"]["totals"]
    }["volume"]
    assert 1024 * 1024 <= vol_total < 2 * 1024 * 1024, (
        vol_total
    )  # the shared folder counted once, not 3 times
    rc, result = tamer_json_at(eng, tmp_path, None, "clean", "--policy", str(policy), "--apply", "--yes")
    assert rc == 0, result
    assert not {anon, "bound-0", "bound-1", "bound-2"} & volumes(eng)
    assert (shared / "f").stat().st_size == 1024 * 1024  # the folder and its data stay
    freed = {a["id"]: a["bytes"] for a in result["data"]["plan"]["actions"]}
    assert (
        result["data"]["reclaimed"] == sum(freed.values()) and abs(freed[anon] - du) <= 8192
    )  # bound ones: 0


# -- 6. a named-volume rule on the essay's symlink trick ----------------------------------------------------
def test_named_rule_on_symlink_trick_volume_is_refused_up_front(
    eng: Any, tmp_path: Path, symlinked: Callable[[str, Path], None]
) -> None:
    if eng.private is None:
        pytest.skip("edits a volume's folder in the data-root: only on the private engine")
    eng.docker("volume", "create", "trick-db")
    elsewhere = tmp_path / "bigdisk"
    elsewhere.mkdir()
    (elsewhere / "table").write_bytes(b"x" * 100_000)
    symlinked("trick-db", elsewhere)
    policy = tmp_path / "p.toml"
    policy.write_text(KEEP_BASE + '[containers]\nremove = false\n[[volumes.named]]\nnames = ["trick-*"]\n')
    rc, plan = tamer_json_at(eng, tmp_path, None, "plan", "--policy", str(policy))
    assert rc == 0
    refusal = next(r for r in plan["data"]["refusals"] if r["id"] == "trick-db")
    assert refusal["code"] == "volume-symlinked" and "tamer volume move" in refusal["why"]
    for _ in range(2):
        rc, result = tamer_json_at(eng, tmp_path, None, "clean", "--policy", str(policy), "--apply", "--yes")
        assert rc == 0, result
    backups = tmp_path / "backups"
    assert not backups.exists() or not any(backups.iterdir()), "a pointless backup was made"
    assert "trick-db" in volumes(eng) and (elsewhere / "table").stat().st_size == 100_000


# -- 7. garbage policies are clear errors ------------------------------------------------------------
@pytest.mark.parametrize(
    "text,fragment",
    [
        ('[containers]\nolder_than = "99999999999999d"\n', "at most"),
        ('[volumes]\norphaned_anonymous_older_than = "' + "9" * 400 + 'w"\n', "at most"),
        ('[budget]\nmax_size = "' + "9" * 400 + 'TB"\n', "below 2^63"),
        ("[images]\nkeep_newest = 99999999999999999999999\n", "below 2^63"),
        ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ],
)
def test_policy_garbage_is_a_clear_error(eng: Any, tmp_path: Path, text: str, fragment: str) -> None:
    policy = tmp_path / "bad.toml"
    policy.write_text(text)
    for args in (("policy", "check", str(policy)), ("clean", "--policy", str(policy), "--apply", "--yes")):
        proc = tamer_at(eng, tmp_path, None, *args)
        assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
        assert "internal error" not in proc.stderr and len(proc.stderr) < 2000


# -- 8. two cleans at once ------------------------------------------------------------------------------
PAUSED = (
    "import sys, time\nfrom tamer.operation import faults\nfrom tamer.cli import main\n"
    "faults.install(lambda p, ctx: time.sleep(8) if p == 'clean.0.before' else None)\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def test_two_cleans_at_once_never_double_act(eng: Any, tmp_path: Path) -> None:
    for i in range(3):
        eng.docker("run", "--name", f"twice-{i}", BUSYBOX, "true")
    policy = tmp_path / "p.toml"
    policy.write_text(KEEP_BASE)
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path)}
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSED, "clean", "--policy", str(policy), "--apply", "--yes", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = tmp_path / "operation.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.1)
    assert "clean --apply" in lock.read_text()
    second = tamer_at(eng, tmp_path, None, "clean", "--policy", str(policy), "--apply", "--yes")
    look = tamer_at(eng, tmp_path, None, "clean", "--abandon")  # neither a preview nor --abandon disturbs it
    out, err = first.communicate(timeout=120)
    assert look.returncode == 0 and f"running right now (pid {first.pid})" in look.stdout, look.stdout
    assert second.returncode == 1 and "another tamer operation" in second.stderr, second.stderr
    assert f"pid {first.pid}" in second.stderr
    assert first.returncode == 0, err
    steps = json.loads(out)["data"]["steps"]
    assert all(s["status"] == "done" for s in steps) and len(steps) >= 3
    assert Journal(tmp_path / "journal.sqlite").recent()[0]["status"] == "done"
    assert len(Journal(tmp_path / "journal.sqlite").recent()) == 1  # the second never ran a clean
    assert not any(n.startswith("twice-") for n in eng.docker("ps", "-a", "--format", "{{.Names}}").split())
