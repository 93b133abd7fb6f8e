"""Human tables and JSON data for `tamer df` and `tamer ls`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tamer.accounting import DiskReport, container_bytes, volume_bytes
from tamer.inventory import BuildCache, Container, Image, Inventory, Volume
from tamer.report.table import render_table
from tamer.report.units import human_age, human_bytes

KIND_TITLES = {
    "image": "Images",
    "container": "Containers",
    "volume": "Volumes",
    "log": "Container logs",
    "build-cache": "Build cache",
}


def render_df(report: DiskReport, inv: Inventory, *, verbose: bool = False) -> str:
    out: list[str] = []
    sizing = (
        "walked the data-root " + inv.data_root if report.sizing == "local" else "the engine's own figures"
    )
    out.append(
        f"Docker host {inv.host} (engine {inv.server_version}, API {inv.api_version}); sizes: {sizing}"
    )
    out.append("")
    rows = [
        [
            KIND_TITLES[t.kind],
            str(t.count),
            str(t.active),
            human_bytes(t.size),
            human_bytes(t.safe),
            human_bytes(t.needs_decision),
        ]
        for t in report.totals
    ]
    out.append(
        render_table(
            ["TYPE", "TOTAL", "ACTIVE", "SIZE", "SAFE TO FREE", "NEEDS A DECISION"],
            rows,
            right=(1, 2, 3, 4, 5),
        )
    )
    if report.unaccounted is not None:
        out.append(
            f"Unaccounted in the data-root: {human_bytes(report.unaccounted)} of "
            f"{human_bytes(report.data_root_allocated)} on disk (engine metadata and leftovers)"
        )
    out.append("")
    out.append(
        f"Reclaimable: {human_bytes(report.safe_bytes)} safe (nothing anyone would miss), "
        f"{human_bytes(report.decision_bytes)} needs a decision"
    )
    limit = None if verbose else 8
    for title, items in (("Safe to free", report.safe), ("Needs a decision", report.needs_decision)):
        if items:
            out.append(f"\n{title}:")
            shown = items[:limit] if limit else items
            out.append(
                render_table(
                    ["KIND", "NAME", "SIZE", "WHY"],
                    [[i.kind, _short(i.name), human_bytes(i.bytes), i.why] for i in shown],
                    right=(2,),
                )
            )
            if limit and len(items) > limit:
                out.append(f"... and {len(items) - limit} more (tamer df -v)")
    if report.top:
        out.append("\nTop consumers:")
        out.append(
            render_table(
                ["KIND", "NAME", "SIZE", "OWNER"],
                [[i.kind, _short(i.name), human_bytes(i.bytes), i.owner] for i in report.top],
                right=(2,),
            )
        )
    owners = [o for o in report.owners if o.total or verbose]
    if owners:
        out.append("\nBy owner:")
        shown_owners = owners if verbose else owners[:10]
        out.append(
            render_table(
                ["OWNER", "TOTAL", "LAYERS", "VOLUMES", "LOGS"],
                [
                    [
                        o.owner,
                        human_bytes(o.total),
                        human_bytes(o.layers),
                        human_bytes(o.volumes),
                        human_bytes(o.logs),
                    ]
                    for o in shown_owners
                ],
                right=(1, 2, 3, 4),
            )
        )
        if len(owners) > len(shown_owners):
            out.append(f"... and {len(owners) - len(shown_owners)} more owners (tamer df -v)")
    for note in report.notes:
        out.append(f"note: {note}")
    return "\n".join(out)


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def df_json(report: DiskReport, inv: Inventory) -> dict[str, Any]:
    """`tamer df --json`'s data: the report's fields (as dataclasses.asdict gives them), with totals.

    Built field by field: the rows are flat dataclasses of numbers and strings, so each one's
    __dict__ is its JSON; asdict's recursive deep copy cost 45 ms on a host with 1,000 containers.
    """
    data: dict[str, Any] = {}
    for f in dataclasses.fields(report):
        value = getattr(report, f.name)
        if f.name == "owners":
            data[f.name] = [{**vars(o), "total": o.total} for o in value]
        elif f.name == "notes":
            data[f.name] = list(value)
        elif isinstance(value, tuple):
            data[f.name] = [dict(vars(row)) for row in value]
        else:
            data[f.name] = value
    data["safe_bytes"] = report.safe_bytes
    data["decision_bytes"] = report.decision_bytes
    data["host"] = inv.host
    data["api_version"] = inv.api_version
    data["data_root"] = inv.data_root
    return data


def render_ls(kind: str, objs: Sequence[Any], now: datetime, *, sized: bool = True) -> str:
    """`sized` False: nothing was measured (sizes show as "?"), only what the engine's lists carry.
    Who uses each image or volume is always known here: the lean tables that leave it out are
    tamer.quick_ls's."""
    if kind == "images":
        rows = [
            [
                _short(i.display_name, 40),
                i.short_id,
                human_bytes(i.size),
                human_bytes(i.shared_size if sized else None),
                str(len(i.containers)),
                human_age(i.created, now),
                "dangling" if i.dangling else "",
                i.owner,
            ]
            for i in objs
        ]
        return render_table(
            ["IMAGE", "ID", "SIZE", "SHARED", "CONTAINERS", "AGE", "", "OWNER"], rows, right=(2, 3, 4, 5)
        )
    if kind == "containers":
        rows = [
            [
                _short(c.name, 32) + (" (auto)" if c.name_generated else ""),
                c.short_id,
                _short(c.image, 28),
                c.state + (f" ({c.exit_code})" if c.state == "exited" else ""),
                human_bytes(c.writable_size),
                human_bytes(c.log.size.apparent if c.log.size else None),
                human_age(c.created, now),
                c.restart_policy + (" --rm" if c.auto_remove else ""),
                c.owner,
            ]
            for c in objs
        ]
        return render_table(
            ["NAME", "ID", "IMAGE", "STATE", "WRITABLE", "LOGS", "AGE", "RESTART", "OWNER"],
            rows,
            right=(4, 5, 6),
        )
    if kind == "volumes":
        rows = []
        for v in objs:
            who = ", ".join([*(f"{u} (running)" for u in v.users_running), *v.users_stopped]) or "-"
            origin = f"VOLUME {v.origin.path} of {v.origin.image}" if v.origin else ""
            where = v.data_path if v.placement != "default" else ""
            rows.append(
                [
                    _short(v.name, 40),
                    v.kind,
                    "orphaned" if v.orphaned else "in use" if v.in_use else "stopped users",
                    human_bytes(volume_bytes(v) if v.size else None),
                    v.placement + (f" -> {where}" if where else ""),
                    _short(who, 40),
                    origin,
                ]
            )
        return render_table(
            ["VOLUME", "KIND", "STATUS", "SIZE", "PLACEMENT", "USERS", "CREATED BY"], rows, right=(3,)
        )
    rows = [
        [
            b.id[:12],
            b.type,
            human_bytes(b.size),
            human_age(b.last_used, now),
            "yes" if b.in_use else "no",
            _short(b.description, 40),
        ]
        for b in objs
    ]
    return render_table(["ID", "TYPE", "SIZE", "LAST USED", "IN USE", "DESCRIPTION"], rows, right=(2,))


def ls_json(
    objs: Sequence[Image | Container | Volume | BuildCache], *, sized: bool = True
) -> list[dict[str, Any]]:
    """`sized` False: figures nothing measured are null, never 0 (an image's shared bytes, a container's total)."""
    out = []
    for o in objs:
        d = dataclasses.asdict(o)
        if isinstance(o, Volume):
            d.update(kind=o.kind, orphaned=o.orphaned, in_use=o.in_use)
            if not o.users_read:  # not read is null, never an empty list (which would say "no users")
                d.update(
                    users_running=None, users_stopped=None, origin=None, in_use=None, owner=o.owner or None
                )
        elif isinstance(o, Image):
            d.update(unique_size=o.unique_size if sized else None)
            if not sized:
                d.update(shared_size=None)
            if not o.users_read:  # a lean listing reads the image list only: no users, no inspect
                d.update(containers=None, owner=None, volume_paths=None, layers=None)
        elif isinstance(o, Container):
            known = o.writable_size is not None or o.log.size is not None
            d.update(total_size=container_bytes(o) if sized or known else None)
        out.append(d)
    return out
