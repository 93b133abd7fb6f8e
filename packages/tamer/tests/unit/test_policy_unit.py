"""Policy parsing and pure planning decisions, without an engine."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest
from tamer.cli.clean_cmds import DEFAULT_POLICY_TOML
from tamer.inventory import RawSnapshot, build_inventory
from tamer.plan import Plan, make_plan
from tamer.policy import DEFAULT_POLICY, PolicyError, load_policy
from tamer.reasons import Reason

DATA = Path(__file__).parent / "data" / "snapshot.json"


def test_the_default_policy_shown_is_the_one_used() -> None:
    shown = load_policy(DEFAULT_POLICY_TOML, "built-in default")
    assert dataclasses.replace(shown, source=DEFAULT_POLICY.source) == DEFAULT_POLICY


def test_durations_and_sizes() -> None:
    p = load_policy(
        '[containers]\nolder_than = "2w"\n[budget]\nmax_size = "40GB"\n[build_cache]\nmax_size = "1GiB"\n'
    )
    assert p.container_older_than == timedelta(days=14)
    assert p.budget == 40 * 1000**3 and p.cache_max_size == 1024**3


def test_errors_name_every_line() -> None:
    text = '[containers]\nolder_than = "soon"\ncolour = 1\n[images]\nkeep_newest = "two"\n'
    with pytest.raises(PolicyError) as err:
        load_policy(text, "p.toml")
    msg = str(err.value)
    assert "p.toml:2:" in msg and "p.toml:3:" in msg and "p.toml:5:" in msg


def test_plan_is_pure_and_repeatable() -> None:
    raw = RawSnapshot.from_json(json.loads(DATA.read_text()))
    inv = build_inventory(raw)
    a, b = make_plan(inv, DEFAULT_POLICY), make_plan(inv, DEFAULT_POLICY)
    assert a == b and a.plan_id == b.plan_id
    assert Plan.from_json(a.to_json()) == a
    # running containers and in-use volumes never appear as actions
    running = {c.id for c in inv.containers if c.running}
    assert not running & {x.id for x in a.actions}
    # named volumes need an explicit rule
    assert not [x for x in a.actions if x.kind == "volume" and x.needs_backup]
    ruled = load_policy('[[volumes.named]]\nnames = ["old-*"]\n')
    with_backup = make_plan(inv, ruled, backup_available=True)
    named = [x for x in with_backup.actions if x.kind == "volume" and x.needs_backup]
    assert [x.name for x in named] == ["old-cache"]
    without_backup = make_plan(inv, ruled, backup_available=False)
    assert "old-cache" not in {x.name for x in without_backup.actions}
    assert any(r.name == "old-cache" and r.code is Reason.NAMED_NO_BACKUP for r in without_backup.refusals)
