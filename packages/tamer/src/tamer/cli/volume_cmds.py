"""`tamer volume ...`, `tamer adopt` and `tamer run`: volumes where you want them.

Parses arguments, calls tamer.volumes, renders the result; nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tamer.cli.app import Outcome, _Parser, parent_parser
from tamer.engine import connect
from tamer.errors import UsageError
from tamer.report.table import safe_cell  # names from archives and volumes reach the terminal: no escapes
from tamer.report.units import human_bytes
from tamer.volumes import adopt as ad
from tamer.volumes import backup as bk
from tamer.volumes import guard, place
from tamer.volumes import move as mv
from tamer.volumes import run as run_mod


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    vol = sub.add_parser("volume", parents=[common], help="place, move, back up and restore named volumes")
    vsub = vol.add_subparsers(dest="volume_command", metavar="ACTION", parser_class=type(vol))
    vol.set_defaults(handler=lambda a: _help(vol))

    create = vsub.add_parser("create", parents=[common], help="a named volume whose data lives at PATH")
    create.add_argument("name")
    create.add_argument(
        "--at", metavar="PATH", help="absolute folder for the data, on any drive (made if missing)"
    )
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument(
        "--allow-tmpfs", action="store_true", help="accept a folder on tmpfs/ramfs (lost at reboot)"
    )
    create.set_defaults(handler=run_create)

    ls = vsub.add_parser(
        "ls", parents=[common], help="volumes and where their data lives (default, bind, symlink)"
    )
    ls.set_defaults(handler=run_ls)

    backup = vsub.add_parser(
        "backup", parents=[common], help="tar + zstd with a checksum manifest, mode 0600"
    )
    backup.add_argument("name")
    backup.add_argument("-o", "--output", required=True, metavar="FILE")
    backup.add_argument(
        "--pause-users",
        action="store_true",
        help="pause the running containers using it while reading (a consistent copy)",
    )
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    backup.add_argument(
        "--writer",
        choices=("auto", "compiled", "tar", "python"),
        default="auto",
        help="archive writer: auto takes tamer's compiled one when built (compiled), else GNU tar when "
        "installed (tar), else tamer's pure-Python one (python)",
    )
    backup.set_defaults(handler=run_backup)

    verify = vsub.add_parser("verify", parents=[common], help="re-read a backup and check every checksum")
    verify.add_argument("file")
    verify.set_defaults(handler=run_verify)

    restore = vsub.add_parser("restore", parents=[common], help="restore a backup into a new or empty volume")
    restore.add_argument("file")
    restore.add_argument("name")
    restore.add_argument("--at", metavar="PATH", help="place the new volume's data at PATH")
    restore.add_argument(
        "--privileged",
        action="store_true",
        help="also restore set-user/group-id bits and security.*/trusted.* xattrs "
        "(dropped and listed otherwise)",
    )
    restore.add_argument(
        "--allow-tmpfs", action="store_true", help="accept an --at folder on tmpfs/ramfs (lost at reboot)"
    )
    restore.set_defaults(handler=run_restore)

    move = vsub.add_parser(
        "move",
        parents=[common, _acting()],
        help="move a volume's data to PATH, verified, "
        "with its containers re-created; previews unless --apply",
    )
    move.add_argument("name")
    move.add_argument(
        "--to", metavar="PATH", help="new, empty folder for the data (any drive); not needed with --rollback"
    )
    move.add_argument("--stop-users", action="store_true", help="consent to stop (and restart) running users")
    move.add_argument("--purge-source", action="store_true", help="delete the old data after a verified move")
    move.add_argument("--rollback", action="store_true", help="undo an unfinished (killed or failed) move")
    move.add_argument(
        "--allow-tmpfs",
        action="store_true",
        help="accept a destination on tmpfs/ramfs (its data is lost at reboot)",
    )
    move.set_defaults(handler=run_move)

    adopt = sub.add_parser(
        "adopt",
        parents=[common, _acting()],
        help="name a container's anonymous volumes and re-create it using them; previews unless --apply",
    )
    adopt.add_argument("container")
    adopt.add_argument("--at", metavar="DIR", help="place each new named volume's data in DIR/<volume name>")
    adopt.add_argument(
        "--name-for",
        action="append",
        default=[],
        metavar="PATH=NAME",
        help="the volume name for the container path PATH (default CONTAINER-<path>)",
    )
    adopt.add_argument(
        "--allow-tmpfs", action="store_true", help="accept a DIR on tmpfs/ramfs (lost at reboot)"
    )
    adopt.add_argument(
        "--rollback", action="store_true", help="undo an unfinished (killed or failed) adoption"
    )
    adopt.set_defaults(handler=run_adopt)

    register_run(sub, common)


def _acting() -> argparse.ArgumentParser:
    p = parent_parser()
    p.add_argument("--apply", action="store_true", help="act (without it: print the plan and change nothing)")
    p.add_argument("--yes", "-y", action="store_true", help="confirm --apply when not at a terminal")
    return p


def _help(parser: argparse.ArgumentParser) -> Outcome:
    return Outcome(None, parser.format_help())


def needs_consent(args: argparse.Namespace) -> bool:
    """True when the command should act (--apply); raises UsageError for --apply without a terminal or --yes."""
    if not getattr(args, "apply", False):
        return False
    if not getattr(args, "yes", False) and not sys.stdin.isatty():
        raise UsageError(
            "--apply without a terminal also needs --yes; expected both, so a script never changes "
            "things by accident; add --yes"
        )
    return True


def _labels(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, _, value = p.partition("=")
        if not key:  # KEY alone is a label with an empty value, as in docker and `tamer run`
            raise UsageError(f"label {p!r} has no key; expected KEY=VALUE or KEY, e.g. --label team=data")
        out[key] = value
    return out


def run_create(args: argparse.Namespace) -> Outcome:
    labels = _labels(args.label)
    engine = connect(args.host)
    plan = place.plan_create(engine, args.name, args.at, labels, allow_volatile=args.allow_tmpfs)
    vol = place.apply_create(engine, plan)
    vp = place.volume_place(vol)
    lines = [f"created volume {plan.name}, data {place.describe_place(vp)}"]
    if plan.at is not None:
        lines.append(
            f"free on that drive: {human_bytes(plan.at.free_bytes)} of {human_bytes(plan.at.total_bytes)}"
        )
    lines += [f"note: {n}" for n in plan.notes]
    lines.append(f"use it: docker run -v {plan.name}:/path/in/container ...")
    return Outcome(
        {
            "volume": plan.name,
            "placement": vp.placement,
            "data_path": vp.data_path,
            "free_bytes": plan.at.free_bytes if plan.at else None,
            "notes": list(plan.notes),
        },
        "\n".join(lines),
    )


def run_ls(args: argparse.Namespace) -> Outcome:
    engine = connect(args.host)
    places = sorted((place.volume_place(v) for v in engine.volumes()), key=lambda p: p.name)
    rows = [volume_places_table(places)]
    symlinked = [p.name for p in places if p.placement == "symlink"]
    if symlinked:
        rows.append(
            f"\n{len(symlinked)} volume(s) placed with a symlink in the engine's volumes folder (the "
            "essay's trick): `tamer volume move NAME --to PATH` turns each into a bind placement"
        )
    return Outcome({"volumes": [p.__dict__ for p in places]}, "\n".join(rows))


def volume_places_table(places: list[place.VolumePlace]) -> str:
    """`tamer volume ls`'s table: columns as wide as their widest cell (an anonymous volume's name is 64
    characters); a bind folder's path is any text its creator chose, so control characters show as '?'."""
    from tamer.report.table import render_table

    return render_table(
        ["NAME", "PLACEMENT", "DATA"], [[p.name, p.placement, p.data_path or "-"] for p in places]
    )


