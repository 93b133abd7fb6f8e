"""Attack: a named volume whose name is 64 hex digits (`docker volume create $(sha256sum < f | cut -c1-64)`,
CI caches named by a hash). On an engine that labels its anonymous volumes (API 1.42, engine 23+), the
name alone made it "anonymous": removed after 7 days orphaned, with no rule and no backup."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

from tamer.facts import is_anonymous_volume
from tamer.inventory import RawSnapshot, build_inventory
from tamer.plan import Plan, make_plan
from tamer.policy import DEFAULT_POLICY
from tamer.reasons import Reason

DATA = Path(__file__).parent / "data" / "snapshot.json"
HEX = "63bdf2c8"  # an orphaned volume of the captured snapshot, 64 hex digits, no label (engine 20.10)


def _plan_for(api_version: str) -> tuple[str, Plan]:
    raw = json.loads(DATA.read_text())
    raw = copy.deepcopy(raw)
    raw["api_version"] = api_version
    inv = build_inventory(RawSnapshot.from_json(raw))
    vol = next(v for v in inv.volumes if v.name.startswith(HEX))
    later = inv.taken_at + timedelta(days=30)
    plan = make_plan(inv, DEFAULT_POLICY, now=later, orphan_clock={vol.name: inv.taken_at})
    return vol.name, plan


def test_an_unlabeled_hex_name_is_named_on_an_engine_that_labels_anonymous_volumes() -> None:
    name, old = _plan_for("1.41")  # engine 20.10: no label exists, the bare hex name is the sign
    assert name in {a.id for a in old.actions}
    name, new = _plan_for("1.43")  # engine 24: it would carry the label had the engine made it
    assert name not in {a.id for a in new.actions}
    refusal = next(r for r in new.refusals if r.id == name)
    assert refusal.code is Reason.NAMED_NO_RULE
    assert is_anonymous_volume(name, {"com.docker.volume.anonymous": ""}, engine_labels_them=True)


def test_adopt_calls_anonymous_what_the_inventory_does() -> None:
    """`tamer volume adopt` used its own pattern (`^[0-9a-f]{64}$`), whose `$` also matched before a trailing
    newline; it now asks the one rule in facts.py."""
    from tamer.volumes.adopt import _is_anonymous

    hexname = "0123456789abcdef" * 4
    mount = {"Type": "volume", "Name": hexname}
    assert _is_anonymous(mount, {"Labels": {}}, set())
    assert _is_anonymous(
        {"Type": "volume", "Name": "cache"}, {"Labels": {"com.docker.volume.anonymous": ""}}, set()
    )
    assert not _is_anonymous({"Type": "volume", "Name": hexname + "\n"}, {"Labels": {}}, set())
    assert not _is_anonymous({"Type": "volume", "Name": hexname.upper()}, None, set())
    assert not _is_anonymous(mount, None, {hexname})  # the user named it on the command line
    assert not _is_anonymous({"Type": "bind", "Name": hexname}, None, set())
    compose = {"Labels": {"com.docker.compose.project": "web"}}
    assert not _is_anonymous(mount, compose, set())
