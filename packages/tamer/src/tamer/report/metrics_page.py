"""The one-page HTML status `tamer serve` answers on `/`. Pure; every name from the host is escaped.

No scripts, no styles from elsewhere: it must open on a host with no network.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tamer.report.units import human_bytes

if TYPE_CHECKING:
    from tamer.metrics import CleanFacts
    from tamer.snapshots import Snapshot

TOP = 15  # rows per "largest" table: a status page, not a listing (`tamer ls` is)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body or '<tr><td colspan=9>none</td></tr>'}</table>"


def render_status_page(
    snapshot: Snapshot | None, clean: CleanFacts | None, *, age: float | None, refresh: float, error: str = ""
) -> str:
    """The page: what the latest snapshot says, how old it is, and whether the last refresh failed.

    snapshot None: the first one is still being taken (the page says so).
    """
    parts = [
        "<!doctype html><html><head><meta charset=utf-8><title>tamer</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        "td:nth-child(n+2){text-align:right}.bad{color:#b00}</style></head><body>",
    ]
    if snapshot is None:
        parts.append("<h1>tamer</h1><p>The first snapshot is still being taken; reload in a moment.</p>")
    else:
        parts.append(f"<h1>tamer: {html.escape(snapshot.host)}</h1>")
        parts.append(
            f"<p>Engine {html.escape(snapshot.engine)}, data-root {html.escape(snapshot.data_root or '?')}."
            f" Snapshot taken {_when(snapshot.taken_at)} ({age or 0:.0f} s ago; refreshed every "
            f"{refresh:g} s; sizes {html.escape(snapshot.sizing)}).</p>"
        )
        free = snapshot.fs_free_bytes
        parts.append(
            f"<p>Docker holds {human_bytes(snapshot.total_bytes)}; data-root "
            f"{human_bytes(snapshot.data_root_bytes)} on disk; "
            f"{human_bytes(free)} free on its filesystem.</p>"
        )
        parts.append("<h2>By kind</h2>")
        parts.append(
            _table(
                ("kind", "objects", "size", "reclaimable (safe)", "needs a decision"),
                (
                    (
                        k.kind,
                        k.count,
                        human_bytes(k.bytes),
                        human_bytes(k.safe),
                        human_bytes(k.needs_decision),
                    )
                    for k in snapshot.kinds
                ),
            )
        )
        vols = sorted((v for v in snapshot.volumes if v.bytes is not None), key=lambda v: -(v.bytes or 0))
        parts.append(f"<h2>Largest volumes ({len(snapshot.volumes)} in all)</h2>")
        parts.append(
            _table(
                ("volume", "size", "on disk", "kind", "placement", "owner"),
                (
                    (v.name, human_bytes(v.bytes), human_bytes(v.allocated), v.kind, v.placement, v.owner)
                    for v in vols[:TOP]
                ),
            )
        )
        logs = sorted((lg for lg in snapshot.logs if lg.bytes), key=lambda lg: -(lg.bytes or 0))
        parts.append("<h2>Largest container logs</h2>")
        parts.append(
            _table(("container", "size"), ((lg.container, human_bytes(lg.bytes)) for lg in logs[:TOP]))
        )
        parts.append("<h2>Owners</h2>")
        parts.append(
            _table(
                ("owner", "total", "layers", "volumes", "logs"),
                (
                    (
                        o.owner,
                        human_bytes(o.bytes),
                        human_bytes(o.layers),
                        human_bytes(o.volumes),
                        human_bytes(o.logs),
                    )
                    for o in sorted(snapshot.owners, key=lambda o: -o.bytes)[:TOP]
                ),
            )
        )
    if clean is not None:
        parts.append("<h2>Cleaning</h2>")
        if not clean.readable:
            parts.append("<p class=bad>The clean journal cannot be read (see tamer clean).</p>")
        elif clean.last_clean_at is None:
            parts.append("<p>No clean has finished on this engine yet.</p>")
        else:
            parts.append(
                f"<p>Last clean ended {_when(clean.last_clean_at)} and freed "
                f"{human_bytes(clean.last_clean_freed)}.</p>"
            )
        stuck = {op: n for op, n in clean.unfinished.items() if n}
        if stuck:
            listed = ", ".join(f"{n} {html.escape(op)}" for op, n in sorted(stuck.items()))
            parts.append(f"<p class=bad>Unfinished: {listed} (rerun or roll back, as tamer says).</p>")
    if error:
        parts.append(
            f"<p class=bad>The last refresh failed: {html.escape(error)}; serving the previous snapshot.</p>"
        )
    parts.append('<p><a href="/metrics">/metrics</a> (Prometheus)</p></body></html>')
    return "\n".join(parts) + "\n"