def _require_root(engine: Any, action: str, *, write: bool) -> None:
    """Say what needs root before anything is read or changed (the data-root is root's)."""
    root = place.data_root(engine)
    if os.path.isdir(root):
        guard.require_data_access(root, action, write=write)


def _pending_outcome(what: str, pending: dict[str, Any] | None) -> Outcome:
    """What `--rollback` without --apply shows: the unfinished operation and the steps it did."""
    if pending is None:
        return Outcome({"pending": None}, f"no unfinished {what}")
    done = ", ".join(pending["done"]) or "nothing"
    return Outcome({"pending": pending}, f"unfinished {what}; done: {done}; `--rollback --apply` undoes it")


def _rolled_back_outcome(did: list[str]) -> Outcome:
    return Outcome({"rolled_back": did}, "rolled back:\n" + "\n".join(f"  {d}" for d in did))


def run_backup(args: argparse.Namespace) -> Outcome:
    engine = connect(args.host)
    _require_root(engine, "volume backup", write=False)
    r = bk.backup_volume(
        engine,
        args.name,
        Path(args.output),
        pause_users=args.pause_users,
        overwrite=args.force,
        writer=args.writer,
    )
    text = [
        f"backed up volume {r.volume}: {r.files} files, {human_bytes(r.bytes)} -> {r.path} "
        f"({human_bytes(r.archive_bytes)}, mode 0600)",
        f"sha256 {r.sha256}",
    ]
    if r.paused:
        text.append(f"paused and resumed {len(r.paused)} container(s) while reading")
    text += [f"warning: {safe_cell(w)}" for w in r.warnings]
    return Outcome(_result_json(r), "\n".join(text))


