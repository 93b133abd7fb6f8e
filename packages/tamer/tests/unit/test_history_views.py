"""`tamer history`'s text, JSON and HTML, from hand-made snapshots: every forecast case, hostile names."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tamer.growth import DAY, summarize
from tamer.report.history_html import ReportNotWritten, render_history_html, write_report
from tamer.report.history_view import history_json, render_forecast, render_history
from tamer.snapshots import KindSize, OwnerSize, Snapshot, VolumeSize

T0 = 1_800_000_000.0
GB = 10**9
HOSTILE = '<script>alert("x")</script>&'


def snap(day: int, free: int | None, vol: int, image: int = 5 * GB) -> Snapshot:
    return Snapshot(
        taken_at=T0 + day * DAY,
        engine="E@/var/lib/docker",
        host="unix:///var/run/docker.sock",
        sizing="local",
        kinds=(KindSize("image", 3, image, 0, GB), KindSize("volume", 2, vol, 0, vol)),
        reclaimable_safe=0,
        reclaimable_decision=GB + vol,
        owners=(OwnerSize(f"project:{HOSTILE}", 0, vol, 0),),
        volumes=(VolumeSize(HOSTILE, "default", "named", f"project:{HOSTILE}", vol),),
        fs_size_bytes=1000 * GB if free is not None else None,
        fs_free_bytes=free,
    )


def test_filling_text_and_json_say_the_same_numbers() -> None:
    snaps = [snap(d, 400 * GB - 2 * GB * d, GB + GB * d) for d in range(5)]
    s = summarize("E@/var/lib/docker", snaps, by="volume")
    now = T0 + 7 * DAY  # three days after the last snapshot: the window is counted from now
    text = render_history(s, host="unix:///x", since=now - 10 * DAY, now=now, report=None)
    assert (
        "5 snapshot(s) from 2027-01-15 08:00 UTC to 2027-01-19 08:00 UTC (4.0 days; window: the last 10.0 days)"
        in text
    )
    assert "392GB free of 1TB" in text
    assert "Filling at 2GB a day (95% range 2GB to 2GB a day" in text
    assert "full around 2027-08-03 08:00 UTC" in text  # 392 GB at 2 GB a day: 196 days after Jan 19
    data = json.loads(
        json.dumps(history_json(s, host="unix:///x", since=None, now=now, report=None, hint=None))
    )
    assert data["forecast"]["full_at"].startswith("2027-08-03T08:00")
    assert data["forecast"]["rate_bytes_per_day"] == 2 * GB
    assert data["growth"][0] == {
        "key": HOSTILE, "first": GB, "last": 5 * GB, "change": 4 * GB, "per_day": GB, "status": ""
    }  # fmt: skip
    assert data["total"]["change"] == 4 * GB


@pytest.mark.parametrize(
    ("frees", "expected"),
    [
        ([100 * GB, 101 * GB, 102 * GB], "Not filling: free space changes by +1GB a day"),
        ([5 * GB, 0, 0], "The disk is FULL"),
        ([None, None, None], "When the disk fills: unknown; free space was not measured"),
        ([100 * GB, 99 * GB], "When the disk fills: not enough history: 2 snapshot(s) over 24h"),
        ([100 * GB, 95 * GB, 99 * GB, 93 * GB], "latest never (the range includes not filling at all)"),
    ],
)
def test_every_forecast_case_reads_right(frees: list[int | None], expected: str) -> None:
    s = summarize("E", [snap(d, f, GB) for d, f in enumerate(frees)])
    assert expected in render_forecast(s.forecast)


def test_the_page_is_self_contained_escaped_and_well_formed(tmp_path: Path) -> None:
    snaps = [snap(d, 400 * GB - 2 * GB * d, GB + GB * d) for d in range(5)]
    page = render_history_html(summarize("E<&>", snaps, by="owner"), host=HOSTILE)
    assert "<script" not in page and "alert(&quot;x&quot;)" in page
    assert not re.search(r"(src|href)=", page) and "@import" not in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 3  # bytes per kind, free space, top growers
    for svg in svgs:
        ET.fromstring(svg)  # well-formed XML, or this raises
    # the stacked areas: one polygon per kind, the top of the stack at the last snapshot is the total
    assert page.count("<polygon") == 2
    one = render_history_html(summarize("E", snaps[:1]), host="h")  # a single snapshot: bars, no polygon
    assert "<polygon" not in one and "<rect" in one
    target = write_report(tmp_path / "new" / "folder", page)
    assert target.read_text() == page and target.name == "tamer-history.html"
    assert [p.name for p in target.parent.iterdir()] == ["tamer-history.html"]  # no temp file left
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportNotWritten, match="--report"):
        write_report(tmp_path / "file", page)


def test_a_date_past_the_year_9999_is_said_not_crashed_on() -> None:
    # 900 GB free, shrinking by one byte a day: full in about 2.5 billion years
    snaps = [snap(d, 900 * GB - d, GB) for d in range(4)]
    s = summarize("E", snaps)
    assert s.forecast.status == "filling" and s.forecast.full_at is not None
    text = render_forecast(s.forecast)
    assert "full around after the year 9999" in text
    data = json.loads(
        json.dumps(history_json(s, host="h", since=None, now=T0 + 4 * DAY, report=None, hint=None))
    )
    assert data["forecast"]["full_at"] is None and data["forecast"]["full_at_unix"] == s.forecast.full_at
    assert "<svg" in render_history_html(s, host="h")
