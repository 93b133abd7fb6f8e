"""`tamer history --report DIR`: one self-contained HTML page, charts as inline SVG.

No script, no stylesheet or font from elsewhere: the page opens the same offline, from a
mail attachment or a CI artifact. Every name shown (volumes, compose projects, container
names come from labels anyone can set) is escaped.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from html import escape
from pathlib import Path

from tamer.errors import TamerError
from tamer.growth import DAY, GrowthSummary
from tamer.report.history_view import render_forecast, signed_bytes, utc, when
from tamer.report.units import human_bytes

KIND_ORDER = ("image", "container", "volume", "log", "build-cache")
KIND_COLOURS = {
    "image": "#4e79a7",
    "container": "#f28e2b",
    "volume": "#59a14f",
    "log": "#e15759",
    "build-cache": "#76b7b2",
}
W, H = 760, 300  # chart size in px
ML, MR, MT, MB = 70, 20, 20, 40  # margins: room for the axes' labels
REPORT_NAME = "tamer-history.html"


class ReportNotWritten(TamerError):
    """The report folder cannot be made or written."""


def _x_scale(times: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(times), max(times)
    if hi <= lo:  # one instant: centre it
        lo, hi = lo - 3600, hi + 3600
    return lo, hi


def _axes(lo: float, hi: float, ymax: float) -> list[str]:
    out = [
        f'<line x1="{ML}" y1="{H - MB}" x2="{W - MR}" y2="{H - MB}" stroke="#444"/>',
        f'<line x1="{ML}" y1="{MT}" x2="{ML}" y2="{H - MB}" stroke="#444"/>',
    ]
    for i in range(5):
        value = ymax * i / 4
        y = H - MB - (H - MT - MB) * i / 4
        out.append(f'<line x1="{ML}" y1="{y:.1f}" x2="{W - MR}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(
            f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{human_bytes(int(value))}</text>'
        )
    for i in range(4):
        t = lo + (hi - lo) * i / 3
        x = ML + (W - ML - MR) * i / 3
        moment = utc(t)
        label = moment.strftime("%m-%d %H:%M") if moment else "?"
        anchor = "start" if i == 0 else "end" if i == 3 else "middle"
        out.append(
            f'<text x="{x:.1f}" y="{H - MB + 16}" text-anchor="{anchor}" font-size="11">{label}</text>'
        )
    return out


def stacked_area_svg(times: Sequence[float], layers: Sequence[tuple[str, Sequence[int], str]]) -> str:
    """Stacked areas of `layers` (label, bytes at each time, colour) over `times` (sorted)."""
    lo, hi = _x_scale(times)
    tops = [sum(vals[i] for _, vals, _ in layers) for i in range(len(times))]
    ymax = max([*tops, 1])

    def x(t: float) -> float:
        return ML + (W - ML - MR) * (t - lo) / (hi - lo)

    def y(v: float) -> float:
        return H - MB - (H - MT - MB) * v / ymax

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
        *_axes(lo, hi, ymax),
    ]
    below = [0] * len(times)
    for label, vals, colour in layers:
        above = [b + v for b, v in zip(below, vals, strict=True)]
        title = f"<title>{escape(label)}: {human_bytes(vals[-1])} at the last snapshot</title>"
        if len(times) == 1:
            x0 = x(times[0]) - 20
            parts.append(
                f'<rect x="{x0:.1f}" y="{y(above[0]):.1f}" width="40" height="{y(below[0]) - y(above[0]):.1f}" '
                f'fill="{colour}">{title}</rect>'
            )
        else:
            upper = [f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, above, strict=True)]
            lower = [f"{x(t):.1f},{y(v):.1f}" for t, v in zip(reversed(times), reversed(below), strict=True)]
            parts.append(
                f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" fill-opacity="0.85" '
                f'stroke="{colour}">{title}</polygon>'
            )
        below = above
    parts.append("</svg>")
    return "\n".join(parts)


def line_svg(
    points: Sequence[tuple[float, int]],
    colour: str = "#333",
    trend: tuple[tuple[float, float], tuple[float, float]] | None = None,
) -> str:
    """A line of (time, bytes) points, y from 0; `trend`, two (time, bytes) ends of a dashed line."""
    lo, hi = _x_scale([t for t, _ in points])
    ymax = max([v for _, v in points] + [1])

    def xy(t: float, v: float) -> tuple[float, float]:
        return ML + (W - ML - MR) * (t - lo) / (hi - lo), H - MB - (H - MT - MB) * v / ymax

    dots = "".join(
        f'<circle cx="{xy(t, v)[0]:.1f}" cy="{xy(t, v)[1]:.1f}" r="2.5" fill="{colour}">'
        f"<title>{when(t)}: {human_bytes(v)}</title></circle>"
        for t, v in points
    )
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v in points))
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">',
            *_axes(lo, hi, ymax),
            f'<polyline points="{line}" fill="none" stroke="{colour}"/>',
            dots,
            *(
                [
                    f'<line x1="{xy(*trend[0])[0]:.1f}" y1="{xy(*trend[0])[1]:.1f}" x2="{xy(*trend[1])[0]:.1f}" '
                    f'y2="{xy(*trend[1])[1]:.1f}" stroke="#e15759" stroke-dasharray="6 4">'
                    "<title>the fitted rate, through the newest figure</title></line>"
                ]
                if trend
                else []
            ),
            "</svg>",
        ]
    )


def bars_svg(rows: Sequence[tuple[str, int]], colour: str = "#59a14f") -> str:
    """Horizontal bars, one per (label, bytes), largest first as given."""
    height = 24 * len(rows) + 10
    vmax = max([v for _, v in rows] + [1])
    label_w = 260
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" role="img">']
    for i, (label, value) in enumerate(rows):
        y = 5 + 24 * i
        width = (W - label_w - 90) * value / vmax
        shown = label if len(label) <= 40 else label[:37] + "..."
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">{escape(shown)}'
            f"<title>{escape(label)}</title></text>"
        )
        parts.append(f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="18" fill="{colour}"/>')
        parts.append(
            f'<text x="{label_w + width + 6:.1f}" y="{y + 15}" font-size="12">{signed_bytes(value)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def render_history_html(s: GrowthSummary, *, host: str) -> str:
    """The whole page for one engine's window (at least one snapshot)."""
    snaps = s.snapshots
    times = [x.taken_at for x in snaps]
    kinds = [k for k in KIND_ORDER if any(x.kind_bytes(k) for x in snaps)] or ["image"]
    layers = [(k, [x.kind_bytes(k) for x in snaps], KIND_COLOURS[k]) for k in kinds]
    legend = " ".join(
        f'<span class="key"><span class="swatch" style="background:{KIND_COLOURS[k]}"></span>{escape(k)}</span>'
        for k in kinds
    )
    free = [(x.taken_at, x.fs_free_bytes) for x in snaps if x.fs_free_bytes is not None]
    growers = [(f"{w.kind} {w.name}", w.growth.change or 0) for w in s.growers]
    rows = "".join(
        f"<tr><td>{escape(g.key)}{' (' + g.status + ')' if g.status else ''}</td><td>{human_bytes(g.first)}</td>"
        f"<td>{human_bytes(g.last)}</td><td>{signed_bytes(g.change)}</td><td>{signed_bytes(g.per_day)}</td></tr>"
        for g in s.rows
    )
    body = [
        f"<h1>Docker disk use over time: {escape(s.engine)}</h1>",
        f"<p>{escape(host)}: {len(snaps)} snapshot(s) from {when(times[0])} to {when(times[-1])}.</p>",
        "<h2>Bytes per kind</h2>",
        f"<p>{legend}</p>",
        stacked_area_svg(times, layers),
        "<h2>When the disk fills</h2>",
        "<p>" + escape(render_forecast(s.forecast)).replace("\n", "<br>") + "</p>",
    ]
    if free:
        body += [
            "<h3>Free space of the data-root's filesystem</h3>",
            line_svg([(t, int(v or 0)) for t, v in free], trend=_trend(s)),
        ]
    body.append("<h2>Top growers</h2>")
    body.append(bars_svg(growers) if growers else "<p>No volume or container log grew in this window.</p>")
    body += [
        f"<h2>What grew, by {escape(s.by)}</h2>",
        "<table><tr><th>"
        + escape(s.by)
        + "</th><th>first</th><th>last</th><th>change</th><th>per day</th></tr>",
        rows,
        "</table>",
    ]
    style = (
        "body{font-family:sans-serif;max-width:820px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{padding:2px 10px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}tr:nth-child(even){background:#f4f4f4}"
        ".key{margin-right:1em}.swatch{display:inline-block;width:12px;height:12px;margin-right:4px}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>tamer history: {escape(s.engine)}</title><style>{style}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _trend(s: GrowthSummary) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The forecast's line over the snapshots it fitted: the fitted rate through the newest free figure."""
    f = s.forecast
    if f.rate is None or f.now_at is None or f.free_now is None:
        return None
    start = f.now_at - f.span_s
    return (start, f.free_now + f.rate * f.span_s / DAY), (f.now_at, float(f.free_now))


def write_report(folder: Path, page: str) -> Path:
    """Write `page` as folder/tamer-history.html (the folder made if needed), atomically: a reader never
    sees half a page. Raises ReportNotWritten."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tamer-history.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(page)
            os.chmod(tmp, 0o644)
            target = folder / REPORT_NAME
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ReportNotWritten(
            f"cannot write the report into {folder} ({exc.strerror or exc}); expected a folder this user "
            "can write; pick another with --report DIR"
        ) from None
    return target