def _result_json(r: bk.BackupResult) -> dict[str, Any]:
    return {
        "path": str(r.path),
        "volume": r.volume,
        "files": r.files,
        "entries": r.entries,
        "bytes": r.bytes,
        "sha256": r.sha256,
        "archive_bytes": r.archive_bytes,
        "paused": list(r.paused),
        "consistent": getattr(r, "consistent", None),
        "warnings": list(r.warnings),
    }


def run_verify(args: argparse.Namespace) -> Outcome:
    r = bk.verify_backup(Path(args.file))
    return Outcome(
        _result_json(r),
        f"ok: {r.path} holds volume {safe_cell(r.volume)}: {r.files} files, "
        f"{human_bytes(r.bytes)}, every checksum matches (archive sha256 {r.sha256})",
    )


def run_restore(args: argparse.Namespace) -> Outcome:
    engine = connect(args.host)
    _require_root(engine, "volume restore", write=True)
    plan = bk.plan_restore(engine, Path(args.file), args.name, at=args.at, allow_volatile=args.allow_tmpfs)
    r = bk.apply_restore(engine, plan, privileged=args.privileged)
    how = "new" if r.created else "empty"
    lines = [
        f"restored {r.files} files ({human_bytes(r.bytes)}) into {how} volume {r.volume} at {r.data_path}; "
        "every checksum verified"
    ]
    lines += [f"warning: {safe_cell(w)}" for w in r.warnings]
    return Outcome(r.__dict__, "\n".join(lines))


# -- tamer run ------------------------------------------------------------------
class _CommandAfterDashes(_Parser):
    """`tamer run IMAGE [options] -- COMMAND ARGS...`: everything after `--` is the container's command.

    Options may come before or after IMAGE (as the issue's usage writes them);
    argparse alone cannot tell a trailing command from misplaced arguments.
    """

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        argv = list(args or [])
        command: list[str] = []
        if "--" in argv:
            cut = argv.index("--")
            argv, command = argv[:cut], argv[cut + 1 :]
        ns, extras = super().parse_known_args(argv, namespace)
        ns.container_command = command
        return ns, extras


