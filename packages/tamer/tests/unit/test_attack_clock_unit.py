"""A time from a wrong clock (before the volume existed) never makes a volume look old."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tamer.inventory import RawSnapshot, build_inventory
from tamer.plan import make_plan
from tamer.policy import DEFAULT_POLICY
from tamer.reasons import Reason

DATA = Path(__file__).parent / "data" / "snapshot.json"
ORPHAN = "63bdf2c8"  # orphaned anonymous volume of the captured snapshot
EPOCH_DAY = datetime(1970, 1, 2, tzinfo=UTC)


def test_last_use_before_creation_counts_from_creation() -> None:
    inv = build_inventory(RawSnapshot.from_json(json.loads(DATA.read_text())))
    vol = next(v for v in inv.volumes if v.name.startswith(ORPHAN))
    assert vol.created is not None
    soon = vol.created + timedelta(days=1)  # a day after it was made: it cannot be 7 days orphaned
    for source in ("clock", "history"):
        plan = make_plan(
            inv,
            DEFAULT_POLICY,
            now=soon,
            orphan_clock={vol.name: EPOCH_DAY} if source == "clock" else {},
            history={("volume", vol.name): EPOCH_DAY} if source == "history" else None,
        )
        assert vol.name not in {a.id for a in plan.actions}, source
        refusal = next(r for r in plan.refusals if r.id == vol.name)
        assert refusal.code is Reason.ORPHAN_TOO_RECENT, (source, refusal)


def test_a_look_under_a_clock_before_creation_records_nothing(tmp_path: Path) -> None:
    """Made ten days ago, first seen orphaned now; one look at 1970 must not turn "first seen orphaned now"
    into "orphaned since 1970" (the next run would count ten days from its creation, or 56 years)."""
    import dataclasses

    from tamer.journal import Journal

    inv = build_inventory(RawSnapshot.from_json(json.loads(DATA.read_text())))
    vol = next(v for v in inv.volumes if v.name.startswith(ORPHAN))
    assert vol.created is not None and vol.orphaned
    now = vol.created + timedelta(days=10)
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.observe_volumes(dataclasses.replace(inv, taken_at=now))[vol.name] == now
    at_epoch = journal.observe_volumes(dataclasses.replace(inv, taken_at=EPOCH_DAY))
    assert at_epoch.get(vol.name) == now
    later = now + timedelta(minutes=5)
    clock = journal.observe_volumes(dataclasses.replace(inv, taken_at=later))
    assert clock[vol.name] == now
    plan = make_plan(inv, DEFAULT_POLICY, now=later, orphan_clock=clock)
    assert vol.name not in {a.id for a in plan.actions}
    # the first look ever at 1970: nothing recorded, so the next look at the right time starts the clock
    fresh = Journal(tmp_path / "fresh.sqlite")
    assert vol.name not in fresh.observe_volumes(dataclasses.replace(inv, taken_at=EPOCH_DAY))
    assert fresh.observe_volumes(dataclasses.replace(inv, taken_at=later))[vol.name] == later
