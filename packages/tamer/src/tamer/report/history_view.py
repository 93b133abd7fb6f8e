"""Text and JSON for `tamer history` and `tamer record`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tamer.growth import CONFIDENCE, Forecast, Growth, GrowthSummary
from tamer.report.table import render_table
from tamer.report.units import human_bytes
from tamer.snapshots import Snapshot

BY_TITLES = {"kind": "KIND", "owner": "OWNER", "volume": "VOLUME", "log": "CONTAINER LOG"}


def utc(t: float) -> datetime | None:
    """Unix seconds as a UTC datetime; None past what a datetime holds (years 1..9999): a forecast at a
    very slow rate, or a snapshot stamped by a clock set absurdly far, lands there."""
    try:
        return datetime.fromtimestamp(t, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def when(t: float | None) -> str:
    """Unix seconds as a UTC minute, '-' for none, or 'after 9999' / 'before year 1' out of range."""
    if t is None:
        return "-"
    moment = utc(t)
    if moment is None:
        return "after the year 9999" if t > 0 else "before the year 1"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def iso(t: float | None) -> str | None:
    """ISO 8601 in UTC; None for none and out of range (the *_unix fields carry every value)."""
    moment = None if t is None else utc(t)
    return None if moment is None else moment.isoformat()


def signed_bytes(n: int | float | None) -> str:
    """+1.2GB, -300MB, 0B; '?' when unknown."""
    if n is None:
        return "?"
    if n == 0:
        return "0B"
    return ("+" if n > 0 else "-") + human_bytes(round(abs(n)))


def _rate(n: float | None) -> str:
    """A rate of filling: bytes a day, '-' only for a negative one (free space growing)."""
    text = signed_bytes(n)
    return text.removeprefix("+")


def span_text(seconds: float) -> str:
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- tamer record ------------------------------------------------------------------
def record_line(snap: Snapshot) -> str:
    """One line for a log: what was recorded."""
    disk = (
        f"; its filesystem has {human_bytes(snap.fs_free_bytes)} free of {human_bytes(snap.fs_size_bytes)}"
        if snap.fs_free_bytes is not None
        else "; free space not measured (data-root not on this machine)"
    )
    return (
        f"recorded a snapshot of {snap.engine} at {when(snap.taken_at)}: Docker holds "
        f"{human_bytes(snap.total_bytes)} ({human_bytes(snap.reclaimable_safe)} safe to free, "
        f"{human_bytes(snap.reclaimable_decision)} needs a decision){disk}"
    )


def record_json(snap: Snapshot, store: str) -> dict[str, Any]:
    return {
        "engine": snap.engine,
        "host": snap.host,
        "taken_at": iso(snap.taken_at),
        "total_bytes": snap.total_bytes,
        "reclaimable_safe": snap.reclaimable_safe,
        "reclaimable_decision": snap.reclaimable_decision,
        "data_root_bytes": snap.data_root_bytes,
        "fs_size_bytes": snap.fs_size_bytes,
        "fs_free_bytes": snap.fs_free_bytes,
        "store": store,
        "snapshot": snap.to_json(),
    }


# -- tamer history -----------------------------------------------------------------
def growth_json(g: Growth) -> dict[str, Any]:
    return {
        "key": g.key,
        "first": g.first,
        "last": g.last,
        "change": g.change,
        "per_day": g.per_day,
        "status": g.status,
    }


def forecast_json(f: Forecast) -> dict[str, Any]:
    return {
        "status": f.status,
        "reason": f.reason,
        "snapshots": f.n,
        "span_s": f.span_s,
        "confidence": CONFIDENCE,
        "rate_bytes_per_day": f.rate,
        "rate_low": f.rate_low,
        "rate_high": f.rate_high,
        "free_bytes": f.free_now,
        "fs_size_bytes": f.fs_size,
        "free_at": iso(f.now_at),
        "full_at": iso(f.full_at),
        "full_earliest": iso(f.full_earliest),
        "full_latest": iso(f.full_latest),
        "full_at_unix": f.full_at,
        "full_earliest_unix": f.full_earliest,
        "full_latest_unix": f.full_latest,
        "since_clean_at": iso(f.reset_at),
    }


def history_json(
    s: GrowthSummary, *, host: str, since: float | None, now: float, report: str | None, hint: str | None
) -> dict[str, Any]:
    snaps = s.snapshots
    return {
        "engine": s.engine,
        "host": host,
        "since": iso(since),
        "now": iso(now),
        "by": s.by,
        "snapshots": len(snaps),
        "first_at": iso(snaps[0].taken_at) if snaps else None,
        "last_at": iso(snaps[-1].taken_at) if snaps else None,
        "total": growth_json(s.total) if s.total else None,
        "growth": [growth_json(g) for g in s.rows],
        "top_growers": [{"kind": w.kind, "name": w.name, **growth_json(w.growth)} for w in s.growers],
        "forecast": forecast_json(s.forecast),
        "report": report,
        "hint": hint,
    }


def render_forecast(f: Forecast) -> str:
    """The disk-full sentence, with its range and how it was found."""
    pct = f"{CONFIDENCE:.0%}"
    if f.status == "unknown":
        return f"When the disk fills: unknown; {f.reason}."
    free = (
        f"{human_bytes(f.free_now)} free of {human_bytes(f.fs_size)} on the data-root's filesystem"
        f" (at {when(f.now_at)})"
        if f.free_now is not None
        else ""
    )
    if f.status == "full":
        return f"The disk is FULL: {free}."
    if f.status == "not-enough-history":
        return f"{free}.\nWhen the disk fills: {f.reason}." if free else f"When the disk fills: {f.reason}."
    fitted = f"least-squares fit of free space over {f.n} snapshots spanning {span_text(f.span_s)}"
    if f.reset_at is not None:
        fitted += f", since the last clean at {when(f.reset_at)}"
    rate_range = f"{pct} range {_rate(f.rate_low)} to {_rate(f.rate_high)} a day"
    if f.status == "not-filling":
        return (
            f"{free}.\nNot filling: free space changes by {signed_bytes(-(f.rate or 0))} a day "
            f"(filling rate's {rate_range}; {fitted})."
        )
    latest = (
        when(f.full_latest) if f.full_latest is not None else "never (the range includes not filling at all)"
    )
    return (
        f"{free}.\nFilling at {_rate(f.rate)} a day ({rate_range}; {fitted}).\n"
        f"At that rate the disk is full around {when(f.full_at)}: "
        f"earliest {when(f.full_earliest)}, latest {latest}."
    )


def render_history(
    s: GrowthSummary, *, host: str, since: float | None, now: float, report: str | None
) -> str:
    snaps = s.snapshots
    first, last = snaps[0], snaps[-1]
    span = last.taken_at - first.taken_at
    window = f"the last {span_text(now - since)}" if since is not None else "all time"
    out = [
        f"History of engine {s.engine} ({host}): {len(snaps)} snapshot(s) from {when(first.taken_at)} "
        f"to {when(last.taken_at)} ({span_text(span)}; window: {window})",
        "",
    ]
    if len(snaps) == 1:
        out.append("One snapshot so far: nothing to compare yet. Record more (`tamer record` on a timer).")
    else:
        rows = [
            [
                g.key + (f" ({g.status})" if g.status else ""),
                human_bytes(g.first),
                human_bytes(g.last),
                signed_bytes(g.change),
                signed_bytes(g.per_day),
            ]
            for g in s.rows
        ]
        if s.total is not None:
            t = s.total
            rows.append(
                [
                    "all of Docker",
                    human_bytes(t.first),
                    human_bytes(t.last),
                    signed_bytes(t.change),
                    signed_bytes(t.per_day),
                ]
            )
        out.append(f"What grew, by {s.by} (first snapshot -> last):")
        out.append(
            render_table(
                [BY_TITLES.get(s.by, s.by.upper()), "FIRST", "LAST", "CHANGE", "PER DAY"],
                rows,
                right=(1, 2, 3, 4),
            )
        )
        out.append("")
        if s.growers:
            out.append("Top growers (volumes and container logs):")
            out.append(
                render_table(
                    ["WHAT", "NAME", "FIRST", "LAST", "GREW"],
                    [
                        [
                            w.kind + (f" ({w.growth.status})" if w.growth.status else ""),
                            w.name,
                            human_bytes(w.growth.first),
                            human_bytes(w.growth.last),
                            signed_bytes(w.growth.change),
                        ]
                        for w in s.growers
                    ],
                    right=(2, 3, 4),
                )
            )
        else:
            out.append("No volume or container log grew.")
    out.append("")
    out.append(render_forecast(s.forecast))
    if report:
        out.append("")
        out.append(f"Report with charts: {report}")
    return "\n".join(out)


def no_history_hint(engine: str, older: int, others: list[str]) -> str:
    """What to say when the window holds no snapshot of `engine`."""
    if older:
        return (
            f"No snapshots of engine {engine} in this window ({older} older ones): widen it, e.g. "
            "`tamer history --since 365d`."
        )
    text = (
        f"No history for engine {engine} yet. Take a snapshot now with `tamer record` (every `tamer df` "
        "records one too), and keep taking them on a timer: `tamer schedule install --policy FILE --every 1d` "
        "(systemd units that also record every hour; --record-every to change) or a cron line such as "
        "`@hourly tamer record -q >/dev/null`."
    )
    if others:
        text += (
            " The store has history for other engines: " + ", ".join(others) + " (pick one with --engine)."
        )
    return text