def register_run(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="run a container with every declared VOLUME named (and placed)",
        description="Like `docker run -d`, but every VOLUME the image declares gets a named "
        "volume NAME-<path> (on DIR with --at), the name is explicit, a restart policy and log "
        "rotation are on, and -v mistakes that leave data in anonymous volumes are refused.",
    )
    run.add_argument("image")
    run.__class__ = _CommandAfterDashes
    run.add_argument("--name", required=True, help="the container's name (required: no generated names)")
    run.add_argument("-v", "--volume", action="append", default=[], metavar="SOURCE:TARGET[:MODE]")
    run.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CONTAINER[/PROTO]")
    run.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--at", metavar="DIR", help="place each new named volume's data in DIR/<volume name>")
    run.add_argument(
        "--name-for",
        action="append",
        default=[],
        metavar="PATH=NAME",
        help="the volume name for a declared VOLUME path (default NAME-<path>)",
    )
    run.add_argument(
        "--allow-tmpfs", action="store_true", help="accept a DIR on tmpfs/ramfs (lost at reboot)"
    )
    run.add_argument(
        "--restart",
        default=run_mod.DEFAULT_RESTART,
        help="no, always, unless-stopped (default), on-failure[:N]",
    )
    run.add_argument(
        "--no-log-rotation",
        action="store_true",
        help="keep the engine's log settings (default: json-file, 3 files of 10 MB)",
    )
    run.add_argument("--network")
    run.add_argument("-w", "--workdir")
    run.add_argument("-u", "--user")
    run.add_argument("--entrypoint")
    run.add_argument("--hostname")
    run.set_defaults(handler=run_run)


def _at(cp: place.CreatePlan | None) -> str | None:
    return cp.at.path if cp is not None and cp.at is not None else None


def run_run(args: argparse.Namespace) -> Outcome:
    command = list(getattr(args, "container_command", None) or [])
    req = run_mod.RunRequest(
        image=args.image,
        name=args.name,
        command=tuple(command),
        volumes=tuple(args.volume),
        ports=tuple(args.publish),
        env=tuple(args.env),
        labels=tuple(args.label),
        at=args.at,
        restart=args.restart,
        log_rotation=not args.no_log_rotation,
        network=args.network,
        workdir=args.workdir,
        user=args.user,
        entrypoint=args.entrypoint,
        hostname=args.hostname,
        name_for=tuple(args.name_for),
        allow_volatile=args.allow_tmpfs,
    )
    engine = connect(args.host)
    plan = run_mod.plan_run(engine, req)
    cid = run_mod.apply_run(engine, plan)
    made = {cp.name: cp for cp in plan.create}
    lines = [f"started container {plan.name} ({cid[:12]}) from {plan.image}"]
    for vs in plan.mounts:
        if vs.kind == "bind":
            where = f"host folder {vs.source}"
        elif vs.source in made:
            cp = made[vs.source]
            where = f"new volume {vs.source}" + (f" at {cp.at.path}" if cp.at else "")
        else:
            where = f"existing volume {vs.source}"
        lines.append(f"  {vs.target:<20} <- {where}")
    lines += [f"note: {n}" for n in plan.notes]
    data = {
        "container": plan.name,
        "id": cid,
        "image": plan.image,
        "notes": list(plan.notes),
        "mounts": [
            {
                "source": vs.source,
                "target": vs.target,
                "kind": vs.kind,
                "mode": vs.mode,
                "created": vs.source in made,
                "at": _at(made.get(vs.source)),
            }
            for vs in plan.mounts
        ],
    }
    return Outcome(data, "\n".join(lines))


