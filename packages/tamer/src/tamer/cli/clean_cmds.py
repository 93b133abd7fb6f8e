"""`tamer plan`, `tamer clean`, `tamer policy`, `tamer watch`: cleanup by policy."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

from tamer.apply import Current, apply_plan, backup_before_removal
from tamer.cli.app import Outcome, parent_parser
from tamer.cli.inspect_cmds import read_inventory
from tamer.cli.progress import Progress
from tamer.engine import Engine, connect
from tamer.errors import UsageError
from tamer.facts import parse_time
from tamer.history import History, uses_from_event
from tamer.journal import Journal, StateUnreadable, observe_orphan_clock
from tamer.plan import Plan, make_plan
from tamer.policy import DEFAULT_POLICY, Policy, read_policy_file
from tamer.report.plan_view import plan_json, render_apply, render_plan, render_run, result_json
from tamer.report.units import parse_duration
from tamer.sealing import FORMAT as PLAN_FORMAT
from tamer.sealing import PlanRefused, open_plan, plan_key, seal_plan

DEFAULT_POLICY_TOML = """\
# tamer's built-in default policy: what `docker system prune` removes (stopped
# containers, dangling images), plus anonymous volumes orphaned for a week.
# Named volumes and tagged images are never removed by default.
version = 1

[protect]
labels = ["keep"]

[containers]
states = ["exited", "dead", "created"]
older_than = "0s"

[images]
dangling = true

[volumes]
orphaned_anonymous_older_than = "7d"
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    pol = parent_parser()
    pol.add_argument("--policy", metavar="FILE", help="TOML policy (default: the safe built-in one)")
    pol.add_argument("--sizing", choices=("auto", "local", "engine"), default="auto", help=argparse.SUPPRESS)
    pol.add_argument("-v", "--verbose", action="store_true", help="list everything that stays, too")

    plan = sub.add_parser("plan", parents=[common, pol], help="preview what a clean would remove, and why")
    plan.add_argument("-o", "--output", metavar="FILE", help="also save the plan, for `clean --plan FILE`")
    plan.set_defaults(handler=run_plan)

    clean = sub.add_parser(
        "clean", parents=[common, pol], help="remove what the policy allows (preview by default)"
    )
    clean.add_argument("--apply", action="store_true", help="do it (without a terminal, also --yes)")
    clean.add_argument("--yes", "-y", action="store_true", help="don't ask for confirmation")
    clean.add_argument(
        "--plan", dest="plan_file", metavar="FILE", help="execute a plan saved by `tamer plan -o`"
    )
    clean.add_argument(
        "--plan-id",
        metavar="ID",
        help="act only if the plan is this one (as shown by `tamer plan`); else refuse, removing nothing",
    )
    clean.add_argument(
        "--abandon", action="store_true", help="forget an interrupted clean instead of finishing it"
    )
    clean.add_argument("--journal", action="store_true", help="show the journal of recent cleans")
    clean.set_defaults(handler=run_clean)

    policy = sub.add_parser("policy", parents=[common], help="check or show a cleanup policy")
    psub = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    check = psub.add_parser("check", parents=[common], help="validate a policy file (line-precise errors)")
    check.add_argument("file")
    check.set_defaults(handler=run_policy_check)
    show = psub.add_parser("show", parents=[common], help="print the built-in default policy")
    show.set_defaults(
        handler=lambda a: Outcome({"policy": DEFAULT_POLICY_TOML}, DEFAULT_POLICY_TOML.rstrip())
    )
    policy.set_defaults(handler=_policy_needs_action)

    watch = sub.add_parser(
        "watch", parents=[common], help="record when images and volumes are used (for LRU)"
    )
    watch.add_argument("--once", action="store_true", help="catch up on past events, then exit")
    watch.add_argument(
        "--since", default=None, help="start this long ago (e.g. 24h) instead of where it left off"
    )
    watch.set_defaults(handler=run_watch)


def _policy_needs_action(args: argparse.Namespace) -> Outcome:
    raise UsageError("tamer policy needs an action: check FILE or show")


def _policy(args: argparse.Namespace) -> Policy:
    return read_policy_file(args.policy) if args.policy else DEFAULT_POLICY


