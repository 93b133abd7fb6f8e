"""The cron line tamer suggests is the README's: `@hourly tamer record -q >/dev/null`.

`-q` hides progress only; `record` still prints its one-line result, which cron mails every hour,
so the hint without the redirect set up an hourly mail.
"""

from __future__ import annotations

from pathlib import Path

from tamer.report.history_view import no_history_hint


def test_no_history_hint_suggests_a_silent_cron_line() -> None:
    text = no_history_hint("ENGINE", 0, [])
    assert "`@hourly tamer record -q >/dev/null`" in text, text
    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text(encoding="utf-8")
    assert "@hourly tamer record -q >/dev/null" in readme
