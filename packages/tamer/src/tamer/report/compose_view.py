"""`tamer compose check` in words: each finding's code and facts turned into a sentence with a remedy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tamer.compose.fix import NewVolume, path_slug
from tamer.compose.rules import Finding


def finding_text(f: Finding, project: str) -> str:
    """One finding or note as a sentence that says what is wrong and what to do."""
    x: Mapping[str, Any] = f.facts
    svc = f.service or "?"
    if f.code == "anonymous-volume":
        path = x["path"]
        name = f"{svc}_{path_slug(path)}"
        if x.get("origin") == "image":
            where = (
                "the file mounts an anonymous volume there"
                if x.get("entry") is not None
                else "no named volume, bind or tmpfs is mounted there"
            )
            head = f"the image {x.get('image')} declares VOLUME {path} and {where}"
        else:
            head = f"`- {path}` is an anonymous volume"
        return (
            f"{head}: each `docker compose up` after a `rm` starts from an empty anonymous volume, and "
            f"`docker compose down -v` or `docker volume prune` deletes the data; map a named volume "
            f"(`- {name}:{path}`, declared under the top-level volumes:; --fix does it)"
        )
    if f.code == "bind-into-data-root":
        what = (
            f"volume {x['volume']} (driver_opts device)" if x.get("volume") else f"bind mount {x['source']}"
        )
        if x.get("contains"):
            return (
                f"{what} -> {x['target']} is writable and contains the engine's data-root {x['data_root']}: the "
                "container can change the engine's own files; mount only what it needs, or add :ro"
            )
        ro = " (read-only)" if x.get("read_only") else ""
        return (
            f"{what}{ro} points into the engine's data-root {x['data_root']}: those files belong to the engine "
            "(a prune, a data-root move or an engine upgrade changes or deletes them); use a named volume instead"
        )
    if f.code == "undeclared-volume":
        return (
            f"volume {x['volume']} (at {x['path']}) is not declared under the top-level volumes:, so Compose "
            f"refuses the file; add `{x['volume']}:` there"
        )
    if f.code == "volume-taken":
        who = (
            f"Compose made it for project {x['owner_project']}'s volume {x['owner_key']}"
            if x.get("owner_project") is not None
            else "it was not made by Compose"
        )
        return (
            f"volume {x['volume']} is {x['engine_name']} on the engine, which already exists and is not this "
            f"project's ({who}): `up` would mount it anyway, mixing this stack's data with whatever it holds; "
            f"give it another name (`name:`), or mark it `external: true` if it is meant to be shared"
        )
    if f.code == "invalid-entry":
        return f"{x['entry']!r} is not a valid entry: {x['why']}"
    if f.code == "no-restart-policy":
        return "no restart policy: after a crash or a reboot it stays down; add `restart: unless-stopped`"
    if f.code == "no-log-rotation":
        unknown = (
            ""
            if x.get("daemon_options_known", True)
            else " (tamer could not read the daemon's log-opts: if daemon.json sets max-size, this is fine)"
        )
        src = "its logging: section" if x.get("from") == "service" else "the engine's default"
        return (
            f"logs go to the json-file driver ({src}) without max-size: the log grows without bound inside the "
            f'data-root; add `logging: {{driver: json-file, options: {{max-size: 10m, max-file: "3"}}}}`{unknown}'
        )
    if f.code == "no-container-name":
        return (
            f"no container_name: its one container gets a generated name ({project}-{svc}-1); name it "
            f"(`container_name: {svc}`) so it is recognisable in `docker ps` and `tamer df`"
        )
    if f.code == "image-not-on-engine":
        return (
            f"not checked for VOLUMEs: the image {x['image']} is not on this engine (tamer does not pull); "
            f"`docker pull {x['image']}` and check again"
        )
    if f.code == "image-not-built":
        return (
            f"not checked for VOLUMEs: its image {x['image']} is built from build: and is not on this engine yet; "
            "`docker compose build` and check again"
        )
    if f.code == "no-image":
        return "has neither image: nor build:, so there is nothing to run (Compose refuses it)"
    if f.code == "volumes-from-container":
        return (
            f"takes volumes from container {x['container']}, which this file does not describe: not checked"
        )
    if f.code == "include-other-file":
        return f"includes {x['file']}, which is not read: its services are not checked"
    if f.code == "override-not-read":
        return (
            f"`docker compose` run in this folder also merges {x['file']}, which is not read: what it adds is "
            f"not checked (check it with `docker compose config > merged.yaml; tamer compose check merged.yaml`)"
        )
    if f.code == "extends-other-file":
        return f"extends a service in {x['file']}, which is not read: what it inherits is not checked"
    return f"{f.code}: {dict(x)}"


def render_check(
    file: str,
    project: str,
    services: Sequence[str],
    findings: Sequence[Finding],
    fix: Mapping[str, Any] | None,
    exit_code: int,
    containers: Mapping[str, str] | None = None,
) -> str:
    lines: list[str] = []
    counted = [f for f in findings if f.counts]
    notes = [f for f in findings if not f.counts]
    head = f"{file} (project {project}, {len(services)} service{'s' if len(services) != 1 else ''}): "
    head += f"{len(counted)} finding{'s' if len(counted) != 1 else ''}" if counted else "no findings"
    if notes:
        head += f", {len(notes)} note{'s' if len(notes) != 1 else ''}"
    lines.append(head)
    for scope in [None, *services]:
        mine = [f for f in findings if f.service == scope]
        if not mine:
            continue
        lines.append(f"\n{scope}:" if scope is not None else "\n(file):")
        for f in mine:
            tag = f.code if f.counts else f"note: {f.code}"
            lines.append(f"  [{tag}] {finding_text(f, project)}")
    if fix is not None:
        lines.append("")
        lines.append(render_fix(fix, containers or {}))
    elif any(f.code == "anonymous-volume" for f in counted):
        lines.append(
            "\n`tamer compose check --fix` writes a copy with these volumes named (the file stays as it is)."
        )
    lines.append(
        {
            0: "\nclean.",
            1: "\nexit 1: findings.",
            3: "\nexit 3: no findings, but not everything could be checked (see the notes).",
        }.get(exit_code, "")
    )
    return "\n".join(lines).rstrip()


def render_fix(fix: Mapping[str, Any], containers: Mapping[str, str]) -> str:
    """The --fix part: what was written, the diff, and how to bring existing data along.

    `containers`: each service's container name (container_name, else <project>-<service>-1)."""
    volumes: Sequence[NewVolume] = fix["volumes"]
    if not volumes:
        return "--fix: nothing to name (no anonymous volumes); no file written."
    lines = [f"--fix wrote {fix['output']} (the original is unchanged), naming {len(volumes)} volumes:"]
    lines += [
        f"  {v.service}: {v.path} -> {v.key} (on the engine: {v.engine_name}"
        + (
            ", which Compose already made for this project's volume of that name: reused, its data kept)"
            if v.existing
            else ")"
        )
        for v in volumes
    ]
    lines += ["", fix["diff"].rstrip()]
    new = [v for v in volumes if not v.existing]
    if not new:
        return "\n".join(lines)
    lines.append(
        "\nThe new volumes start empty: data already in an anonymous volume is not moved. For a service that "
        "already ran, this moves its data into them (do it before the next `up` with the fixed file):"
    )
    for service in dict.fromkeys(v.service for v in new):
        flags = " ".join(f"--name-for {v.path}={v.engine_name}" for v in new if v.service == service)
        lines.append(f"  tamer adopt {containers.get(service, service)} {flags}")
    return "\n".join(lines)