def backup_available() -> bool:
    try:
        from tamer.volumes import backup  # noqa: F401
    except ImportError:
        return False
    return True


CLOCK_SKEW_WARNING_S = 60.0
"""Past this, a plan says that tamer's clock and the engine's disagree."""


def read_current(args: argparse.Namespace, engine: Engine) -> Current:
    """The host now, its usage history and its orphan clock (recorded as a side effect: every plan looks);
    a warning when the engine's clock (docker info SystemTime) and ours disagree: ages are judged by ours,
    against timestamps the engine wrote by its own."""
    engine_info = engine.ahead(engine.info)  # asked beside the inventory's reads
    inv = read_inventory(args, engine)
    history = History(inv.host).last_used()
    clock, problem = observe_orphan_clock(inv)
    warnings = [problem] if problem else []
    engine_now = parse_time(engine_info().get("SystemTime"))
    if engine_now is not None:
        skew = (inv.taken_at - engine_now).total_seconds()
        if abs(skew) > CLOCK_SKEW_WARNING_S:
            warnings.append(
                f"tamer's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the engine's "
                f"({inv.taken_at.isoformat(timespec='seconds')} here, {engine_now.isoformat(timespec='seconds')} "
                "there); ages are judged by tamer's clock against the engine's timestamps, so a clock ahead "
                "makes things look older than they are; set the clocks right (NTP) before cleaning"
            )
    if warnings:
        inv = dataclasses.replace(inv, warnings=(*inv.warnings, *warnings))
    return Current(inv, history, clock)


def build_plan(args: argparse.Namespace, engine: Engine, policy: Policy) -> tuple[Plan, Current]:
    current = read_current(args, engine)
    plan = make_plan(
        current.inventory,
        policy,
        history=current.history or None,
        orphan_clock=current.orphan_clock,
        backup_available=backup_available(),
    )
    return plan, current


def run_plan(args: argparse.Namespace) -> Outcome:
    policy = _policy(args)  # a bad policy fails before the engine is asked anything
    plan, current = build_plan(args, connect(args.host), policy)
    if args.output:
        _write_plan_file(args.output, json.dumps(seal_plan(plan, plan_key()), indent=1))
    if args.json:  # only the form that will be printed is made (each costs seconds at 10,000 actions)
        return Outcome({**plan_json(plan), "warnings": list(current.inventory.warnings)}, "")
    text = _with_warnings(render_plan(plan, verbose=args.verbose), current)
    if args.output:
        text += (
            f"\nsaved to {args.output}; `tamer clean --plan {args.output} --apply` executes this plan, "
            "re-checking each object"
        )
    return Outcome(None, text)


PLAN_ID = re.compile(r"[0-9a-f]{16}")
"""A plan id as `tamer plan` shows it (Plan.plan_id)."""


