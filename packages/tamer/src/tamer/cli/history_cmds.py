"""`tamer record` and `tamer history`: snapshots over time (tamer.snapshots, tamer.growth).

`tamer record` does what `tamer df` does to the host (reads it, starts the orphan clock of
newly orphaned volumes) and records the snapshot, printing one line: it is meant for a timer.
`tamer history` reads the snapshots back; it needs no engine when the history can say which
one is meant (--engine, or the one snapshot series taken through the same address).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from tamer.cli.app import Outcome
from tamer.cli.argtypes import positive_int

if TYPE_CHECKING:
    from tamer.snapshots import Snapshot

BY_CHOICES = ("kind", "owner", "volume", "log")  # as tamer.growth.BY_CHOICES (checked by a unit test)
SIZING_CHOICES = ("auto", "local", "engine")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    rec = sub.add_parser(
        "record",
        parents=[common],
        help="add a snapshot of what the host costs to its history",
        description="Read the host as `tamer df` does and append the snapshot to tamer's history "
        "(<state dir>/snapshots.sqlite); prints one line. Run it on a timer; `tamer history` reads them.",
    )
    rec.add_argument(
        "--sizing",
        choices=SIZING_CHOICES,
        default="auto",
        help="walk the data-root (local), ask the engine (engine), or pick (auto)",
    )
    rec.set_defaults(handler=run_record)

    hist = sub.add_parser(
        "history",
        parents=[common],
        help="what grew, top growers, when the disk fills at this rate",
        description="What grew over a window of recorded snapshots (see `tamer record`), the top growers, "
        "and when the data-root's filesystem fills at the current rate: a least-squares fit of its free "
        "space, with the 95% range of the rate.",
    )
    hist.add_argument(
        "--since", default="30d", metavar="DURATION", help="how far back, e.g. 7d, 12h, 2w (default 30d)"
    )
    hist.add_argument("--by", choices=BY_CHOICES, default="kind", help="what to break the growth down by")
    hist.add_argument(
        "--top", type=positive_int, default=10, help="how many top growers to show (default 10)"
    )
    hist.add_argument(
        "--report", metavar="DIR", default=None, help="also write DIR/tamer-history.html (charts, inline SVG)"
    )
    hist.add_argument(
        "--engine",
        metavar="ID",
        default=None,
        help="the engine's identity as recorded (ID@data-root; see --json's engine); default: the engine "
        "at -H/$DOCKER_HOST",
    )
    hist.add_argument(
        "--min-span",
        default="1h",
        metavar="DURATION",
        help="the least span of snapshots a forecast needs (default 1h)",
    )
    hist.set_defaults(handler=run_history)


# -- tamer record ------------------------------------------------------------------
def run_record(args: argparse.Namespace) -> Outcome:
    from tamer.accounting import disk_report
    from tamer.cli.inspect_cmds import read_inventory
    from tamer.journal import observe_orphan_clock
    from tamer.report.history_view import record_json, record_line
    from tamer.snapshots import filesystem_usage, record, snapshot_from_df, store_path

    path = store_path()  # a state dir that cannot be used fails here, before the engine is read
    inv = read_inventory(args)
    _, why = observe_orphan_clock(inv)
    snap = snapshot_from_df(inv, disk_report(inv), filesystem_usage(inv))
    record(snap, path=path)
    errors = [f"warning: {w}" for w in inv.warnings]
    if why:
        errors.append(f"warning: {why}")
    return Outcome(record_json(snap, str(path)), record_line(snap), errors=errors or None)


def record_quietly(snap: Snapshot) -> None:
    """Record a snapshot for `tamer df`: a store that cannot be used is a warning, never a failure."""
    import warnings

    from tamer.errors import TamerError
    from tamer.snapshots import record
    from tamer.state import StateUnavailable

    try:
        record(snap)
    except TamerError as exc:
        warnings.warn(f"this look was not added to tamer's history: {exc}", StateUnavailable, stacklevel=2)


# -- tamer history -----------------------------------------------------------------
def run_history(args: argparse.Namespace) -> Outcome:
    # every input checked before anything is read or written
    from pathlib import Path

    from tamer.errors import UsageError
    from tamer.report.units import parse_duration

    since_s = parse_duration(args.since).total_seconds()
    min_span = parse_duration(args.min_span).total_seconds()
    report_dir = Path(args.report) if args.report is not None else None
    if report_dir is not None and (
        not args.report.strip() or (report_dir.exists() and not report_dir.is_dir())
    ):
        raise UsageError(
            f"--report expects a folder to write tamer-history.html into, got {args.report!r}"
            + (" (a file)" if args.report.strip() else "")
            + "; nothing was written"
        )

    from tamer.growth import summarize
    from tamer.report.history_view import history_json, no_history_hint, render_history
    from tamer.snapshots import engines, series

    now = time.time()
    engine, host, note = _which_engine(args)
    since = now - since_s
    snaps = series(engine, since, details="ends")  # growth compares the ends; the rest feed the fit and chart
    errors = [f"warning: {note}"] if note else []
    ahead = [x for x in snaps if x.taken_at > now + 60]
    if ahead:
        from tamer.report.history_view import when

        errors.append(
            f"warning: {len(ahead)} snapshot(s) are stamped after this machine's clock ({when(now)}), the "
            f"latest at {when(max(x.taken_at for x in ahead))}: the clock was ahead when they were taken, or is "
            "behind now; they are used as stamped (check the clock, e.g. `timedatectl`)"
        )
    if not snaps:
        known = engines()
        older = next((n for e, n, _ in known if e == engine), 0)
        hint = no_history_hint(engine, older, [e for e, _, _ in known if e != engine])
        if report_dir is not None:
            hint += f" No report was written to {report_dir}: there is nothing to chart."
        summary = summarize(engine, [], by=args.by, top=args.top, min_span=min_span)
        data = history_json(summary, host=host, since=since, now=now, report=None, hint=hint)
        return Outcome(data, hint, errors=errors or None)
    summary = summarize(engine, snaps, by=args.by, top=args.top, min_span=min_span)
    report: str | None = None
    if report_dir is not None:
        from tamer.report.history_html import render_history_html, write_report

        report = str(write_report(report_dir, render_history_html(summary, host=host)))
    data = history_json(summary, host=host, since=since, now=now, report=report, hint=None)
    return Outcome(
        data, render_history(summary, host=host, since=since, now=now, report=report), errors=errors or None
    )


def _which_engine(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(engine identity, address, a note or None): --engine, else ask the engine at -H who it is, else
    the one engine the history reached through that address."""
    from tamer.engine import connect
    from tamer.engine.client import resolve_host
    from tamer.errors import EngineUnreachable, TamerError, UsageError
    from tamer.inventory import engine_identity
    from tamer.snapshots import engines, latest

    address = resolve_host(args.host)
    if args.engine is not None:
        if not args.engine.strip():
            raise UsageError("--engine needs an engine identity (ID@data-root), got an empty one")
        # the engine at -H is never asked here: say where this history was recorded, not that address
        newest = latest(args.engine)
        return args.engine, newest.host if newest is not None and newest.host else address, None
    try:
        ident = engine_identity(connect(args.host, answer_within=5.0).info()) or address
        return ident, address, None
    except TamerError as exc:
        unreachable = str(exc)
    known = engines()
    here = []
    for ident, _, _ in known:
        snap = latest(ident)
        if snap is not None and snap.host == address:
            here.append(ident)
    if len(here) == 1:
        return (
            here[0],
            address,
            f"the engine at {address} did not answer, so this is the history recorded through that address "
            f"({here[0]}): {unreachable}",
        )
    listed = ", ".join(e for e, _, _ in known) or "none recorded yet"
    raise EngineUnreachable(
        f"cannot tell whose history to show: the engine at {address} did not answer ({unreachable}); "
        f"name one with --engine ID (engines in the history: {listed})"
    )
