"""`tamer df` and `tamer ls`: read-only views of the host.

Only what registering the commands needs is imported at the top; each handler imports what
it uses, so `tamer ls --help` or a bad filter costs no more than `tamer --help`.
`tamer ls` sizes nothing unless asked (`--size`, or `--sort size`): a listing reads only the
engine's lists and records, as `docker ps -a` does, and no folder is walked.
"""

from __future__ import annotations

import argparse

from tamer.cli.app import Outcome, parent_parser
from tamer.cli.argtypes import positive_int
from tamer.listing import FILTER_KEYS, KINDS, SORT_KEYS, parse_filters

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms, a fifth of a `docker images`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from tamer.engine import Engine
    from tamer.inventory import Inventory

SIZING_CHOICES = ("auto", "local", "engine")  # as tamer.collect.SIZING_CHOICES (checked by a unit test)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    sizing = parent_parser()
    sizing.add_argument(
        "--sizing",
        choices=SIZING_CHOICES,
        default="auto",
        help="walk the data-root (local), ask the engine (engine), or pick (auto)",
    )

    df = sub.add_parser(
        "df", parents=[common, sizing], help="what everything costs, what could go, who owns it"
    )
    df.add_argument("-v", "--verbose", action="store_true", help="list every reclaimable object and owner")
    df.add_argument("--top", type=positive_int, default=10, help="how many top consumers to show")
    df.set_defaults(handler=run_df)

    keys = "; ".join(f"{k}: {', '.join(v)}" for k, v in FILTER_KEYS.items())
    ls = sub.add_parser(
        "ls", parents=[common, sizing], help="list images, containers, volumes or build cache"
    )
    ls.add_argument("kind", nargs="?", default="containers", help=f"one of {', '.join(KINDS)}")
    ls.add_argument(
        "--filter",
        "-f",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"repeatable; keys per kind: {keys}",
    )
    ls.add_argument(
        "--sort",
        default=None,
        choices=SORT_KEYS,
        help="largest first, oldest first, or by name (default: size with --size, else name)",
    )
    ls.add_argument(
        "-s",
        "--size",
        action="store_true",
        help="measure sizes (walks the data-root when local; slower on big hosts)",
    )
    ls.add_argument(
        "-u",
        "--users",
        action="store_true",
        help="images and volumes: also say which containers use each one, and who owns it "
        "(reads every container; slower on big hosts). Without it, volumes still say whether "
        "any container uses them (orphaned or not)",
    )
    ls.set_defaults(handler=run_ls)


def read_inventory(
    args: argparse.Namespace, engine: Engine | None = None, meanwhile: Callable[[], None] | None = None
) -> Inventory:
    """The host's inventory; `meanwhile()` is called while the data-root is walked (see read_raw_snapshot)."""
    from tamer.cli.progress import Progress
    from tamer.collect import read_raw_snapshot
    from tamer.early import take
    from tamer.engine import connect

    early = take(args.host) if engine is None else None  # what tamer.cli.lean started for a df
    if engine is None:
        engine = early.engine if early is not None else connect(args.host)
    progress = Progress("sizing", enabled=not (args.json or args.quiet))
    try:
        raw = read_raw_snapshot(
            engine, sizing=args.sizing, progress=progress, meanwhile=meanwhile, early=early
        )
    finally:
        progress.close()
    from tamer.inventory import build_inventory  # imported by read_raw_snapshot while the engine answers

    return build_inventory(raw)


def _import_df_parts() -> None:
    # what `tamer df` needs once the walk ends, imported while it runs (some 40 ms, off the critical path)
    import tamer.accounting
    import tamer.cli.history_cmds
    import tamer.journal
    import tamer.report.views
    import tamer.snapshots  # noqa: F401


def run_df(args: argparse.Namespace) -> Outcome:
    import gc
    import time

    # No cyclic collection while df reads the host, and none of what it read at the exit: a df makes
    # some 10^5 objects that live to its end and almost no cycles (about 700 unreachable at 1,003
    # containers), so the collector only walked live objects again and again (18-27 ms of CPU a warm
    # df on the bench host, most while the workers want both cores) and once more at the interpreter's
    # exit (20-45 ms after the output, 8-12 with them frozen). Restored for a caller that goes on, and
    # frozen only when the process ends right after (tamer.cli.run: the command's own process): in a
    # caller that goes on (main() called again, in-process), what a df froze would never be collected.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        inv = read_inventory(args, meanwhile=_import_df_parts)
        from tamer.accounting import disk_report
        from tamer.background import in_background
        from tamer.cli.history_cmds import record_quietly
        from tamer.journal import observe_orphan_clock
        from tamer.report.views import df_json, render_df
        from tamer.snapshots import filesystem_usage, snapshot_from_df

        # every look starts the orphan clock of newly orphaned volumes (never fails) and joins the history:
        # two SQLite transactions, each to disk (fsync), on threads beside the report (their waits release
        # the GIL), both done before the report is returned. Nothing here reads what they write.
        clock = in_background(lambda: observe_orphan_clock(inv))
        time.sleep(0)  # the GIL to the new thread now, not after this one's switch interval (5 ms)
        report = disk_report(inv, top_n=args.top)
        recorded = in_background(lambda: record_quietly(snapshot_from_df(inv, report, filesystem_usage(inv))))
        time.sleep(0)
        # only the form that will be printed is built
        outcome = (
            Outcome(df_json(report, inv), "")
            if args.json
            else Outcome(None, render_df(report, inv, verbose=args.verbose))
        )
        clock()
        recorded()
        return outcome
    finally:
        if _process_ends_after():
            gc.freeze()  # what lives now is left to the exit
        if was_enabled:
            gc.enable()


def _process_ends_after() -> bool:
    import tamer.cli

    return tamer.cli.process_ends_after


def run_ls(args: argparse.Namespace) -> Outcome:
    # validate before touching the engine: bad input changes nothing and costs nothing
    filters = parse_filters(args.kind, args.filter)
    sort = args.sort or ("size" if args.size else "name")
    sized = args.size or sort == "size" or args.sizing != "auto"
    # an image's users are only in the container list: the `unused` filter needs it read
    users = args.users or any(f.key == "unused" for f in filters)
    if not (sized or users or args.json):
        from tamer.quick_ls import answers, run_quick_ls

        if answers(args.kind, filters, sort):
            return Outcome(None, run_quick_ls(args.host, args.kind, filters, sort))
    from tamer.listing import select
    from tamer.report.views import ls_json, render_ls

    if sized:
        inv = read_inventory(args)
        sizing = inv.sizing
    else:
        from tamer.collect import read_for_listing
        from tamer.engine import connect
        from tamer.inventory import build_inventory

        inv = build_inventory(read_for_listing(connect(args.host), args.kind, users=users))
        sizing = "none"
    objs = select(inv, args.kind, args.filter, sort)
    # only the form that will be printed is built (turning 2,000 objects into JSON costs more than listing them)
    if args.json:
        return Outcome(
            {
                "kind": args.kind,
                "items": ls_json(objs, sized=sized),
                "sizing": sizing,
                "users_read": inv.users_read,
            },
            "",
        )
    return Outcome(None, render_ls(args.kind, objs, inv.taken_at, sized=sized))