def run_clean(args: argparse.Namespace) -> Outcome:
    if args.plan_id is not None and not PLAN_ID.fullmatch(args.plan_id):
        # an empty --plan-id read as "no check": the clean went ahead whatever its plan was
        raise UsageError(
            f"--plan-id must be a plan id as `tamer plan` shows it (16 hex digits), got {args.plan_id!r}; "
            "nothing was removed"
        )
    if args.journal:
        journal = Journal()
        runs = journal.recent()
        return Outcome(
            {"runs": runs}, "\n".join(render_run(journal.get(r["id"])) for r in runs) or "no cleans yet"
        )
    if args.apply and not args.yes and not sys.stdin.isatty():
        raise UsageError("--apply without a terminal also needs --yes (nothing was removed)")
    policy = _policy(args)
    saved = _read_plan_file(args.plan_file) if args.plan_file else None
    engine = connect(args.host)
    try:
        journal = Journal()  # only now: bad input leaves no trace, not even a state folder
    except StateUnreadable:
        if args.apply or args.abandon:
            raise
        # a preview only reads: it goes on without the journal (and says so through the plan's warnings)
        plan, current = build_plan(args, engine, policy)
        return Outcome(
            plan_json(plan),
            _with_warnings(render_plan(plan, verbose=args.verbose), current)
            + "\n\nThis was a preview: nothing was removed.",
        )
    unfinished = journal.unfinished(engine.where)
    if unfinished is not None and unfinished.in_progress and not args.apply:
        return Outcome(
            {"in_progress": unfinished.id, "pid": unfinished.pid},
            f"A clean is running right now (pid {unfinished.pid}):\n{render_run(unfinished)}\n"
            "wait for it to finish, then look again; nothing was removed by this command.",
        )
    if unfinished is not None:
        text = "An earlier clean did not finish (killed, or the engine went away):\n" + render_run(unfinished)
        if args.abandon:
            journal.abandon(unfinished.id)
            return Outcome(
                {"abandoned": unfinished.id}, text + "\nabandoned: its pending steps will not run."
            )
        if args.plan_id and args.plan_id != unfinished.plan_id:
            # finishing someone else's run is not what the caller saw and agreed to (`tamer fleet clean`)
            raise PlanRefused(
                f"an earlier clean of plan {unfinished.plan_id} (journal run {unfinished.id}) did not "
                f"finish on this host, so plan {args.plan_id} was not applied; finish it with "
                "`tamer clean --apply` or forget it with `tamer clean --abandon`, then plan again; "
                "nothing was removed"
            )
        if not args.apply:
            return Outcome(
                {"unfinished": unfinished.id, "plan": unfinished.plan.to_json()},
                text + "\n`tamer clean --apply` finishes it (re-checking each object); "
                "`tamer clean --abandon` forgets it.",
            )
        progress = Progress("cleaning", enabled=not (args.json or args.quiet))
        try:
            result = apply_plan(
                engine,
                unfinished.plan,
                journal,
                resume_run=unfinished.id,
                read_current=lambda e: read_current(args, e),
                backup=backup_before_removal,
                progress=progress,
                narrow_by=policy if args.policy else None,
            )
        finally:
            progress.close()
        return Outcome(result_json(result), text + "\n\n" + render_apply(result), result.exit_code)
    if args.abandon:
        return Outcome({"abandoned": None}, "no unfinished clean to abandon")

    fresh: Current | None = None
    if args.plan_file:
        plan = open_plan(saved, plan_key(), f"the plan file {args.plan_file}")
    else:
        plan, fresh = build_plan(args, engine, policy)
    if args.plan_id and args.plan_id != plan.plan_id:
        source = f"the plan file {args.plan_file}" if args.plan_file else "a plan made now"
        raise PlanRefused(
            f"{source} is plan {plan.plan_id}, not plan {args.plan_id} that was shown: the host (or the "
            "saved plan) changed since; look again with `tamer plan`; nothing was removed"
        )
    preview = render_plan(plan, verbose=args.verbose)
    if fresh is not None:
        preview = _with_warnings(preview, fresh)
    if not args.apply:
        return Outcome(
            plan_json(plan),
            preview + "\n\nThis was a preview: nothing was removed. `tamer clean --apply` does it.",
        )
    if not plan.actions:
        return Outcome({"plan": plan_json(plan), "result": None}, preview)
    if not args.yes:
        print(preview)
        answer = input(f"\nRemove these {len(plan.actions)} object(s)? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            return Outcome({"plan": plan_json(plan), "result": None}, "nothing was removed")
        preview = ""
        # the answer may come minutes later: what the policy keeps by then (a container renamed into
        # keep_names, a volume used meanwhile) is judged on the host as it is now, not as it was asked about
        fresh = None

    def current_for_apply(e: Engine) -> Current:
        # a plan made a moment ago in this process was derived from exactly this; a saved one is re-read
        return fresh if fresh is not None else read_current(args, e)

    progress = Progress("cleaning", enabled=not (args.json or args.quiet))
    try:
        result = apply_plan(
            engine,
            plan,
            journal,
            read_current=current_for_apply,
            backup=backup_before_removal,
            progress=progress,
            # a saved plan carries its own policy; one named beside it narrows it, never goes unheard
            narrow_by=policy if args.policy and args.plan_file else None,
        )
    finally:
        progress.close()
    data = {"plan": plan_json(plan), **result_json(result)}
    return Outcome(data, (preview + "\n\n" if preview else "") + render_apply(result), result.exit_code)


def _with_warnings(text: str, current: Current) -> str:
    return "\n".join([text, *(f"warning: {w}" for w in current.inventory.warnings)])


def _write_plan_file(path: str, text: str) -> None:
    """Save a plan at `path`: a new file, or in place of an earlier saved plan; never over anything else
    (a typo'd -o or a link planted in /tmp must not cost a file), never through a symlink. Written to a
    temporary file beside it, then renamed over, so a kill leaves the old file or the new one whole."""
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(
            f"can't write the plan to {path}: {exc.strerror or exc}; expected a writable file path "
            "(its folder must exist); nothing was removed"
        ) from None
    if st is not None:
        old: Any = None
        if stat.S_ISREG(st.st_mode):
            try:
                old = json.loads(target.read_text())
            except (OSError, ValueError):
                old = None
        if not (isinstance(old, dict) and old.get("format") == PLAN_FORMAT):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a plan saved by tamer"
            raise UsageError(
                f"{path} exists and is {kind}; expected a new file or an earlier `tamer plan -o` "
                "file, so nothing else is overwritten; pick another path; nothing was removed"
            )
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(
            f"can't write the plan to {path}: {exc.strerror or exc}; expected a writable file path "
            "(its folder must exist); nothing was removed"
        ) from None


MAX_PLAN_BYTES = 256 << 20
"""A saved plan of 10,000 actions is some 10 MB; past this it is not one (and is never read whole)."""


def _read_plan_file(path: str) -> Any:
    """The JSON saved at `path` (its seal is checked by open_plan). A FIFO, a device or a folder there is
    refused without reading it (a FIFO hung the command, /dev/zero filled its memory), as is a file past
    MAX_PLAN_BYTES. Read before anything else, so a bad file leaves no trace (not even a state folder)."""
    from tamer.regular_files import NotARegularFile, read_regular

    try:
        raw = read_regular(path, MAX_PLAN_BYTES)
    except NotARegularFile:
        raise UsageError(
            f"can't use the plan file {path}: it is not a regular file (a FIFO, a device or a folder); "
            "expected a file saved by `tamer plan -o FILE`; nothing was removed"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"can't use the plan file {path}: {exc.strerror or exc}; save one with `tamer plan -o FILE`"
        ) from None
    if raw is None:
        raise UsageError(
            f"can't use the plan file {path}: it is over {MAX_PLAN_BYTES} bytes, far more than a saved "
            "plan; expected a file saved by `tamer plan -o FILE`; nothing was removed"
        )
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(
            f"can't use the plan file {path}: {exc}; save one with `tamer plan -o FILE`"
        ) from None


def run_policy_check(args: argparse.Namespace) -> Outcome:
    policy = read_policy_file(args.file)
    summary = {k: str(v) if v is not None else None for k, v in dataclasses.asdict(policy).items()}
    return Outcome({"valid": True, "policy": summary}, f"{args.file}: valid")


def run_watch(args: argparse.Namespace) -> Outcome:
    back = parse_duration(args.since) if args.since else None  # bad input fails before the engine is asked
    engine = connect(args.host)
    history = History(engine.where)
    # the engine's clock, not ours: events carry its times, and `until` in our clock would make --once wait
    # for as long as ours runs ahead of it (forever, for a clock a century ahead)
    engine_now = parse_time(engine.info().get("SystemTime"))
    now = engine_now.timestamp() if engine_now is not None else time.time()
    since = now - back.total_seconds() if back is not None else history.resume_from(now)
    until = now if args.once else None
    recorded = 0
    last = since
    if not args.once and not args.json:
        print(f"watching {engine.where} for container, volume and image use (Ctrl-C stops)", file=sys.stderr)
    try:
        for event in engine.events(since=since, until=until):
            uses = uses_from_event(event)
            at = float(event.get("timeNano", 0)) / 1e9 or float(event.get("time", 0))
            last = max(last, at)
            recorded += history.record(uses, cursor=last)
    except KeyboardInterrupt:
        pass
    if args.once:
        history.record([], cursor=until)
    return Outcome(
        {"recorded": recorded, "cursor": last},
        f"recorded {recorded} uses from the engine's events into {history.path}",
    )
