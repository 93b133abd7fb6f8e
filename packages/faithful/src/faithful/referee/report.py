"""The conformance matrix as a self-contained HTML page (no scripts, no external files) and its JSON."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from faithful.errors import FaithfulError

__all__ = ["render_html", "write_report"]

_COLOURS = {"pass": "#d8f0d8", "fail": "#f6d0d0", "n/a": "#eeeeee", "error": "#f3e0b0"}
_LABEL = {"pass": "ok", "fail": "FAIL", "n/a": "n/a", "error": "ERROR"}


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def render_html(data: dict[str, Any]) -> str:
    """The page: the matrix (each cell coloured, with its TV and p), then every failing cell explained."""
    e = html.escape
    by = {(c["engine"], c["setting"]): c for c in data["cells"]}
    head = "".join(f"<th>{e(s)}</th>" for s in data["settings"])
    rows = []
    for eng in data["engines"]:
        tds = []
        for s in data["settings"]:
            c = by[(eng, s)]
            detail = (
                f"<br><small>TV {_num(c['tv_exact'])} · p {_num(c['p_canonical'])}</small>"
                if c["status"] in ("pass", "fail")
                else f"<br><small>{e(c['reason'][:80])}</small>"
            )
            anchor = f'<a href="#{e(eng)}-{data["settings"].index(s)}">' if c["status"] == "fail" else ""
            tds.append(
                f'<td style="background:{_COLOURS[c["status"]]}">{anchor}{_LABEL[c["status"]]}'
                f"{'</a>' if anchor else ''}{detail}</td>"
            )
        rows.append(f"<tr><th>{e(eng)}</th>{''.join(tds)}</tr>")
    failing = []
    for c in data["cells"]:
        if c["status"] not in ("fail", "error"):
            continue
        items = []
        for m in c["mismatches"]:
            rule = ", ".join(m["rules"]) or "unknown"
            items.append(
                f"<li>{e(m['case'])} row {m['row']}: canonical keeps, engine drops {e(str(m['dropped']))}; "
                f"engine keeps, canonical removes {e(str(m['added']))}; rule: {e(rule)}"
                f"{' (a tie at the cutoff)' if m['tied'] else ''}</li>"
            )
        others = [r for r in c["reason"].split("; ") if "row" not in r.split(":")[0]]
        items += [f"<li>{e(r)}</li>" for r in others]
        anchor = f"{c['engine']}-{data['settings'].index(c['setting'])}"
        failing.append(
            f'<h3 id="{e(anchor)}">{e(c["engine"])} x {e(c["setting"])}</h3>'
            f"<p>TV (exact q's) {_num(c['tv_exact'])}, TV (draws vs canonical) {_num(c['tv_draws'])}, "
            f"p canonical {_num(c['p_canonical'])}, p own {_num(c['p_own'])}, "
            f"zero-probability draws {c['zero_draws']}</p><ul>{''.join(items)}</ul>"
        )
    unavailable = "".join(f"<li>{e(k)}: {e(v)}</li>" for k, v in data["unavailable"].items())
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>faithful conformance</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:center;vertical-align:top}}</style></head><body>
<h1>Sampler conformance</h1>
<p>{data["n"]} draws per row and engine; cases: {e(", ".join(data["cases"]))}; level {data["alpha"]} per engine
(Bonferroni over its cells); {data["reps"]} simulated samples per null; seed {data["seed"]}.</p>
<p>ok: the engine's q has the canonical support (faithful's exact q), no draw has canonical probability 0,
and the draws pass a calibrated test against the canonical q and the engine's own q.</p>
<table><tr><th>engine</th>{head}</tr>{"".join(rows)}</table>
{f"<h2>Not available</h2><ul>{unavailable}</ul>" if unavailable else ""}
<h2>Failing cells</h2>{"".join(failing) or "<p>none</p>"}
</body></html>
"""


def write_report(data: dict[str, Any], directory: str | Path) -> Path:
    """Write ``conformance.html`` and ``conformance.json`` into ``directory`` (created); returns the HTML path.

    Raises:
        FaithfulError: the directory cannot be created or written.
    """
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        (d / "conformance.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        path = d / "conformance.html"
        path.write_text(render_html(data), encoding="utf-8")
    except OSError as exc:
        raise FaithfulError(
            f"cannot write the report into {str(d)!r}: {exc}; pick a writable directory"
        ) from None
    return path