# -- tamer volume move ------------------------------------------------------------
def run_move(args: argparse.Namespace) -> Outcome:
    if not args.rollback and not args.to:
        # optional only so that `--rollback`, which every failed move's message names, works on its own
        raise UsageError(
            "volume move needs --to PATH: the new, empty folder for the data (or --rollback to undo an "
            "unfinished move); nothing was changed"
        )
    engine = connect(args.host)
    acting = needs_consent(args)
    if args.rollback:
        pending = mv.pending_move(engine, args.name)
        if not acting:
            what = (
                f"move of volume {args.name}"
                if pending is None
                else f"move of {args.name} to {pending['dest']}"
            )
            return _pending_outcome(what, pending)
        return _rolled_back_outcome(mv.rollback_move(engine, args.name))
    plan = mv.plan_move(
        engine,
        args.name,
        args.to,
        stop_users=args.stop_users,
        purge_source=args.purge_source,
        allow_volatile=args.allow_tmpfs,
    )
    if not acting:
        return Outcome(_move_plan_json(plan), _render_move_plan(plan) + "\n(preview: add --apply to move)")
    r = mv.apply_move(engine, plan, purge_source=args.purge_source)
    lines = [f"moved volume {r.volume}: {r.files} files, {human_bytes(r.bytes)} now at {r.dest} (verified)"]
    if r.recreated:
        lines.append(f"re-created {', '.join(r.recreated)}; started {', '.join(r.started) or 'none'}")
    if r.source_kept:
        lines.append(
            f"the old data stays at {r.source_kept} until you remove it (or rerun with --purge-source)"
        )
    lines += [f"warning: {safe_cell(w)}" for w in r.warnings]
    return Outcome(r.__dict__, "\n".join(lines))


def _move_plan_json(plan: mv.MovePlan) -> dict[str, Any]:
    return {
        "volume": plan.volume,
        "from": plan.source.data_path,
        "placement": plan.source.placement,
        "to": plan.dest,
        "bytes": plan.size.bytes,
        "files": plan.size.files,
        "free_bytes": plan.free_bytes,
        "users": [{"name": u.name, "running": u.running} for u in plan.users],
        "keeper": plan.keeper,
        "steps": list(plan.steps),
        "resume": plan.resume is not None,
        "notes": list(plan.notes),
    }


def _render_move_plan(plan: mv.MovePlan) -> str:
    lines = [
        f"move volume {plan.volume}: {plan.size.files} files, {human_bytes(plan.size.bytes)}",
        f"  from {plan.source.data_path} ({plan.source.placement})",
        f"  to   {plan.dest}",
    ]
    if plan.free_bytes:
        lines.append(f"  free there: {human_bytes(plan.free_bytes)}")
    for u in plan.users:
        lines.append(f"  user {u.name}: {'running: stop, re-create, start' if u.running else 're-create'}")
    lines.append("steps: " + ", ".join(plan.steps))
    if plan.keeper:
        lines.append(f"the old data is kept in volume {plan.keeper} until --purge-source")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


# -- tamer adopt ------------------------------------------------------------------
def run_adopt(args: argparse.Namespace) -> Outcome:
    engine = connect(args.host)
    acting = needs_consent(args)
    if args.rollback:
        pending = ad.pending_adopt(engine, args.container)
        if not acting:
            return _pending_outcome(f"adoption of {args.container}", pending)
        return _rolled_back_outcome(ad.rollback_adopt(engine, args.container))
    plan = ad.plan_adopt(
        engine, args.container, at=args.at, name_for=tuple(args.name_for), allow_volatile=args.allow_tmpfs
    )
    items: list[dict[str, Any]] = [
        {
            "anonymous": a.anonymous,
            "path": a.path,
            "volume": a.create.name,
            "at": a.create.at.path if a.create.at else None,
        }
        for a in plan.adoptions
    ]
    data: dict[str, Any] = {
        "container": plan.container,
        "running": plan.running,
        "adoptions": items,
        "notes": list(plan.notes),
        "applied": False,
    }
    if not plan.adoptions:
        return Outcome(data, f"{plan.container} has no anonymous volumes: nothing to adopt")
    lines = [f"adopt the anonymous volumes of {plan.container}:"]
    lines += [
        f"  {a['path']:<20} {a['anonymous'][:12]} -> {a['volume']}" + (f" at {a['at']}" if a["at"] else "")
        for a in items
    ]
    lines += [f"note: {n}" for n in plan.notes]
    if not acting:
        return Outcome(data, "\n".join(lines) + "\n(preview: add --apply to adopt)")
    new_id = ad.apply_adopt(engine, plan)
    data.update(applied=True, id=new_id)
    lines.append(
        f"done: {plan.container} re-created ({new_id[:12]}) with named volumes, data copied and verified"
    )
    return Outcome(data, "\n".join(lines))
