"""Pure planning on captured JSON: the orphan clock, reason codes, freed bytes, sealed plans, policy fuzzing."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tamer.accounting import distinct_volumes, docker_total, volume_freed_bytes
from tamer.errors import UsageError
from tamer.inventory import Inventory, RawSnapshot, build_inventory
from tamer.plan import Plan, make_plan
from tamer.policy import DEFAULT_POLICY, PolicyError, load_policy, policy_from_json, policy_to_json
from tamer.reasons import NoteCode, Reason
from tamer.report.reasons import describe, describe_note
from tamer.report.units import parse_duration
from tamer.sealing import PlanKeyUnsafe, PlanRefused, open_plan, plan_key, seal_plan
from tamer.sizes import DiskUsage

DATA = Path(__file__).parent / "data" / "snapshot.json"
SRC = Path(__file__).parents[2] / "src" / "tamer"


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return build_inventory(RawSnapshot.from_json(json.loads(DATA.read_text())))


def _vol(inv: Inventory, prefix: str) -> str:
    return next(v.name for v in inv.volumes if v.name.startswith(prefix))


# the snapshot: jovial_leakey (exited) mounts 2b717ba1... and ec027e20...; 63bdf2c8... is orphaned
LEAKEY_VOLS = ("2b717ba1", "ec027e20")
ORPHAN = "63bdf2c8"


def test_a_volume_never_goes_with_its_container_however_old(inv: Inventory) -> None:
    later = inv.taken_at + timedelta(days=400)  # creation long past any threshold
    plan = make_plan(inv, DEFAULT_POLICY, now=later)
    assert "jovial_leakey" in {a.name for a in plan.actions}
    refusals = {r.id: r for r in plan.refusals}
    for prefix in LEAKEY_VOLS:
        r = refusals[_vol(inv, prefix)]
        assert r.code is Reason.VOLUME_USERS_GO_THIS_RUN and r.facts["users"] == ["jovial_leakey"]
    assert not any(a.kind == "volume" for a in plan.actions)


def test_orphan_age_counts_from_last_use_never_from_creation(inv: Inventory) -> None:
    name = _vol(inv, ORPHAN)
    later = inv.taken_at + timedelta(days=400)
    unknown = make_plan(inv, DEFAULT_POLICY, now=later)
    r = next(r for r in unknown.refusals if r.id == name)
    assert (
        r.code is Reason.ORPHAN_TOO_RECENT and r.facts["since"] == "unknown" and r.facts["orphaned_for"] == 0
    )
    six = make_plan(inv, DEFAULT_POLICY, now=later, orphan_clock={name: later - timedelta(days=6)})
    assert next(r for r in six.refusals if r.id == name).code is Reason.ORPHAN_TOO_RECENT
    eight = make_plan(inv, DEFAULT_POLICY, now=later, orphan_clock={name: later - timedelta(days=8)})
    action = next(a for a in eight.actions if a.id == name)
    assert action.code is Reason.VOLUME_ORPHANED and action.facts["orphaned_for"] == 8 * 86400
    # a use seen by `tamer watch` after tamer's own clock restarts it
    watched = make_plan(
        inv,
        DEFAULT_POLICY,
        now=later,
        orphan_clock={name: later - timedelta(days=8)},
        history={("volume", name): later - timedelta(days=1)},
    )
    r = next(r for r in watched.refusals if r.id == name)
    assert r.code is Reason.ORPHAN_TOO_RECENT and r.facts["since"] == "watch"


def test_named_rules_use_the_orphan_clock_too(inv: Inventory) -> None:
    ruled = load_policy('[[volumes.named]]\nnames = ["old-*"]\nolder_than = "30d"\n')
    later = inv.taken_at + timedelta(days=400)
    recent = make_plan(
        inv, ruled, now=later, backup_available=True, orphan_clock={"old-cache": later - timedelta(days=3)}
    )
    assert next(r for r in recent.refusals if r.id == "old-cache").code is Reason.NAMED_TOO_RECENT
    old = make_plan(
        inv, ruled, now=later, backup_available=True, orphan_clock={"old-cache": later - timedelta(days=31)}
    )
    action = next(a for a in old.actions if a.id == "old-cache")
    assert action.code is Reason.VOLUME_NAMED_RULE and action.needs_backup


def test_symlinked_volume_is_refused_up_front(inv: Inventory) -> None:
    trick = dataclasses.replace(
        next(v for v in inv.volumes if v.name == "old-cache"),
        placement="symlink",
        data_path="/mnt/big/old-cache",
    )
    inv2 = dataclasses.replace(inv, volumes=tuple(trick if v.name == "old-cache" else v for v in inv.volumes))
    ruled = load_policy('[[volumes.named]]\nnames = ["old-*"]\n')
    plan = make_plan(inv2, ruled, backup_available=True)
    r = next(r for r in plan.refusals if r.id == "old-cache")
    assert r.code is Reason.VOLUME_SYMLINKED and r.facts["data_path"] == "/mnt/big/old-cache"
    assert "tamer volume move" in describe(r.code, r.facts)


def test_every_decision_carries_a_code_with_prose(inv: Inventory) -> None:
    budget = load_policy('[budget]\nmax_size = "1kB"\n[images]\nunused_older_than = "1d"\n')
    for policy in (DEFAULT_POLICY, budget):
        plan = make_plan(
            inv, policy, orphan_clock={v.name: inv.taken_at - timedelta(days=30) for v in inv.volumes}
        )
        for d in (*plan.actions, *plan.refusals):
            assert isinstance(d.code, Reason)
            assert describe(d.code, d.facts)
        assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
        # the written-out action JSON is asdict's, deep copies included (the digest and plan files rest on it)
        assert plan.actions
        data = plan.to_json()
        assert data["actions"] == [{**dataclasses.asdict(a), "code": a.code.value} for a in plan.actions]
        data["actions"][0]["facts"]["added by a caller"] = 1
        data["actions"][0]["reason"] = "added by a caller"
        assert plan.to_json()["actions"] == [
            {**dataclasses.asdict(a), "code": a.code.value} for a in plan.actions
        ]
        # and the id is the digest it always was: plan files and `fleet clean --plan-id` compare it across versions
        body = json.dumps(
            {
                "engine": plan.engine_id,
                "rules": plan.rules,
                "actions": [{**dataclasses.asdict(a), "code": a.code.value} for a in plan.actions],
            },
            sort_keys=True,
        )
        assert plan.plan_id == hashlib.sha256(f"{plan.host}\n{body}".encode()).hexdigest()[:16]
    for code in Reason:
        describe(code, {})  # prose never needs a fact to exist
    for note in NoteCode:
        assert describe_note(note, {})
    assert describe("not-a-code", {}) == "not-a-code"


def test_budget_evicts_by_code_only_volumes_waiting_on_their_clock(inv: Inventory) -> None:
    budget = load_policy('[budget]\nmax_size = "1kB"\n')
    plan = make_plan(inv, budget)
    evicted = {a.id for a in plan.actions if a.kind == "volume"}
    assert _vol(inv, ORPHAN) in evicted  # kept only by its clock: the budget may take it
    assert not evicted & {_vol(inv, p) for p in LEAKEY_VOLS}  # their container goes in this run: never
    assert all(a.code is Reason.BUDGET_LRU for a in plan.actions if a.kind == "volume")


def test_plan_imports_nothing_from_report() -> None:
    for module in ("plan.py", "reasons.py", "apply.py"):
        tree = ast.parse((SRC / module).read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + [
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        ]
        assert not [m for m in imported if m and m.startswith("tamer.report")], module


def test_freed_bytes_are_allocated_bytes(inv: Inventory) -> None:
    v = inv.volumes[0]
    sparse = dataclasses.replace(v, size=DiskUsage(apparent=10 * 1024**3, allocated=1024**2, files=1))
    assert volume_freed_bytes(sparse) == 1024**2
    bound = dataclasses.replace(sparse, placement="bind", data_path="/srv/data")
    assert volume_freed_bytes(bound) == 0
    engine_only = dataclasses.replace(v, size=DiskUsage(apparent=5000))  # the engine's figure: all we know
    assert volume_freed_bytes(engine_only) == 5000
    shared = tuple(dataclasses.replace(bound, name=f"b{i}") for i in range(3))
    assert len(distinct_volumes(shared)) == 1
    inv3 = dataclasses.replace(inv, volumes=shared)
    assert docker_total(inv3) == docker_total(dataclasses.replace(inv, volumes=shared[:1]))


def test_policy_round_trips_through_the_plan() -> None:
    p = load_policy(
        '[[volumes.named]]\nnames = ["a*"]\nolder_than = "3d"\n[budget]\nmax_size = "2GB"\n'
        '[images]\nunused_older_than = "30d"\nkeep_tags = ["x:*"]\n'
    )
    assert policy_from_json(json.loads(json.dumps(policy_to_json(p)))) == p
    assert policy_from_json(policy_to_json(DEFAULT_POLICY)) == DEFAULT_POLICY
    with pytest.raises(PolicyError):
        policy_from_json({"container_older_than": "soon"})


# -- sealing ----------------------------------------------------------------------------------------
def test_seal_detects_any_change(inv: Inventory, tmp_path: Path) -> None:
    key = plan_key(tmp_path)
    assert (tmp_path / "plan.key").stat().st_mode & 0o777 == 0o600 and plan_key(tmp_path) == key
    plan = make_plan(inv, DEFAULT_POLICY)
    sealed = seal_plan(plan, key)
    assert open_plan(json.loads(json.dumps(sealed)), key) == plan
    tampered = json.loads(json.dumps(sealed))
    tampered["plan"]["rules"]["orphaned_anonymous_older_than"] = 0
    with pytest.raises(PlanRefused, match="seal does not match"):
        open_plan(tampered, key)
    with pytest.raises(PlanRefused, match="seal does not match"):
        open_plan(sealed, os.urandom(32))  # another host's key
    with pytest.raises(PlanRefused, match="no seal"):
        open_plan({k: v for k, v in sealed.items() if k != "mac"}, key)
    with pytest.raises(PlanRefused, match="not a plan saved"):
        open_plan(sealed["plan"], key)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_key_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    plan_key(tmp_path)
    (tmp_path / "plan.key").chmod(mode)
    with pytest.raises(PlanKeyUnsafe, match="chmod 600"):
        plan_key(tmp_path)


def test_key_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(os.urandom(32))
    (tmp_path / "real").chmod(0o600)
    (tmp_path / "plan.key").symlink_to(tmp_path / "real")
    with pytest.raises(PlanKeyUnsafe):
        plan_key(tmp_path)


# -- policy parsing never fails with anything but a PolicyError ----------------------------------------
SECTIONS = [
    "",
    "protect",
    "containers",
    "images",
    "volumes",
    "[volumes.named]",
    "build_cache",
    "budget",
    "wat",
]
KEYS = [
    "version",
    "labels",
    "remove",
    "states",
    "older_than",
    "keep_names",
    "names",
    "generated_names_only",
    "dangling",
    "unused_older_than",
    "keep_tags",
    "keep_newest",
    "orphaned_anonymous_older_than",
    "max_size",
]
scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("inf", "inf")),
    st.from_regex(r"[0-9]{1,30}(\.[0-9]{1,5})?\s?(s|m|h|d|w|B|kB|GiB|TB|x)?", fullmatch=True).map(json.dumps),
    st.text(max_size=12).map(json.dumps),
)


def _value(draw_value: object) -> str:
    if isinstance(draw_value, bool):
        return "true" if draw_value else "false"
    return str(draw_value)


values = st.recursive(
    scalars.map(_value),
    lambda inner: st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(SECTIONS), st.sampled_from(KEYS), values), max_size=8),
    st.text(max_size=40),
)
def test_policy_fuzz_only_policy_errors(entries: list[tuple[str, str, str]], noise: str) -> None:
    lines = []
    for section, key, value in entries:
        if section:
            lines.append(section if section.startswith("[") else f"[{section}]")
        lines.append(f"{key} = {value}")
    for text in ("\n".join(lines), "\n".join(lines) + "\n" + noise, noise):
        try:
            load_policy(text, "fuzz.toml")
        except PolicyError as exc:
            assert "fuzz.toml:" in str(exc) and len(str(exc)) < 20_000


@pytest.mark.parametrize("text", ["99999999999999d", "9" * 400 + "w", "36601d"])
def test_cli_durations_past_a_century_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="too long"):
        parse_duration(text)
    assert parse_duration("36600d") == timedelta(days=36600)


# -- the orphan clock's record (an SQLite file in a temporary folder) ----------------------------------
def test_orphan_clock_record(inv: Inventory, tmp_path: Path) -> None:
    from tamer.journal import Journal

    journal = Journal(tmp_path / "j.sqlite")
    orphan, used = _vol(inv, ORPHAN), _vol(inv, LEAKEY_VOLS[0])
    t0 = inv.taken_at
    first = journal.observe_volumes(inv)
    assert first[orphan] == t0 and first[used] == t0  # first seen orphaned / seen in use: now
    later = dataclasses.replace(inv, taken_at=t0 + timedelta(days=3))
    clock = journal.observe_volumes(later)
    assert clock[orphan] == t0  # still orphaned: its clock keeps running
    assert clock[used] == t0 + timedelta(days=3)  # in use: restarted
    # re-created under the same name: a new volume, a new clock
    recreated = dataclasses.replace(
        later,
        taken_at=t0 + timedelta(days=5),
        volumes=tuple(
            dataclasses.replace(v, created=t0 + timedelta(days=4)) if v.name == orphan else v
            for v in inv.volumes
        ),
    )
    assert journal.observe_volumes(recreated)[orphan] == t0 + timedelta(days=5)
    # a clock that reads earlier than the volume's creation (a host at 1970 before NTP) is the wrong one:
    # nothing is recorded, or the next run at the right time would find the volume years old
    back = dataclasses.replace(recreated, taken_at=t0 - timedelta(days=700))
    assert journal.observe_volumes(back)[orphan] == t0 + timedelta(days=5)
    # the clock went back after running ahead, still after the creation: restart from now, not the future
    back = dataclasses.replace(recreated, taken_at=t0 + timedelta(days=4, hours=12))
    assert journal.observe_volumes(back)[orphan] == t0 + timedelta(days=4, hours=12)
    # a container removed by a clean restarts its volumes' clock
    journal.volumes_used(inv.engine_id, [orphan], (t0 + timedelta(days=9)).timestamp())
    assert journal.observe_volumes(dataclasses.replace(back, taken_at=t0 + timedelta(days=10)))[
        orphan
    ] == t0 + timedelta(days=9)
    # volumes that are gone are forgotten
    assert journal.observe_volumes(dataclasses.replace(back, volumes=())) == {}


def test_budget_counts_removals_as_the_total_does(inv: Inventory) -> None:
    """A sparse volume frees little on disk but leaves Docker's (apparent) total by its full size: the budget
    must not evict more than needed because the two figures were mixed."""
    name = _vol(inv, ORPHAN)
    sparse = tuple(
        dataclasses.replace(v, size=DiskUsage(apparent=10 * 1000**3, allocated=1000**2, files=1))
        if v.name == name
        else v
        for v in inv.volumes
    )
    inv2 = dataclasses.replace(inv, volumes=sparse)
    total = docker_total(inv2)
    policy = load_policy(
        f'[budget]\nmax_size = {total - 9 * 1000**3}\n[volumes]\norphaned_anonymous_older_than = "0s"\n'
    )
    plan = make_plan(inv2, policy, orphan_clock={v.name: inv.taken_at for v in inv.volumes})
    removed = next(a for a in plan.actions if a.id == name)
    assert removed.code is Reason.VOLUME_ORPHANED and removed.bytes == 1000**2  # what it frees on disk
    assert not [a for a in plan.actions if a.code is Reason.BUDGET_LRU]  # already within budget
    assert plan.notes[-1].code is NoteCode.WITHIN_BUDGET


def test_a_journal_from_an_older_tamer_opens_and_its_unreadable_run_is_set_aside(tmp_path: Path) -> None:
    import sqlite3

    from tamer.journal import Journal

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the first release's schema, with an unfinished run in its plan format
        db.executescript(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, plan_id TEXT NOT NULL, "
            "plan TEXT NOT NULL, started REAL NOT NULL, finished REAL, status TEXT NOT NULL, pid INTEGER NOT NULL);"
            "CREATE TABLE steps (run_id INTEGER NOT NULL, idx INTEGER NOT NULL, kind TEXT NOT NULL, "
            "object_id TEXT NOT NULL, name TEXT NOT NULL, bytes INTEGER NOT NULL, status TEXT NOT NULL, "
            "detail TEXT NOT NULL DEFAULT '', at REAL, PRIMARY KEY (run_id, idx));"
        )
        old_plan = {
            "host": "unix://x",
            "policy": "p",
            "made_at": "t",
            "actions": [
                {
                    "kind": "container",
                    "id": "c",
                    "name": "n",
                    "bytes": 1,
                    "reason": "old prose",
                    "fingerprint": {},
                }
            ],
            "refusals": [],
        }
        db.execute(
            "INSERT INTO runs (host, plan_id, plan, started, status, pid) VALUES (?,?,?,?,?,?)",
            ("unix://x", "abc", json.dumps(old_plan), 1.0, "running", 1),
        )
        db.execute(
            "INSERT INTO steps (run_id, idx, kind, object_id, name, bytes, status) "
            "VALUES (1, 0, 'container', 'c', 'n', 1, 'pending')"
        )
    journal = Journal(path)
    assert journal.unfinished("unix://x") is None  # nothing of it runs: the next plan judges afresh
    assert journal.recent()[0]["status"] == "abandoned"
    (tmp_path / "garbage.sqlite").write_bytes(b"not sqlite" * 50)
    from tamer.journal import StateUnreadable

    with pytest.raises(StateUnreadable, match="move it aside"):
        Journal(tmp_path / "garbage.sqlite")


def test_the_largest_kept_shown_are_the_same_whatever_order_the_engine_listed_them() -> None:
    """The engine lists volumes in no fixed order; among kept objects of equal size, the fifteen a plan
    shows without -v were whichever came first, so two runs on an unchanged host showed different ones."""
    from tamer.plan import Plan
    from tamer.plan_model import Refusal
    from tamer.reasons import Reason
    from tamer.report.plan_view import render_plan

    kept = [Refusal("volume", f"id{i:02d}", f"vol{i:02d}", 4096, Reason.NAMED_NO_RULE) for i in range(20)]
    kept.append(Refusal("volume", "idbig", "big", 10**9, Reason.NAMED_NO_RULE))

    def text(order: list[Refusal]) -> str:
        return render_plan(Plan("h", "e", "default", {}, "2030-01-01T00:00:00+00:00", (), tuple(order)))

    forward = text(kept)
    assert forward == text(kept[::-1])
    assert "largest shown" in forward and "big" in forward and "vol00" in forward and "vol19" not in forward
