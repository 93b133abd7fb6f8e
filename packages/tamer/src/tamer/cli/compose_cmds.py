"""`tamer compose check [FILE] [--fix]`: the anonymous-volume trap and its friends, before `up`.

Reads the file (bad input fails before the engine is asked anything), inspects the images it
names on the engine (never pulls), checks (tamer.compose.rules), and with --fix writes a copy
with every anonymous volume named, verified by checking the copy again before it is written.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tamer.cli.app import Outcome
from tamer.errors import TamerError, UsageError

EXIT_CODES = (
    "exit codes: 0 no findings; 1 findings (or the engine could not be asked); 2 bad input: no such file, "
    "not YAML, not a compose file (nothing changed); 3 no findings, but an image could not be inspected "
    "(not on the engine, not built yet) so not everything was checked"
)
_INCOMPLETE = (
    "image-not-on-engine",
    "image-not-built",
    "volumes-from-container",
    "extends-other-file",
    "include-other-file",
    "override-not-read",
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    compose = sub.add_parser(
        "compose",
        parents=[common],
        help="check a compose file for anonymous volumes and more",
        epilog=EXIT_CODES,
    )
    csub = compose.add_subparsers(dest="compose_command", metavar="ACTION")
    check = csub.add_parser(
        "check",
        parents=[common],
        help="flag anonymous volumes, binds into the data-root, no restart policy, no log rotation, no name",
        epilog=EXIT_CODES,
    )
    check.add_argument(
        "file",
        nargs="?",
        default=None,
        help="the compose file or its folder (default: ./compose.yaml and the usual names)",
    )
    check.add_argument(
        "--fix",
        action="store_true",
        help="write FILE.tamer.yaml with every anonymous volume named, and show the diff",
    )
    check.add_argument(
        "-o", "--output", metavar="FILE", help="where --fix writes (same folder; default NAME.tamer.yaml)"
    )
    check.set_defaults(handler=run_check)
    compose.set_defaults(handler=_needs_action)


def _needs_action(args: argparse.Namespace) -> Outcome:
    raise UsageError("tamer compose needs an action: check [FILE] (see `tamer compose --help`)")


def _output_path(args: argparse.Namespace, path: Path) -> Path | None:
    from tamer.compose.files import DEFAULT_NAMES, OVERRIDE_NAMES, check_output, fixed_output_path

    if args.output is not None and not args.fix:
        raise UsageError("--output is where --fix writes; add --fix (nothing was changed)")
    if not args.fix:
        return None
    if args.output is None:
        output = fixed_output_path(path)
    else:
        if not args.output.strip():
            raise UsageError("--output needs a file name (nothing was changed)")
        output = Path(args.output)
        if os.path.dirname(os.path.abspath(output)) != os.path.dirname(os.path.abspath(path)):
            raise UsageError(
                f"--output {args.output} is not in the compose file's folder; relative paths and the project name "
                "follow the file's folder, so the copy goes next to it (nothing was changed)"
            )
    check_output(path, output)  # the original itself, a link, a file not tamer's: refused first
    if args.output is not None and output.name in (*DEFAULT_NAMES, *OVERRIDE_NAMES, ".env"):
        raise UsageError(
            f"--output {args.output}: `docker compose` reads a file of that name by itself (as the project's "
            "file, its override or its variables), so the copy would change what the original does; give "
            "another name, e.g. compose.fixed.yaml (nothing was changed)"
        )
    return output


def run_check(args: argparse.Namespace) -> Outcome:
    from tamer.compose.files import find_compose_file, read_compose
    from tamer.compose.model import build_model
    from tamer.compose.rules import check
    from tamer.report.compose_view import finding_text, render_check

    path = find_compose_file(args.file)
    source = read_compose(path)
    model = build_model(source.data, source.env, source.project_dir, str(path))
    output = _output_path(args, path)

    from tamer.compose.facts import read_facts
    from tamer.engine import connect

    facts = read_facts(connect(args.host), [s.image for s in model.services if s.image])
    findings = check(model, facts) + override_notes(path)
    fix = _fix(source, model, findings, facts, output) if output is not None else None

    counted = [f for f in findings if f.counts]
    exit_code = 1 if counted else (3 if any(f.code in _INCOMPLETE for f in findings) else 0)
    services = [s.name for s in model.services]
    data = {
        "file": str(path),
        "project": model.project,
        "services": services,
        "data_root": facts.data_root,
        "images": {ref: info for ref, info in facts.images.items()},
        "findings": [{**f.to_json(), "message": finding_text(f, model.project)} for f in counted],
        "notes": [
            {**f.to_json(), "message": finding_text(f, model.project)} for f in findings if not f.counts
        ],
        "summary": {
            code: sum(1 for f in counted if f.code == code) for code in dict.fromkeys(f.code for f in counted)
        },
        "fix": None
        if fix is None
        else {
            "output": fix["output"],
            "diff": fix["diff"],
            "volumes": [
                {
                    "service": v.service,
                    "path": v.path,
                    "name": v.key,
                    "engine_name": v.engine_name,
                    "exists": v.existing,
                }
                for v in fix["volumes"]
            ],
        },
    }
    errors = [f"{len(counted)} findings in {path} (see data.findings)"] if counted else None
    containers = {s.name: s.container_name or f"{model.project}-{s.name}-1" for s in model.services}
    text = render_check(str(path), model.project, services, findings, fix, exit_code, containers)
    return Outcome(data, text, exit_code, errors)


def override_notes(path: Path) -> list[Any]:
    """`docker compose` run in the folder also merges compose.override.yaml (or the like) into the
    file it finds by default; that override is not read here, so the check is incomplete."""
    from tamer.compose.files import DEFAULT_NAMES, OVERRIDE_NAMES
    from tamer.compose.rules import Finding

    if path.name not in DEFAULT_NAMES:
        return []
    found = [name for name in OVERRIDE_NAMES if (path.parent / name).exists()]
    return [Finding("override-not-read", None, {"file": str(path.parent / found[0])})] if found else []


def _fix(source: Any, model: Any, findings: Any, facts: Any, output: Path) -> dict[str, Any]:
    from tamer.compose.files import FIX_MARKER, parse_yaml, plain, write_fixed
    from tamer.compose.fix import apply_fix, plan_names, render, unified_diff
    from tamer.compose.model import build_model
    from tamer.compose.rules import check

    planned = plan_names(model, findings, facts.volume_names, facts.compose_volumes)
    if not planned:
        return {"output": None, "diff": "", "volumes": []}
    apply_fix(source.document, planned)
    newline = "\r\n" if "\r\n" in source.text else "\n"
    header = (
        f"{FIX_MARKER} from {source.path.name}: every anonymous volume named; review, then use it instead."
    )
    text = header + newline + render(source.document, source.text)
    # the copy is checked as the original was, before it is written: every volume named, nothing else changed
    again = build_model(
        plain(parse_yaml(text.replace("\r\n", "\n"), str(output)), source.env, str(output)),
        source.env,
        source.project_dir,
    )
    left = [f for f in check(again, facts) if f.code == "anonymous-volume"]
    before = {s.name: {m.target for m in s.mounts} for s in model.services}
    after = {s.name: {m.target for m in s.mounts} for s in again.services}
    lost = {n: before[n] - after.get(n, set()) for n in before if before[n] - after.get(n, set())}
    # each service mounts exactly the volume planned for it (not another service's: a shared node
    # named in place would name it for every service that reaches it)
    mounted = {(s.name, m.target): (m.kind, m.source) for s in again.services for m in s.mounts}
    wrong = [
        f"{p.service}:{p.path}" for p in planned if mounted.get((p.service, p.path)) != ("volume", p.key)
    ]
    if left or lost or wrong or again.project != model.project:
        raise TamerError(
            f"internal error: the fixed copy still has anonymous volumes ({[f.facts['path'] for f in left]}), lost "
            f"mounts ({lost}) or mounts another volume than planned ({wrong}); nothing was written; please "
            "report this with the compose file"
        )
    write_fixed(source.path, output, text)
    return {
        "output": str(output),
        "diff": unified_diff(source.text, text, str(source.path), str(output)),
        "volumes": planned,
    }
