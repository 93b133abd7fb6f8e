"""`tamer schedule install|remove|list`: tamer on systemd timers (clean, record) and a watch service.

The units name everything absolutely (the tamer that is running, the policy's real path, the state
folder) so the timer does what this command line would do, whoever's shell it started from. Nothing
here runs systemctl: the command prints the line to run (systemd may not be the init here, and
enabling a timer is the user's call).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import Any

from tamer.cli.app import COMMANDS, Outcome, parent_parser
from tamer.errors import UsageError

EXIT_CODES = "exit codes: 0 done (also nothing to do), 1 error, 2 bad input (nothing written)"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    where = parent_parser()
    where.add_argument(
        "--unit-dir",
        metavar="DIR",
        help="where the units go (default: /etc/systemd/system as root, else ~/.config/systemd/user)",
    )
    manager = where.add_mutually_exclusive_group()
    manager.add_argument(
        "--user", dest="manager", action="store_const", const="user", help="units for `systemctl --user`"
    )
    manager.add_argument(
        "--system", dest="manager", action="store_const", const="system", help="units for the system manager"
    )
    where.set_defaults(manager=None)

    schedule = sub.add_parser(
        "schedule",
        parents=[common],
        help="run clean, record and watch from systemd timers",
        epilog=EXIT_CODES,
    )
    ssub = schedule.add_subparsers(dest="schedule_command", metavar="ACTION")
    install = ssub.add_parser(
        "install",
        parents=[common, where],
        help="write tamer's systemd service and timer units",
        epilog=EXIT_CODES,
    )
    install.add_argument(
        "--policy", metavar="FILE", required=True, help="the TOML policy the timed clean uses"
    )
    install.add_argument(
        "--every", metavar="PERIOD", required=True, help="clean every 1h, 6h, 1d, 1w (or 30m, 3d...)"
    )
    install.add_argument(
        "--record-every",
        metavar="PERIOD",
        default="1h",
        help="take a `tamer record` snapshot this often (default 1h; 'off' for none)",
    )
    install.add_argument("--no-watch", action="store_true", help="no tamer-watch.service")
    install.add_argument(
        "--print", dest="print_only", action="store_true", help="show the units; write nothing"
    )
    install.set_defaults(handler=run_install)

    remove = ssub.add_parser(
        "remove",
        parents=[common, where],
        help="remove the units tamer wrote (and only those)",
        epilog=EXIT_CODES,
    )
    remove.add_argument("--print", dest="print_only", action="store_true", help="list them; remove nothing")
    remove.set_defaults(handler=run_remove)

    listing = ssub.add_parser("list", parents=[common, where], help="list the units tamer wrote")
    listing.set_defaults(handler=run_list)
    schedule.set_defaults(handler=_needs_action)


def _needs_action(args: argparse.Namespace) -> Outcome:
    raise UsageError("tamer schedule needs an action: install, remove or list (see `tamer schedule --help`)")


def _is_user(args: argparse.Namespace) -> bool:
    if args.manager is not None:
        return bool(args.manager == "user")
    return os.geteuid() != 0


def _unit_dir(args: argparse.Namespace, user: bool) -> Path:
    from tamer.schedule.files import default_unit_dir

    if args.unit_dir is None:
        return default_unit_dir(user)
    if not args.unit_dir.strip() or "\0" in args.unit_dir:
        raise UsageError("--unit-dir needs a folder, got an empty one (nothing was written)")
    return Path(os.path.abspath(os.path.expanduser(args.unit_dir)))


def tamer_command() -> tuple[str, ...]:
    """How a unit starts the tamer that is running now: its console script, else `python -m tamer`."""
    script = sys.argv[0] if sys.argv else ""
    if os.path.basename(script) == "tamer" and os.path.isfile(script) and os.access(script, os.X_OK):
        # not realpath: a pipx or package-manager symlink keeps pointing at the installed tamer
        return (os.path.abspath(script),)
    return (os.path.abspath(sys.executable), "-m", "tamer")


def _policy_path(given: str) -> str:
    """The policy's real path, after checking that it is a valid policy only its owner can change."""
    from tamer.policy import read_policy_file

    if not given.strip():
        raise UsageError("--policy needs a file, got an empty path (nothing was written)")
    path = os.path.realpath(os.path.expanduser(given))
    if not os.path.exists(path):
        raise UsageError(
            f"policy file {given} does not exist; give the path of a TOML policy "
            "(`tamer policy show` prints the default to start from); nothing was written"
        )
    if not os.path.isfile(path):
        raise UsageError(
            f"policy {given} is not a regular file; expected a TOML policy file (nothing was written)"
        )
    read_policy_file(path)  # a PolicyError (line-precise, exit 2) before anything is written
    _check_policy_trust(path)
    return path


def _check_policy_trust(path: str) -> None:
    """The timed clean runs unattended (as root, for system units): whoever may rewrite the policy,
    or replace it or any folder above it, decides what it removes. So, as sshd's StrictModes asks of
    authorized_keys: the file and every folder up to / must belong to this user or root, the file
    must be writable by no one else, and no folder may let others swap what is in it (writable by
    its group or everyone without the sticky bit)."""
    me = os.geteuid()
    st = os.stat(path)
    if st.st_uid not in (me, 0):
        raise UsageError(
            f"policy file {path} belongs to uid {st.st_uid}, not to you or root; whoever owns it would decide "
            "what the timed clean removes: copy it somewhere of yours (nothing was written)"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"policy file {path} is writable by its group or by everyone; anyone who can write it would decide "
            f"what the timed clean removes: run `chmod go-w {path}` (nothing was written)"
        )
    folder = os.path.dirname(path)
    while True:
        st = os.stat(folder)
        if st.st_uid not in (me, 0):
            raise UsageError(
                f"the folder {folder} above policy file {path} belongs to uid {st.st_uid}, not to you or root, "
                "who could replace the policy (and so decide what the timed clean removes); move the policy "
                "to a folder of yours or root's (nothing was written)"
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            who = "everyone" if st.st_mode & stat.S_IWOTH else "its group"
            raise UsageError(
                f"the folder {folder} above policy file {path} is writable by {who}, so they could replace "
                f"the policy; move it to a folder only you can write, or `chmod go-w {folder}` "
                "(nothing was written)"
            )
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def _environment(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    # The state folder is pinned: the timed clean must read the usage history `tamer watch` records
    # (LRU rules) and write the journal the user's `tamer clean` looks at, wherever systemd starts it
    # (as tamer.state.state_dir resolves it, without creating it: --print writes nothing).
    state = os.environ.get("TAMER_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state"), "tamer"
    )
    env = [("TAMER_STATE_DIR", os.path.abspath(state))]
    host = args.host or os.environ.get("DOCKER_HOST")
    if not host:
        # a docker context in effect here (DOCKER_CONTEXT, the docker config's currentContext) is not in
        # systemd's environment: its engine is pinned, or the timer would clean the default socket's
        from tamer.engine.context import DEFAULT_HOST, resolve_host

        resolved = resolve_host(None)  # a context that cannot be used: usage error, nothing written
        host = None if resolved == DEFAULT_HOST else resolved
    if host:
        env.append(("DOCKER_HOST", host))
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        if os.environ.get(name):
            env.append((name, os.environ[name]))
    return tuple(env)


def _systemd_runs_here() -> bool:
    return os.path.isdir("/run/systemd/system")  # what sd_booted() checks


def run_install(args: argparse.Namespace) -> Outcome:
    from tamer.schedule.files import SYSTEM_UNIT_DIR, check_writable, install_units
    from tamer.schedule.units import Setup, make_units, parse_every, systemctl, to_enable

    every = parse_every(args.every)
    record_every = None
    if args.record_every.strip().lower() not in ("off", "none", "no"):
        record_every = parse_every(args.record_every, "--record-every")
    user = _is_user(args)
    unit_dir = _unit_dir(args, user)
    policy = _policy_path(args.policy)
    has_record = any(c.name == "record" for c in COMMANDS)
    setup = Setup(
        tamer=tamer_command(),
        policy=policy,
        every=every,
        record_every=record_every if has_record else None,
        watch=not args.no_watch,
        user=user,
        environment=_environment(args),
    )
    units = make_units(setup)
    enable = to_enable(units)
    commands = [systemctl(user, "daemon-reload"), systemctl(user, "enable", "--now", *enable)]
    data: dict[str, Any] = {
        "unit_dir": str(unit_dir),
        "manager": "user" if user else "system",
        "units": [{"name": u.name, "path": str(unit_dir / u.name), "text": u.text} for u in units],
        "enable": " && ".join(commands),
        "written": [],
        "removed": [],
    }
    notes = []
    if record_every is not None and not has_record:
        notes.append("(no tamer-record units: this tamer has no `record` command)")
    if (
        not user
        and setup.tamer[0].startswith(os.path.expanduser("~") + os.sep)
        and os.path.expanduser("~") != "/"
    ):
        notes.append(
            f"note: the units start {setup.tamer[0]}, inside a home folder; a system unit runs it as root"
        )
    if args.print_only:
        check_writable(unit_dir, units)  # say now what install would refuse
        text = "\n".join(f"# {unit_dir / u.name}\n{u.text}" for u in units)
        text += f"\n# then: {data['enable']}\n# (--print: nothing was written)"
        return Outcome({**data, "printed": True}, "\n".join([text, *notes]))
    if args.unit_dir is None and not user and not SYSTEM_UNIT_DIR.is_dir():
        raise UsageError(
            f"{SYSTEM_UNIT_DIR} does not exist: is systemd installed here? pass --unit-dir DIR to write the "
            "units elsewhere, or --print to see them (nothing was written)"
        )
    changes = install_units(unit_dir, units)
    data.update(written=changes.written, removed=changes.removed, links_removed=changes.links_removed)
    lines = [f"wrote {len(changes.written)} units to {unit_dir}:"]
    lines += [f"  {name}" for name in changes.written]
    if changes.removed:
        lines.append(f"removed tamer units no longer wanted: {', '.join(changes.removed)}")
    lines.append(f"clean: every {every.text} ({_timer_words(every)}), policy {policy}")
    lines.append("to start them, run:")
    lines.append(f"  {data['enable']}")
    if user:
        lines.append("  (and `loginctl enable-linger` so they run while you are logged out)")
    if not _systemd_runs_here():
        lines.append("(systemd is not running on this machine: the units take effect where it runs)")
    return Outcome(data, "\n".join([*lines, *notes]))


def _timer_words(every: Any) -> str:
    from tamer.schedule.units import systemd_span

    when = (
        f"OnCalendar={every.calendar}, missed runs caught up at boot"
        if every.calendar
        else "counted from the last run"
    )
    return f"{when}, up to {systemd_span(every.random_delay_s)} random delay"


def run_remove(args: argparse.Namespace) -> Outcome:
    from tamer.schedule.files import check_removable, remove_units, tamer_units_in
    from tamer.schedule.units import systemctl

    user = _is_user(args)
    unit_dir = _unit_dir(args, user)
    found = [p.name for p in tamer_units_in(unit_dir)]
    data: dict[str, Any] = {"unit_dir": str(unit_dir), "manager": "user" if user else "system"}
    if not found:
        return Outcome({**data, "removed": []}, f"no units written by tamer in {unit_dir}; nothing removed")
    if args.print_only:
        check_removable(unit_dir)  # say now what remove would refuse
        return Outcome(
            {**data, "would_remove": found, "removed": []},
            f"would remove from {unit_dir}: {', '.join(found)} (--print: nothing removed)",
        )
    changes = remove_units(unit_dir)
    running = [n for n in changes.removed if n.endswith(".timer") or n == "tamer-watch.service"]
    after = [systemctl(user, "stop", *running)] if running else []
    after.append(systemctl(user, "daemon-reload"))
    data.update(removed=changes.removed, links_removed=changes.links_removed, then="; ".join(after))
    lines = [f"removed from {unit_dir}: {', '.join(changes.removed)}"]
    if changes.links_removed:
        lines.append(f"and their enable links: {', '.join(changes.links_removed)}")
    lines += ["then run (stops what is still loaded, forgets the units):", f"  {data['then']}"]
    return Outcome(data, "\n".join(lines))


def run_list(args: argparse.Namespace) -> Outcome:
    from tamer.schedule.files import edited_units, tamer_units_in

    user = _is_user(args)
    unit_dir = _unit_dir(args, user)
    paths = tamer_units_in(unit_dir)
    found = [p.name for p in paths]
    edited = [p.name for p in edited_units(paths)]
    shown = [f"{n} (edited since)" if n in edited else n for n in found]
    text = (
        f"units written by tamer in {unit_dir}: {', '.join(shown)}"
        if found
        else f"no units written by tamer in {unit_dir}"
    )
    return Outcome({"unit_dir": str(unit_dir), "units": found, "edited": edited}, text)
